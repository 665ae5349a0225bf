"""The calibration benchmark's analysis: a de-noised truth, every method
judged against it, and how often the affinity structure ("stable" read
as split) was right. Flag-free; `experiments.benchmarks.calibration` runs it.

The truth of a task set is every group network's test error averaged over
the truth seeds (each network's seed SE reported). Methods that measure
(every affinity estimator, CS, group affinity) run once per measuring
seed; each seed's groups are evaluated on the truth, so a method's spread
over seeds is its own noise, not the truth's. HOA and Optimal pick from
one truth seed's validation losses at a time; RG is the exact expectation
over partitions into k groups; the test oracle picks on the truth itself.
"""

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from experiments.benchmarks.grouping_quality import report as gq_report
from experiments.lib import tables

#: Measurement runs: name -> (label in the tables, select with singletons).
AFFINITY_RUNS = {
    "release": ("TAG (release: optimizer step)", False),
    "sgd": ("TAG sgd step", False),
    "increment": ("TAG increment step", False),
    "first_order": ("TAG first-order", False),
    "validation": ("TAG validation", True),
    "cosine": ("CS", False),
}
GROUP_AFFINITY = "TAG group affinity (all subsets)"
#: Group-source runs: name -> label (`"tasks_all"`: only the all-task
#: group measured, the rest from the surrogate).
GROUP_RUNS = {
    "subsets": GROUP_AFFINITY,
    "tasks_all": "TAG group affinity (tasks+all, surrogate)",
}
RELEASE = AFFINITY_RUNS["release"][0]
#: Runs whose per-step file gives an affinity structure.
STRUCTURE_RUNS = ("release", "sgd", "increment")


def truth_table(networks_by_seed):
    """`(truth, frame)`: `{group: {task: mean test error}}` and one row per
    (group, task) with the mean, the seed SE and the validation loss."""
    rows, truth = [], {}
    groups = next(iter(networks_by_seed.values()))
    for group in groups:
        truth[group] = {}
        for task in group:
            errors = [networks[group]["test_error"][task]
                      for networks in networks_by_seed.values()]
            losses = [networks[group]["validation_loss"][task]
                      for networks in networks_by_seed.values()]
            mean, se = tables.mean_se(errors)
            truth[group][task] = mean
            rows.append({"group": "+".join(group), "task": task,
                         "test_error": mean, "test_error_se": se,
                         "validation_loss": float(np.mean(losses)),
                         "seeds": len(errors)})
    return truth, pd.DataFrame(rows)


def total_error(truth, groups, serve):
    """Total test error in % of `groups` (serving map `serve`) on `truth`."""
    by_set = {frozenset(g): r for g, r in truth.items()}
    return 100 * sum(by_set[frozenset(groups[i])][t]
                     for t, i in serve.items())


def benefits(tasks, truth):
    """`(pair, group)`: the de-noised benefit of training together.

    `pair[(b, a)]` = a's error alone − a's error with b (in points);
    `group[(G, a)]` = a's error alone − a's error in G, for |G| >= 2.
    """
    alone = {t: truth[(t,)][t] for t in tasks}
    group = {(g, a): 100 * (alone[a] - truth[g][a])
             for g in truth if len(g) >= 2 for a in g}
    pair = {(b, a): group[(tuple(t for t in tasks if t in (a, b)), a)]
            for a, b in itertools.permutations(tasks, 2)}
    return pair, group


def correlations(predicted, truth_values):
    """`(pooled Pearson, mean within-target Spearman)` of two dicts keyed
    by `(source, target)`; targets with constant values are left out."""
    keys = [k for k in truth_values if k in predicted]
    x = np.array([predicted[k] for k in keys])
    y = np.array([truth_values[k] for k in keys])
    pooled = stats.pearsonr(x, y)[0] if len(keys) > 2 else np.nan
    within = []
    for target in sorted({k[1] for k in keys}):
        rows = [i for i, k in enumerate(keys) if k[1] == target]
        if len(rows) > 2 and np.ptp(x[rows]) > 0 and np.ptp(y[rows]) > 0:
            within.append(stats.spearmanr(x[rows], y[rows])[0])
    return float(pooled), float(np.mean(within)) if within else np.nan


def pair_predictions(affinity):
    """`{(b, a): Z(b→a)}` off the diagonal of an affinity DataFrame."""
    return {(b, a): float(affinity.loc[b, a]) for b in affinity.index
            for a in affinity.columns if a != b}


def group_predictions(tasks, affinity=None, group_affinity=None):
    """`{(G, a): score}`: the mean pair affinity onto a from G's others
    (`select_groups`' score), or the measured Z(G∖{a}→a)."""
    out = {}
    if group_affinity is not None:
        frame = group_affinity.set_index(["sources", "target"])["affinity"]
    for size in range(2, len(tasks) + 1):
        for group in itertools.combinations(tasks, size):
            for a in group:
                others = [b for b in group if b != a]
                if group_affinity is not None:
                    key = ("|".join(others), a)
                    if key in frame.index:
                        out[(group, a)] = float(frame.loc[key])
                else:
                    out[(group, a)] = float(np.mean(
                        [affinity.loc[b, a] for b in others]))
    return out


