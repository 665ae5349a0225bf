"""Paired comparisons of networks over examples and seeds.

Two ways of serving the tasks (a grouping and the all-task network) are
compared on the same examples: for each seed s, task t and example i the
difference d[s, t, i] of their losses (or errors), NaN where the example
is not labelled for the task. The statistic is

    D = mean_s  Σ_t  mean_{i labelled for t} d[s, t, i],

the difference in summed per-task mean metric, averaged over seeds.

Its variance comes from the crossed seed × example design. Each example's
contribution

    x[s, i] = Σ_t m_st + N Σ_t 1[i labelled for t] (d[s, t, i] − m_st) / n_st,

with m_st the task's mean at that seed and n_st its labelled examples,
has mean D_s over the examples of seed s (the seed's summed difference)
and is the linearisation of the per-task ratio means (with partial labels
a constant difference has no example variance, as it should). It is
modelled as

    x[s, i] = Δ + a_s + b_i + e_si,

with seed effects a (variance σ²_seed), example effects b (σ²_example)
and their interaction e (σ²_interaction). The two-way analysis of
variance without replication gives the mean squares MS_seed (S − 1 df),
MS_example (N − 1 df) and MS_residual ((S − 1)(N − 1) df), whose
expectations are σ²_e + N σ²_a, σ²_e + S σ²_b and σ²_e. Then

    Var(D) = σ²_a / S + σ²_b / N + σ²_e / (S N),

estimated with each component truncated at zero, so the interaction is
counted once. The bounds use Student's t with Welch–Satterthwaite's
degrees of freedom over the three mean squares, computed with MS_seed at
the upper end of its one-sided `DF_CONFIDENCE` interval: with 2 to 7 seed
degrees of freedom an unluckily small MS_seed would otherwise both shrink
the variance and inflate the df (plain Satterthwaite said "split" 4.5
times too often at α/9 with 3 seeds and 90% of the variance from seeds,
`experiments/benchmarks/results/decision_rule/`). With few seeds and
seeds dominating, df ≈ S − 1 and the bounds widen as they must (a
percentile bootstrap over 3 seeds shrinks the seed variance by (S − 1)/S
and its tails are far too light).

References:
    Searle, Casella & McCulloch, *Variance Components* (1992), ch. 4
    (the two-way crossed classification); Satterthwaite, "An approximate
    distribution of estimates of variance components", Biometrics
    Bulletin 2 (1946).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: A number, or an array of them (the functions are vectorised).
Values = float | np.ndarray

#: The one-sided confidence of the MS_seed used for the degrees of
#: freedom (see the module).
DF_CONFIDENCE = 0.9


def contributions(differences: np.ndarray) -> np.ndarray | None:
    """`x[seeds, examples]`: each example's contribution (see the module).

    Tasks with no labelled example at any seed (all NaN, e.g. the error
    of a regression head) are left out. Returns None if every task is.

    Raises:
        ValueError: `differences` is not 3-D, or a task is labelled at
            some seeds and not at others.
    """
    d = np.asarray(differences, float)
    if d.ndim != 3:
        raise ValueError(
            "`differences` must be [seeds, tasks, examples]. "
            f"Received: shape {d.shape}"
        )
    labelled = ~np.isnan(d)
    counts = labelled.sum(axis=2)  # [S, T]
    usable = (counts > 0).all(axis=0)
    partial = (counts > 0).any(axis=0) & ~usable
    if partial.any():
        raise ValueError(
            "A task is labelled at some seeds and not at others, so the "
            "seeds do not measure the same thing. Received: tasks at "
            f"indices {np.flatnonzero(partial).tolist()}"
        )
    if not usable.any():
        return None
    num_examples = d.shape[2]
    d, labelled, counts = d[:, usable], labelled[:, usable], counts[:, usable]
    means = np.nansum(d, axis=2) / counts  # m[s, t]
    centred = np.where(labelled, d - means[:, :, None], 0.0)
    return means.sum(axis=1)[:, None] + num_examples * np.sum(
        centred / counts[:, :, None], axis=1
    )


def paired_statistic(differences: np.ndarray) -> float:
    """D for `[seeds, tasks, examples]` differences (see the module);
    NaN if no task has a labelled example."""
    x = contributions(differences)
    return float("nan") if x is None else float(x.mean())


def mean_squares(x: np.ndarray) -> tuple[float, float, float, float]:
    """`(mean, MS_seed, MS_example, MS_residual)` of `x[seeds, examples]`:
    the two-way analysis of variance without replication."""
    x = np.asarray(x, float)
    num_seeds, num_examples = x.shape
    grand = x.mean()
    seed_means = x.mean(axis=1)
    example_means = x.mean(axis=0)
    ms_seed = (
        num_examples * np.sum((seed_means - grand) ** 2) / (num_seeds - 1)
    )
    ms_example = (
        num_seeds * np.sum((example_means - grand) ** 2) / (num_examples - 1)
    )
    residual = x - seed_means[:, None] - example_means[None, :] + grand
    ms_residual = np.sum(residual**2) / ((num_seeds - 1) * (num_examples - 1))
    return float(grand), float(ms_seed), float(ms_example), float(ms_residual)


def components(
    ms_seed: Values,
    ms_example: Values,
    ms_residual: Values,
    num_seeds: Values,
    num_examples: Values,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(σ²_seed, σ²_example, σ²_interaction)` from the mean squares,
    each truncated at zero (NumPy arrays broadcast)."""
    seed = np.maximum(ms_seed - ms_residual, 0.0) / num_examples
    example = np.maximum(ms_example - ms_residual, 0.0) / num_seeds
    return seed, example, np.asarray(ms_residual, float)


