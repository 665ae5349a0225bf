"""Exact selection from a table of every group's per-task scores.

HOA (`performance`) and group affinities (`group_affinity`) both give, for
every group G and task a ∈ G, a's score if served by G (NaN where G cannot
serve a). The best k groups are then found exactly: the value of a block B
(the tasks one group serves) is the best total over the groups G ⊇ B, and
the dynamic program over subsets partitions the tasks into blocks. Block
values cost 3^n, so task counts stay small.
"""

import dataclasses
import math
import numbers

import numpy as np

from tag_keras._errors import InputError
from tag_keras.select import _solvers
from tag_keras.select import grouping as grouping_lib

#: Largest task count (3^n block valuations).
MAX_TASKS = 14
_UNAVAILABLE = -1e300


def finite_value(value, context, name="value"):
    """`value` as a float, or a one-line ValueError naming `context`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
    ):
        raise InputError(
            f"Each {name} must be a finite number. Received: "
            f"{context}, {name}={value!r}"
        )
    return float(value)


def members_of(n):
    """`[2^n, n]` 0/1: which tasks each bitmask holds."""
    return (np.arange(2**n)[:, None] >> np.arange(n)) & 1


def best_grouping(
    tasks,
    scores,
    num_groups,
    max_size,
    *,
    minimize=False,
    estimated=None,
    half_scores=None,
    missing="Some tasks have no group that could serve them",
):
    """The optimal `Grouping` for `scores` (maximised) and budget k.

    Args:
        tasks: Task names.
        scores: `[2^n, n]`: `scores[G, a]` is a's score served by group G
            (bitmask), NaN where it cannot be served there.
        num_groups: The budget k.
        max_size: The largest group size allowed.
        minimize: Whether the scores are minus losses (the result then
            reports losses, `minimize=True`).
        estimated: Optional `[2^n, n]` booleans: the score is an estimate;
            the result's `estimated` lists the served tasks whose score is.
        half_scores: Optional `[n]`: each task's score alone in a network
            that counts half towards the budget (NaN: none); the result's
            `half_size` lists the chosen ones.
        missing: The error's start when a task cannot be served at all.
    """
    n = len(tasks)
    scores = np.array(scores, dtype=float)
    scores[members_of(n).sum(axis=1) > max_size] = np.nan
    values = block_values(scores)
    halves = None
    if half_scores is not None:
        halves = np.full(2**n, -np.inf)
        for a, value in enumerate(half_scores):
            if np.isfinite(value):
                halves[1 << a] = value
    servable = values if halves is None else np.maximum(values, halves)
    if not np.isfinite(servable[[1 << a for a in range(n)]]).all():
        lonely = [
            t for a, t in enumerate(tasks) if servable[1 << a] == -np.inf
        ]
        raise InputError(f"{missing}. Received: tasks without one={lonely}")
    half_blocks = []
    if halves is None:
        blocks, _ = _solvers.solve_partition_dp(n, values, num_groups)
    else:
        blocks, _, used = _solvers.solve_partition_dp(
            n, values, num_groups, half_values=halves
        )
        half_blocks = [b.bit_length() - 1 for b, h in zip(blocks, used) if h]
        blocks = [b for b, h in zip(blocks, used) if not h]

    def score(task, group):
        if len(group) == 1 and task in half_blocks:
            return float(half_scores[task])
        value = scores[sum(1 << t for t in group), task]
        return -math.inf if np.isnan(value) else float(value)

    result = grouping_lib.build_grouping(
        tasks,
        [
            tuple(np.flatnonzero((best_group(scores, b) >> np.arange(n)) & 1))
            for b in blocks
        ]
        + [(a,) for a in half_blocks],
        score,
        optimal=True,
        upper_bound=0.0,
        num_groups=int(num_groups),
        method="dynamic_program",
        minimize=minimize,
    )
    flagged = ()
    if estimated is not None:
        masks = [sum(1 << tasks.index(t) for t in g) for g in result.groups]
        flagged = tuple(
            t
            for a, t in enumerate(tasks)
            if estimated[masks[result.serve[t]], a]
        )
    return dataclasses.replace(
        result,
        upper_bound=result.score,
        estimated=flagged,
        half_size=tuple(
            g
            for g in result.groups
            if len(g) == 1 and tasks.index(g[0]) in half_blocks
        ),
    )


def block_values(scores):
    """`[2^n]`: f(S), the best total over the groups G ⊇ S that can serve
    every task of S (-inf where none can), by the submasks of each G."""
    n = scores.shape[1]
    values = np.full(2**n, -np.inf)
    for mask in range(1, 2**n):
        row = scores[mask]
        members = np.flatnonzero((mask >> np.arange(n)) & 1)
        pattern = (
            np.arange(1, 2 ** len(members))[:, None] >> np.arange(len(members))
        ) & 1
        sub = pattern @ (1 << members)
        sums = pattern @ np.nan_to_num(row[members], nan=_UNAVAILABLE)
        np.maximum.at(
            values, sub, np.where(sums < _UNAVAILABLE / 2, -np.inf, sums)
        )
    return values


def best_group(scores, block):
    """The group (bitmask) reaching f(`block`); ties: the smallest group,
    then the smallest bitmask."""
    n = scores.shape[1]
    members = np.flatnonzero((block >> np.arange(n)) & 1)
    candidates = [
        (-np.nansum(scores[g, members]), g.bit_count(), g)
        for g in range(1, 2**n)
        if g & block == block and not np.isnan(scores[g, members]).any()
    ]
    return min(candidates)[2]
