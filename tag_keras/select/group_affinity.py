"""Selection from group affinities: a task's score in G is Z(G∖{a}→a).

With group sources measured (`TaskAffinityModel(affinity_sources=...)`,
the file `group_affinity.csv`), the affinity a task receives in a group no
longer has to be assembled from pairs: it is the lookahead of the other
members' summed gradient onto it, Z(G∖{a}→a), measured. Groups whose
G∖{a} was never measured as a source get an estimate from a per-target
least-squares surrogate on membership indicators,

    Z(S→a) ≈ c_a + Σ_{b ∈ S} β_ab,

fitted to every source measured onto a (the intercept c_a, which carries
the move every source shares, only when the measured sources outnumber
the tasks; else the additive first-order model without it). Its in-sample
R² is reported per target, and the served tasks whose score is such an
estimate are listed in the result's `estimated`. Exact over every group up
to `MAX_TASKS` tasks; beyond, the column generation of `select_groups`
(the surrogate has its form). Pure NumPy/pandas.
"""

import dataclasses
import math
import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from tag_keras._errors import InputError
from tag_keras.select import _blocks
from tag_keras.select import _scores
from tag_keras.select import _table
from tag_keras.select import grouping as grouping_lib
from tag_keras.select import readers

SEPARATOR = "|"
COLUMNS = ("sources", "target", "affinity")
#: How `read_group_affinity` types the name columns (task names as text).
COLUMN_TYPES = {"sources": str, "target": str}
MAX_TASKS = _table.MAX_TASKS


def read_group_affinity(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a `group_affinity.csv` (as `AffinityLogger` writes it), the
    names as the strings written (`readers.read_table`)."""
    return readers.read_table(path, tuple(COLUMN_TYPES))


def parse(frame):
    """`(tasks, {(source bitmask, target index): affinity})`.

    Tasks are the targets, in order of appearance; each source must name
    known tasks, joined by `|`, each once.

    Raises:
        ValueError: a missing column, a malformed `sources`, an unknown
            task, a non-finite affinity or a repeated (sources, target).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            "`group_affinity` must be a pandas DataFrame with "
            f"columns {list(COLUMNS)}. Received: {frame!r}"
        )
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"`group_affinity` needs the columns {list(COLUMNS)}; "
            f"{missing} missing. Received: columns={list(frame.columns)}"
        )
    tasks = list(dict.fromkeys(str(t) for t in frame["target"]))
    index = {t: k for k, t in enumerate(tasks)}
    measured = {}
    for sources, target, value in zip(
        frame["sources"], frame["target"], frame["affinity"]
    ):
        names = (
            str(sources).split(SEPARATOR) if isinstance(sources, str) else []
        )
        if not names or "" in names or len(set(names)) != len(names):
            raise InputError(
                "Each `sources` must be task names joined by '|', each "
                f"once. Received: sources={sources!r}, target={target!r}"
            )
        unknown = [t for t in names if t not in index]
        if unknown:
            raise InputError(
                f"`sources` names tasks {unknown} that are never a target; "
                f"known tasks: {tasks}. Received: sources={sources!r}"
            )
        value = _table.finite_value(
            value, f"sources={sources!r}, target={target!r}", "affinity"
        )
        key = (sum(1 << index[t] for t in names), index[str(target)])
        if key in measured:
            raise InputError(
                "Each (sources, target) may appear once. Received a second "
                f"row: sources={sources!r}, target={target!r}"
            )
        measured[key] = float(value)
    return tasks, measured


def _fit(tasks, measured):
    """`(offset, z, fit)`: per target a, Z(S→a) ≈ offset[a] + Σ_{b ∈ S}
    z[b, a] by least squares (see `surrogate`)."""
    n = len(tasks)
    offset, z = np.zeros(n), np.zeros((n, n))
    rows = []
    for a, target in enumerate(tasks):
        points = [
            (mask, value) for (mask, t), value in measured.items() if t == a
        ]
        design = np.array(
            [[float((mask >> b) & 1) for b in range(n)] for mask, _ in points]
        )
        values = np.array([v for _, v in points])
        intercept = len(points) > n
        if intercept:
            design = np.hstack([np.ones((len(points), 1)), design])
        coefficients, _, rank, _ = np.linalg.lstsq(design, values, rcond=None)
        if intercept:
            offset[a] = coefficients[0]
        z[:, a] = coefficients[-n:]
        r2 = math.nan
        if len(points) > rank:
            residual = values - design @ coefficients
            spread = np.sum((values - values.mean()) ** 2)
            r2 = 1.0 - np.sum(residual**2) / spread if spread > 0 else 1.0
        rows.append(
            {
                "target": target,
                "points": len(points),
                "parameters": int(rank),
                "intercept": intercept,
                "r2": r2,
            }
        )
    return offset, z, pd.DataFrame(rows)


def surrogate(tasks, measured):
    """Per target, the least-squares fit of Z(S→a) on S's members.

    Returns:
        `(predict, fit)`: `predict[S, a]` (`[2^n, n]`, so for at most
        `MAX_TASKS` tasks) the fitted value of every source S (NaN for the
        empty one) onto every target, and `fit` a DataFrame with one row
        per target: `points` (measured sources), `parameters` (the fit's
        rank), `intercept` (whether c_a was fitted) and `r2` (in sample;
        NaN when the fit has no residual degrees of freedom, being exact
        by construction).
    """
    offset, z, fit = _fit(tasks, measured)
    members = _table.members_of(len(tasks)).astype(float)
    predict = offset + members @ z
    predict[0] = np.nan
    return predict, fit


