"""Does the decision hold? Decision-makers against a trained truth.

    python -m experiments.benchmarks.decision \\
        --out_dir=experiments/benchmarks/results/decision_calibration

For each task set (`--decision_task_sets`) and measuring seed
(`--measure_seeds`): TAG's groupings per budget, the affinity structure
and the three-way validated decision (`experiments.benchmarks.decision
.lib`), then a truth from networks trained under `--decision_truth_seeds`
separate seeds, classed per case ("split better", "within margin",
"all-task better", "indeterminate"). Writes `answers.csv` (one row per
case and decision-maker), `classes.csv`, `precision.csv`, `demands.csv`,
`sets.csv`, `quality.csv`, `cost.csv`, `cost_table.csv`, the figures and
`report.md` in `--out_dir` after each task set (the rows of sets not
rerun are kept). Resumable: every unit and truth network is cached under
`--out_dir/cache/`, the units and truth tables committed.
"""

import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.benchmarks.decision import lib  # noqa: E402
from experiments.benchmarks.decision import report  # noqa: E402

_COMMON = common_flags.define_common_flags(
    ("out_dir", "budgets", "epochs", "measure_seeds", "resamples")
    + common_flags.EXECUTOR)
_TASK_SETS = flags.DEFINE_list(
    "decision_task_sets", ["digits9", "planted3", "planted", "digits7",
                           "pooled", "mnist7", "mnist_bottleneck"],
    f"Task sets, of {sorted(lib.TASK_SETS)}.")
_TRUTH_SEEDS = flags.DEFINE_integer(
    "decision_truth_seeds", 10, "Training seeds of every network of the "
    "decision benchmark's truth (500, 501, ...).", lower_bound=2)
_REPS = flags.DEFINE_integer(
    "decision_bootstrap", 2000, "Cluster-bootstrap resamples of each "
    "rate's interval.", lower_bound=100)
_RG = flags.DEFINE_integer("truth_rg_samples", 4, "Random partitions per "
                           "budget in the truth.", lower_bound=1)
DEFAULT_OUT_DIR = "experiments/benchmarks/results/decision_calibration"


def run_task_set(task_set, out_dir, budgets, log, executor):
    cache = os.path.join(out_dir, "cache", task_set.name)
    resamples = _COMMON.resamples.value or 100
    units = [lib.measure_and_decide(task_set, seed, cache, budgets,
                                    resamples=resamples, log=log,
                                    executor=executor)
             for seed in range(_COMMON.measure_seeds.value)]
    truth, random = lib.truth(task_set, units, cache, budgets,
                              seeds=_TRUTH_SEEDS.value, rg_samples=_RG.value,
                              log=log, executor=executor)

    def totals(groups, serve):
        return lib.total_errors(truth, groups, serve)

    rows = report.answer_rows(task_set.data.tasks, units, totals)
    for row in rows:
        row["task_set"] = task_set.name
    quality = report.quality(task_set.name, units, totals, random,
                             list(task_set.data.tasks))
    cost = [{"task_set": task_set.name, "seed": u["seed"],
             "measure_seconds": u["measure_seconds"],
             "decision_seconds": u["decision_seconds"],
             "decision_networks": u["decision_networks"]} for u in units]
    return rows, quality, cost


def write(out_dir, rows, quality, cost, command, pending):
    """Every table, figure and the report, from the rows so far."""
    answers = pd.DataFrame(rows)
    quality = pd.DataFrame(quality)
    cost = pd.DataFrame(cost)
    reps = _REPS.value
    tables = report.tables(answers, reps)
    for name, frame in (("answers", answers), ("quality", quality),
                        ("cost", cost), *tables.items()):
        frame.to_csv(os.path.join(out_dir, f"{name}.csv"), index=False)
    costs = report.cost_table(cost, lib.TASK_COUNTS)
    costs.to_csv(os.path.join(out_dir, "cost_table.csv"), index=False)
    report.plot_classes(tables["classes"], os.path.join(out_dir,
                                                        "classes.png"))
    report.plot_quality(quality, os.path.join(out_dir, "quality.png"))
    text = report.report_text(answers, tables, quality, cost, costs,
                              command, pending)
    with open(os.path.join(out_dir, "report.md"), "w") as handle:
        handle.write(text)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        budgets = sorted({int(b) for b in _COMMON.budgets.value
                          or [2, 3, 4]})
        task_sets = [lib.load_task_set(n, _COMMON.epochs.value)
                     for n in _TASK_SETS.value]
        executor = common_flags.executor_from_flags(
            _COMMON, _COMMON.out_dir.value or DEFAULT_OUT_DIR)
    except ValueError as error:
        print(f"decision: error: {error}", file=sys.stderr)
        return 1
    try:
        return _run(task_sets, budgets, executor)
    finally:
        if executor is not None:
            executor.stop()


def _run(task_sets, budgets, executor):
    out_dir = _COMMON.out_dir.value or DEFAULT_OUT_DIR
    os.makedirs(out_dir, exist_ok=True)
    command = "python -m experiments.benchmarks.decision " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    rows, quality, cost = report.earlier_rows(
        out_dir, [t.name for t in task_sets])
    start = time.perf_counter()
    for index, task_set in enumerate(task_sets):
        print(f"[{index + 1}/{len(task_sets)}] {task_set.name}: "
              f"{task_set.data.description}", flush=True)
        more = run_task_set(task_set, out_dir, budgets,
                            lambda line: print(line, flush=True), executor)
        rows += more[0]
        quality += more[1]
        cost += more[2]
        write(out_dir, rows, quality, cost, command,
              [t.name for t in task_sets[index + 1:]])
        print(f"    wrote {out_dir}/report.md "
              f"({time.perf_counter() - start:.0f} s so far)", flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
