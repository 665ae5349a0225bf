"""What measuring affinity costs, measured side by side in one run.

For a model and batch it times, on this machine:
  * a plain Keras training step and a measured step for each method;
  * the parts a lookahead step is built from: one forward pass (training
    mode), one task's backward pass, so the bound
    `forward + n * task_backward + n * forward`;
  * the `fit` overhead of measuring every 1, 5, 10, 25, 50, 100 steps;
  * with `--scaling`, step time and peak memory for 2, 4, 8, 16, 32 tasks
    (each count in a fresh process, peak RSS from `getrusage`);
  * with `--tracing`, the first `fit` (tracing included), a steady step
    and peak memory at 10, 25 and 50 tasks, plain and measured every step
    (each in a fresh process);
  * with `--repeated_fits=N`, N `fit` calls of `--fit_steps` steps each,
    plain and measured every step, with and without tf.data's autotuning
    thread in the array pipeline (Keras's default; tag_keras turns it off,
    `_keras_private.without_autotune_thread`): each call's seconds, the
    seconds between the last callback and `fit` returning, and a measured
    step's share of its bound.

Usage:
  python -m experiments.benchmarks.affinity_benchmark --model=mlp
  python -m experiments.benchmarks.affinity_benchmark --model=celeba \
      --batch=32 --num_tasks=9
  python -m experiments.benchmarks.affinity_benchmark --model=mlp --scaling
  python -m experiments.benchmarks.affinity_benchmark --model=celeba \
      --repeated_fits=4 --fit_steps=8
  python -m experiments.benchmarks.affinity_benchmark --model=mlp --tracing

Timings on a shared 2-core machine are noisy: read the ratios.
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
from experiments.lib import timing  # noqa: E402

_MODEL = flags.DEFINE_enum("model", "mlp", ["mlp", "celeba"], "Model.")
_TASKS = flags.DEFINE_integer("num_tasks", 9, "Number of tasks.",
                              lower_bound=2)
_BATCH = flags.DEFINE_integer("batch", 64, "Batch size.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per measure.",
                                lower_bound=1)
_FIT_STEPS = flags.DEFINE_integer("fit_steps", 100,
                                  "Steps per fit in the every-N table.",
                                  lower_bound=1)
_SCALING = flags.DEFINE_boolean("scaling", False,
                                "Time and memory for 2..32 tasks.")
_REPEATED_FITS = flags.DEFINE_integer(
    "repeated_fits", 0, "With N > 0: only the table of N repeated `fit` "
    "calls (plain and measured, with and without tf.data's autotuning "
    "thread).", lower_bound=0)
_TRACING = flags.DEFINE_boolean(
    "tracing", False, "First fit, step and memory at 10/25/50 tasks.")
_ONE = flags.DEFINE_boolean("one_scaling_point", False,
                            "Internal: run one scaling point, print JSON.")
_ONE_TRACING = flags.DEFINE_enum(
    "one_tracing_point", None, ["plain", "measured"],
    "Internal: run one tracing point, print JSON.")


def _step_table(model_name, tasks, batch_size, repeats):
    x, y = step_cost.batch(model_name, [f"t{i}" for i in range(tasks)],
                           batch_size)
    rows = {}
    plain, names = step_cost.build_model(model_name, tasks, None)
    rows["plain step"] = step_cost.mean_seconds(
        lambda: plain.train_on_batch(x, y), repeats)
    forward, backward = step_cost.forward_and_backward(plain, names, x, y,
                                                       repeats)
    for method in ("lookahead", "first_order", "cosine"):
        model, _ = step_cost.build_model(model_name, tasks, 1, method)
        rows[f"measured step ({method})"] = step_cost.mean_seconds(
            lambda m=model: m.train_on_batch(x, y), repeats)
    bound = forward + tasks * backward + tasks * forward
    print(f"\nModel {model_name}, {tasks} tasks, batch {batch_size} "
          f"(mean of {repeats} calls):")
    print(f"  forward (training mode)        {forward * 1e3:9.1f} ms")
    print(f"  one task's backward            {backward * 1e3:9.1f} ms")
    print(f"  bound F + nB + nF              {bound * 1e3:9.1f} ms")
    for name, seconds in rows.items():
        print(f"  {name:<30} {seconds * 1e3:9.1f} ms  "
              f"{seconds / rows['plain step']:5.2f}x plain  "
              f"{seconds / bound:5.2f}x bound")


def _every_table(model_name, tasks, batch_size, steps):
    names = [f"t{i}" for i in range(tasks)]
    x, y = step_cost.batch(model_name, names, batch_size, steps)
    times = {}
    for every in (None, 1, 5, 10, 25, 50, 100):
        model, _ = step_cost.build_model(model_name, tasks, every)
        # Two epochs, timing the second: tracing happens in the first.
        timer = timing.EpochTimer()
        model.fit(x, y, batch_size=batch_size, epochs=2, verbose=0,
                  shuffle=False, callbacks=[timer])
        times[every] = timer.seconds[-1]
    print(f"\nfit of {steps} steps ({model_name}, {tasks} tasks, batch "
          f"{batch_size}):")
    print("  measure every   seconds   overhead vs plain   speed-up vs every 1")
    for every, seconds in times.items():
        label = "never (plain)" if every is None else str(every)
        print(f"  {label:<14} {seconds:8.2f}   {seconds / times[None]:8.2f}x"
              f"          {times[1] / seconds:8.2f}x")


def _one_scaling_point(model_name, tasks, batch_size, repeats):
    names = [f"t{i}" for i in range(tasks)]
    x, y = step_cost.batch(model_name, names, batch_size)
    plain, _ = step_cost.build_model(model_name, tasks, None)
    t_plain = step_cost.mean_seconds(lambda: plain.train_on_batch(x, y),
                                     repeats)
    rss_plain = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model, _ = step_cost.build_model(model_name, tasks, 1)
    t_measured = step_cost.mean_seconds(lambda: model.train_on_batch(x, y),
                                        repeats)
    rss_measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tasks": tasks, "plain_s": t_plain,
                      "measured_s": t_measured,
                      "rss_plain_mb": rss_plain / 1024,
                      "rss_measured_mb": rss_measured / 1024}))


def _scaling_table(model_name, batch_size, repeats):
    print(f"\nScaling with the number of tasks ({model_name}, batch "
          f"{batch_size}; each in a fresh process):")
    print("  tasks   plain ms   measured ms   ratio   peak RSS plain MB   "
          "peak RSS measured MB")
    for tasks in (2, 4, 8, 16, 32):
        out = subprocess.run(
            [sys.executable, "-m", "experiments.benchmarks.affinity_benchmark",
             f"--model={model_name}", f"--num_tasks={tasks}",
             f"--batch={batch_size}", f"--repeats={repeats}",
             "--one_scaling_point"],
            capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"  {tasks:5d}   {r['plain_s'] * 1e3:8.1f}   "
              f"{r['measured_s'] * 1e3:11.1f}   "
              f"{r['measured_s'] / r['plain_s']:5.1f}   "
              f"{r['rss_plain_mb']:17.0f}   {r['rss_measured_mb']:20.0f}")


def _one_tracing_point(model_name, tasks, batch_size, repeats, which):
    names = [f"t{i}" for i in range(tasks)]
    x, y = step_cost.batch(model_name, names, batch_size, steps=2)
    start = time.perf_counter()
    model, _ = step_cost.build_model(
        model_name, tasks, None if which == "plain" else 1)
    build = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0,
              shuffle=False)
    first_fit = time.perf_counter() - start
    one_x, one_y = x[:batch_size], {t: v[:batch_size] for t, v in y.items()}
    step = step_cost.mean_seconds(
        lambda: model.train_on_batch(one_x, one_y), repeats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"build_s": build, "first_fit_s": first_fit,
                      "step_s": step, "rss_mb": rss / 1024}))


def _tracing_table(model_name, batch_size, repeats):
    print(f"\nTracing with the number of tasks ({model_name}, batch "
          f"{batch_size}, measuring every step; each cell a fresh process; "
          "first fit = 2 steps, tracing included):")
    print("  tasks   first fit s plain / measured (ratio)   "
          "step ms plain / measured (ratio)   peak RSS MB plain / measured")
    for tasks in (10, 25, 50):
        cells = {}
        for which in ("plain", "measured"):
            out = subprocess.run(
                [sys.executable, "-m",
                 "experiments.benchmarks.affinity_benchmark",
                 f"--model={model_name}", f"--num_tasks={tasks}",
                 f"--batch={batch_size}", f"--repeats={repeats}",
                 f"--one_tracing_point={which}"],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
            cells[which] = json.loads(out)
        p, m = cells["plain"], cells["measured"]
        print(f"  {tasks:5d}   {p['first_fit_s']:7.1f} / "
              f"{m['first_fit_s']:7.1f} ({m['first_fit_s'] / p['first_fit_s']:4.1f}x)"
              f"        {p['step_s'] * 1e3:7.1f} / {m['step_s'] * 1e3:7.1f} "
              f"({m['step_s'] / p['step_s']:4.1f}x)"
              f"          {p['rss_mb']:6.0f} / {m['rss_mb']:6.0f}",
              flush=True)


def _repeated_fit_table(model_name, tasks, batch_size, steps, calls,
                        repeats):
    """`calls` fits of `steps` steps: seconds, the stall after the last
    callback, and a measured step's share of its bound."""
    import keras

    from tag_keras import _keras_private

    class EndTime(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter()

    names = [f"t{i}" for i in range(tasks)]
    x, y = step_cost.batch(model_name, names, batch_size, steps)
    plain, _ = step_cost.build_model(model_name, tasks, None)
    forward, backward = step_cost.forward_and_backward(
        plain, names, x[:batch_size],
        {t: v[:batch_size] for t, v in y.items()}, repeats)
    bound = forward + tasks * backward + tasks * forward
    fix = _keras_private.without_autotune_thread
    print(f"\n{calls} fit calls of {steps} steps ({model_name}, {tasks} "
          f"tasks, batch {batch_size}); bound F + nB + nF = "
          f"{bound * 1e3:.0f} ms per measured step. Call 1 traces and is "
          "left out of the means.")
    print("  model      autotune thread   fit s (each call)               "
          "stall s (max)   fit / steps / bound")
    for label, every in (("plain", None), ("measured", 1)):
        for thread in (True, False):
            model, _ = step_cost.build_model(model_name, tasks, every)
            if thread:  # Keras's default pipeline, as before the fix.
                _keras_private.without_autotune_thread = lambda it: None
            seconds, stalls = [], []
            try:
                for _ in range(calls):
                    end = EndTime()
                    start = time.perf_counter()
                    model.fit(x, y, batch_size=batch_size, epochs=1,
                              verbose=0, shuffle=False, callbacks=[end])
                    done = time.perf_counter()
                    seconds.append(done - start)
                    stalls.append(done - end.seconds)
            finally:
                _keras_private.without_autotune_thread = fix
            steady = sum(seconds[1:]) / max(1, len(seconds) - 1)
            share = (f"{steady / steps / bound:8.2f}x" if every else
                     "       –")
            each = " ".join(f"{s:6.1f}" for s in seconds)
            print(f"  {label:<10} {'on (Keras)' if thread else 'off':<17} "
                  f"{each:<31} {max(stalls[1:] or stalls):8.2f}      "
                  f"{share}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _REPEATED_FITS.value:
        _repeated_fit_table(_MODEL.value, _TASKS.value, _BATCH.value,
                            _FIT_STEPS.value, _REPEATED_FITS.value,
                            _REPEATS.value)
        return
    if _ONE_TRACING.value:
        _one_tracing_point(_MODEL.value, _TASKS.value, _BATCH.value,
                           _REPEATS.value, _ONE_TRACING.value)
        return
    if _TRACING.value:
        _tracing_table(_MODEL.value, _BATCH.value, _REPEATS.value)
        return
    if _ONE.value:
        _one_scaling_point(_MODEL.value, _TASKS.value, _BATCH.value,
                           _REPEATS.value)
        return
    if _SCALING.value:
        _scaling_table(_MODEL.value, _BATCH.value, _REPEATS.value)
        return
    _step_table(_MODEL.value, _TASKS.value, _BATCH.value, _REPEATS.value)
    _every_table(_MODEL.value, _TASKS.value, _BATCH.value, _FIT_STEPS.value)


if __name__ == "__main__":
    app.run(main)
