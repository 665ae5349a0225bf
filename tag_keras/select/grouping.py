"""Network selection: from an inter-task affinity matrix to task groups.

Pure NumPy/SciPy/pandas; importing this module never imports TensorFlow.
"""

import dataclasses
import math
import numbers
import types
from collections.abc import Callable

import numpy as np
import pandas as pd

from tag_keras._errors import InputError
from tag_keras.select import _blocks
from tag_keras.select import _columns
from tag_keras.select import _scores
from tag_keras.select import _search
from tag_keras.select import _solvers


@dataclasses.dataclass(frozen=True)
class Grouping:
    """A selection of task groups (networks) and which one serves each task.

    Attributes:
        groups: The chosen groups, tuples of task names in input order; the
            groups are sorted by the input positions of their members.
        serve: Task name -> index into `groups` of the group serving it.
        task_scores: Task name -> its score in the group serving it.
        score: The objective, the mean of `task_scores` over all tasks.
        optimal: Whether `score` was proven optimal for the budget.
        upper_bound: A proven bound on the best reachable `score` (an upper
            bound when maximising, a lower bound when `minimize`); equal to
            `score` when `optimal`.
        num_groups: The budget: at most this many groups were allowed.
        method: How the grouping was found: "dynamic_program" (exact),
            "separable" (budget of at least one group per task: exact, each
            task with its best group), "column_generation" (exact when
            `optimal`), or "local_search" (the bound is the size-aware
            LP's).
        minimize: False for affinities (higher is better); True for losses
            (`select_groups_from_performance`).
        estimated: Tasks whose served score is a model's estimate, not a
            measurement (`select_groups_from_group_affinity`'s surrogate
            for groups never measured as sources).
        half_size: The groups (single tasks) served by a half-size network
            that counts half towards the budget
            (`select_groups_from_performance(half_size_singles=...)`).
    """

    groups: tuple
    serve: types.MappingProxyType
    task_scores: types.MappingProxyType
    score: float
    optimal: bool
    upper_bound: float
    num_groups: int
    method: str
    minimize: bool = False
    estimated: tuple = ()
    half_size: tuple = ()

    @property
    def gap(self) -> float:
        """Distance between `score` and `upper_bound` (0 when optimal)."""
        return abs(self.upper_bound - self.score)

    def to_dict(self) -> dict:
        """The JSON-ready result entry of the groups document
        (`tag_keras.select.document`)."""
        return {
            "num_groups": self.num_groups,
            "groups": [list(g) for g in self.groups],
            "serve": dict(self.serve),
            "task_scores": dict(self.task_scores),
            "score": self.score,
            "optimal": self.optimal,
            "upper_bound": self.upper_bound,
            "gap": self.gap,
            "method": self.method,
            "minimize": self.minimize,
            "estimated": list(self.estimated),
            "half_size": [list(g) for g in self.half_size],
        }


def _plain(value):
    """NumPy scalars as Python ones, so messages read `=0.0`, not np.float64."""
    return value.item() if isinstance(value, np.generic) else value