def _correlation_row(method, seed, pairs, pair_benefit, groups,
                     group_benefit):
    pooled, within = correlations(pairs, pair_benefit)
    g_pooled, g_within = correlations(groups, group_benefit)
    return {"method": method, "seed": seed, "pair_pooled": pooled,
            "pair_within": within, "group_pooled": g_pooled,
            "group_within": g_within}


def evaluate_task_set(tasks, truth_networks, measured, budgets, *,
                      resamples=200, assess=None):
    """Every method's rows for one task set.

    Args:
        tasks: Task names.
        truth_networks: `{truth seed: {group: network record}}`.
        measured: `{measuring seed: {"runs": {name: record}, "steps":
            {name: affinity_steps DataFrame}, "group_affinity": {name:
            DataFrame}}}` (group runs named as in `GROUP_RUNS`).
        budgets: Numbers of networks.
        resamples: Stability resamples for the affinity structure.
        assess: `tag_keras.select.stability.assess` (injected).

    Returns:
        `(rows, correlation_rows, structure_rows, cost_rows, truth frame)`:
        lists of dicts, one per (method, seed, budget) and alike.
    """
    import tag_keras

    tasks = tuple(tasks)
    truth, truth_frame = truth_table(truth_networks)
    pair_benefit, group_benefit = benefits(tasks, truth)
    mtl = total_error(truth, (tasks,), dict.fromkeys(tasks, 0))
    rows, correlation_rows, structure_rows, cost_rows = [], [], [], []

    def add(method, seed, budget, grouping):
        rows.append(_grouping_row(method, seed, budget, grouping, truth, mtl))

    for seed, work in measured.items():
        plain = work["runs"]["plain"]["seconds"]
        for name, (label, singletons) in AFFINITY_RUNS.items():
            record = work["runs"][name]
            affinity = gq_report.affinity_frame(record, tasks)
            for budget in budgets:
                add(label, seed, budget, tag_keras.select_groups(
                    affinity, budget, allow_singletons=singletons))
            correlation_rows.append(_correlation_row(
                label, seed, pair_predictions(affinity), pair_benefit,
                group_predictions(tasks, affinity=affinity), group_benefit))
            cost_rows.append({"method": label, "seed": seed,
                              "seconds_over_plain": record["seconds"] / plain})
        for name, label in GROUP_RUNS.items():
            if name not in work["group_affinity"]:
                continue
            groups = work["group_affinity"][name]
            for budget in budgets:
                add(label, seed, budget,
                    tag_keras.select_groups_from_group_affinity(groups,
                                                                budget))
            pair_z = {(s, t): v for s, t, v in zip(
                groups["sources"], groups["target"], groups["affinity"])
                if "|" not in s and s != t}
            correlation_rows.append(_correlation_row(
                label, seed, pair_z, pair_benefit,
                group_predictions(tasks, group_affinity=groups),
                group_benefit))
            cost_rows.append({
                "method": label, "seed": seed,
                "seconds_over_plain": work["runs"][name]["seconds"] / plain})
        structure_rows += _structure_rows(work, seed, tasks, budgets, truth,
                                          mtl, resamples, assess)
        # Training-path noise: the subsets run trains exactly like the
        # release run (same seed, measuring never changes training); its
        # single-task matrix differs only by float order.
        repeat = gq_report.affinity_frame(work["runs"]["subsets"], tasks)
        for budget in budgets:
            add("TAG (release), same seed again", seed, budget,
                tag_keras.select_groups(repeat, budget))

    rows += _reference_rows(tasks, truth, truth_networks, budgets, mtl)
    return rows, correlation_rows, structure_rows, cost_rows, truth_frame


def _grouping_row(method, seed, budget, grouping, truth, mtl):
    return {"method": method, "seed": seed, "budget": budget,
            "groups": " | ".join("+".join(g) for g in grouping.groups),
            "test_error": total_error(truth, grouping.groups,
                                      dict(grouping.serve)),
            "mtl_error": mtl}


def _structure_rows(work, seed, tasks, budgets, truth, mtl, resamples,
                    assess):
    """The affinity structure of each `STRUCTURE_RUNS` run, beside the
    truth, per budget."""
    rows = []
    for name in STRUCTURE_RUNS:
        assessed = assess(work["steps"][name], budgets, tasks=list(tasks),
                          resamples=resamples, seed=seed)
        for budget, (chosen, stability) in assessed.items():
            error = total_error(truth, chosen.groups, dict(chosen.serve))
            rows.append({
                "method": AFFINITY_RUNS[name][0], "seed": seed,
                "budget": budget,
                "affinity_structure": stability.affinity_structure,
                "predicted": stability.improvement,
                "predicted_low": stability.improvement_low,
                "predicted_high": stability.improvement_high,
                "recurrence": stability.grouping_recurrence,
                "test_error": error, "mtl_error": mtl,
                "split_better": error < mtl})
    return rows


