"""Groups, errors, costs, tables, plots and the report of grouping_quality.

Pure functions over the cached units of work of
`experiments.benchmarks.grouping_quality`: for one task set and seed,
`networks` maps each group (a tuple in task order) to its network's record
(`test_error` and `validation_loss` per task, `seconds`, ...) and `runs`
maps each measurement variant's name to its run's record (`affinity`
matrix, `seconds`, per-epoch times, steps).

Methods, for each budget k (at most k networks; groups may overlap and
each task is served by one chosen group, as `tag_keras.select_groups`):

* Optimal: `tag_keras.select_groups_from_performance` on the validation
  loss of every task in every one of the 2^n - 1 networks: the exact best
  groups by validation loss (each task served where its validation loss
  is lowest), then evaluated on test. Test oracle: the same on the test
  errors themselves, the best any grouping of these networks reaches on
  test (a bound, not a method).
* TAG, TAG first-order, TAG validation (lookahead on validation batches,
  one-task groups allowed, scored by self-affinity), CS: `select_groups` on
  the matrix of that measurement run.
* HOA: `select_groups_from_performance` on the validation losses of the
  single-task and pair networks only (larger groups approximated).
* RG: the exact expected value over every partition of the tasks into
  exactly k groups (the distribution `training.random_partitions` samples
  from: uniform over such partitions).
* MTL (all tasks in one network) and STL (one network per task).
"""

import os
import time

import numpy as np
import pandas as pd

SUMMARY_METHODS = ("Optimal", "Test oracle", "TAG", "TAG first-order",
                   "TAG validation", "CS", "HOA", "RG", "MTL", "STL")
# Measurement-window ablation: (start, end) as fractions of training.
WINDOWS = {"first quarter": (0.0, 0.25), "middle quarter": (0.375, 0.625),
           "last quarter": (0.75, 1.0)}
_AFFINITY_METHODS = {"TAG": "lookahead_every_{}",
                     "TAG first-order": "first_order_every_{}",
                     "TAG validation": "validation_every_{}",
                     "CS": "cosine_every_1"}


# ----------------------------------------------------------------------
# Groups and their value.


def set_partitions(tasks, k):
    """Every partition of `tasks` into exactly `k` non-empty groups."""
    tasks = tuple(tasks)
    out = []

    def grow(i, blocks):
        if len(blocks) + len(tasks) - i < k:
            return
        if i == len(tasks):
            if len(blocks) == k:
                out.append(tuple(tuple(b) for b in blocks))
            return
        for block in blocks:
            block.append(tasks[i])
            grow(i + 1, blocks)
            block.pop()
        if len(blocks) < k:
            blocks.append([tasks[i]])
            grow(i + 1, blocks)
            blocks.pop()

    grow(0, [])
    return out


def served(networks, groups, serve, key):
    """`{task: networks[group serving task][key][task]}`."""
    by_set = {frozenset(g): r for g, r in networks.items()}
    return {t: by_set[frozenset(groups[i])][key][t] for t, i in serve.items()}


def performance_frame(networks, key, *, max_size=None):
    """`group,task,value` rows (the HOA format) of `key` in each network."""
    return pd.DataFrame([
        {"group": "|".join(g), "task": t, "value": r[key][t]}
        for g, r in networks.items()
        if max_size is None or len(g) <= max_size for t in g])


def affinity_frame(record, tasks):
    """A run's mean affinity matrix (row = source) in task order."""
    frame = pd.DataFrame.from_dict(record["affinity"], orient="index")
    return frame.loc[list(tasks), list(tasks)].astype(float)


