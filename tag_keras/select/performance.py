"""HOA-style selection: task groups from the measured losses of trained nets.

Standley et al. (2020) train networks for single tasks and pairs (and maybe
some larger groups), measure each task's validation loss in each network,
and search for the best groups under an inference budget; a group that was
not trained gets, for each task, the mean of that task's losses in the pairs
it forms with the other members. This module does that search with the same
budget semantics and result type as `select_groups`. Pure NumPy/pandas.
"""

import dataclasses
import os
import types
from collections.abc import Callable

import numpy as np
import pandas as pd

from tag_keras._errors import InputError
from tag_keras.select import _table
from tag_keras.select import grouping as grouping_lib
from tag_keras.select import readers

SEPARATOR = "|"
# Largest task count: block values cost 3^n (HOA needs n^2 / 2 trained
# pairs anyway, so its task counts are small).
MAX_TASKS = _table.MAX_TASKS


#: How `read_performance` types the name columns (task names as text).
COLUMN_TYPES = {"group": str, "task": str}


def read_performance(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a `group,task,value` CSV (group = task names joined by `|`),
    the names as the strings written (`readers.read_table`)."""
    return readers.read_table(path, tuple(COLUMN_TYPES))


def _parse(performance):
    """Returns `(tasks, {(group mask, task): value})` or raises ValueError."""
    missing = {"group", "task", "value"} - set(performance.columns)
    if missing:
        raise InputError(
            "`performance` needs the columns group, task, value. Received: "
            f"columns={list(performance.columns)}"
        )
    rows = [
        (tuple(str(g).split(SEPARATOR)), str(t), v)
        for g, t, v in zip(
            performance["group"], performance["task"], performance["value"]
        )
    ]
    tasks = []
    for group, task, _ in rows:
        for name in group + (task,):
            if name not in tasks:
                tasks.append(name)
    measured = {}
    for group, task, value in rows:
        label = SEPARATOR.join(group)
        if task not in group:
            raise InputError(
                "Each task must belong to the group it was measured in. "
                f"Received: group={label!r}, task={task!r}"
            )
        value = _table.finite_value(value, f"group={label!r}, task={task!r}")
        mask = sum(1 << tasks.index(t) for t in set(group))
        key = (mask, tasks.index(task))
        if key in measured:
            raise InputError(
                "Each (group, task) may be measured once. Received a second "
                f"row: group={label!r}, task={task!r}"
            )
        measured[key] = float(value)
    return tasks, measured


def group_losses(tasks, measured):
    """`losses[mask, a]`: task a's (approximated) loss in group `mask`.

    Measured where measured; else, for groups of two or more, the mean of
    a's measured losses in the pairs {a, b}, b another member; NaN where
    neither is possible (a not in the group, or a pair missing).
    """
    n = len(tasks)
    members = _table.members_of(n)
    pair = np.full((n, n), np.nan)  # pair[b, a]: a's loss trained with b.
    for (mask, a), value in measured.items():
        if int(mask).bit_count() == 2:
            pair[(mask ^ (1 << a)).bit_length() - 1, a] = value
    np.fill_diagonal(pair, 0.0)  # A task's own term is left out below.
    others = members.sum(axis=1, keepdims=True) - 1
    missing = members @ np.isnan(pair)  # Others whose pair is missing.
    with np.errstate(invalid="ignore", divide="ignore"):
        losses = (members @ np.nan_to_num(pair)) / others
    losses[(members == 0) | (others < 1) | (missing > 0)] = np.nan
    for (mask, a), value in measured.items():
        losses[mask, a] = value
    return losses


def select_groups_from_performance(
    performance: pd.DataFrame,
    num_groups: int,
    *,
    max_group_size: int | None = None,
    half_size_singles: pd.DataFrame | None = None,
    time_limit: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> grouping_lib.Grouping:
    """Chooses at most `num_groups` networks minimising the served loss.

    The problem is the one `select_groups` solves, with each task's score
    in a group replaced by its loss there (from `group_losses`: measured,
    or approximated from pairs), minimised: choose groups G_1..G_m, m <= k,
    serve each task by the chosen group where its loss is lowest, minimise
    the mean served loss. Single-task networks are allowed when they were
    measured. Every network counts as one towards the budget, except the
    half-size single-task networks of `half_size_singles`, which count
    half (Standley et al.'s budget: a network of half the width costs half
    the inference time). Solved
    exactly for up to `MAX_TASKS` tasks, so `optimal` is True and
    `upper_bound` (here the best reachable loss) equals `score`; the
    result's `minimize` is True and `task_scores` are losses.

    Beyond `MAX_TASKS` tasks, with every single task and pair measured and
    no larger group (HOA's own design), the problem is `select_groups`'
    on the matrix z[b, a] = −(a's loss trained with b), z[a, a] = −(a's
    loss alone), singletons allowed: the same proofs (dynamic program to
    16 tasks, column generation to 24) and, beyond, a grouping with a
    proven bound (`upper_bound` is then a lower bound on the best loss).

    Args:
        performance: `pandas.DataFrame` with columns `group` (task names
            joined by `|`), `task` and `value` (a loss or error, lower is
            better), one row per measured (network, task).
        num_groups: The budget k, an integer >= 1.
        max_group_size: Optional largest number of tasks in a group.
        half_size_singles: Optional `pandas.DataFrame` with columns `task`
            and `value`: each task's loss in a single-task network of half
            the size, which counts half a network; the result's
            `half_size` lists those chosen (a budget of k may then hold
            more than k networks). Up to `MAX_TASKS` tasks.
        time_limit: As `select_groups` (beyond `MAX_TASKS` tasks only;
            the exact table needs none).
        progress: As `select_groups` (beyond `MAX_TASKS` tasks only).

    Returns:
        A `grouping.Grouping`.

    References:
        Standley et al., "Which Tasks Should Be Learned Together in
        Multi-task Learning?", ICML 2020.
    """
    tasks, measured = _parse(performance)
    n = len(tasks)
    if n > MAX_TASKS:
        if half_size_singles is not None:
            raise InputError(
                f"`half_size_singles` is supported up to {MAX_TASKS} tasks. "
                f"Received: {n} tasks"
            )
        return _from_pairs(
            tasks, measured, num_groups, max_group_size, time_limit, progress
        )
    max_size = grouping_lib._check_budget(num_groups, n, max_group_size, True)
    half = None
    if half_size_singles is not None:
        half = -_half_losses(half_size_singles, tasks)
    # Maximise minus the loss.
    return _table.best_grouping(
        tasks,
        -group_losses(tasks, measured),
        num_groups,
        max_size,
        minimize=True,
        half_scores=half,
        missing="Some tasks have no "
        "measured network (alone or in a pair) that could serve them",
    )


def pair_matrix(tasks, measured):
    """`z[b, a]` = −(a's loss with b), `z[a, a]` = −(a's loss alone).

    Raises ValueError unless exactly every single task and every pair is
    measured (HOA's networks), nothing larger.
    """
    n = len(tasks)
    z = np.full((n, n), np.nan)
    for (mask, a), value in measured.items():
        members = np.flatnonzero((mask >> np.arange(n)) & 1)
        if len(members) > 2:
            raise InputError(
                f"Beyond {MAX_TASKS} tasks HOA selects from single-task and "
                "pair networks only. Received: a measured group of "
                f"{len(members)} tasks "
                f"({SEPARATOR.join(tasks[m] for m in members)})"
            )
        other = members[members != a]
        z[other[0] if len(other) else a, a] = -value
    if np.isnan(z).any():
        b, a = np.argwhere(np.isnan(z))[0]
        missing = tasks[a] if a == b else f"{tasks[b]}{SEPARATOR}{tasks[a]}"
        raise InputError(
            f"Beyond {MAX_TASKS} tasks HOA needs every single task and every "
            f"pair measured. Received: no value of {tasks[a]!r} in "
            f"{missing!r}"
        )
    return z


def _from_pairs(
    tasks, measured, num_groups, max_group_size, time_limit, progress
):
    """`select_groups` on `pair_matrix`, reported as losses."""
    affinity = pd.DataFrame(
        pair_matrix(tasks, measured), index=tasks, columns=tasks
    )
    result = grouping_lib.select_groups(
        affinity,
        num_groups,
        allow_singletons=True,
        max_group_size=max_group_size,
        time_limit=time_limit,
        progress=progress,
    )
    return dataclasses.replace(
        result,
        minimize=True,
        score=-result.score,
        upper_bound=-result.upper_bound,
        task_scores=types.MappingProxyType(
            {t: -v for t, v in result.task_scores.items()}
        ),
    )


def _half_losses(frame, tasks):
    """`[n]` losses of the half-size single-task networks (NaN: none)."""
    if not isinstance(frame, pd.DataFrame) or not {"task", "value"} <= set(
        frame.columns
    ):
        raise InputError(
            "`half_size_singles` must be a DataFrame with columns task, "
            f"value. Received: {frame!r}"
        )
    losses = np.full(len(tasks), np.nan)
    for task, value in zip(frame["task"], frame["value"]):
        if str(task) not in tasks:
            raise InputError(
                f"`half_size_singles` names an unknown task. Received: "
                f"task={task!r}; tasks={tasks}"
            )
        losses[tasks.index(str(task))] = _table.finite_value(
            value, f"half_size_singles task={task!r}"
        )
    return losses
