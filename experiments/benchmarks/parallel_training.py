"""Networks trained in parallel on Ray: wall time and fixed costs.

Runs each job as a user runs it, one after another in one invocation,
in a fresh output directory per mode, and prints the wall time, the
networks trained and whether every mode wrote the same numbers:

* `digits`: the README's default job (`python -m experiments.pipeline
  --dataset=digits`);
* `user_cnn`: the README's CNN example (`examples/user_cnn.py`, then
  `tag-select`, once; then `tag-train`, timed, at `--cnn_max_seeds`).

Modes: `sequential` (no flag: one network after another in the
command's process), `1` and `2` (`--workers=1`, `--workers=2`: a local
Ray runtime). Then Ray's fixed costs, measured in this process: starting
and stopping a local runtime, a worker's first task (which imports
TensorFlow), a warm task's round trip, and putting the digits arrays into
the object store.

Usage:
  python -m experiments.benchmarks.parallel_training \\
      --parallel_out=experiments/benchmarks/results/parallel_training.md
"""

import os
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_OUT = flags.DEFINE_string("parallel_out", None,
                           "Also write the tables here (.md).")
_WORK_DIR = flags.DEFINE_string(
    "parallel_work_dir", "runs/parallel_benchmark",
    "Where the runs write (one folder each).")
_JOBS = flags.DEFINE_list("parallel_jobs", ["digits", "user_cnn"],
                          "Jobs to time.")
_MODES = flags.DEFINE_list("parallel_modes", ["1", "2", "sequential"],
                           "Modes: sequential, or a number of workers.")
_CNN_MAX_SEEDS = flags.DEFINE_integer(
    "cnn_max_seeds", 3, "tag-train's --max_seeds for the CNN example "
    "(3: the three first seeds only).", lower_bound=2)

_NETWORK_LINE = re.compile(r"^\[\d+/\d+\] \(")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _command(job, mode, work):
    out_dir = os.path.join(work, f"{job}_{mode}")
    extra = [] if mode == "sequential" else [f"--workers={mode}"]
    if job == "digits":
        return out_dir, [sys.executable, "-m", "experiments.pipeline",
                         "--dataset=digits", f"--out_dir={out_dir}", *extra]
    user = os.path.join(work, "user")
    return out_dir, [
        sys.executable, "-m", "tag_keras.train.cli",
        "--model=examples/user_cnn.py:build",
        "--data=examples/user_cnn.py:data",
        f"--groups={user}/groups.json",
        f"--all_task_model={user}/all_tasks.keras", "--epochs=3",
        f"--max_seeds={_CNN_MAX_SEEDS.value}", f"--out_dir={out_dir}", *extra]


def _prepare_cnn(work):
    user = os.path.join(work, "user")
    if os.path.exists(os.path.join(user, "groups.json")):
        return
    subprocess.run([sys.executable, "examples/user_cnn.py",
                    f"--out_dir={user}"], cwd=_ROOT, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "tag_keras.select.cli",
                    f"--affinity={user}/affinity/affinity.csv",
                    "--num_groups=2,3", "--top=2",
                    f"--output={user}/groups.json"], cwd=_ROOT, check=True,
                   capture_output=True)


def _timed(job, mode, work):
    out_dir, command = _command(job, mode, work)
    if os.path.exists(out_dir):
        raise app.UsageError(f"{out_dir} exists: give an empty "
                             "--parallel_work_dir")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=_ROOT))
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n"
                           f"{done.stderr[-3000:]}")
    networks = sum(bool(_NETWORK_LINE.match(line))
                   for line in done.stdout.splitlines())
    return {"job": job, "mode": mode, "seconds": seconds,
            "networks": networks, "out_dir": out_dir}


def _same_numbers(runs):
    """Whether every run's results.csv holds the same numbers (but the
    wall time of each fit)."""
    import pandas as pd

    frames = []
    for run in runs:
        frame = pd.read_csv(os.path.join(run["out_dir"], "results.csv"))
        frames.append(frame[[c for c in frame if "seconds" not in c]])
        if run["job"] == "user_cnn":  # and decision.json, whole
            with open(os.path.join(run["out_dir"], "decision.json"),
                      encoding="utf-8") as handle:
                frames[-1] = (frames[-1], handle.read())
    if isinstance(frames[0], tuple):
        return all(f[0].equals(frames[0][0]) and f[1] == frames[0][1]
                   for f in frames[1:])
    return all(f.equals(frames[0]) for f in frames[1:])


def _fixed_costs():
    """Ray's fixed costs in seconds, measured here."""
    import numpy as np
    import ray

    from experiments.lib import training

    costs = {}
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": _ROOT}})
    costs["start a local runtime (2 CPUs)"] = time.perf_counter() - start

    try:
        @ray.remote(num_cpus=1)
        def first():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401

            return os.getpid()

        @ray.remote(num_cpus=1)
        def nothing():
            return 0

        start = time.perf_counter()
        ray.get([first.remote() for _ in range(2)])
        costs["two workers' first tasks (import TensorFlow)"] = (
            time.perf_counter() - start)
        trips = []
        for _ in range(20):
            start = time.perf_counter()
            ray.get(nothing.remote())
            trips.append(time.perf_counter() - start)
        costs["a warm task's round trip (median of 20)"] = statistics.median(
            trips)
        data = training.group_data(training.load_data("digits"),
                                   training.default_config("digits"))
        size = sum(np.asarray(x).nbytes + sum(np.asarray(v).nbytes
                                              for v in y.values())
                   for x, y in data.values())
        start = time.perf_counter()
        ray.put(data)
        costs[f"put the digits arrays ({size / 2**20:.1f} MiB) in the object "
              "store"] = time.perf_counter() - start
    finally:
        start = time.perf_counter()
        ray.shutdown()
        costs["stop the runtime"] = time.perf_counter() - start
    return costs


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    work = os.path.abspath(_WORK_DIR.value)
    os.makedirs(work, exist_ok=True)
    lines = [f"Command: python -m experiments.benchmarks.parallel_training "
             f"{' '.join(sys.argv[1:])}", "",
             f"{os.cpu_count()} CPUs; each mode a fresh output directory, "
             "run one after another in this invocation.", "",
             "| job | mode | wall s | networks trained | wall / --workers=1"
             " | same numbers as the other modes |",
             "|---|---|---|---|---|---|"]
    for job in _JOBS.value:
        if job == "user_cnn":
            _prepare_cnn(work)
        runs = []
        for mode in _MODES.value:
            runs.append(_timed(job, mode, work))
            print(runs[-1], flush=True)
        same = _same_numbers(runs)
        base = next((r["seconds"] for r in runs if r["mode"] == "1"), None)
        for r in runs:
            ratio = "" if base is None else f"{r['seconds'] / base:.2f}"
            lines.append(f"| {job} | {r['mode']} | {r['seconds']:.0f} | "
                         f"{r['networks']} | {ratio} | "
                         f"{'yes' if same else 'no'} |")
    lines += ["", "| Ray fixed cost | seconds |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |"
              for name, value in _fixed_costs().items()]
    text = "\n".join(lines)
    print(text)
    if _OUT.value:
        with open(_OUT.value, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