def window_affinity(steps, total_steps, window, every):
    """Mean affinity over the measured steps in a window of training.

    Args:
        steps: `affinity_steps.csv` of an every-step run (DataFrame).
        total_steps: Steps that run trained.
        window: `(start, end)` fractions of `total_steps`.
        every: Keep steps that are multiples of `every` in the window.

    Returns:
        `(matrix, number of measured steps used)`.
    """
    start = int(np.floor(window[0] * total_steps))
    end = max(start + 1, int(np.ceil(window[1] * total_steps)))
    rows = steps[(steps["step"] >= start) & (steps["step"] < end)
                 & (steps["step"] % every == 0)]
    matrix = rows.pivot_table(index="source", columns="target",
                              values="affinity", aggfunc="mean")
    return matrix, int(rows["step"].nunique())


def _format_groups(groups):
    return " | ".join("+".join(g) for g in groups)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def _from_affinity(affinity, budget, allow_singletons=False):
    import tag_keras

    affinity = affinity.fillna(0.0)  # A pair never measured: no evidence.
    grouping, seconds = _timed(tag_keras.select_groups, affinity, budget,
                               allow_singletons=allow_singletons)
    return grouping.groups, dict(grouping.serve), seconds


def _from_performance(frame, budget):
    import tag_keras

    grouping, seconds = _timed(tag_keras.select_groups_from_performance,
                               frame, budget)
    return grouping.groups, dict(grouping.serve), seconds


def step_costs(runs):
    """`(plain, measured)` seconds per training step, steady state.

    The median over epochs after the first (tracing excluded) of epoch
    seconds / steps, of the plain run and of the lookahead run measuring
    every step, trained side by side in the same process.
    """
    def per_step(record):
        pairs = list(zip(record["epoch_seconds"], record["epoch_steps"],
                         strict=True))
        pairs = pairs[1:] or pairs
        return float(np.median([s / max(n, 1) for s, n in pairs]))

    return per_step(runs["plain"]), per_step(runs["lookahead_every_1"])


# ----------------------------------------------------------------------
# Evaluation of one seed.


def evaluate_seed(tasks, networks, runs, budgets, *, tag_every, frequencies,
                  steps=None):
    """Every method's groups and errors for one task set and seed.

    Args:
        tasks: The task names.
        networks: `{group: record}` for all 2^n - 1 groups.
        runs: `{variant name: record}` of the measurement runs.
        budgets: Numbers of networks.
        tag_every: TAG's measurement frequency.
        frequencies: The ablation's frequencies.
        steps: `affinity_steps.csv` of the every-step run (the window
            ablation), or None to skip it.

    Returns:
        `(results rows, ablation rows)`: lists of dicts. `test_error` is
        the total served test error in %, `validation_objective` the mean
        served validation loss (what Optimal minimises), `search_seconds`
        the time spent finding the groups, `cost_fraction` that time over
        the training time of all 2^n - 1 networks.
    """
    tasks = tuple(tasks)
    exhaustive = sum(r["seconds"] for r in networks.values())
    everything = performance_frame(networks, "validation_loss")
    oracle = performance_frame(networks, "test_error")
    hoa = performance_frame(networks, "validation_loss", max_size=2)
    hoa_seconds = sum(r["seconds"] for g, r in networks.items()
                      if len(g) <= 2)
    rows, ablation = [], []

    def evaluate(groups, serve):
        test = served(networks, groups, serve, "test_error")
        loss = served(networks, groups, serve, "validation_loss")
        return 100 * sum(test.values()), float(np.mean(list(loss.values())))

    def add(budget, method, groups, serve, search, samples=1):
        test, loss = evaluate(groups, serve)
        rows.append({
            "budget": budget, "method": method, "num_networks": len(groups),
            "groups": _format_groups(groups), "test_error": test,
            "validation_objective": loss, "search_seconds": search,
            "exhaustive_seconds": exhaustive,
            "cost_fraction": None if search is None else search / exhaustive,
            "samples": samples})

    for budget in budgets:
        groups, serve, s = _from_performance(everything, budget)
        add(budget, "Optimal", groups, serve, exhaustive + s)
        groups, serve, s = _from_performance(oracle, budget)
        add(budget, "Test oracle", groups, serve, exhaustive + s)
        for method, name in _AFFINITY_METHODS.items():
            record = runs[name.format(tag_every)]
            groups, serve, s = _from_affinity(
                affinity_frame(record, tasks), budget,
                allow_singletons=method == "TAG validation")
            add(budget, method, groups, serve, record["seconds"] + s)
        groups, serve, s = _from_performance(hoa, budget)
        add(budget, "HOA", groups, serve, hoa_seconds + s)
        partitions = set_partitions(tasks, budget)
        values = [evaluate(p, {t: i for i, g in enumerate(p) for t in g})
                  for p in partitions]
        rows.append({
            "budget": budget, "method": "RG", "num_networks": budget,
            "groups": "", "test_error": float(np.mean([v[0] for v in values])),
            "validation_objective": float(np.mean([v[1] for v in values])),
            "search_seconds": None, "exhaustive_seconds": exhaustive,
            "cost_fraction": None, "samples": len(partitions)})
        add(budget, "MTL", (tasks,), dict.fromkeys(tasks, 0), None)
        add(budget, "STL", tuple((t,) for t in tasks),
            {t: i for i, t in enumerate(tasks)}, None)
        ablation += _ablation_rows(tasks, runs, budget, evaluate,
                                   tag_every=tag_every,
                                   frequencies=frequencies, steps=steps)
    return rows, ablation


