"""One grouping against the all-task network: three answers with a margin.

`compare` takes the paired differences `[seeds, tasks, examples]` (the
grouping's per-example metric minus the all-task network's, NaN where an
example is not labelled) and answers, with one-sided bounds at level
1 − alpha / comparisons (`tag_keras.train.statistics`):

* **split**: `high < 0` and `low <= -margin`: the split is shown better,
  and its gain is not shown to be below the margin;
* **keep together**: `low > -margin`: any gain from splitting is shown to
  be below the margin; "all-task better" when `low > 0`, else "within
  the margin";
* **undecided**: otherwise. Then `seeds_needed` says at how many seeds
  the answer would be decided with 80% probability if the difference
  stayed at its estimate (conditional power from the run's own variance
  components), or `validation_factor` how many times more validation
  examples would, where more seeds alone cannot.

The margin is the smallest gain worth more networks, in the metric's
units. Those planning figures are estimates: a seed variance from 2
degrees of freedom is uncertain by a factor of 10 or more, so
`seeds_needed_range` gives them again at the ends of the seed variance's
80% interval. An undecided answer is never evidence of no effect.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats as scipy_stats

from tag_keras.train import statistics

SPLIT = "split"
KEEP_TOGETHER = "keep together"
UNDECIDED = "undecided"
#: The three answers, in the order they are checked.
ANSWERS = (SPLIT, KEEP_TOGETHER, UNDECIDED)
#: `Comparison.answer_detail` values.
SPLIT_BETTER = "split better"
ALL_TASK_BETTER = "all-task better"
WITHIN_MARGIN = "within the margin"
NOT_SHOWN = "not shown either way"
#: A standard error at most this share of max(1, |D|) is round-off, not
#: variation (float32 keeps about 7 digits).
NO_VARIATION_SE = 1e-6
#: The detail of an undecided answer whose differences do not vary.
NO_VARIATION = (
    "the differences do not vary across examples and seeds, "
    "so no variance can be estimated; add validation examples "
    "or seeds"
)

#: The probability a planned run must reach to count as deciding.
POWER = 0.8
#: The most seeds `seeds_needed` looks at; beyond, it is null.
MAX_PLANNED_SEEDS = 1000
#: The largest `validation_factor` looked at; beyond, it is null.
MAX_VALIDATION_FACTOR = 1000.0


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The paired comparison of a grouping with the all-task network.

    Attributes:
        difference: D, the grouping's summed metric minus the all-task
            network's, mean over seeds (negative: the split is better).
        low, high: One-sided bounds of D, each at level 1 − alpha /
            comparisons.
        standard_error: The standard error of D.
        df: Its Welch–Satterthwaite degrees of freedom.
        seed_variance, example_variance, interaction_variance: The
            variance components of one example's contribution.
        answer: "split", "keep together" or "undecided".
        answer_detail: "split better", "all-task better", "within the
            margin" or "not shown either way".
        margin: The smallest gain worth splitting for.
        alpha, comparisons: The error rate and how many tests share it.
        seeds, examples: The design compared.
        seeds_needed: For "undecided": the seeds at which the answer
            would be decided with 80% probability if D stayed at its
            estimate; None when more seeds cannot decide it.
        seeds_needed_range: `seeds_needed` at the ends of the seed
            variance's 80% interval (None for an end more seeds cannot
            reach); None unless undecided.
        validation_factor: For "undecided": how many times more
            validation examples would decide it at the current seeds with
            80% probability; None when more examples alone cannot.
    """

    difference: float
    low: float
    high: float
    standard_error: float
    df: float
    seed_variance: float
    example_variance: float
    interaction_variance: float
    answer: str
    answer_detail: str
    margin: float
    alpha: float
    comparisons: int
    seeds: int
    examples: int
    seeds_needed: int | None = None
    seeds_needed_range: tuple | None = None
    validation_factor: float | None = None

    def what_would_decide(self) -> str:
        """One line: what would settle an undecided answer ("" if
        decided)."""
        if self.answer != UNDECIDED:
            return ""
        if self.answer_detail == NO_VARIATION:
            return NO_VARIATION
        if self.seeds_needed is None:
            seeds = "more seeds alone cannot (the example part is too large)"
        else:
            seeds = f"about {self.seeds_needed} seeds"
            low, high = self.seeds_needed_range or (
                self.seeds_needed,
                self.seeds_needed,
            )
            if (low, high) != (self.seeds_needed, self.seeds_needed):
                top = (
                    high
                    if high is not None
                    else (f"more than {MAX_PLANNED_SEEDS}")
                )
                seeds += (
                    f" (between {low} and {top} given the seed "
                    "variance's uncertainty)"
                )
        if self.validation_factor is not None:
            examples = (
                f"{self.validation_factor:g}x the validation "
                "examples at these seeds"
            )
        elif self.seeds_needed is None:
            examples = "more validation examples alone cannot either"
        else:
            examples = None
        parts = [p for p in (seeds, examples) if p]
        return (
            "would be decided with 80% probability, if the difference "
            "stayed at its estimate, by " + "; or ".join(parts)
        )