def validate_affinity(affinity):
    """Returns `(task names, float matrix)` or raises a one-line ValueError."""
    if not isinstance(affinity, pd.DataFrame):
        raise TypeError(
            "`affinity` must be a pandas DataFrame (rows = source task, "
            f"columns = target task). Received: affinity={affinity!r}"
        )
    rows, columns = (
        [str(t) for t in affinity.index],
        [str(t) for t in affinity.columns],
    )
    if len(rows) != len(columns):
        raise InputError(
            "`affinity` must be square (one row and one column per task). "
            f"Received: affinity.shape={affinity.shape}"
        )
    if len(set(rows)) != len(rows) or sorted(rows) != sorted(columns):
        raise InputError(
            "`affinity` must have the same unique task names as row and "
            f"column labels. Received: rows={rows}, columns={columns}"
        )
    affinity = affinity.set_axis(rows, axis=0).set_axis(columns, axis=1)
    values = affinity.loc[rows, rows].apply(pd.to_numeric, errors="coerce")
    z = values.to_numpy(dtype=float)
    if not np.isfinite(z).all():
        bad = np.argwhere(~np.isfinite(z))[0]
        hint = ""
        if np.isnan(z[bad[0], bad[1]]):
            hint = (
                " (NaN: never measured, e.g. a task whose head bypasses "
                "the shared weights or that was never labelled; leave "
                "that task out)"
            )
        raise InputError(
            "`affinity` must hold finite numbers. Received: affinity.loc["
            f"{rows[bad[0]]!r}, {rows[bad[1]]!r}]="
            f"{_plain(affinity.loc[rows[bad[0]], rows[bad[1]]])!r}{hint}"
        )
    with np.errstate(over="ignore"):
        total = np.abs(z).sum() * max(len(rows), 1)
    if not np.isfinite(total):
        raise InputError(
            "`affinity` values are too large to add up without overflow "
            f"(largest |value| {np.abs(z).max():.3g} for {len(rows)} tasks); "
            "rescale the matrix, e.g. divide it by its largest absolute "
            "value: the groups do not change."
        )
    return rows, z


def _check_time_limit(time_limit):
    if time_limit is None:
        return
    if (
        isinstance(time_limit, bool)
        or not isinstance(time_limit, numbers.Real)
        or not (math.isfinite(time_limit) and time_limit > 0)
    ):
        raise InputError(
            "`time_limit` must be a positive number of seconds or None. "
            f"Received: time_limit={time_limit!r}"
        )


def _check_budget(num_groups, n, max_group_size, allow_singletons):
    if (
        isinstance(num_groups, bool)
        or not isinstance(num_groups, numbers.Integral)
        or num_groups < 1
    ):
        raise InputError(
            "`num_groups` must be an integer >= 1. "
            f"Received: num_groups={num_groups!r}"
        )
    if max_group_size is None:
        return n
    smallest = 1 if allow_singletons else 2
    if (
        isinstance(max_group_size, bool)
        or not isinstance(max_group_size, numbers.Integral)
        or max_group_size < smallest
    ):
        raise InputError(
            f"`max_group_size` must be an integer >= {smallest} or None. "
            f"Received: max_group_size={max_group_size!r}"
        )
    if num_groups * max_group_size < n:
        raise InputError(
            f"{num_groups} groups of at most {max_group_size} tasks cannot "
            f"serve {n} tasks. Received: num_groups={num_groups}, "
            f"max_group_size={max_group_size}"
        )
    return int(max_group_size)


def task_score(z, task, group):
    """Score of `task` in `group` (indices): mean affinity from the others.

    A singleton scores its diagonal entry (self-affinity).
    """
    others = [b for b in group if b != task]
    if not others:
        return float(z[task, task])
    return float(np.mean(z[others, task]))


def build_grouping(tasks, groups, scores, **fields):
    """Canonical `Grouping` from candidate groups (tuples of indices).

    `scores(task, group)` gives a task's score in a group (higher is better)
    or -inf where it cannot be served there. Each task is served by the
    group where it scores highest, ties to the earliest group in canonical
    order (sorted member indices); groups that serve nobody are dropped.
    """
    groups = sorted({tuple(sorted(g)) for g in groups})
    serve, task_scores = {}, {}
    for task in range(len(tasks)):
        best = (-math.inf, None)
        for index, group in enumerate(groups):
            if task in group and scores(task, group) > best[0]:
                best = (scores(task, group), index)
        serve[task], task_scores[task] = best[1], best[0]
    used = sorted(set(serve.values()))
    renumber = {old: new for new, old in enumerate(used)}
    sign = -1.0 if fields.get("minimize") else 1.0
    return Grouping(
        groups=tuple(tuple(tasks[t] for t in groups[i]) for i in used),
        serve=types.MappingProxyType(
            {tasks[t]: renumber[serve[t]] for t in serve}
        ),
        task_scores=types.MappingProxyType(
            {tasks[t]: sign * task_scores[t] for t in task_scores}
        ),
        score=sign * float(np.mean(list(task_scores.values()))),
        **fields,
    )