def _ablation_rows(tasks, runs, budget, evaluate, *, tag_every, frequencies,
                   steps):
    plain, measured = step_costs(runs)
    anchor = runs[f"lookahead_every_{tag_every}"]

    def modelled(measured_steps):
        # The TAG run's real seconds (tracing included), plus or minus the
        # steady-state extra cost of each step measured more or less.
        return anchor["seconds"] + (measured_steps - anchor[
            "measured_steps"]) * (measured - plain)

    rows = []

    def add(variant, affinity, measured_steps, seconds, source):
        groups, serve, _ = _from_affinity(affinity, budget)
        test, _ = evaluate(groups, serve)
        rows.append({
            "budget": budget, "variant": variant,
            "measured_steps": measured_steps, "seconds": seconds,
            "time_source": source,
            "modelled_seconds": modelled(measured_steps),
            "groups": _format_groups(groups), "test_error": test})

    for every in sorted(set(frequencies) | {1, tag_every}):
        record = runs[f"lookahead_every_{every}"]
        add(f"every {every}", affinity_frame(record, tasks),
            record["measured_steps"], record["seconds"], "measured")
    if steps is not None:
        total = runs["lookahead_every_1"]["steps"]
        for name, window in WINDOWS.items():
            matrix, count = window_affinity(steps, total, window, tag_every)
            matrix = matrix.reindex(index=list(tasks), columns=list(tasks))
            add(f"{name} (every {tag_every})", matrix, count,
                modelled(count), "modelled")
    return rows


# ----------------------------------------------------------------------
# Across seeds.


def summarize(results):
    """Mean ± standard error over seeds per dataset, budget and method."""
    def se(values):
        return (float(np.std(values, ddof=1) / np.sqrt(len(values)))
                if len(values) > 1 else float("nan"))

    rows = []
    for (dataset, budget, method), part in results.groupby(
            ["dataset", "budget", "method"], sort=False):
        fraction = part["cost_fraction"].dropna()
        rows.append({
            "dataset": dataset, "budget": budget, "method": method,
            "seeds": len(part), "test_error": part["test_error"].mean(),
            "test_error_se": se(part["test_error"]),
            "validation_objective": part["validation_objective"].mean(),
            "search_seconds": part["search_seconds"].mean(),
            "cost_fraction": fraction.mean() if len(fraction) else None})
    return pd.DataFrame(rows)