def compare(
    differences: np.ndarray,
    *,
    margin: float,
    alpha: float = 0.025,
    comparisons: int = 1,
) -> Comparison:
    """The three-way answer for paired differences (see the module).

    Args:
        differences: `[seeds, tasks, examples]`, the grouping's per-example
            metric minus the all-task network's, NaN where an example has
            no label for a task.
        margin: The smallest gain worth more networks, > 0, in the
            metric's units (summed over tasks).
        alpha: The one-sided error rate of each answer.
        comparisons: How many tests share `alpha` (Bonferroni): every
            candidate of every budget that can become the answer, times
            the looks of a sequential run.

    Returns:
        A `Comparison`.

    Raises:
        ValueError: Fewer than 2 seeds or 2 examples, a bad `margin`,
            `alpha` or `comparisons`, or no task with a labelled example.
    """
    d = np.asarray(differences, float)
    if d.ndim != 3:
        raise ValueError(
            "`differences` must be [seeds, tasks, examples]. "
            f"Received: shape {d.shape}"
        )
    if d.shape[0] < 2:
        raise ValueError(
            "Comparing needs at least 2 seeds: with one, the seed variance "
            "cannot be estimated. Received: 1 seed; train more seeds."
        )
    if d.shape[2] < 2:
        raise ValueError(
            "Comparing needs at least 2 validation examples: with one, the "
            f"example variance cannot be estimated. Received: {d.shape[2]}"
        )
    _check_settings(margin, alpha, comparisons)
    x = statistics.contributions(d)
    if x is None:
        raise ValueError(
            "No task has a labelled example in `differences`; "
            "nothing can be compared."
        )
    num_seeds, num_examples = x.shape
    mean, ms_seed, ms_example, ms_residual = statistics.mean_squares(x)
    level = 1 - alpha / comparisons
    low, high, se, df, parts = statistics.interval(
        mean, ms_seed, ms_example, ms_residual, num_seeds, num_examples, level
    )
    seed, example, interaction = (float(v) for v in parts)
    answer, detail = answer_of(float(low), float(high), margin)
    planned = {}
    if not se > NO_VARIATION_SE * max(1.0, abs(float(mean))):
        # The differences do not vary (beyond float32 round-off): no
        # variance can be estimated and nothing bounded, however large
        # the difference looks.
        answer, detail = UNDECIDED, NO_VARIATION
    elif answer == UNDECIDED:
        planned = _plan(
            mean,
            margin,
            level,
            seed,
            example,
            interaction,
            num_seeds,
            num_examples,
            ms_seed,
        )
    return Comparison(
        difference=mean,
        low=float(low),
        high=float(high),
        standard_error=float(se),
        df=float(df),
        seed_variance=seed,
        example_variance=example,
        interaction_variance=interaction,
        answer=answer,
        answer_detail=detail,
        margin=float(margin),
        alpha=float(alpha),
        comparisons=int(comparisons),
        seeds=num_seeds,
        examples=num_examples,
        **planned,
    )


def answer_of(low: float, high: float, margin: float) -> tuple[str, str]:
    """`(answer, answer_detail)` from the bounds (see the module)."""
    if high < 0 and low <= -margin:
        return SPLIT, SPLIT_BETTER
    if low > -margin:
        return KEEP_TOGETHER, ALL_TASK_BETTER if low > 0 else WITHIN_MARGIN
    return UNDECIDED, NOT_SHOWN


