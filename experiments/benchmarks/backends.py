"""TaskAffinityModel on TensorFlow and on JAX, side by side.

For the package's benchmark MLP (`affinity_benchmark --model=mlp`: two
512-unit layers, a 2-class head per task, batch 64) at 3, 9 and 40
tasks, each backend in its own fresh process (Keras picks its backend at
import), the backends alternating (TF, JAX, then JAX, TF, ...) so that
load on a shared machine falls on both:

* the plain Keras step and the step measured with the lookahead method
  (`train_on_batch`, mean of `--backends_repeats` calls after two
  warm-up calls);
* the bound `F + n B + n F`: one forward pass in training mode and one
  task's backward pass (`step_cost.forward_and_backward`, as
  `affinity_benchmark` measures them);
* the first `fit` of two measured steps (building, tracing and
  compiling included);
* the process's peak resident memory after all of the above.

Writes `backends.csv` (one row per process) and `backends.md` (medians
per backend and task count, and the JAX / TensorFlow ratios) in
`--backends_out_dir`.

Usage:
  python -m experiments.benchmarks.backends \
      --backends_out_dir=experiments/benchmarks/results/backends
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments.lib import step_cost  # noqa: E402

_TASKS = flags.DEFINE_list("backends_tasks", ["3", "9", "40"],
                           "Task counts.")
_ROUNDS = flags.DEFINE_integer(
    "backends_rounds", 2, "Processes per backend and task count.",
    lower_bound=1)
_REPEATS = flags.DEFINE_integer(
    "backends_repeats", 10, "Timed calls per measure.", lower_bound=1)
_BATCH = flags.DEFINE_integer("backends_batch", 64, "Batch size.",
                              lower_bound=1)
_OUT = flags.DEFINE_string("backends_out_dir", "runs/backends",
                           "Output directory.")
_CHILD = flags.DEFINE_integer("backends_child_tasks", None,
                              "Internal: one process's measurements.")

BACKENDS = ("tensorflow", "jax")


def _child(tasks, batch, repeats):
    """Prints one JSON line: this backend's measurements."""
    import keras

    x, y = step_cost.batch("mlp", [f"t{i}" for i in range(tasks)], batch,
                           steps=2)
    start = time.perf_counter()
    model, names = step_cost.build_model("mlp", tasks, 1)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    first_fit = time.perf_counter() - start
    one_x, one_y = x[:batch], {t: v[:batch] for t, v in y.items()}
    measured = step_cost.mean_seconds(
        lambda: model.train_on_batch(one_x, one_y), repeats)
    plain_model, _ = step_cost.build_model("mlp", tasks, None)
    plain = step_cost.mean_seconds(
        lambda: plain_model.train_on_batch(one_x, one_y), repeats)
    forward, backward = step_cost.forward_and_backward(
        plain_model, names, one_x, one_y, repeats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "backend": keras.backend.backend(), "tasks": tasks,
        "plain_ms": 1e3 * plain, "measured_ms": 1e3 * measured,
        "forward_ms": 1e3 * forward, "backward_ms": 1e3 * backward,
        "bound_ms": 1e3 * (forward + tasks * (backward + forward)),
        "first_fit_s": first_fit, "peak_rss_mb": rss}))


def _run(backend, tasks):
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.backends",
         f"--backends_child_tasks={tasks}",
         f"--backends_batch={_BATCH.value}",
         f"--backends_repeats={_REPEATS.value}"],
        capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{backend} at {tasks} tasks failed:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(frame):
    columns = ["plain_ms", "measured_ms", "bound_ms", "first_fit_s",
               "peak_rss_mb"]
    medians = frame.groupby(["tasks", "backend"])[columns].median()
    lines = [
        "| tasks | backend | plain step ms | measured step ms | bound ms "
        "| measured / bound | first fit s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|"]
    for (tasks, backend), row in medians.iterrows():
        lines.append(
            f"| {tasks} | {backend} | {row.plain_ms:.1f} | "
            f"{row.measured_ms:.1f} | {row.bound_ms:.1f} | "
            f"{row.measured_ms / row.bound_ms:.2f} | "
            f"{row.first_fit_s:.1f} | {row.peak_rss_mb:.0f} |")
    lines += ["", "JAX / TensorFlow (medians; below 1: JAX faster or "
              "smaller):", "",
              "| tasks | plain step | measured step | first fit "
              "| peak RSS |", "|---|---|---|---|---|"]
    for tasks in sorted(frame["tasks"].unique()):
        jax_row = medians.loc[(tasks, "jax")]
        tf_row = medians.loc[(tasks, "tensorflow")]
        lines.append(
            f"| {tasks} | {jax_row.plain_ms / tf_row.plain_ms:.2f} | "
            f"{jax_row.measured_ms / tf_row.measured_ms:.2f} | "
            f"{jax_row.first_fit_s / tf_row.first_fit_s:.2f} | "
            f"{jax_row.peak_rss_mb / tf_row.peak_rss_mb:.2f} |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _CHILD.value is not None:
        _child(_CHILD.value, _BATCH.value, _REPEATS.value)
        return 0
    import pandas as pd

    os.makedirs(_OUT.value, exist_ok=True)
    rows = []
    for tasks in [int(t) for t in _TASKS.value]:
        for round_ in range(_ROUNDS.value):
            order = BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]
            for backend in order:
                row = _run(backend, tasks)
                rows.append({**row, "round": round_})
                print(json.dumps(rows[-1]), flush=True)
                pd.DataFrame(rows).to_csv(
                    os.path.join(_OUT.value, "backends.csv"), index=False)
    table = _report(pd.DataFrame(rows))
    with open(os.path.join(_OUT.value, "backends.md"), "w") as handle:
        handle.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    app.run(main)