def captured(summary, dataset, budget, method="TAG", reference="Optimal"):
    """Share of `reference`'s improvement over MTL that `method` gets.

    `(MTL - method) / (MTL - reference)` on mean total test error; None
    if `reference` does not improve on MTL.
    """
    part = summary[(summary["dataset"] == dataset)
                   & (summary["budget"] == budget)].set_index("method")
    gain = part.loc["MTL", "test_error"] - part.loc[reference, "test_error"]
    if gain <= 1e-9:
        return None
    return float((part.loc["MTL", "test_error"]
                  - part.loc[method, "test_error"]) / gain)


def partners(tasks, seeds_done, tag_every):
    """The best-partner table and the affinity-vs-benefit correlations.

    For each target task a: the partner b TAG predicts (largest mean
    affinity Z(b→a) over seeds), and a's mean test error (%) in the pair
    network {a, b} for the predicted, the best and the worst partner, its
    error alone, and the predicted partner's rank (1 = best). The
    correlations are over every ordered pair (b, a): Z(b→a) against the
    benefit to a of training with b (alone minus in the pair), in test
    error and in validation loss.
    """
    name = f"lookahead_every_{tag_every}"
    z = sum(affinity_frame(runs[name], tasks)
            for _, runs in seeds_done.values()) / len(seeds_done)

    def mean(group, task, key):
        return float(np.mean([nets[tuple(t for t in tasks if t in group)]
                              [key][task]
                              for nets, _ in seeds_done.values()]))

    rows, pairs = [], []
    for a in tasks:
        others = [b for b in tasks if b != a]
        errors = {b: 100 * mean({a, b}, a, "test_error") for b in others}
        alone = 100 * mean({a}, a, "test_error")
        alone_loss = mean({a}, a, "validation_loss")
        predicted = max(others, key=lambda b: z.loc[b, a])
        ranked = sorted(others, key=lambda b: errors[b])
        rows.append({
            "task": a, "predicted": predicted,
            "affinity": float(z.loc[predicted, a]),
            "error_predicted": errors[predicted],
            "best": ranked[0], "error_best": errors[ranked[0]],
            "worst": ranked[-1], "error_worst": errors[ranked[-1]],
            "error_alone": alone,
            "rank_predicted": 1 + sorted(
                errors.values()).index(errors[predicted])})
        pairs += [{"affinity": float(z.loc[b, a]),
                   "test_benefit": alone - errors[b],
                   "loss_benefit": alone_loss - mean({a, b}, a,
                                                     "validation_loss")}
                  for b in others]
    pairs = pd.DataFrame(pairs)
    correlations = {
        f"{kind} {value}": float(pairs["affinity"].corr(
            pairs[f"{value}_benefit"], method=kind))
        for kind in ("pearson", "spearman") for value in ("test", "loss")}
    return pd.DataFrame(rows), correlations, z


def common_share(steps):
    """How much of the per-step cross-task affinity ignores the source.

    The share of the variance of Z(b→a, t) over steps t, targets a and
    sources b ≠ a that the per-(step, target) mean over sources explains:
    near 1 when every source's lookahead changes a target's loss alike
    (e.g. when a shared term of the step, such as the momentum slot,
    dominates each task's own gradient), so that only the small rest can
    tell partners apart.
    """
    cross = steps[steps["source"] != steps["target"]]
    common = cross.groupby(["step", "target"])["affinity"].transform("mean")
    return float(1 - (cross["affinity"] - common).var()
                 / cross["affinity"].var())


# ----------------------------------------------------------------------
# Files.


def seed_dir(out_dir, dataset, seed):
    """Where one task set's units of work for `seed` are cached."""
    return os.path.join(out_dir, "cache", dataset, f"seed_{seed}")


def every_step_file(out_dir, dataset, seed, name):
    """A file of the every-step lookahead run's `AffinityLogger`."""
    return os.path.join(seed_dir(out_dir, dataset, seed), "runs",
                        "lookahead_every_1", "affinity", name)
