"""Random groupings at a budget: the baseline a chosen grouping must beat.

RG's value is the expectation over partitions of the tasks into exactly
`num_groups` non-empty groups, drawn uniformly. Where there are few
partitions (the Stirling number S(n, k)) every one is used, once, and
their mean is the exact expectation; otherwise a uniform sample is used
and the mean carries a sampling standard error.
"""

from collections.abc import Sequence

import numpy as np


def partition_count(n, k):
    """The Stirling number S(n, k): partitions of n items into k groups."""
    table = [[0] * (k + 1) for _ in range(n + 1)]
    table[0][0] = 1
    for i in range(1, n + 1):
        for j in range(1, k + 1):
            table[i][j] = j * table[i - 1][j] + table[i - 1][j - 1]
    return table[n][k]


def all_partitions(tasks, num_groups):
    """Every partition of `tasks` into exactly `num_groups` non-empty
    groups, each group in task order, groups ordered by their first task."""
    tasks = tuple(tasks)

    def extend(index, groups):
        if index == len(tasks):
            if len(groups) == num_groups:
                yield tuple(tuple(g) for g in groups)
            return
        if len(groups) + len(tasks) - index < num_groups:
            return
        for group in groups:
            group.append(tasks[index])
            yield from extend(index + 1, groups)
            group.pop()
        if len(groups) < num_groups:
            groups.append([tasks[index]])
            yield from extend(index + 1, groups)
            groups.pop()

    return list(extend(0, []))


def random_partitions(
    tasks: Sequence[str], num_groups: int, num_samples: int, seed: int
) -> tuple:
    """`(partitions, exact)`: partitions of `tasks` into `num_groups`
    non-empty groups for RG's expectation.

    When there are at most `num_samples` partitions, every one of them,
    once, and `exact` is True (their mean is the expectation). Otherwise
    `num_samples` drawn uniformly among them (a uniform labelling,
    redrawn until every label is used), from
    `np.random.default_rng(seed)`. Groups keep the task order.
    """
    tasks = tuple(tasks)
    if not 1 <= num_groups <= len(tasks):
        raise ValueError(
            f"`num_groups` must be between 1 and the number of tasks "
            f"({len(tasks)}). Received: num_groups={num_groups}"
        )
    if num_samples < 1:
        raise ValueError(
            "`num_samples` must be at least 1. Received: "
            f"num_samples={num_samples}"
        )
    if partition_count(len(tasks), num_groups) <= num_samples:
        return all_partitions(tasks, num_groups), True
    rng = np.random.default_rng(seed)
    partitions: list = []
    while len(partitions) < num_samples:
        labels = rng.integers(0, num_groups, size=len(tasks))
        if len(set(labels.tolist())) < num_groups:
            continue
        groups = [
            tuple(
                t for t, label in zip(tasks, labels, strict=True) if label == g
            )
            for g in range(num_groups)
        ]
        partitions.append(
            tuple(sorted(groups, key=lambda g: tasks.index(g[0])))
        )
    return partitions, False


def expectation(values, exact):
    """`(mean, sampling SE)` of per-partition values; SE 0 when exact."""
    values = np.asarray(values, float)
    if exact or len(values) < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(
        values.std(ddof=1) / np.sqrt(len(values))
    )
