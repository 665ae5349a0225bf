"""Can a grouping's affinity structure be trusted? Methods judged on a de-noised truth.

For each task set (planted, digits, and planted3: three clusters of two
related tasks plus a noise task, drawn from another seed) it trains every
one of the 2^n - 1 group networks under `--truth_seeds` training seeds
(their mean test error is the truth), and under `--measure_seeds` other
runs every measuring method once: TAG as the release measures it (the
optimizer's step), the paper's plain SGD step, the increment step,
first-order, validation affinity, CS, and group affinity from every subset
(`affinity_sources="subsets"`) and from the all-task group alone with the
surrogate for the rest (`"tasks+all"`). It then reports each method's
correlation with the de-noised pair and group benefits, its total error
per budget with paired per-seed differences against release TAG and
against MTL, the cost per step beside a plain fit, the training-path
noise floor, and the calibration of `tag-select --stability`'s affinity
structure read as a decision ("stable": split).

Every network and run is a cached unit of work (JSON under
`<out_dir>/cache/`), so the binary is resumable; the report is rewritten
after each task set. `--truth_csv` seeds the cache with the networks a
previous `grouping_quality` run committed (same protocol), so only the
missing networks are trained.

    python -m experiments.benchmarks.calibration \\
        --out_dir=experiments/benchmarks/results/calibration
"""

import dataclasses
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import training  # noqa: E402
from experiments.benchmarks.calibration import write as write_lib  # noqa
from experiments.benchmarks.grouping_quality import work as work_lib  # noqa
from tag_keras import InputError

DEFAULT_OUT_DIR = "experiments/benchmarks/results/calibration"
TRUTH_CSV = "experiments/benchmarks/results/grouping_quality/networks.csv"
V = work_lib.Variant
VARIANTS = (
    V("plain", "plain", 0),
    V("release", "lookahead", 10, write_steps=True),
    V("subsets", "lookahead", 10, sources="subsets"),
    V("tasks_all", "lookahead", 10, sources="tasks+all"),
    V("sgd", "lookahead", 10, write_steps=True, step="sgd"),
    V("increment", "lookahead", 10, write_steps=True, step="increment"),
    V("first_order", "first_order", 10),
    V("validation", "lookahead", 10, held_out=True),
    V("cosine", "cosine", 1),
)

_COMMON = common_flags.define_common_flags(
    ("out_dir", "budgets", "epochs", "measure_seeds", "truth_seeds",
     "resamples"))
_DATASETS = flags.DEFINE_list(
    "calibration_datasets", ["planted", "digits", "planted3"],
    "Task sets: planted, digits, planted3.")
_TRUTH_CSV = flags.DEFINE_string(
    "truth_csv", TRUTH_CSV, "networks.csv of a grouping_quality run whose "
    "networks seed the cache ('' for none).")
_REPORT_ONLY = flags.DEFINE_bool(
    "calibration_report_only", False, "Train nothing: report what is cached.")


def load_task_sets(names, epochs=None):
    """The `TaskSet`s named by `names`."""
    from experiments import data as data_lib

    out = []
    for name in names:
        if name == "planted3":
            data = data_lib.load_dataset(
                "planted", seed=1, num_clusters=3, tasks_per_cluster=2,
                num_noise_tasks=1)
            data = dataclasses.replace(data, name="planted3")
            config = training.default_config("planted", epochs=epochs)
            out.append(work_lib.TaskSet(data, config))
        elif name in ("planted", "digits"):
            out += work_lib.load_task_sets([name], epochs=epochs)
        else:
            raise InputError(
                "--calibration_datasets must name planted, digits or "
                f"planted3. Received: {name!r}")
    return out


def import_truth(path, task_sets, out_dir, seeds):
    """Writes the networks of `path` (a networks.csv) into the cache."""
    if not path or not os.path.exists(path):
        return 0
    frame = pd.read_csv(path)
    count = 0
    for task_set in task_sets:
        rows = frame[frame.dataset == task_set.name]
        for seed in seeds:
            work = work_lib.SeedWork(task_set, seed, out_dir, train=False)
            for group in work_lib.subsets(task_set.tasks):
                label = "+".join(group)
                found = rows[(rows.seed == seed) & (rows.group == label)]
                if len(found) != len(group) or os.path.exists(
                        work.network_path(group)):
                    continue
                first = found.iloc[0]
                work_lib.write_json(work.network_path(group), {
                    "tasks": list(group),
                    "test_error": dict(zip(found.task, found.test_error)),
                    "validation_loss": dict(zip(found.task,
                                                found.validation_loss)),
                    "epochs": int(first.epochs),
                    "best_epoch": int(first.best_epoch),
                    "seconds": float(first.seconds),
                    "epoch_seconds": [], "epoch_steps": [],
                    "imported_from": path})
                count += 1
    return count


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        budgets = [int(b) for b in (_COMMON.budgets.value or [2, 3, 4])]
        task_sets = load_task_sets(_DATASETS.value, _COMMON.epochs.value)
    except ValueError as error:
        print(f"calibration: error: {error}", file=sys.stderr)
        return 1
    out_dir = _COMMON.out_dir.value or DEFAULT_OUT_DIR
    truth_seeds = list(range(_COMMON.truth_seeds.value))
    measure_seeds = list(range(_COMMON.measure_seeds.value))
    # The command that trains: a report-only rerun reports the same data.
    command = "python -m experiments.benchmarks.calibration " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
        if not a.startswith("--calibration_report_only"))
    imported = import_truth(_TRUTH_CSV.value, task_sets, out_dir,
                            truth_seeds)
    print(f"Imported {imported} cached networks from {_TRUTH_CSV.value}",
          flush=True)
    start = time.perf_counter()
    done = write_lib.run(
        task_sets, out_dir, truth_seeds=truth_seeds,
        measure_seeds=measure_seeds, variants=VARIANTS, budgets=budgets,
        resamples=_COMMON.resamples.value or 200,
        train=not _REPORT_ONLY.value,
        command=command, log=lambda line: print(line, flush=True))
    print(f"Done in {time.perf_counter() - start:.0f} s; complete task "
          f"sets: {done}. Wrote {out_dir}/report.md")
    return 0


if __name__ == "__main__":
    app.run(main)
