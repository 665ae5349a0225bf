"""One path from a measured input and budgets to groupings and a document.

`choose_groups` is what `tag-select`, the experiment pipeline, the HOA
baseline and the demo all call: it selects each budget's grouping from a
pair-affinity matrix, from group-source affinities or from trained
networks' losses (HOA), times each selection, optionally adds each
budget's best distinct groupings (candidates for `tag-train`) and the
stability of the affinity structure, and builds the validated groups
document. Pure NumPy and pandas, like the rest of `tag_keras.select`.
"""

from __future__ import annotations

import dataclasses
import numbers
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tag_keras._errors import InputError
from tag_keras.select import document as document_lib
from tag_keras.select import group_affinity as group_lib
from tag_keras.select import grouping as grouping_lib
from tag_keras.select import performance as performance_lib

#: The inputs `choose_groups(mode=...)` reads, with their selectors.
MODES: dict[str, Callable[..., Any]] = {
    "affinity": grouping_lib.select_groups,
    "group_affinity": group_lib.select_groups_from_group_affinity,
    "performance": performance_lib.select_groups_from_performance,
}


@dataclasses.dataclass(frozen=True)
class Selection:
    """Every budget's choice from one input.

    Attributes:
        tasks: The task names, in the input's order.
        groupings: One `Grouping` per budget, in `budgets` order.
        seconds: Budget -> wall seconds its selection took.
        candidates: Per budget, its best distinct groupings (best first),
            or None when not asked for (`top=1`).
        stabilities: Per budget, the `stability.Stability` of the affinity
            structure, or None when no per-step table was given.
        document: The groups document (`tag_keras.select.document`),
            validated, ready for `write_groups`.
    """

    tasks: list
    groupings: list
    seconds: dict
    candidates: list | None
    stabilities: list | None
    document: dict

    @property
    def budgets(self) -> list:
        """The budgets, in the order of `groupings`."""
        return [g.num_groups for g in self.groupings]


def choose_groups(
    source: pd.DataFrame,
    budgets: Sequence[int],
    *,
    mode: str = "affinity",
    top: int = 1,
    steps: pd.DataFrame | None = None,
    resamples: int = 200,
    seed: int = 0,
    time_limit: float | None = None,
    progress: Callable[[str], None] | None = None,
    record: dict | None = None,
    **options: Any,
) -> Selection:
    """Selects each budget's grouping from `source`; builds the document.

    Args:
        source: The input: an affinity matrix (`mode="affinity"`, as
            `read_affinity` returns), a group-affinity table
            (`"group_affinity"`, `read_group_affinity`) or a performance
            table (`"performance"`, HOA, `read_performance`).
        budgets: Numbers of networks, each an integer >= 1; repeated ones
            are solved once, and the results come in increasing order.
        mode: One of `MODES`.
        top: With `mode="affinity"`, also find each budget's `top` best
            distinct groupings (`select_groups(top=...)`), written as the
            document's `"candidates"`.
        steps: With `mode="affinity"`, the per-step table
            (`affinity_steps.csv`): each result then carries the stability
            of the affinity structure from `resamples` resamples.
        resamples: Stability resamples (>= 10).
        seed: Seed of the stability resamples.
        time_limit: Seconds per budget for the search beyond the exact
            table (see `select_groups`).
        progress: Called with one line per search step (see
            `select_groups`).
        record: More JSON-ready settings to record in the document (for
            example HOA's `value="validation_loss"`).
        **options: The selector's options (`normalize`,
            `allow_singletons`, `max_group_size`, `half_size_singles`),
            recorded in the document too.

    Returns:
        A `Selection`.

    Raises:
        ValueError: On an unknown mode, a bad budget, candidates or
            stability asked for an input that is not an affinity matrix,
            or any error of the selector or of the document's validation.
    """
    if mode not in MODES:
        raise InputError(
            f"`mode` must be one of {list(MODES)}. Received: mode={mode!r}"
        )
    budgets = _budgets(budgets)
    if mode != "affinity" and (top > 1 or steps is not None):
        raise InputError(
            "Candidates (`top`) and stability (`steps`) need an affinity "
            f"matrix (mode='affinity'). Received: mode={mode!r}, top={top}, "
            f"steps={'given' if steps is not None else None}"
        )
    selector = MODES[mode]
    search = {"time_limit": time_limit, "progress": progress}
    groupings, seconds = [], {}
    for budget in budgets:
        start = time.perf_counter()
        groupings.append(selector(source, budget, **options, **search))
        seconds[budget] = time.perf_counter() - start
    tasks = list(groupings[0].serve)
    candidates = None
    if top > 1:
        candidates = [
            grouping_lib.select_groups(source, budget, top=top, **options)
            for budget in budgets
        ]
    stabilities = None
    if steps is not None:
        from tag_keras.select import stability as stability_lib

        assessed = stability_lib.assess(
            steps,
            budgets,
            tasks=tasks,
            resamples=resamples,
            seed=seed,
            **options,
        )
        stabilities = [assessed[b][1] for b in budgets]
    settings = {"mode": mode, **_recordable(options), **(record or {})}
    document = document_lib.groups_document(
        tasks,
        groupings,
        stabilities=stabilities,
        candidates=candidates,
        **settings,
    )
    return Selection(
        tasks, groupings, seconds, candidates, stabilities, document
    )


def _budgets(values):
    budgets = []
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or value < 1
        ):
            raise InputError(
                "Each budget must be an integer >= 1. "
                f"Received: budgets={list(values)!r}"
            )
        budgets.append(int(value))
    if not budgets:
        raise InputError("Give at least one budget. Received: budgets=[]")
    return sorted(set(budgets))


def _recordable(options):
    """The options a JSON document can record (tables are left out)."""
    return {
        k: v for k, v in options.items() if not isinstance(v, pd.DataFrame)
    }