def answers(low, high, margin):
    """`answer_of` on arrays: an array of answer strings."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    return np.where(
        (high < 0) & (low <= -margin),
        SPLIT,
        np.where(low > -margin, KEEP_TOGETHER, UNDECIDED),
    )


#: Simulated runs behind each planned probability (fixed seed, so the
#: planning figures repeat).
PLANNING_DRAWS = 4000


def decided_probability(
    difference,
    margin,
    level,
    seed,
    example,
    interaction,
    num_seeds,
    num_examples,
    *,
    draws=PLANNING_DRAWS,
    rng_seed=0,
):
    """The probability that a run of `num_seeds` × `num_examples` decides
    (split or keep together) when the true difference is `difference`
    and the variance components are as given.

    Simulated from the exact distributions of the normal crossed model:
    the mean is normal, and the three mean squares are independent
    scaled chi-squares, so the randomness of the standard error and its
    degrees of freedom is part of the answer.
    """
    s, n = int(num_seeds), int(num_examples)
    rng = np.random.default_rng(rng_seed)
    variance, _ = statistics.variance_and_df(seed, example, interaction, s, n)
    mean = difference + np.sqrt(variance) * rng.standard_normal(draws)
    dfs = (s - 1, n - 1, (s - 1) * (n - 1))
    expected = (interaction + n * seed, interaction + s * example, interaction)
    ms = [e * rng.chisquare(f, draws) / f for e, f in zip(expected, dfs)]
    low, high, *_ = statistics.interval(mean, *ms, s, n, level)
    return float(np.mean(answers(low, high, margin) != UNDECIDED))


def _smallest(decides, low, high):
    """The smallest whole number in (low, high] where `decides` holds,
    by bisection (the power grows with the design), or None."""
    if not decides(high):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if decides(middle) else (middle, high)
    return high


def _plan(
    mean,
    margin,
    level,
    seed,
    example,
    interaction,
    num_seeds,
    num_examples,
    ms_seed,
):
    """`seeds_needed`, its range, and `validation_factor`."""

    def seeds_for(seed_variance):
        return _smallest(
            lambda more: (
                decided_probability(
                    mean,
                    margin,
                    level,
                    seed_variance,
                    example,
                    interaction,
                    more,
                    num_examples,
                )
                >= POWER
            ),
            num_seeds,
            MAX_PLANNED_SEEDS,
        )

    needed = seeds_for(seed)
    # The seed variance's 80% interval: MS_seed ~ E · χ²_{S-1} / (S - 1).
    dof = num_seeds - 1
    ends = [
        max(dof * ms_seed / scipy_stats.chi2.ppf(q, dof) - interaction, 0.0)
        / num_examples
        for q in (0.9, 0.1)
    ]
    spread = (seeds_for(ends[0]), seeds_for(ends[1]))
    # Validation examples in steps of 1% of today's.
    steps = _smallest(
        lambda k: (
            decided_probability(
                mean,
                margin,
                level,
                seed,
                example,
                interaction,
                num_seeds,
                num_examples * k / 100,
            )
            >= POWER
        ),
        100,
        int(100 * MAX_VALIDATION_FACTOR),
    )
    factor = None if steps is None else float(f"{steps / 100:.2g}")
    return {
        "seeds_needed": needed,
        "seeds_needed_range": spread,
        "validation_factor": factor,
    }


def check_margin(margin):
    """Raises a one-line `ValueError` unless `margin` is a finite number
    above 0."""
    try:
        value = float(margin)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(margin, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(
            "`margin` must be a positive number in the metric's units (the "
            f"smallest gain worth splitting for). Received: margin={margin!r}"
        )


def _check_settings(margin, alpha, comparisons):
    check_margin(margin)
    if not 0 < alpha < 0.5:
        raise ValueError(
            f"`alpha` must be in (0, 0.5). Received: alpha={alpha!r}"
        )
    if (
        isinstance(comparisons, bool)
        or not isinstance(comparisons, (int, np.integer))
        or comparisons < 1
    ):
        raise ValueError(
            "`comparisons` must be a whole number >= 1. "
            f"Received: comparisons={comparisons!r}"
        )