def _normalized(z, tasks):
    """`z` divided by each target's self-affinity (which must be > 0)."""
    diagonal = z.diagonal().copy()
    if (diagonal <= 0).any():
        bad = tasks[int(np.argmax(diagonal <= 0))]
        raise InputError(
            "normalize=True divides by self-affinity, which must be "
            f"positive. Received: affinity.loc[{bad!r}, {bad!r}]="
            f"{_plain(diagonal[tasks.index(bad)])!r}"
        )
    return z / diagonal[None, :]


#: Branch-and-bound nodes the proof may use beyond `max_proven_tasks` when
#: no `time_limit` is given (a few seconds; equal on every machine).
_DEFAULT_NODES = 100_000


def _solve(
    scores,
    num_groups,
    max_exact_tasks,
    max_proven_tasks,
    search_restarts,
    time_limit,
    progress,
):
    """`(blocks, method, upper bound or None when exact)` for `scores`."""
    n = scores.n
    if num_groups >= n and scores.exact_blocks:
        return [1 << t for t in range(n)], "separable", None
    if n <= max_exact_tasks and scores.exact_blocks:
        blocks, _ = _solvers.solve_partition_dp(
            n, scores.blocks.all_values(), num_groups
        )
        return blocks, "dynamic_program", None
    deadline = _columns.Deadline(time_limit)
    size_bound = _solvers.size_upper_bound(scores.best_by_size(), num_groups)

    def report(restart, best):
        progress(
            f"local search: restart {restart}, score {best / n:.6g}, "
            f"upper bound {size_bound / n:.6g}"
        )

    # Half of a time limit for the search, the rest (at least) for the
    # proof.
    blocks, _ = _search.local_search(
        scores,
        num_groups,
        search_restarts,
        progress=None if progress is None else report,
        deadline=deadline.early(0.5),
    )
    node_limit = None
    if n > max_proven_tasks and time_limit is None:
        node_limit = _DEFAULT_NODES
    blocks, total, bound, proven = _columns.prove(
        scores,
        num_groups,
        blocks,
        deadline,
        node_limit=node_limit,
        max_enumerated_tasks=max_proven_tasks,
        progress=progress,
    )
    if progress is not None:
        bound_text = "none" if bound is None else f"{bound / n:.6g}"
        progress(
            f"column generation: score {total / n:.6g}, bound "
            f"{bound_text}, {'proven' if proven else 'not proven'}"
        )
    if proven:
        return blocks, "column_generation", None
    if bound is None:  # No pricing round finished: the local search's.
        return blocks, "local_search", size_bound / n
    return blocks, "column_generation", min(bound, size_bound) / n


def solve(
    tasks,
    scores,
    num_groups,
    *,
    max_exact_tasks=16,
    max_proven_tasks=24,
    search_restarts=16,
    time_limit=None,
    progress=None,
):
    """The best `Grouping` for `scores` (a `_scores.Scores` on `tasks`).

    The machinery `select_groups` documents; other objectives of the same
    form (`group_affinity`) share it.
    """
    blocks, method, bound = _solve(
        scores,
        num_groups,
        max_exact_tasks,
        max_proven_tasks,
        search_restarts,
        time_limit,
        progress,
    )
    grouping = _from_blocks(tasks, scores, blocks, num_groups, method)
    slack = 1e-9 * (1 + abs(grouping.score))
    optimal = bound is None or bound <= grouping.score + slack
    return dataclasses.replace(
        grouping,
        optimal=optimal,
        upper_bound=grouping.score if optimal else max(bound, grouping.score),
    )


def _from_blocks(tasks, scores, blocks, num_groups, method):
    """The `Grouping` whose blocks (bitmasks) take their best groups."""
    return build_grouping(
        tasks,
        [
            tuple(np.flatnonzero(_blocks.mask_members(b, scores.n)))
            + scores.blocks.value(b)[1]
            for b in blocks
        ],
        scores.score,
        optimal=True,
        upper_bound=0.0,
        num_groups=int(num_groups),
        method=method,
    )


