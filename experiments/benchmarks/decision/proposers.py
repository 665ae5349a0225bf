"""Which proposer? Release TAG against its rivals on every-group truths.

    python -m experiments.benchmarks.decision.proposers \\
        --out_dir=experiments/benchmarks/results/decision_calibration

On the calibration benchmark's three task sets of seven tasks (planted,
digits7, planted3) every one of the 127 group networks was trained under
seeds 0-2 and is committed (`calibration/truth.csv`: each (group, task)'s
mean test error and validation loss). Any grouping can be scored on that
truth without training, so this binary trains only the measuring runs
(release TAG, seeds 0-5, shared with the decision benchmark's cache) and
compares, per budget and measuring seed, on the same truth:

* release TAG: `select_groups` of the run's mean affinity;
* shrunk TAG: `select_groups` of `tag_keras.select.shrinkage`'s matrix;
* the validated best of TAG's top `--proposer_top` candidates: the candidate whose
  served tasks have the lowest mean validation loss on the truth's
  networks (chosen on validation, scored on test, as `tag-train` would);
* from the calibration benchmark's committed `results.csv` (same truth,
  same measuring seeds): CS, group affinity (all subsets; and the all-task
  group with the surrogate), HOA and the exhaustive search on validation
  (per truth seed), the test oracle, the exact random-grouping
  expectation, MTL and STL.

Writes `proposers.csv` (every row) and `proposers_summary.csv` (mean ± SE
over measuring seeds, paired differences against release TAG, MTL and the
random expectation, the share of the oracle's gain over MTL).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.benchmarks.calibration import report as calibration_report  # noqa: E402,E501
from experiments.benchmarks.decision import lib  # noqa: E402
from experiments.lib import tables  # noqa: E402

CALIBRATION = "experiments/benchmarks/results/calibration"
#: Decision-benchmark task set -> the calibration benchmark's name.
EXHAUSTIVE = {"planted": "planted", "digits7": "digits",
              "planted3": "planted3"}
SHRUNK = "TAG shrunk (empirical Bayes)"
RANDOM = "RG (exact expectation)"

_COMMON = common_flags.define_common_flags(
    ("out_dir", "budgets", "measure_seeds"))
_TASK_SETS = flags.DEFINE_list("proposer_task_sets", list(EXHAUSTIVE),
                               f"Of {list(EXHAUSTIVE)}.")
_TOP = flags.DEFINE_integer("proposer_top", 3, "TAG candidates per "
                            "budget for the validated best.", lower_bound=2)
DEFAULT_OUT_DIR = "experiments/benchmarks/results/decision_calibration"


def best_of(top):
    """The method label of the validated best of `top` candidates."""
    return f"TAG best of {top} (validation)"


def read_truth(path, dataset):
    """`(test, validation)`: `{group tuple: {task: mean}}` of one set."""
    frame = pd.read_csv(path)
    frame = frame[frame.dataset == dataset]
    test, validation = {}, {}
    for row in frame.itertuples():
        group = tuple(row.group.split("+"))
        test.setdefault(group, {})[row.task] = row.test_error
        validation.setdefault(group, {})[row.task] = row.validation_loss
    return test, validation


def validated_best(candidates, validation):
    """The candidate whose served tasks' validation losses sum lowest."""
    def loss(grouping):
        return calibration_report.total_error(
            validation, grouping.groups, dict(grouping.serve))
    return min(candidates, key=loss)


def proposer_rows(tasks, runs, truth, validation, budgets, top):
    """Rows (method, seed, budget, groups, test_error) of the proposers
    computed here. `runs`: `{seed: (affinity, steps)}`."""
    import tag_keras
    from tag_keras.select import shrinkage

    rows = []
    for seed, (affinity, steps) in runs.items():
        shrunk = shrinkage.shrunk_affinity(steps, list(tasks))
        for budget in budgets:
            candidates = tag_keras.select_groups(affinity, budget, top=top)
            chosen = {
                calibration_report.RELEASE: candidates[0],
                SHRUNK: tag_keras.select_groups(shrunk, budget),
                best_of(top): validated_best(candidates, validation)}
            for method, grouping in chosen.items():
                rows.append({
                    "method": method, "seed": seed, "budget": budget,
                    "groups": " | ".join("+".join(g)
                                         for g in grouping.groups),
                    "test_error": calibration_report.total_error(
                        truth, grouping.groups, dict(grouping.serve))})
    return rows


