"""Does the decision hold? Four decision-makers against a trained truth.

    python -m experiments.benchmarks.decision \\
        --out_dir=experiments/benchmarks/results/decision_calibration

For each task set (`--task_sets`) and measuring seed (`--measure_seeds`):
TAG's groupings per budget, the affinity structure and the validated
decision (`experiments.benchmarks.decision.lib`), then a truth from
networks trained under separate seeds (`--truth_seeds`); writes
`answers.csv`, `calibration.csv`, `quality.csv`, `cost.csv` and
`report.md` in `--out_dir` after each task set (`--decision_task_sets`
picks the sets; the rows of sets not rerun are kept). Resumable: every unit and
network is cached under `--out_dir/cache/`.
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
    ("out_dir", "budgets", "epochs", "measure_seeds", "truth_seeds",
     "resamples"))
_TASK_SETS = flags.DEFINE_list(
    "decision_task_sets", ["pooled", "digits9", "planted", "planted3",
                           "digits7", "mnist7"],
    f"Task sets, of {sorted(lib.TASK_SETS)}.")
_RG = flags.DEFINE_integer("truth_rg_samples", 4, "Random partitions per "
                           "budget in the truth.", lower_bound=1)
DEFAULT_OUT_DIR = "experiments/benchmarks/results/decision_calibration"


def run_task_set(task_set, out_dir, budgets, log):
    cache = os.path.join(out_dir, "cache", task_set.name)
    resamples = _COMMON.resamples.value or 100
    units = [lib.with_error_decision(task_set, lib.measure_and_decide(
        task_set, seed, cache, budgets, resamples=resamples, log=log),
        cache) for seed in range(_COMMON.measure_seeds.value)]
    engine, random = lib.truth(task_set, units, cache, budgets,
                               seeds=_COMMON.truth_seeds.value,
                               rg_samples=_RG.value, log=log)

    def totals(groups, serve):
        return lib.total_errors(engine, groups, serve)

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
    rows = report.derived_rows(rows)
    answers = pd.DataFrame(rows)
    calibration = report.calibration(rows)
    quality = pd.DataFrame(quality)
    cost = pd.DataFrame(cost)
    for name, frame in (("answers", answers), ("calibration", calibration),
                        ("quality", quality), ("cost", cost)):
        frame.to_csv(os.path.join(out_dir, f"{name}.csv"), index=False)
    costs = report.cost_table(cost, lib.TASK_COUNTS)
    costs.to_csv(os.path.join(out_dir, "cost_table.csv"), index=False)
    report.plot_calibration(calibration, os.path.join(out_dir,
                                                      "calibration.png"))
    report.plot_quality(quality, os.path.join(out_dir, "quality.png"))
    text = [
        "# Does the decision hold? (issue 26)", "",
        f"Command: `{command}`", "",
        ("Task sets still missing: " + ", ".join(pending)
         if pending else "Every task set is complete."), "",
        "## Calibration of each decision-maker", "",
        "Right \"split\": the split beat the all-task network on the truth "
        "(mean over the truth seeds). Right \"keep together\": the all-task "
        "network was at least as good within the truth's SE.", "",
        report.markdown(calibration, [
            "task_set", "decider", "split_answers", "split_right",
            "split_share", "keep_answers", "keep_right", "keep_share",
            "split_truly_better", "cases"]),
        "", "## Grouping quality (total test error %, truth)", "",
        report.markdown(quality, [
            "task_set", "budget", "tag", "tag_se", "random", "mtl", "stl",
            "tag_vs_random", "tag_vs_mtl", "measuring_seeds"]),
        "", "## Cost per measuring seed (seconds)", "",
        report.markdown(cost.groupby("task_set", sort=False).mean(
            numeric_only=True).reset_index(), [
            "task_set", "measure_seconds", "decision_seconds",
            "decision_networks"], {"decision_networks": "{:.1f}"}), "",
        "## The whole search, side by side", "",
        "Measured: TAG's run and its validated decision. Estimated from "
        "the decision's mean seconds per network: HOA, TAG's best of 3 "
        "and the exhaustive search, each under 3 seeds.", "",
        report.markdown(costs, ["task_set", "search", "trainings",
                                "seconds", "measured"],
                        {"trainings": "{:.0f}", "seconds": "{:.0f}"}), ""]
    with open(os.path.join(out_dir, "report.md"), "w") as handle:
        handle.write("\n".join(text))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        budgets = sorted({int(b) for b in _COMMON.budgets.value
                          or [2, 3, 4]})
        task_sets = [lib.load_task_set(n, _COMMON.epochs.value)
                     for n in _TASK_SETS.value]
    except ValueError as error:
        print(f"decision: error: {error}", file=sys.stderr)
        return 1
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
                            lambda line: print(line, flush=True))
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
