"""Paired comparisons of networks over examples and seeds.

Two ways of serving the tasks (a grouping and the all-task network) are
compared on the same examples: for each seed s, task t and example i the
difference d[s, t, i] of their losses (or errors), NaN where the example
is not labelled for the task. The statistic is

    D = mean_s  Σ_t  mean_{i labelled for t} d[s, t, i],

the difference in summed per-task mean loss, averaged over seeds. Its
interval is a percentile bootstrap that resamples examples (the same
examples for every task and seed, which keeps their correlation) and,
when there are several, seeds.
"""

from __future__ import annotations

import numpy as np

#: Bootstrap resamples valued at once (bounds the memory).
_CHUNK = 250


def paired_statistic(differences):
    """D for `[seeds, tasks, examples]` differences (see the module).

    Tasks with no labelled example (all NaN, e.g. the error of a
    regression head) are left out; NaN if every task is.
    """
    d = np.asarray(differences, float)
    labelled = ~np.isnan(d)
    counts = labelled.sum(axis=2)
    means = np.where(counts > 0, np.nansum(d, axis=2) / np.maximum(counts, 1),
                     np.nan)
    usable = counts.sum(axis=0) > 0
    if not usable.any():
        return float("nan")
    return float(np.nansum(means[:, usable], axis=1).mean())


def bootstrap_draws(num_seeds, num_examples, resamples, seed):
    """`(seed indices [B, S], example indices [B, N])` of the resamples.

    Drawn from `np.random.default_rng(seed)`: first the example indices
    (`integers(0, N, size=(B, N))`), then the seed indices (`integers(0,
    S, size=(B, S))`, all zero for one seed).
    """
    rng = np.random.default_rng(seed)
    examples = rng.integers(0, num_examples, size=(resamples, num_examples))
    seeds = (rng.integers(0, num_seeds, size=(resamples, num_seeds))
             if num_seeds > 1 else np.zeros((resamples, 1), np.int64))
    return seeds, examples


def paired_bootstrap(differences: np.ndarray, *, resamples: int = 2000,
                     level: float = 0.95, comparisons: int = 1,
                     seed: int = 0) -> tuple[float, float, float]:
    """`(D, low, high)`: the statistic and its bootstrap interval.

    Args:
        differences: `[seeds, tasks, examples]`, NaN = not labelled.
        resamples: Bootstrap resamples B.
        level: Coverage of the interval.
        comparisons: How many candidates the compared option was chosen
            from on these same data; the interval is widened to level
            1 − (1 − level) / comparisons (Bonferroni), so that choosing
            the best of several does not by itself produce a "split".
        seed: Seed of `bootstrap_draws`.

    Returns:
        The statistic on all data and the ends of its percentile interval
        (NaN where the statistic is NaN).
    """
    d = np.asarray(differences, float)
    if d.ndim != 3:
        raise ValueError("`differences` must be [seeds, tasks, examples]. "
                         f"Received: shape {d.shape}")
    estimate = paired_statistic(d)
    if np.isnan(estimate):
        return estimate, float("nan"), float("nan")
    num_seeds, num_tasks, num_examples = d.shape
    seed_draws, example_draws = bootstrap_draws(num_seeds, num_examples,
                                                resamples, seed)
    labelled = (~np.isnan(d)).reshape(-1, num_examples).T.astype(float)
    values = np.nan_to_num(d).reshape(-1, num_examples).T
    usable = (~np.isnan(d)).any(axis=(0, 2))
    totals = []
    for start in range(0, resamples, _CHUNK):
        rows = example_draws[start:start + _CHUNK]
        weights = np.stack([np.bincount(r, minlength=num_examples)
                            for r in rows]).astype(float)
        sums = (weights @ values).reshape(len(rows), num_seeds, num_tasks)
        counts = (weights @ labelled).reshape(len(rows), num_seeds,
                                              num_tasks)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        per_seed = np.nansum(means[:, :, usable], axis=2)
        chosen = seed_draws[start:start + _CHUNK]
        totals.append(np.take_along_axis(per_seed, chosen, axis=1)
                      .mean(axis=1))
    totals = np.concatenate(totals)
    alpha = (1 - level) / comparisons
    low, high = np.quantile(totals, [alpha / 2, 1 - alpha / 2])
    return estimate, float(low), float(high)


def mean_and_se(values):
    """`(mean, standard error)` over seeds (SE NaN for one value)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(values.std(ddof=1)
                                       / np.sqrt(len(values)))
