"""How stable the affinity structure is: resampled groupings.

The matrix `select_groups` reads is a mean over measured steps; a different
run (or different steps) gives a different mean and maybe different
groups. From the per-step values (`affinity_steps.csv`) this module
estimates, for each budget:

* **stability**: resampling the measured steps in contiguous blocks (a
  moving-block bootstrap, which keeps the correlation of neighbouring
  steps), how often the chosen grouping recurs, and how often each task
  keeps the group that serves it;
* **the predicted improvement** over serving every task from the all-task
  group (the mean served score minus the mean score in the all-task group),
  estimated **out of sample**: the steps are split into blocks, the
  grouping is chosen on a random half of the blocks and scored on the other
  half, many times. Choosing the best of many groupings on the same data
  that scores it always looks like an improvement, even on pure noise; a
  grouping chosen on one half and scored on the other does not.
* **the affinity structure**: "stable" when the interval of that
  out-of-sample improvement (the 2.5 and 97.5 percentiles over the
  repetitions) lies above zero, otherwise "unclear". This says whether
  the affinities hold a grouping structure beyond their noise, nothing
  more: it is not a decision to split. Whether split networks beat one
  all-task network only trained networks can tell, on validation data
  (`tag_keras.train.decide`, `tag-train`).

Pure NumPy and pandas, like the rest of `tag_keras.select`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tag_keras._errors import InputError
from tag_keras.select import grouping as grouping_lib

STABLE = "stable"
UNCLEAR = "unclear"
_COLUMNS = ("step", "source", "target", "affinity")


@dataclasses.dataclass(frozen=True)
class Stability:
    """The stability of one budget's grouping and of the affinity structure.

    Attributes:
        affinity_structure: `"stable"` (the out-of-sample improvement's
            interval lies above zero) or `"unclear"`.
        grouping_recurrence: Share of the resamples choosing the same groups
            and serving every task from the same group.
        task_recurrence: Task -> share of the resamples in which the task is
            served by the same group of tasks.
        improvement: Out-of-sample improvement over the all-task group
            (mean over repetitions), in affinity units.
        improvement_low: Its 2.5 percentile over the repetitions.
        improvement_high: Its 97.5 percentile.
        in_sample_improvement: The same on all steps, for the chosen
            grouping (optimistic: chosen and scored on the same data).
        resamples: Number of resamples (and of split repetitions).
        block_size: Measured steps per block.
        steps: Measured steps used.
        seed: Seed of the resampling.
    """

    affinity_structure: str
    grouping_recurrence: float
    task_recurrence: dict
    improvement: float
    improvement_low: float
    improvement_high: float
    in_sample_improvement: float
    resamples: int
    block_size: int
    steps: int
    seed: int

    def to_dict(self) -> dict:
        """JSON-ready (the `"stability"` object of the groups document)."""
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k != "affinity_structure"
        }

    def describe(self) -> str:
        """Two lines for the printed table."""
        tasks = ", ".join(
            f"{t} {share:.0%}" for t, share in self.task_recurrence.items()
        )
        return (
            f"  affinity structure: {self.affinity_structure} "
            f"(out-of-sample improvement over "
            f"the all-task group {self.improvement:+.4g}, 95% interval "
            f"[{self.improvement_low:+.4g}, {self.improvement_high:+.4g}]"
            f"; in sample {self.in_sample_improvement:+.4g})\n"
            f"  stability: the grouping recurs in "
            f"{self.grouping_recurrence:.0%} of {self.resamples} "
            f"resamples of {self.steps} steps (blocks of "
            f"{self.block_size}); each task keeps its group: {tasks}"
        )


def step_matrices(steps, tasks=None):
    """`(tasks, [T, n, n] array)` from a per-step long table.

    Args:
        steps: DataFrame with columns step, source, target, affinity (as
            `affinity_steps.csv`); pairs absent from a step are NaN.
        tasks: Optional task order (default: order of first appearance).
    """
    missing = [c for c in _COLUMNS if c not in steps.columns]
    if missing:
        raise InputError(
            f"The per-step table lacks the columns {missing}; expected "
            f"{list(_COLUMNS)} (affinity_steps.csv). Received: "
            f"columns={list(steps.columns)}"
        )
    if steps.empty:
        raise InputError(
            "The per-step table has no rows: no step was measured."
        )
    if tasks is None:
        tasks = list(dict.fromkeys([*steps["source"], *steps["target"]]))
    tasks = [str(t) for t in tasks]
    index = {t: i for i, t in enumerate(tasks)}
    named = set(map(str, steps["source"])) | set(map(str, steps["target"]))
    unknown = sorted(named - set(tasks))
    if unknown:
        raise InputError(
            f"The per-step table names tasks {unknown} that "
            f"the matrix lacks. Matrix tasks: {tasks}"
        )
    order = {s: k for k, s in enumerate(sorted(steps["step"].unique()))}
    values = np.full((len(order), len(tasks), len(tasks)), np.nan)
    values[
        [order[s] for s in steps["step"]],
        [index[str(t)] for t in steps["source"]],
        [index[str(t)] for t in steps["target"]],
    ] = steps["affinity"]
    return tasks, values


def assess(
    steps: pd.DataFrame,
    num_groups: int | Sequence[int],
    *,
    tasks: Sequence[str] | None = None,
    resamples: int = 200,
    block_size: int | None = None,
    seed: int = 0,
    **select_options: Any,
) -> dict:
    """Stability and verdict of `select_groups` for each budget.

    Args:
        steps: The per-step long table (`affinity_steps.csv`).
        num_groups: A budget or a list of budgets.
        tasks: Optional task order.
        resamples: Bootstrap resamples and split repetitions (>= 10).
        block_size: Measured steps per block (default: the cube root of
            the number of measured steps, at least 1).
        seed: Seed of the resampling; equal inputs give equal outputs.
        **select_options: Passed to `select_groups` (e.g.
            `allow_singletons`, `max_group_size`).

    Returns:
        `{budget: (Grouping chosen on all steps, Stability)}`.
    """
    budgets = (
        [num_groups]
        if isinstance(num_groups, (int, np.integer))
        else list(num_groups)
    )
    if (
        isinstance(resamples, bool)
        or not isinstance(resamples, int)
        or (resamples < 10)
    ):
        raise InputError(
            "`resamples` must be an integer >= 10. Received: "
            f"resamples={resamples!r}"
        )
    tasks, values = step_matrices(steps, tasks)
    blocks = _blocks(len(values), block_size)
    rng = np.random.default_rng(seed)
    full = _mean(values)
    results = {}
    for budget in budgets:
        chosen = _select(full, tasks, budget, select_options)
        recurrence, per_task = _recurrence(
            values,
            full,
            blocks,
            tasks,
            budget,
            chosen,
            rng,
            resamples,
            select_options,
        )
        gains = _out_of_sample(
            values, full, blocks, tasks, budget, rng, resamples, select_options
        )
        low, high = np.percentile(gains, [2.5, 97.5])
        results[budget] = (
            chosen,
            Stability(
                affinity_structure=STABLE if low > 0 else UNCLEAR,
                grouping_recurrence=recurrence,
                task_recurrence=per_task,
                improvement=float(np.mean(gains)),
                improvement_low=float(low),
                improvement_high=float(high),
                in_sample_improvement=improvement(full, tasks, chosen),
                resamples=resamples,
                block_size=len(blocks[0]),
                steps=len(values),
                seed=seed,
            ),
        )
    return results


def improvement(z, tasks, grouping):
    """Mean served score of `grouping` on `z` minus the all-task group's."""
    index = {t: i for i, t in enumerate(tasks)}
    everyone = tuple(range(len(tasks)))
    served = [
        grouping_lib.task_score(
            z, index[t], tuple(index[m] for m in grouping.groups[g])
        )
        for t, g in grouping.serve.items()
    ]
    together = [
        grouping_lib.task_score(z, i, everyone) for i in range(len(tasks))
    ]
    return float(np.mean(served) - np.mean(together))