def _check_top(top, n, max_exact_tasks, scores):
    if (
        isinstance(top, bool)
        or not isinstance(top, numbers.Integral)
        or (top < 1)
    ):
        raise InputError(
            f"`top` must be an integer >= 1. Received: top={top!r}"
        )
    if top > 1 and (n > max_exact_tasks or not scores.exact_blocks):
        raise InputError(
            "`top` > 1 is solved exactly by the dynamic program, which "
            f"allows at most max_exact_tasks={max_exact_tasks} tasks. "
            f"Received: top={top} for {n} tasks (use top=1, or raise "
            "max_exact_tasks: its time grows as 3^n)"
        )


def top_groupings(tasks, scores, num_groups, top):
    """The groupings of the best partitions, `top` distinct ones.

    A candidate is a partition of the tasks into at most `num_groups`
    blocks (the tasks each network serves), each block with its best
    helpers, valued like the optimum (`_solvers.top_partitions`).
    Partitions are taken best first and turned into their groupings
    (`build_grouping`); one whose groups repeat an earlier grouping is
    skipped, until `top` distinct groupings are found or no partition is
    left. Groupings that differ from a candidate only in a helper are not
    candidates: the list spans different ways of sharing networks. The
    first is the optimum of `select_groups`.
    """
    values = scores.blocks.all_values()
    wanted = top
    while True:
        partitions = _solvers.top_partitions(
            scores.n, values, num_groups, wanted
        )
        found = {}
        for blocks, _ in partitions:
            grouping = _from_blocks(
                tasks,
                scores,
                blocks,
                num_groups,
                "separable" if num_groups >= scores.n else "dynamic_program",
            )
            grouping = dataclasses.replace(
                grouping, upper_bound=grouping.score
            )
            found.setdefault(grouping.groups, grouping)
            if len(found) == top:
                return tuple(found.values())
        if len(partitions) < wanted:
            return tuple(found.values())
        wanted *= 2