def summarize(results):
    """`calibration_report.summarize` plus the paired difference with the
    random-grouping expectation (a constant per budget)."""
    out = calibration_report.summarize(results)
    randoms = results[results.method == RANDOM].set_index(
        ["dataset", "budget"]).test_error
    differences = []
    for row in out.itertuples():
        rows = results[(results.dataset == row.dataset)
                       & (results.budget == row.budget)
                       & (results.method == row.method)]
        differences.append(tables.mean_se(
            rows.test_error - randoms[(row.dataset, row.budget)]))
    out["minus RG"] = [d[0] for d in differences]
    out["minus RG se"] = [d[1] for d in differences]
    return out


def report_reproduction(ours, theirs):
    """Prints how many release-TAG groupings equal the calibration
    benchmark's (same seeds and protocol: they should all)."""
    key = ["seed", "budget"]
    release = calibration_report.RELEASE
    mine = ours[ours.method == release].set_index(key).groups
    earlier = theirs[theirs.method == release].assign(
        seed=lambda f: f.seed.astype(int)).set_index(key).groups
    shared = mine.index.intersection(earlier.index)
    same = int((mine[shared] == earlier[shared]).sum())
    print(f"    release TAG: {same} of {len(shared)} groupings equal the "
          "calibration benchmark's", flush=True)


def measured_run(task_set, seed, cache):
    """`(affinity, steps)` of the release measuring run of `seed`, from the
    decision benchmark's cache or measured now."""
    from experiments.lib import measure as measure_lib
    from tag_keras.select import readers
    import dataclasses

    run_dir = os.path.join(cache, f"run_{seed}")
    affinity_path = os.path.join(run_dir, "affinity", "affinity.csv")
    steps_path = os.path.join(run_dir, "affinity", "affinity_steps.csv")
    if not (os.path.exists(affinity_path) and os.path.exists(steps_path)):
        config = dataclasses.replace(task_set.config, seed=seed)
        measure_lib.measure(task_set.data, config, run_dir,
                            tensorboard=False)
    return (readers.read_affinity(affinity_path), readers.read_table(
        steps_path, readers.NAME_COLUMNS["affinity_steps.csv"]))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = sorted(set(_TASK_SETS.value) - set(EXHAUSTIVE))
    if unknown:
        print("proposers: error: --proposer_task_sets must name "
              f"{list(EXHAUSTIVE)} (task sets with every group trained). "
              f"Received: {unknown}",
              file=sys.stderr)
        return 1
    budgets = sorted({int(b) for b in _COMMON.budgets.value or [2, 3, 4]})
    out_dir = _COMMON.out_dir.value or DEFAULT_OUT_DIR
    earlier = pd.read_csv(os.path.join(CALIBRATION, "results.csv"))
    frames = []
    for name in _TASK_SETS.value:
        dataset = EXHAUSTIVE[name]
        task_set = lib.load_task_set(name)
        tasks = task_set.data.tasks
        truth, validation = read_truth(
            os.path.join(CALIBRATION, "truth.csv"), dataset)
        cache = os.path.join(out_dir, "cache", name)
        runs = {seed: measured_run(task_set, seed, cache)
                for seed in range(_COMMON.measure_seeds.value)}
        ours = pd.DataFrame(proposer_rows(tasks, runs, truth, validation,
                                          budgets, _TOP.value))
        theirs = earlier[(earlier.dataset == dataset)
                         & earlier.budget.isin(budgets)]
        report_reproduction(ours, theirs)
        theirs = theirs[~theirs.method.isin([
            calibration_report.RELEASE, "TAG (release), same seed again"])]
        mtl = float(theirs.mtl_error.iloc[0])
        frame = pd.concat([ours.assign(mtl_error=mtl), theirs.drop(
            columns="dataset")], ignore_index=True).assign(dataset=name)
        frames.append(frame)
        print(f"{name}: {len(ours)} rows measured here, {len(theirs)} "
              "from the calibration benchmark", flush=True)
    results = pd.concat(frames, ignore_index=True)
    results.to_csv(os.path.join(out_dir, "proposers.csv"),
                   index=False)
    summary = summarize(results)
    summary.to_csv(os.path.join(out_dir, "proposers_summary.csv"),
                   index=False)
    print(summary.to_string())
    return 0


if __name__ == "__main__":
    app.run(main)
