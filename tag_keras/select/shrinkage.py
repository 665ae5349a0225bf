"""Affinities shrunk toward each target's mean by their standard errors.

A measured affinity Z(i -> j) is the mean of a noisy per-step series; with
few measured steps, the largest entries of a column are partly noise, and a
selection that maximises affinity picks them. Empirical Bayes shrinks each
entry toward the mean of its target's column by how noisy it is:

    m_j  = mean over sources i != j of Z(i -> j)
    s_ij = standard error of Z(i -> j) (block means, see below)
    t_j  = max(0, variance over i of Z(i -> j) - mean over i of s_ij^2)
    Z~(i -> j) = m_j + t_j / (t_j + s_ij^2) * (Z(i -> j) - m_j)

`t_j` is the spread of the true affinities toward `j` once the noise is
taken out; when the noise explains all the spread, every source of `j`
gets `m_j`. The diagonal is left as measured. Standard errors come from
the means of contiguous blocks of measured steps (neighbouring steps are
correlated), of the cube root of the number of steps each, as
`tag_keras.select.stability` resamples them.

This is one of the proposers the decision benchmark compares with the
release's plain mean (`experiments.benchmarks.decision`); `select_groups`
reads its output like any affinity matrix. Pure NumPy and pandas.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tag_keras._errors import InputError
from tag_keras.select import stability


def shrink(z: np.ndarray, se: np.ndarray) -> np.ndarray:
    """The shrunk matrix of `z` (`[n, n]`, source x target) given the
    standard error `se` of each entry (same shape).

    Raises:
        ValueError: On shapes that differ or are not square, fewer than
            three tasks (a target's mean needs two sources), or a
            non-finite or negative standard error off the diagonal.
    """
    z = np.asarray(z, dtype=float)
    se = np.asarray(se, dtype=float)
    if z.ndim != 2 or z.shape[0] != z.shape[1] or se.shape != z.shape:
        raise InputError(
            "`z` must be a square matrix and `se` of its shape. Received: "
            f"z.shape={z.shape}, se.shape={se.shape}"
        )
    n = len(z)
    if n < 3:
        raise InputError(
            "Shrinkage needs at least 3 tasks (two sources per "
            f"target). Received: {n} tasks"
        )
    off = ~np.eye(n, dtype=bool)
    if not np.all(np.isfinite(z[off])):
        raise InputError(
            "Every affinity off the diagonal must be finite "
            "(a pair never measured has no mean to shrink)."
        )
    if not np.all(np.isfinite(se[off])) or np.any(se[off] < 0):
        raise InputError(
            "Every standard error off the diagonal must be "
            "finite and >= 0. Measure more steps (a pair "
            "needs values in at least two blocks)."
        )
    out = z.copy()
    for j in range(n):
        sources = [i for i in range(n) if i != j]
        column, noise = z[sources, j], se[sources, j] ** 2
        mean = column.mean()
        spread = max(0.0, column.var(ddof=1) - noise.mean())
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.where(
                spread + noise > 0, spread / (spread + noise), 1.0
            )
        out[sources, j] = mean + weight * (column - mean)
    return out


def block_standard_errors(values, block_size=None):
    """`(mean, se)` of per-step matrices `values` (`[T, n, n]`, NaN where
    a pair was not measured): the mean over steps and the standard error
    of the mean of contiguous blocks of `block_size` steps (default: the
    cube root of `T`). A pair with fewer than two measured blocks gets a
    NaN standard error."""
    values = np.asarray(values, dtype=float)
    blocks = stability._blocks(len(values), block_size)
    means = np.stack([_nanmean(values[b]) for b in blocks])
    finite = np.isfinite(means)
    counts = finite.sum(axis=0)
    centre = _nanmean(means)
    squares = np.where(finite, means - centre, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(squares.sum(axis=0) / (counts - 1) / counts)
    return stability._mean(values), np.where(counts > 1, se, np.nan)


def shrunk_affinity(
    steps: pd.DataFrame,
    tasks: Sequence[str] | None = None,
    block_size: int | None = None,
) -> pd.DataFrame:
    """The shrunk affinity matrix (source x target DataFrame) of a
    per-step table (`affinity_steps.csv`'s columns step, source, target,
    affinity)."""
    tasks, values = stability.step_matrices(steps, tasks)
    mean, se = block_standard_errors(values, block_size)
    return pd.DataFrame(shrink(mean, se), index=tasks, columns=tasks)


def _nanmean(values):
    counts = np.isfinite(values).sum(axis=0)
    sums = np.nansum(values, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