def group_scores(tasks, measured, allow_singletons=False):
    """`(scores, estimated)`, both `[2^n, n]`: Z(G∖{a}→a) for a ∈ G.

    Measured where G∖{a} was measured as a source onto a, else the
    surrogate's estimate (`estimated` True). Singletons score the measured
    self-affinity Z(a→a) when `allow_singletons`, else NaN (cannot serve).
    """
    n = len(tasks)
    predict, _ = surrogate(tasks, measured)
    members = _table.members_of(n).astype(bool)
    scores = np.full((2**n, n), np.nan)
    estimated = np.zeros((2**n, n), bool)
    for group in range(1, 2**n):
        for a in np.flatnonzero(members[group]):
            source = group ^ (1 << a)
            if source == 0:
                if allow_singletons and (group, a) in measured:
                    scores[group, a] = measured[(group, a)]
                continue
            if (source, a) in measured:
                scores[group, a] = measured[(source, a)]
            else:
                scores[group, a] = predict[source, a]
                estimated[group, a] = True
    return scores, estimated


def _objective(tasks, measured, allow_singletons, max_size):
    """The objective as `_scores.Scores`: the surrogate's form, with the
    measured groups (G∖{a} measured onto a) as special groups."""
    n = len(tasks)
    offset, z, _ = _fit(tasks, measured)
    singles = np.full(n, np.nan)
    overrides = {}
    for (source, a), value in measured.items():
        if (source >> a) & 1:
            if source == 1 << a:
                singles[a] = value
            continue
        row = overrides.setdefault(source | (1 << a), np.full(n, np.nan))
        row[a] = value
    return _scores.Scores(
        z,
        max_size,
        mean=False,
        offset=offset,
        singles=singles if allow_singletons else None,
        overrides=overrides,
    )


def select_groups_from_group_affinity(
    group_affinity: pd.DataFrame,
    num_groups: int,
    *,
    allow_singletons: bool = False,
    max_group_size: int | None = None,
    time_limit: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> grouping_lib.Grouping:
    r"""Chooses at most `num_groups` groups maximising served group affinity.

    The problem `select_groups` solves, with a task's score in a group G
    its measured group affinity s(a, G) = Z(G∖{a}→a) (the other members'
    summed gradient stepped on, a's loss measured) instead of the mean of
    pair affinities; unmeasured sources get the surrogate's estimate (see
    the module docstring; `surrogate_fit` reports its R²).

    Up to `MAX_TASKS` tasks it is solved exactly, every group valued.
    Beyond, by `select_groups`'s column generation from a local-search
    incumbent: the surrogate has the pair objective's form with a sum for
    the mean, s(a, G) = c_a + Σ_{b ∈ G∖a} β_ba, so the same branch and
    bound prices groups, and the measured groups, whose scores the form
    does not bound, are valued one by one. `optimal` and `upper_bound`
    are what was proven (for the partly estimated scores); up to
    `select_groups`' `max_proven_tasks`, reduced-cost fixing closes a gap
    the LP relaxation leaves, with blocks valued by an upper bound.

    Args:
        group_affinity: DataFrame with columns `sources` (task names joined
            by `|`), `target` and `affinity` (as `model.group_affinity()`
            returns and `group_affinity.csv` holds); other columns are
            ignored. Single-task sources are the ordinary affinities.
        num_groups: The budget k, an integer >= 1.
        allow_singletons: Allow one-task groups, scored by the measured
            self-affinity Z(a→a) (meaningful on held-out batches).
        max_group_size: Optional largest number of tasks in a group.
        time_limit: As `select_groups` (beyond `MAX_TASKS` tasks; the
            exact table needs none).
        progress: As `select_groups` (beyond `MAX_TASKS` tasks).

    Returns:
        A `grouping.Grouping` (`method="dynamic_program"` up to `MAX_TASKS`
        tasks, else as `select_groups`), with `estimated` naming the served
        tasks whose score is the surrogate's.
    """
    tasks, measured = parse(group_affinity)
    n = len(tasks)
    if n < 2:
        raise InputError(
            "`group_affinity` must name at least 2 target tasks. "
            f"Received: tasks={tasks}"
        )
    max_size = grouping_lib._check_budget(
        num_groups, n, max_group_size, allow_singletons
    )
    grouping_lib._check_time_limit(time_limit)
    if n <= MAX_TASKS:
        scores, estimated = group_scores(tasks, measured, allow_singletons)
        return _table.best_grouping(
            tasks,
            scores,
            num_groups,
            max_size,
            estimated=estimated,
            missing="Some tasks have no group that could serve them (a "
            "singleton needs allow_singletons and a measured "
            "self-affinity)",
        )
    scores = _objective(tasks, measured, allow_singletons, max_size)
    result = grouping_lib.solve(
        tasks,
        scores,
        num_groups,
        max_exact_tasks=0,
        time_limit=time_limit,
        progress=progress,
    )
    flagged = []
    for task, index in result.serve.items():
        group = [tasks.index(t) for t in result.groups[index]]
        a = tasks.index(task)
        source = _blocks.to_mask(group) ^ (1 << a)
        if source and (source, a) not in measured:
            flagged.append(task)
    return dataclasses.replace(result, estimated=tuple(flagged))


def surrogate_fit(group_affinity: pd.DataFrame) -> pd.DataFrame:
    """The surrogate's fit per target (`surrogate`'s DataFrame)."""
    tasks, measured = parse(group_affinity)
    return _fit(tasks, measured)[2]
