"""Does TAG find the best groups? A benchmark against exhaustive search.

For each task set (the planted tasks and the Digits attributes, 6 to 8
tasks each) and each training seed, it trains:

* every one of the 2^n - 1 task groups, one network each, with the
  protocol of `experiments.training` (same epoch budget, early stopping
  on the validation loss): the ground truth. The singles and pairs among
  them are HOA's networks, the all-task one is MTL, the singles STL;
* all tasks together as a `tag_keras.TaskAffinityModel`, once per
  measurement variant: lookahead affinity every 1, 5, 10, 25, 50, 100
  steps (every 10 is TAG), first-order affinity every 10, lookahead on
  validation batches every 10, gradient cosine similarity every step
  (CS), and a plain run without measurement, timed side by side.

`experiments.benchmarks.grouping_quality.report` then turns the cached
results into groups for budgets 2, 3, 4 (the optimum picked from every
group's validation loss, each method's groups), test errors, search costs,
the best-partner table, the measurement-frequency ablation, plots and a
markdown report.

Every network and every measurement run is one unit of work cached as a
JSON file under `<out_dir>/cache/<dataset>/seed_<s>/` (written atomically,
so an interrupted run leaves no half unit); rerunning skips what is
cached, so the binary is resumable, and more seeds can be added later.

    python -m experiments.benchmarks.grouping_quality \\
        --out_dir=experiments/benchmarks/results/grouping_quality

Writes in `--out_dir`: `report.md`, CSVs (`results.csv`, `summary.csv`,
`ablation.csv`, `partners.csv`, `networks.csv`, `runs.csv`,
`affinity.csv`), PNG figures, and `cache/` (every unit of work).
"""

import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from tag_keras import InputError  # noqa: E402
from experiments.lib import training  # noqa: E402
from experiments.benchmarks.grouping_quality import (  # noqa: E402
    write as gq_write)
from experiments.benchmarks.grouping_quality.work import (  # noqa: E402
    DIGITS_TASKS, FREQUENCIES, TAG_EVERY, SeedWork, TaskSet, Variant,
    load_task_sets, read_json, subsets, variants, write_json)

__all__ = ["DIGITS_TASKS", "FREQUENCIES", "TAG_EVERY", "SeedWork", "TaskSet",
           "Variant", "load_task_sets", "read_json", "run_benchmark",
           "subsets", "variants", "write_json"]

DEFAULT_OUT_DIR = "experiments/benchmarks/results/grouping_quality"

_COMMON = common_flags.define_common_flags(
    ("out_dir", "budgets", "epochs", "seeds"))
_DATASETS = flags.DEFINE_list(
    "datasets", ["planted", "digits"], "Task sets: planted, digits.")
_PLANTED_TASKS = flags.DEFINE_list(
    "planted_tasks", None, "Planted tasks (default: all seven).")
_DIGITS_TASKS = flags.DEFINE_list(
    "digits_tasks", list(DIGITS_TASKS), "Digits tasks.")
_FREQUENCIES = flags.DEFINE_list(
    "frequencies", [str(f) for f in FREQUENCIES],
    "Measure affinity every this many steps, one run each (the ablation).")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Train nothing: write the report from the seeds "
    "whose every unit of work is cached.")


def run_benchmark(task_sets, out_dir, *, seeds, budgets=(2, 3, 4),
                  frequencies=FREQUENCIES, tag_every=TAG_EVERY, train=True,
                  command=None, log=print):
    """Trains what is missing and writes the report after each seed.

    Args:
        task_sets: `TaskSet`s.
        out_dir: The results folder.
        seeds: Training seeds.
        budgets: Numbers of networks to choose groups for.
        frequencies: Measurement frequencies of the ablation.
        tag_every: TAG's frequency (and that of its variants).
        train: False: train nothing, report the seeds fully cached.
        command: The command line, written into the report.
        log: Progress output.

    Returns:
        `{"networks_trained": int, "runs_trained": int, "seeds_reported":
        {dataset: [seeds]}}`.
    """
    runs = variants(frequencies, tag_every)
    counts = {"networks_trained": 0, "runs_trained": 0,
              "seeds_reported": {}}
    done = {}  # dataset -> {seed: (networks, records)}
    for task_set in task_sets:
        done[task_set.name] = {}
        groups = subsets(task_set.tasks)
        for seed in seeds:
            work = SeedWork(task_set, seed, out_dir, train=train, log=log)
            if train:
                log(f"[{task_set.name} seed {seed}] {len(groups)} networks "
                    f"and {len(runs)} measurement runs (cached ones are "
                    "skipped) ...")
            complete = work.complete(groups, runs)
            counts["networks_trained"] += work.networks_trained
            counts["runs_trained"] += work.runs_trained
            if complete is None:
                log(f"[{task_set.name} seed {seed}] incomplete: not "
                    "reported")
                continue
            done[task_set.name][seed] = complete
            gq_write.write_report(
                task_sets, done, out_dir, budgets=budgets,
                frequencies=frequencies, tag_every=tag_every,
                command=command)
    counts["seeds_reported"] = {k: sorted(v) for k, v in done.items()}
    return counts


def _ints(values, name):
    try:
        parsed = [int(v) for v in values]
    except ValueError:
        parsed = [0]
    if not parsed or min(parsed) < 1:
        raise InputError(f"--{name} must be integers >= 1. "
                         f"Received: {','.join(values)}")
    return parsed


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        seeds = list(range(_COMMON.seeds.value))
        budgets = _ints(_COMMON.budgets.value or ["2", "3", "4"], "budgets")
        frequencies = _ints(_FREQUENCIES.value, "frequencies")
        task_sets = load_task_sets(
            _DATASETS.value, planted_tasks=_PLANTED_TASKS.value,
            digits_tasks=_DIGITS_TASKS.value, epochs=_COMMON.epochs.value)
    except ValueError as error:
        print(f"grouping_quality: error: {error}", file=sys.stderr)
        return 1
    out_dir = _COMMON.out_dir.value or DEFAULT_OUT_DIR
    command = "python -m experiments.benchmarks.grouping_quality " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    for task_set in task_sets:
        print(f"{task_set.data.description}; "
              f"{training.describe_config(task_set.config)}", flush=True)
    start = time.perf_counter()
    counts = run_benchmark(
        task_sets, out_dir, seeds=seeds, budgets=budgets,
        frequencies=frequencies, train=not _REPORT_ONLY.value,
        command=command, log=lambda line: print(line, flush=True))
    print(f"Trained {counts['networks_trained']} networks and "
          f"{counts['runs_trained']} measurement runs in "
          f"{time.perf_counter() - start:.0f} s; reported seeds "
          f"{counts['seeds_reported']}. Wrote {out_dir}/report.md")
    return 0


if __name__ == "__main__":
    app.run(main)
