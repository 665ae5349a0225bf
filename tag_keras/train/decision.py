"""The validated decision: split the tasks, keep them together, or not yet.

For each budget, the candidate groupings (the affinity's proposals) are
trained under the seeds, as is the all-task network. The candidate with
the lowest summed served validation metric is compared with the
all-task network, paired over validation examples and seeds
(`tag_keras.train.compare`), with one-sided bounds at level 1 − alpha /
comparisons, where comparisons counts every candidate of every budget
and every look. Each budget's answer is "split", "keep together" or
"undecided" against a margin, the smallest gain worth more networks
(default: 2% of the all-task network's summed validation metric).

**Seeds added until decided.** With `max_seeds` above the starting
seeds, the budgets are looked at after the first seeds and then at
planned looks (`planned_looks`: 3, 5, 8 from 3 seeds); after each look
only the budgets still undecided (and the all-task network) are trained
under the next seeds. A decided budget keeps its answer. Bonferroni over
the looks keeps each answer's error rate at most `alpha`.

**Overall.** "split" if any budget splits (the one with the lowest
difference among those is `best`), "keep together" only if every budget
keeps, otherwise "undecided".

Test numbers are computed alike at the same seeds and shown beside the
decision, never used in it. `difference` is grouping minus all-task, so
negative means the split is better.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from tag_keras.train import comparison as comparison_lib
from tag_keras.train import random_groupings
from tag_keras.train import statistics
from tag_keras.train.comparison import KEEP_TOGETHER
from tag_keras.train.comparison import SPLIT
from tag_keras.train.comparison import UNDECIDED

if TYPE_CHECKING:  # for annotations only
    from tag_keras.train.networks import GroupTrainer

#: What `decide(metric=...)` can decide on ("auto": error when every head
#: is a classifier, else loss).
METRICS = ("auto", "loss", "error")
#: The default margin: this share of the all-task network's summed
#: validation metric.
MARGIN_SHARE = 0.02
#: The all-task network's `Option.decision` (it is the reference).
REFERENCE = "reference"


@dataclasses.dataclass(frozen=True)
class Option:
    """One way of serving the tasks, compared with the all-task network.

    Attributes:
        num_groups: Budget (1 for the all-task network).
        groups: The groups (tuples of tasks).
        serve: Task -> index of the group serving it.
        decision: "split", "keep together" or "undecided" ("reference"
            for the all-task network itself).
        answer_detail: `Comparison.answer_detail`, or for "undecided" what
            would decide it.
        difference: Summed served validation `metric` minus the all-task
            network's (mean over seeds).
        low, high: One-sided bounds of `difference` at level 1 − alpha /
            comparisons.
        standard_error, df: The difference's SE and degrees of freedom.
        margin: The smallest gain worth splitting for (metric's units).
        seeds: How many seeds this option's comparison used.
        examples: How many validation examples it was compared on.
        seeds_needed, seeds_needed_range, validation_factor: For
            "undecided", the planning figures of `Comparison`.
        metric: What decides: "loss" or "error".
        comparisons: How many tests share alpha (candidates × looks).
        candidates: How many candidates it was chosen from; above 1 the
            difference is selected on the same data ("selected
            (optimistic)"), which the Bonferroni factor covers.
        other_metric, other_difference, other_low, other_high: The
            other metric's comparison at the same seeds (NaN where it is
            undefined); `disagreement` is True when the two metrics'
            bounds exclude zero in opposite directions.
        test_difference, test_low, test_high: The deciding metric on the
            test split at the same seeds (NaN without one); never used.
        error_difference, error_low, error_high: The validation error's
            comparison; `test_error_difference` the test error's.
        seed_variance, example_variance, interaction_variance: The
            components of the validation comparison.
        validation_total, test_total, test_error_total: Mean over seeds of
            the summed per-task mean loss (test error in %), with `*_se`
            their standard errors over seeds.
    """

    num_groups: int
    groups: tuple
    serve: dict
    decision: str
    answer_detail: str
    difference: float
    low: float
    high: float
    standard_error: float
    df: float
    margin: float
    seeds: int
    examples: int
    seeds_needed: int | None
    seeds_needed_range: tuple | None
    validation_factor: float | None
    metric: str
    comparisons: int
    candidates: int
    other_metric: str
    other_difference: float
    other_low: float
    other_high: float
    disagreement: bool
    test_difference: float
    test_low: float
    test_high: float
    error_difference: float
    error_low: float
    error_high: float
    test_error_difference: float
    seed_variance: float
    example_variance: float
    interaction_variance: float
    validation_total: float
    validation_total_se: float
    test_total: float
    test_total_se: float
    test_error_total: float
    test_error_total_se: float

    def to_dict(self) -> dict:
        """JSON-ready, finite numbers only (NaN becomes null)."""
        entry = dataclasses.asdict(self)
        entry["groups"] = [list(g) for g in self.groups]
        if self.seeds_needed_range is not None:
            entry["seeds_needed_range"] = list(self.seeds_needed_range)
        return {k: _finite(v) for k, v in entry.items()}


@dataclasses.dataclass(frozen=True)
class Decision:
    """The decision for every budget, and the answer overall.

    Attributes:
        answer: "split" if any budget splits, "keep together" if every
            budget keeps, else "undecided".
        all_tasks: The all-task network's `Option` (the reference).
        budgets: One `Option` per budget, its answer against all-task.
        best: The option the answer points to, whose `decision` is the
            answer: the split budget with the lowest difference, else the
            all-task network.
        random: Budget -> random groupings' `{"difference", "sampling_se",
            "test_difference", "test_error_difference", "partitions",
            "exact"}` at the first seeds, where they were trained.
        seeds: Every seed trained for the all-task network.
        alpha: Each answer's one-sided error rate, over all tests.
        margin: The margin every budget was judged against.
        metric: What decided: "loss" or "error".
        looks: The planned numbers of seeds at which budgets were looked
            at.
        baselines: Name -> `Option` of other ways of serving the tasks
            compared alike (e.g. "STL") at the first seeds; never `best`.
        early_stopping: Where early stopping read its data, as the
            trainer says (None: no early stopping).
    """

    answer: str
    all_tasks: Option
    budgets: tuple
    best: Option
    random: dict
    seeds: tuple
    alpha: float
    margin: float
    metric: str
    looks: tuple
    baselines: dict = dataclasses.field(default_factory=dict)
    early_stopping: str | None = None

    def to_dict(self) -> dict:
        """The `decision.json` document."""
        return {
            "answer": self.answer,
            "budgets": [o.to_dict() for o in self.budgets],
            "best": self.best.to_dict(),
            "all_tasks": self.all_tasks.to_dict(),
            "random": {
                str(k): {n: _finite(v) for n, v in r.items()}
                for k, r in self.random.items()
            },
            "baselines": {
                name: o.to_dict() for name, o in self.baselines.items()
            },
            "seeds": list(self.seeds),
            "alpha": self.alpha,
            "margin": _finite(self.margin),
            "metric": self.metric,
            "looks": list(self.looks),
            "early_stopping": self.early_stopping,
        }


def planned_looks(first: int, max_seeds: int | None) -> tuple:
    """The numbers of seeds at which budgets are looked at: `first`, then
    about 1.6 times the last (at least one more), up to `max_seeds`
    (3 -> 3, 5, 8; 2 -> 2, 3, 5, 8)."""
    if max_seeds is None or max_seeds <= first:
        return (first,)
    looks = [first]
    while looks[-1] < max_seeds:
        looks.append(
            min(max(looks[-1] + 1, round(looks[-1] * 1.6)), max_seeds)
        )
    return tuple(looks)


def more_seeds(seeds, count):
    """`seeds` extended to `count` seeds with the next unused integers."""
    seeds = list(seeds)
    following = max(seeds) + 1
    while len(seeds) < count:
        if following not in seeds:
            seeds.append(following)
        following += 1
    return seeds


def served(trainer, groups, serve, split, metric="loss", seeds=None):
    """`[seeds, tasks, examples]` of the tasks served by `groups`.

    Task t's row is the network of `groups[serve[t]]` at each seed, in
    the order of `trainer.tasks`.
    """
    index = 0 if metric == "loss" else 1
    seeds = trainer.seeds if seeds is None else seeds
    return np.stack(
        [
            np.stack(
                [
                    trainer.network(groups[serve[t]], s).outcomes[split][t][
                        index
                    ]
                    for t in trainer.tasks
                ]
            )
            for s in seeds
        ]
    )


def decide(
    trainer: GroupTrainer,
    candidates: dict,
    *,
    margin: float | None = None,
    alpha: float = 0.025,
    metric: str = "auto",
    max_seeds: int | None = None,
    random: dict | None = None,
    baselines: dict | None = None,
    log: Callable[[str], object] | None = None,
) -> Decision:
    """The validated decision for every budget.

    Args:
        trainer: A `GroupTrainer`; its `seeds` (at least 2) are the first
            seeds, and networks missing from it are trained.
        candidates: Budget -> list of candidates, the affinity's
            proposals, best first: `tag_keras.select.Candidate`s (as
            `GroupsDocument.candidates()` gives them) or `(groups, serve)`
            pairs.
        margin: The smallest gain worth more networks, in the metric's
            units (summed over tasks); None: 2% of the all-task network's
            summed validation metric at the first seeds.
        alpha: Each answer's one-sided error rate, shared (Bonferroni) by
            every candidate of every budget and every look.
        metric: What decides: "loss" (the summed compiled losses),
            "error" (the summed error rates; classification heads only)
            or "auto" (error when every head is a classifier, else loss).
        max_seeds: Add seeds, at `planned_looks`, to the budgets still
            undecided, up to this many (None: the trainer's seeds only).
        random: Optional budget -> `(partitions, exact)` of random
            groupings (`random_groupings.random_partitions`), trained at
            the first seeds.
        baselines: Optional name -> `(groups, serve)` compared with the
            all-task network alike at the first seeds, e.g. `{"STL":
            (((a,), (b,)), {a: 0, b: 1})}`; shown, never `best`.
        log: Called with one line per budget and look (None: silent).

    Returns:
        A `Decision`.
    """
    first = list(trainer.seeds)
    looks = _check_decide(metric, margin, alpha, max_seeds, len(first))
    log = log or (lambda line: None)
    every = tuple(trainer.tasks)
    one = ((every,), {t: 0 for t in every})
    needed = [every] + [
        g
        for options in candidates.values()
        for groups, _ in options
        for g in groups
    ]
    needed += [
        g
        for partitions, _ in (random or {}).values()
        for p in partitions
        for g in p
    ]
    needed += [g for groups, _ in (baselines or {}).values() for g in groups]
    trainer.train(needed, first)
    judge = _Judge(trainer, one, metric, margin, first)
    tests = sum(len(options) for options in candidates.values()) * len(looks)
    budgets = _sequential(
        trainer,
        judge,
        candidates,
        looks,
        tests,
        alpha,
        more_seeds(first, looks[-1]),
        log,
    )
    all_seeds = more_seeds(
        first, max(o.seeds for o in budgets) if budgets else len(first)
    )
    all_tasks = judge.reference_option(all_seeds)
    splits = [o for o in budgets if o.decision == SPLIT]
    if splits:
        answer = SPLIT
        best = min(splits, key=lambda o: o.difference)
    else:
        answer = (
            KEEP_TOGETHER
            if all(o.decision == KEEP_TOGETHER for o in budgets)
            else UNDECIDED
        )
        best = dataclasses.replace(all_tasks, decision=answer)
    random_rows = {
        budget: judge.random_row(partitions, exact, first)
        for budget, (partitions, exact) in (random or {}).items()
    }
    others = {
        name: judge.option(len(groups), groups, serve, first, alpha, 1, 1)
        for name, (groups, serve) in (baselines or {}).items()
    }
    return Decision(
        answer,
        all_tasks,
        tuple(budgets),
        best,
        random_rows,
        tuple(all_seeds),
        alpha,
        judge.margin,
        judge.metric,
        looks,
        others,
        trainer.early_stopping,
    )


def _check_decide(metric, margin, alpha, max_seeds, num_seeds):
    if metric not in METRICS:
        raise ValueError(
            f"`metric` must be one of {list(METRICS)}. "
            f"Received: metric={metric!r}"
        )
    if margin is not None:
        comparison_lib.check_margin(margin)
    if not 0 < alpha < 0.5:
        raise ValueError(
            f"`alpha` must be in (0, 0.5). Received: alpha={alpha!r}"
        )
    if num_seeds < 2:
        raise ValueError(
            "The decision needs at least 2 seeds: with one, the seed "
            "variance cannot be estimated. Received: seeds="
            f"{num_seeds} seed; give at least 2."
        )
    if max_seeds is not None and max_seeds < num_seeds:
        raise ValueError(
            "`max_seeds` must be at least the number of starting seeds. "
            f"Received: max_seeds={max_seeds} with {num_seeds} seeds"
        )
    return planned_looks(num_seeds, max_seeds)


def _sequential(trainer, judge, candidates, looks, tests, alpha, seeds, log):
    """Each budget's `Option`, looking at `looks` and training the next
    seeds only for the budgets still undecided."""
    pending = sorted(candidates)
    done = {}
    for number, look in enumerate(looks):
        now = seeds[:look]
        if number:
            groups = [tuple(trainer.tasks)] + [
                g
                for b in pending
                for groups, _ in candidates[b]
                for g in groups
            ]
            log(
                f"look {number + 1}/{len(looks)}: training {look} seeds for "
                f"the undecided budgets {pending}"
            )
            trainer.train(groups, now)
        for budget in list(pending):
            options = candidates[budget]
            scored = [
                judge.difference(g, s, "validation", judge.metric, now)
                for g, s in options
            ]
            groups, serve = options[int(np.argmin(scored))]
            option = judge.option(
                budget, groups, serve, now, alpha, tests, len(options)
            )
            last = number == len(looks) - 1
            if option.decision != UNDECIDED or last:
                done[budget] = option
                pending.remove(budget)
            log(
                f"{budget} networks at {look} seeds: {option.decision} "
                f"({option.difference:+.4g} [{option.low:+.4g}, "
                f"{option.high:+.4g}], margin {option.margin:.4g})"
            )
        if not pending:
            break
    return [done[b] for b in sorted(done)]


class _Judge:
    """Groupings against the all-task network `one`, on the trainer's
    trained networks: paired over seeds, validation and test, loss and
    error; resolves the metric and the margin at the first seeds."""

    def __init__(self, trainer, one, metric, margin, first):
        self.trainer, self.one = trainer, one
        self.has_test = "test" in trainer.splits
        self._references = {}
        errors = served(trainer, *one, "validation", "error", first)
        self.examples = errors.shape[2]
        classifiers = not np.isnan(errors).all(axis=(0, 2)).any()
        if metric == "error" and np.isnan(errors).all():
            raise ValueError(
                "metric='error' needs classification heads (an error per "
                "example); every task's validation error is undefined "
                "here. Use metric='loss' or 'auto'."
            )
        if metric == "auto":
            metric = "error" if classifiers else "loss"
        self.metric = metric
        self.other = "loss" if metric == "error" else "error"
        if margin is None:
            total = statistics.paired_statistic(
                served(trainer, *one, "validation", metric, first)
            )
            margin = MARGIN_SHARE * total
            if not margin > 0:
                raise ValueError(
                    "The default margin (2% of the all-task network's "
                    f"summed validation {metric}) is {margin!r}; give a "
                    "positive margin in the metric's units."
                )
        self.margin = float(margin)

    def differences(self, groups, serve, split, kind, seeds):
        """`[seeds, tasks, examples]` paired differences against the
        all-task network, or None where the split is missing."""
        if split == "test" and not self.has_test:
            return None
        return served(
            self.trainer, groups, serve, split, kind, seeds
        ) - self._reference(split, kind, seeds)

    def _reference(self, split, kind, seeds):
        """The all-task network's `served` values, stacked once per
        split, metric and seeds."""
        key = (split, kind, tuple(seeds))
        if key not in self._references:
            self._references[key] = served(
                self.trainer, *self.one, split, kind, seeds
            )
        return self._references[key]

    def difference(self, groups, serve, split, kind, seeds):
        """The paired mean difference (NaN where the split is missing)."""
        d = self.differences(groups, serve, split, kind, seeds)
        return math.nan if d is None else statistics.paired_statistic(d)

    def compare(self, groups, serve, split, kind, seeds, alpha, tests):
        """A `Comparison`, or None where the split or metric is missing."""
        d = self.differences(groups, serve, split, kind, seeds)
        if d is None or statistics.contributions(d) is None:
            return None
        return comparison_lib.compare(
            d, margin=self.margin, alpha=alpha, comparisons=tests
        )

    def option(self, budget, groups, serve, seeds, alpha, tests, candidates):
        """The `Option` of one grouping, decided on validation data."""
        main = self.compare(
            groups, serve, "validation", self.metric, seeds, alpha, tests
        )
        other = self.compare(
            groups, serve, "validation", self.other, seeds, alpha, tests
        )
        test = self.compare(
            groups, serve, "test", self.metric, seeds, alpha, 1
        )
        test_error = self.compare(
            groups, serve, "test", "error", seeds, alpha, 1
        )
        error = main if self.metric == "error" else other
        detail = main.answer_detail
        if main.answer == UNDECIDED:
            detail = main.what_would_decide()
        return Option(
            num_groups=budget,
            groups=tuple(tuple(g) for g in groups),
            serve=dict(serve),
            decision=main.answer,
            answer_detail=detail,
            difference=main.difference,
            low=main.low,
            high=main.high,
            standard_error=main.standard_error,
            df=main.df,
            margin=self.margin,
            seeds=len(seeds),
            examples=main.examples,
            seeds_needed=main.seeds_needed,
            seeds_needed_range=main.seeds_needed_range,
            validation_factor=main.validation_factor,
            metric=self.metric,
            comparisons=tests,
            candidates=candidates,
            other_metric=self.other,
            **_triple("other", other),
            disagreement=_disagree(main, other),
            **_triple("test", test),
            **_triple("error", error),
            test_error_difference=_triple("x", test_error)["x_difference"],
            seed_variance=main.seed_variance,
            example_variance=main.example_variance,
            interaction_variance=main.interaction_variance,
            **_totals(self.trainer, groups, serve, self.has_test, seeds),
        )

    def reference_option(self, seeds):
        """The all-task network's `Option`: difference 0 by definition."""
        nan = math.nan
        return Option(
            num_groups=1,
            groups=self.one[0],
            serve=dict(self.one[1]),
            decision=REFERENCE,
            answer_detail="",
            difference=0.0,
            low=0.0,
            high=0.0,
            standard_error=0.0,
            df=nan,
            margin=self.margin,
            seeds=len(seeds),
            examples=self.examples,
            seeds_needed=None,
            seeds_needed_range=None,
            validation_factor=None,
            metric=self.metric,
            comparisons=0,
            candidates=1,
            other_metric=self.other,
            other_difference=0.0,
            other_low=0.0,
            other_high=0.0,
            disagreement=False,
            test_difference=0.0 if self.has_test else nan,
            test_low=0.0 if self.has_test else nan,
            test_high=0.0 if self.has_test else nan,
            error_difference=0.0,
            error_low=0.0,
            error_high=0.0,
            test_error_difference=0.0 if self.has_test else nan,
            seed_variance=0.0,
            example_variance=0.0,
            interaction_variance=0.0,
            **_totals(self.trainer, *self.one, self.has_test, seeds),
        )

    def random_row(self, partitions, exact, seeds):
        """The expected difference of random groupings of one budget."""
        rows = np.asarray(
            [
                [
                    self.difference(
                        p,
                        {t: i for i, g in enumerate(p) for t in g},
                        split,
                        kind,
                        seeds,
                    )
                    for split, kind in (
                        ("validation", self.metric),
                        ("test", self.metric),
                        ("test", "error"),
                    )
                ]
                for p in partitions
            ]
        )
        mean, se = random_groupings.expectation(rows[:, 0], exact)
        return {
            "difference": mean,
            "sampling_se": se,
            "test_difference": float(rows[:, 1].mean()),
            "test_error_difference": float(rows[:, 2].mean()),
            "partitions": len(partitions),
            "exact": bool(exact),
        }


def _triple(name, comparison):
    """`{name_difference, name_low, name_high}` of a `Comparison` (NaN
    for None)."""
    if comparison is None:
        values = (math.nan,) * 3
    else:
        values = (comparison.difference, comparison.low, comparison.high)
    return dict(
        zip((f"{name}_difference", f"{name}_low", f"{name}_high"), values)
    )


def _disagree(main, other):
    """Whether the two metrics' bounds exclude zero in opposite
    directions."""
    if other is None:
        return False
    return bool(
        (main.high < 0 and other.low > 0) or (main.low > 0 and other.high < 0)
    )


def _totals(trainer, groups, serve, has_test, seeds):
    """Mean ± SE over seeds of the summed per-task means."""
    result = {}
    for name, split, metric, scale in (
        ("validation_total", "validation", "loss", 1),
        ("test_total", "test", "loss", 1),
        ("test_error_total", "test", "error", 100),
    ):
        if split == "test" and not has_test:
            result[name], result[name + "_se"] = math.nan, math.nan
            continue
        values = served(trainer, groups, serve, split, metric, seeds)
        per_seed = [
            statistics.paired_statistic(v[None]) * scale for v in values
        ]
        result[name], result[name + "_se"] = statistics.mean_and_se(per_seed)
    return result


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _finite(value.item())
    return value