def _blocks(count, block_size):
    if block_size is None:
        block_size = max(1, round(count ** (1 / 3)))
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, int)
        or (block_size < 1)
    ):
        raise InputError(
            "`block_size` must be an integer >= 1. Received: "
            f"block_size={block_size!r}"
        )
    if count < 2 * block_size:
        raise InputError(
            f"Stability needs at least two blocks of {block_size} measured "
            f"steps. Received: {count} measured steps (measure more often "
            "or train longer)"
        )
    return [
        list(range(s, min(s + block_size, count)))
        for s in range(0, count, block_size)
    ]


def _mean(values, fill=None):
    """Mean over steps; pairs never measured in them take `fill`'s value."""
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(values).sum(axis=0)
        sums = np.nansum(values, axis=0)
    missing = np.nan if fill is None else fill
    return np.where(counts > 0, sums / np.maximum(counts, 1), missing)


def _select(z, tasks, budget, options):
    frame = pd.DataFrame(z, index=tasks, columns=tasks)
    return grouping_lib.select_groups(frame, budget, **options)


def _signature(grouping):
    return frozenset(
        (t, frozenset(grouping.groups[g])) for t, g in grouping.serve.items()
    )


def _recurrence(
    values, full, blocks, tasks, budget, chosen, rng, resamples, options
):
    """Block-bootstrap shares: same grouping, and per task same group."""
    reference = dict(_signature(chosen))
    same, per_task = 0, dict.fromkeys(tasks, 0)
    for _ in range(resamples):
        picked = rng.integers(0, len(blocks), size=len(blocks))
        rows = [k for b in picked for k in blocks[b]]
        grouping = _select(_mean(values[rows], full), tasks, budget, options)
        signature = dict(_signature(grouping))
        same += signature == reference
        for task in tasks:
            per_task[task] += signature[task] == reference[task]
    return same / resamples, {t: c / resamples for t, c in per_task.items()}


def _out_of_sample(
    values, full, blocks, tasks, budget, rng, resamples, options
):
    """Improvements of groupings chosen on half the blocks, scored on the
    other half."""
    gains = []
    for _ in range(resamples):
        order = rng.permutation(len(blocks))
        half = len(blocks) // 2
        choose = [k for b in order[:half] for k in blocks[b]]
        score = [k for b in order[half:] for k in blocks[b]]
        chosen = _select(_mean(values[choose], full), tasks, budget, options)
        gains.append(improvement(_mean(values[score], full), tasks, chosen))
    return np.asarray(gains)