def _reference_rows(tasks, truth, truth_networks, budgets, mtl):
    """Rows of the groupings chosen from the trained truth (validation
    optimum, HOA, the test oracle) and of RG, MTL and STL."""
    import tag_keras

    rows = []
    for seed, networks in truth_networks.items():
        everything = gq_report.performance_frame(networks, "validation_loss")
        hoa = gq_report.performance_frame(networks, "validation_loss",
                                          max_size=2)
        for budget in budgets:
            rows.append(_grouping_row(
                "Optimal (validation)", seed, budget,
                tag_keras.select_groups_from_performance(everything, budget),
                truth, mtl))
            rows.append(_grouping_row(
                "HOA", seed, budget,
                tag_keras.select_groups_from_performance(hoa, budget),
                truth, mtl))
    oracle = pd.DataFrame([{"group": "|".join(g), "task": t, "value": e}
                           for g, r in truth.items() for t, e in r.items()])
    for budget in budgets:
        rows.append(_grouping_row(
            "Test oracle (truth)", None, budget,
            tag_keras.select_groups_from_performance(oracle, budget), truth,
            mtl))
        partitions = gq_report.set_partitions(tasks, budget)
        rows.append({
            "method": "RG (exact expectation)", "seed": None,
            "budget": budget, "groups": f"{len(partitions)} partitions",
            "test_error": float(np.mean([
                total_error(truth, p, {t: i for i, g in enumerate(p)
                                       for t in g}) for p in partitions])),
            "mtl_error": mtl})
        rows.append({"method": "MTL", "seed": None, "budget": budget,
                     "groups": "+".join(tasks), "test_error": mtl,
                     "mtl_error": mtl})
        rows.append({"method": "STL", "seed": None, "budget": budget,
                     "groups": " | ".join(tasks),
                     "test_error": total_error(
                         truth, tuple((t,) for t in tasks),
                         {t: i for i, t in enumerate(tasks)}),
                     "mtl_error": mtl})
    return rows


def summarize(results):
    """Per (dataset, budget, method): mean ± SE of the total error, paired
    differences against release TAG and against MTL, and the share of the
    test oracle's improvement over MTL."""
    out = []
    for (dataset, budget), frame in results.groupby(["dataset", "budget"]):
        release = frame[frame.method == RELEASE].set_index("seed")
        oracle = frame[frame.method == "Test oracle (truth)"]
        mtl = float(frame.mtl_error.iloc[0])
        best = float(oracle.test_error.iloc[0])
        for method, rows in frame.groupby("method", sort=False):
            error, error_se = tables.mean_se(rows.test_error)
            row = {"dataset": dataset, "budget": budget, "method": method,
                   "seeds": int(rows.seed.notna().sum()),
                   "test error": error, "test error se": error_se}
            minus_mtl = rows.test_error - mtl
            row["minus MTL"], row["minus MTL se"] = tables.mean_se(minus_mtl)
            paired = rows.set_index("seed").test_error.sub(
                release.test_error).dropna()
            if method != RELEASE and len(paired) and rows.seed.notna().all() \
                    and set(rows.seed) == set(release.index):
                row["minus release"], row["minus release se"] = (
                    tables.mean_se(paired))
            else:
                row["minus release"], row["minus release se"] = np.nan, np.nan
            row["share of oracle gain"] = (
                (mtl - error) / (mtl - best) if mtl != best else np.nan)
            out.append(row)
    return pd.DataFrame(out)


def calibration(structures):
    """Per (method, dataset, budget), per (method, dataset) over budgets and
    per method over everything: how often the affinity structure, read as
    a decision, was right.

    "stable" read as split is right when the chosen groups' total truth
    error is below the all-task network's; "unclear" read as keep
    together when it is not.
    """
    out = []

    def add(method, dataset, budget, rows):
        stable = rows[rows.affinity_structure == "stable"]
        unclear = rows[rows.affinity_structure != "stable"]
        out.append({
            "method": method, "dataset": dataset, "budget": budget,
            "cases": len(rows), "stable": len(stable),
            "stable, split better": int(stable.split_better.sum()),
            "unclear": len(unclear),
            "unclear, split not better": int(
                (~unclear.split_better.astype(bool)).sum()),
            "split better (any structure)": int(rows.split_better.sum()),
        })

    for method, frame in structures.groupby("method", sort=False):
        for dataset, part in frame.groupby("dataset", sort=False):
            for budget, rows in part.groupby("budget"):
                add(method, dataset, str(budget), rows)
            add(method, dataset, "all", part)
        add(method, "all", "all", frame)
    return pd.DataFrame(out)


def noise_floor(results):
    """Per (dataset, budget): |release − same seed again| in points."""
    out = []
    for (dataset, budget), frame in results.groupby(["dataset", "budget"]):
        a = frame[frame.method == RELEASE].set_index("seed").test_error
        b = frame[frame.method == "TAG (release), same seed again"].set_index(
            "seed").test_error
        gaps = (a - b).abs().dropna()
        mean, se = tables.mean_se(gaps)
        out.append({"dataset": dataset, "budget": budget,
                    "mean |difference|": mean, "mean |difference| se": se,
                    "seeds differing": int((gaps > 0).sum()),
                    "seeds": len(gaps)})
    return pd.DataFrame(out)