def select_groups(
    affinity: pd.DataFrame,
    num_groups: int,
    *,
    normalize: bool = False,
    allow_singletons: bool = False,
    max_group_size: int | None = None,
    max_exact_tasks: int = 16,
    max_proven_tasks: int = 24,
    search_restarts: int = 16,
    time_limit: float | None = None,
    progress: Callable[[str], None] | None = None,
    top: int = 1,
) -> "Grouping | list[Grouping]":
    r"""Chooses at most `num_groups` task groups that maximise served affinity.

    With tasks V, affinities Z (`affinity.loc[b, a]` = Z(b→a), row = source,
    column = target) and a budget k, find groups G_1..G_m ⊆ V, m <= k, and a
    serving map σ: V → {1..m} with a ∈ G_σ(a), maximising

        (1/|V|) Σ_a s(a, G_σ(a)),  s(a, G) = mean_{b ∈ G, b ≠ a} Z(b→a).

    Groups may overlap: a task can be in a group only to help the others and
    be served by another one. Each task is served by the chosen group where
    it scores highest, and a group is only chosen if it serves some task.
    Groups of one task are forbidden unless `allow_singletons`, where
    s(a, {a}) = Z(a→a) (meaningful for affinities measured on held-out
    data). With `normalize=True` every column is divided by its diagonal,
    s(a, G) = mean_b Z(b→a) / Z(a→a): this maximises the same quantity whose
    complement the transference paper minimises (t̂(b, a) = 1 − t(b, a) /
    t(a, a)), so `score` is 1 − the mean normalised t̂ and a singleton scores
    1. The optimum never decreases with `num_groups`; a budget of at least
    one group per task lets every task have its best group (the unlimited
    optimum), larger budgets change nothing.

    Up to `max_exact_tasks` tasks the problem is solved exactly: the tasks a
    group serves form a block, blocks partition the tasks, and each of the
    2^n − 1 blocks is valued with its best helpers (one sort); a dynamic
    program over subsets then finds the best partition into at most k
    blocks (about k·3^n/2 additions: 16 tasks take about a second).
    Beyond, the same set-partitioning problem is solved by column
    generation (`_columns`, HiGHS) from a local-search incumbent (iterated
    local search, `search_restarts` restarts): pricing searches groups by
    branch and bound (`_pricing`), never the 2^n blocks, and every finished
    pricing round proves a bound (the incumbent is `optimal` once the bound
    meets it). Up to `max_proven_tasks` (24) it runs to the proof, with
    reduced-cost fixing over all 2^n blocks if the LP leaves a gap; beyond,
    it runs until `time_limit`, or without one for a fixed number of
    branch-and-bound nodes (a few seconds, the same on every machine), and
    `upper_bound` is the best bound proven: that of the column
    generation, or of a size-aware LP relaxation (each task served in a
    group of m tasks scores at most the mean of its m − 1 largest incoming
    affinities) when it is lower or no pricing round finished (`method`
    is then "local_search").

    Ties are broken deterministically: equal input gives equal output (the
    dynamic program keeps the first maximum in bitmask order, see
    `_solvers.solve_partition_dp`; the local search uses a fixed
    seed). Within a grouping, a block's group is the smallest one reaching
    its value, helpers are taken by decreasing affinity then increasing
    input position, each task is served by the first of its best groups,
    and groups are sorted by their members'
    input positions.

    Args:
        affinity: Square `pandas.DataFrame`, index = source tasks, columns =
            the same target tasks.
        num_groups: The budget k, an integer >= 1.
        normalize: Divide each target column by its self-affinity, which
            must then be positive.
        allow_singletons: Allow one-task groups, scored by self-affinity.
        max_group_size: Optional largest number of tasks in a group.
        max_exact_tasks: Largest task count solved by the dynamic program.
        max_proven_tasks: Largest task count whose proof runs to the end
            when there is no `time_limit`.
        search_restarts: Restarts of the local search (large task counts)
            when there is no `time_limit`.
        time_limit: None, or seconds the search may use (beyond the
            dynamic program): the proof stops then, returning the best
            grouping and bound found, with `optimal` and `upper_bound` true
            to what was proven.
        progress: None, or a callable receiving one-line progress messages
            (current score and bound) during long searches.
        top: How many groupings to return. With `top` > 1, the groupings
            of the best partitions of the tasks into served blocks, `top`
            distinct ones, best first, exact (`top_groupings`); up to
            `max_exact_tasks` tasks only.
            Fewer come back when fewer exist. These are the candidates
            that trained networks then judge (`tag_keras.train`).

    Returns:
        A `Grouping`; with `top` > 1, a tuple of them, best first.

    Example:

    >>> import pandas as pd
    >>> z = pd.DataFrame([[1., .9, .0], [.8, 1., .1], [.0, .2, 1.]],
    ...                  index=list("abc"), columns=list("abc"))
    >>> select_groups(z, 1).groups
    (('a', 'b', 'c'),)
    >>> select_groups(z, 2).groups
    (('a', 'b'), ('b', 'c'))

    References:
        Fifty et al., "Efficiently Identifying Task Groupings for Multi-Task
        Learning", NeurIPS 2021. Standley et al., "Which Tasks Should Be
        Learned Together in Multi-task Learning?", ICML 2020.
    """
    tasks, z = validate_affinity(affinity)
    n = len(tasks)
    if n == 0 or (n == 1 and not allow_singletons):
        raise InputError(
            "`affinity` needs at least two tasks (one with "
            f"allow_singletons=True). Received: tasks={tasks}"
        )
    max_size = _check_budget(num_groups, n, max_group_size, allow_singletons)
    _check_time_limit(time_limit)
    if normalize:
        z = _normalized(z, tasks)
    scores = _scores.Scores(
        z, max_size, singles=z.diagonal() if allow_singletons else None
    )
    _check_top(top, n, max_exact_tasks, scores)
    if top > 1:
        return top_groupings(tasks, scores, num_groups, top)
    return solve(
        tasks,
        scores,
        num_groups,
        max_exact_tasks=max_exact_tasks,
        max_proven_tasks=max_proven_tasks,
        search_restarts=search_restarts,
        time_limit=time_limit,
        progress=progress,
    )