def variance_and_df(
    seed: Values,
    example: Values,
    interaction: Values,
    num_seeds: Values,
    num_examples: Values,
) -> tuple[np.ndarray, np.ndarray]:
    """`(Var(D), df)` at `num_seeds` × `num_examples` from the components.

    The variance is σ²_a / S + σ²_b / N + σ²_e / (S N); its df are
    Welch–Satterthwaite's for the same value written over the mean
    squares that estimate it (a component truncated at zero drops its
    mean square). Vectorised; df is infinite where the variance is 0.
    """
    s, n = num_seeds, num_examples
    seed, example, interaction = np.broadcast_arrays(
        *(np.asarray(v, float) for v in (seed, example, interaction))
    )
    ms_seed = interaction + n * seed
    ms_example = interaction + s * example
    keep_seed = (seed > 0).astype(float)
    keep_example = (example > 0).astype(float)
    # Var(D) · S N = k_a MS_a + k_b MS_b + k_e MS_e.
    terms = (
        keep_seed * ms_seed,
        keep_example * ms_example,
        (1 - keep_seed - keep_example) * interaction,
    )
    dfs = (s - 1, n - 1, (s - 1) * (n - 1))
    total = sum(terms)
    denominator = sum(t**2 / f for t, f in zip(terms, dfs))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0, total**2 / denominator, np.inf)
    return np.maximum(total, 0.0) / (s * n), df


def interval(
    mean: Values,
    ms_seed: Values,
    ms_example: Values,
    ms_residual: Values,
    num_seeds: Values,
    num_examples: Values,
    level_one_sided: float,
) -> tuple:
    """`(low, high, standard_error, df, (σ²_seed, σ²_example,
    σ²_interaction))` from the mean squares: the rule every comparison,
    plan and simulation uses (vectorised)."""
    parts = components(
        ms_seed, ms_example, ms_residual, num_seeds, num_examples
    )
    variance, _ = variance_and_df(*parts, num_seeds, num_examples)
    dof = num_seeds - 1
    upper = (
        dof
        * np.asarray(ms_seed, float)
        / stats.chi2.ppf(1 - DF_CONFIDENCE, dof)
    )
    _, df = variance_and_df(
        *components(upper, ms_example, ms_residual, num_seeds, num_examples),
        num_seeds,
        num_examples,
    )
    low, high, se = bounds(mean, variance, df, level_one_sided)
    return low, high, se, df, parts


def bounds(
    mean: Values,
    variance: Values,
    df: Values,
    level_one_sided: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(low, high, standard_error)`: one-sided t bounds, each holding
    with probability `level_one_sided` (vectorised)."""
    se = np.sqrt(variance)
    q = stats.t.ppf(level_one_sided, np.where(np.isfinite(df), df, 1e12))
    return mean - q * se, mean + q * se, se


def mean_and_se(values: Values) -> tuple[float, float]:
    """`(mean, standard error)` over seeds (SE NaN for one value)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(
        values.std(ddof=1) / np.sqrt(len(values))
    )
