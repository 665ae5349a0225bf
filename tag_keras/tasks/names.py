"""Task names, checked once for every owner of a task list."""

from __future__ import annotations

from collections.abc import Iterable

#: Separator of task names in a group's label (`"a|b"`, as written in
#: `group_affinity.csv`, `performance.csv` and the groups document).
SEPARATOR = "|"


def check_task_names(
    names: Iterable[str],
    *,
    argument: str = "task_names",
    minimum: int = 1,
    groups: bool = False,
) -> tuple:
    """The task names as a tuple, or a one-line error naming `argument`.

    Args:
        names: The names, in matrix order.
        argument: The argument the names came from, for the error.
        minimum: How many tasks are needed at least.
        groups: Whether groups of these tasks are written as names joined
            by `SEPARATOR`, so that no name may contain it.

    Raises:
        TypeError: if `names` is a string or holds a non-string.
        ValueError: if names repeat, are too few, or (with `groups`) hold
            the separator.
    """
    if not isinstance(names, str):
        names = list(names)
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"`{argument}` must be a list of task names "
            f"(strings). Received: {argument}={names!r}."
        )
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(
            f"`{argument}` must be distinct; {repeated} "
            f"repeat. Received: {argument}={names!r}."
        )
    if len(names) < minimum:
        count = {1: "one task", 2: "two tasks"}.get(
            minimum, f"{minimum} tasks"
        )
        raise ValueError(
            f"`{argument}` needs at least {count}. "
            f"Received: {argument}={names!r}."
        )
    joined = [n for n in names if SEPARATOR in n]
    if groups and joined:
        raise ValueError(
            "With group sources (`affinity_sources`, "
            "`affinity_random_subsets`) a group is written as its task "
            f"names joined by {SEPARATOR!r}, so no task name may contain "
            f"it: rename those outputs. Received: task names {joined}."
        )
    return tuple(names)
