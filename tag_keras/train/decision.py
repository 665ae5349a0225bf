"""The validated decision: split the tasks, or keep them together?

For each budget, the candidate groupings (the affinity's proposals) have
been trained under every seed, as has the all-task network. The
candidate with the lowest summed served validation `metric` (the loss,
or for classification heads the error) is compared with the all-task
network, paired over validation examples and seeds
(`statistics.paired_bootstrap`, widened for the number of candidates it
was chosen from): **split** only when the whole interval says the
grouping's `metric` is lower, otherwise **keep together**. Test numbers
are computed the same way and shown beside the decision, never used in
it.

`difference` is grouping minus all-task, so negative means the split is
better.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
import io
import json
import math
import os

import numpy as np
import pandas as pd

from tag_keras import _files
from tag_keras.train import random_groupings
from tag_keras.train import statistics

if TYPE_CHECKING:  # for annotations only
    from tag_keras.train.networks import GroupTrainer

SPLIT = "split"
KEEP_TOGETHER = "keep together"
#: What `decide(metric=...)` can decide on.
METRICS = ("loss", "error")


@dataclasses.dataclass(frozen=True)
class Option:
    """One way of serving the tasks, compared with the all-task network.

    Attributes:
        num_groups: Budget (1 for the all-task network).
        groups: The groups (tuples of tasks).
        serve: Task -> index of the group serving it.
        decision: "split" or "keep together".
        difference: Summed served validation `metric` minus the all-task
            network's (mean over seeds).
        low, high: The interval of `difference`.
        metric: What decides: "loss" or "error"; `difference`, its
            interval and `test_difference` are in it.
        test_difference, test_low, test_high: The same on the test split
            (NaN without one); never used to decide.
        error_difference, error_low, error_high: The validation error's.
        test_error_difference: The test error's.
        candidates: How many candidates it was chosen from.
        validation_total, test_total, test_error_total: Mean over seeds of
            the summed per-task mean loss (test error in %), with
            `*_se` their standard errors over seeds.
    """

    num_groups: int
    groups: tuple
    serve: dict
    decision: str
    difference: float
    low: float
    high: float
    metric: str
    test_difference: float
    test_low: float
    test_high: float
    error_difference: float
    error_low: float
    error_high: float
    test_error_difference: float
    candidates: int
    validation_total: float
    validation_total_se: float
    test_total: float
    test_total_se: float
    test_error_total: float
    test_error_total_se: float

    def to_dict(self):
        """JSON-ready, finite numbers only (NaN becomes null)."""
        entry = dataclasses.asdict(self)
        entry["groups"] = [list(g) for g in self.groups]
        return {k: _finite(v) for k, v in entry.items()}


@dataclasses.dataclass(frozen=True)
class Decision:
    """The decision for every budget, and the best option overall.

    Attributes:
        all_tasks: The all-task network's `Option` (difference 0).
        budgets: One `Option` per budget, its decision against all-task.
        best: The budget with the lowest validation difference among those
            whose decision is "split"; the all-task option if none.
        random: Budget -> random groupings' `{"difference", "sampling_se",
            "test_difference", "test_error_difference", "partitions",
            "exact"}`, where they were trained.
        baselines: Name -> `Option` of other ways of serving the tasks
            compared alike (e.g. "STL", one network per task, or a CS
            grouping); never chosen as `best`.
        seeds: The training seeds.
        level: Coverage of the intervals.
    """

    all_tasks: Option
    budgets: tuple
    best: Option
    random: dict
    seeds: tuple
    level: float
    baselines: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        """The `decision.json` document."""
        return {
            "budgets": [o.to_dict() for o in self.budgets],
            "best": self.best.to_dict(),
            "all_tasks": self.all_tasks.to_dict(),
            "random": {str(k): {n: _finite(v) for n, v in r.items()}
                       for k, r in self.random.items()},
            "baselines": {name: o.to_dict()
                          for name, o in self.baselines.items()},
            "seeds": list(self.seeds),
            "level": self.level,
        }


def served(trainer, groups, serve, split, metric="loss", seeds=None):
    """`[seeds, tasks, examples]` of the tasks served by `groups`.

    Task t's row is the network of `groups[serve[t]]` at each seed, in
    the order of `trainer.tasks`.
    """
    index = 0 if metric == "loss" else 1
    seeds = trainer.seeds if seeds is None else seeds
    return np.stack([
        np.stack([trainer.network(groups[serve[t]], s)
                  .outcomes[split][t][index] for t in trainer.tasks])
        for s in seeds])


def decide(trainer: GroupTrainer, candidates: dict, *,
           random: dict | None = None, baselines: dict | None = None,
           level: float = 0.95, resamples: int = 2000, seed: int = 0,
           metric: str = "loss") -> "Decision":
    """The validated decision for every budget.

    Args:
        trainer: A `GroupTrainer` holding (or able to train) every network
            needed: the all-task group and each candidate's groups, at
            every seed.
        candidates: Budget -> list of `(groups, serve)` candidates (the
            affinity's proposals, best first).
        random: Optional budget -> `(partitions, exact)` of random
            groupings (`random_groupings.random_partitions`), trained too.
        baselines: Optional name -> `(groups, serve)` compared with the
            all-task network alike, e.g. `{"STL": (((a,), (b,)), {a: 0,
            b: 1})}`; shown, never chosen as `best`.
        level: Coverage of the intervals.
        resamples: Bootstrap resamples.
        seed: Seed of the bootstrap.
        metric: What decides: `"loss"` (the summed compiled losses, what
            training lowers) or `"error"` (the summed error rates; needs
            classification heads). Choose the one you will judge the
            networks on: on the decision benchmark the two disagreed on
            two task sets of four.

    Returns:
        A `Decision`.
    """
    if metric not in METRICS:
        raise ValueError(f"`metric` must be one of {list(METRICS)}. "
                         f"Received: metric={metric!r}")
    every = tuple(trainer.tasks)
    one = ((every,), {t: 0 for t in every})
    needed = [every] + [g for options in candidates.values()
                        for groups, _ in options for g in groups]
    needed += [g for partitions, _ in (random or {}).values()
               for p in partitions for g in p]
    needed += [g for groups, _ in (baselines or {}).values() for g in groups]
    trainer.train(needed)
    judge = _Judge(trainer, one, metric, level, resamples, seed)
    all_tasks = judge.option(1, *one, 1)
    budgets = []
    for budget in sorted(candidates):
        options = candidates[budget]
        scored = [judge.difference(g, s, "validation", metric)
                  for g, s in options]
        groups, serve = options[int(np.argmin(scored))]
        budgets.append(judge.option(budget, groups, serve, len(options)))
    splits = [o for o in budgets if o.decision == SPLIT]
    best = min(splits, key=lambda o: o.difference) if splits else all_tasks
    random_rows = {budget: judge.random_row(partitions, exact)
                   for budget, (partitions, exact) in (random or {}).items()}
    others = {name: judge.option(len(groups), groups, serve, 1)
              for name, (groups, serve) in (baselines or {}).items()}
    return Decision(all_tasks, tuple(budgets), best, random_rows,
                    tuple(trainer.seeds), level, others)


class _Judge:
    """Groupings against the all-task network `one`, on the trainer's
    trained networks: paired over seeds, validation and test, loss and
    error."""

    def __init__(self, trainer, one, metric, level, resamples, seed):
        self.trainer, self.metric = trainer, metric
        self.level, self.resamples, self.seed = level, resamples, seed
        self.has_test = "test" in trainer.splits
        self.reference = {(split, kind): served(trainer, *one, split, kind)
                          for split in ("validation", "test")
                          if split == "validation" or self.has_test
                          for kind in ("loss", "error")}
        if metric == "error" and np.all(np.isnan(
                self.reference[("validation", "error")])):
            raise ValueError(
                "metric='error' needs classification heads (an error per "
                "example); every task's validation error is undefined "
                "here. Use metric='loss'.")

    def differences(self, groups, serve, split, kind):
        """`[seeds, examples]` paired differences against the all-task
        network, or None where the split is missing."""
        if (split, kind) not in self.reference:
            return None
        return (served(self.trainer, groups, serve, split, kind)
                - self.reference[(split, kind)])

    def difference(self, groups, serve, split, kind):
        """The paired mean difference (NaN where the split is missing)."""
        d = self.differences(groups, serve, split, kind)
        return math.nan if d is None else statistics.paired_statistic(d)

    def compare(self, groups, serve, split, kind, comparisons=1):
        """`(mean, low, high)` of the paired difference."""
        d = self.differences(groups, serve, split, kind)
        if d is None:
            return math.nan, math.nan, math.nan
        return statistics.paired_bootstrap(
            d, resamples=self.resamples, level=self.level,
            comparisons=comparisons, seed=self.seed)

    def option(self, budget, groups, serve, comparisons):
        """The `Option` of one grouping, decided on validation data."""
        main = self.compare(groups, serve, "validation", self.metric,
                            comparisons)
        test = self.compare(groups, serve, "test", self.metric)
        error = self.compare(groups, serve, "validation", "error",
                             comparisons)
        test_error = self.compare(groups, serve, "test", "error")
        split = budget > 1 and main[2] < 0
        return Option(
            num_groups=budget, groups=tuple(tuple(g) for g in groups),
            serve=dict(serve), decision=SPLIT if split else KEEP_TOGETHER,
            difference=main[0], low=main[1], high=main[2],
            metric=self.metric, test_difference=test[0],
            test_low=test[1], test_high=test[2],
            error_difference=error[0], error_low=error[1],
            error_high=error[2], test_error_difference=test_error[0],
            candidates=comparisons,
            **_totals(self.trainer, groups, serve, self.has_test))

    def random_row(self, partitions, exact):
        """The expected difference of random groupings of one budget."""
        rows = np.asarray([
            [self.difference(p, {t: i for i, g in enumerate(p) for t in g},
                             split, kind)
             for split, kind in (("validation", self.metric),
                                 ("test", self.metric), ("test", "error"))]
            for p in partitions])
        mean, se = random_groupings.expectation(rows[:, 0], exact)
        return {"difference": mean, "sampling_se": se,
                "test_difference": float(rows[:, 1].mean()),
                "test_error_difference": float(rows[:, 2].mean()),
                "partitions": len(partitions), "exact": bool(exact)}

def _totals(trainer, groups, serve, has_test):
    """Mean ± SE over seeds of the summed per-task means."""
    result = {}
    for name, split, metric, scale in (
            ("validation_total", "validation", "loss", 1),
            ("test_total", "test", "loss", 1),
            ("test_error_total", "test", "error", 100)):
        if split == "test" and not has_test:
            result[name], result[name + "_se"] = math.nan, math.nan
            continue
        values = served(trainer, groups, serve, split, metric)
        per_seed = [statistics.paired_statistic(v[None]) * scale
                    for v in values]
        result[name], result[name + "_se"] = statistics.mean_and_se(per_seed)
    return result


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _finite(value.item())
    return value


def results_frame(trainer, networks=None):
    """One row per network, seed, task and split: the mean loss and error.

    Columns: group (tasks joined by "|"), seed, task, split, loss, error,
    examples (labelled examples), seconds, epochs.
    """
    rows = []
    for network in networks or trainer.stored():
        for split, per_task in network.outcomes.items():
            for task, (loss, _) in per_task.items():
                rows.append({
                    "group": "|".join(network.tasks), "seed": network.seed,
                    "task": task, "split": split,
                    "loss": network.mean(split, task, "loss"),
                    "error": network.mean(split, task, "error"),
                    "examples": int((~np.isnan(loss)).sum()),
                    "seconds": network.seconds, "epochs": network.epochs})
    return pd.DataFrame(rows, columns=[
        "group", "seed", "task", "split", "loss", "error", "examples",
        "seconds", "epochs"])


def decision_frame(decision):
    """One row per option (all-task, each budget, random groupings)."""
    rows = []
    for o in (decision.all_tasks, *decision.budgets):
        rows.append({
            "option": "all tasks" if o.num_groups == 1 else "groups",
            "num_groups": o.num_groups,
            "groups": " ".join("(" + ", ".join(g) + ")" for g in o.groups),
            "decision": o.decision, "difference": o.difference,
            "low": o.low, "high": o.high,
            "test_difference": o.test_difference,
            "validation_total": o.validation_total,
            "validation_total_se": o.validation_total_se,
            "test_total": o.test_total, "test_total_se": o.test_total_se,
            "test_error_total": o.test_error_total,
            "test_error_total_se": o.test_error_total_se,
            "candidates": o.candidates})
    for name, o in decision.baselines.items():
        rows.append({
            "option": name, "num_groups": o.num_groups,
            "groups": " ".join("(" + ", ".join(g) + ")" for g in o.groups),
            "difference": o.difference, "low": o.low, "high": o.high,
            "test_difference": o.test_difference,
            "test_error_total": o.test_error_total,
            "test_error_total_se": o.test_error_total_se})
    for budget, r in decision.random.items():
        rows.append({"option": "random groupings", "num_groups": budget,
                     "difference": r["difference"],
                     "test_difference": r["test_difference"],
                     "candidates": r["partitions"]})
    return pd.DataFrame(rows)


def format_table(decision: "Decision") -> str:
    """The decision as a Markdown table, with a closing line."""
    metric = decision.all_tasks.metric
    lines = [
        f"| option | networks | validation {metric} vs all tasks "
        f"[{decision.level:.0%} interval] | decision | test {metric} vs all "
        "tasks | test error (%) mean ± SE |",
        "|---|---|---|---|---|---|"]
    for o in (decision.all_tasks, *decision.budgets):
        name = ("all tasks" if o.num_groups == 1 else
                " ".join("(" + ", ".join(g) + ")" for g in o.groups))
        compared = ("(reference)" if o.num_groups == 1 else
                    f"{o.difference:+.4f} [{o.low:+.4f}, {o.high:+.4f}]")
        lines.append(
            f"| {name} | {o.num_groups} | {compared} | {o.decision} | "
            f"{_signed(o.test_difference)} | {_pm(o.test_error_total, o.test_error_total_se)} |")
    for name, o in decision.baselines.items():
        lines.append(
            f"| {name} (baseline) | {o.num_groups} | {o.difference:+.4f} "
            f"[{o.low:+.4f}, {o.high:+.4f}] | | {_signed(o.test_difference)}"
            f" | {_pm(o.test_error_total, o.test_error_total_se)} |")
    for budget, r in decision.random.items():
        kind = "exact" if r["exact"] else (
            f"{r['partitions']} sampled, SE {r['sampling_se']:.4f}")
        lines.append(f"| random groupings ({kind}) | {budget} | "
                     f"{r['difference']:+.4f} | | "
                     f"{_signed(r['test_difference'])} | |")
    best = decision.best
    verdict = ("keep all tasks in one network" if best.num_groups == 1
               else f"split into {best.num_groups} networks")
    lines += ["", f"Best option on validation data: {verdict} (seeds "
              f"{list(decision.seeds)}; negative = lower {metric} than the "
              "all-task network; test numbers are shown, never used)."]
    return "\n".join(lines)


def _signed(value):
    return "n/a" if not math.isfinite(value) else f"{value:+.4f}"


def _pm(mean, se):
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.2f}" + ("" if not math.isfinite(se) else f" ± {se:.2f}")


def write_decision(directory: str | os.PathLike, decision: "Decision",
                   trainer, networks_name: str = "results.csv") -> dict:
    """Writes `decision.json`, `decision.csv`, the per-network table
    (`results.csv`, or `networks_name`) and `decision.png` in `directory`;
    returns their paths, keyed by those names."""
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in (
        "decision.json", "decision.csv", networks_name, "decision.png")}
    _files.replace_atomically(paths["decision.json"], json.dumps(
        decision.to_dict(), indent=2, allow_nan=False))
    for name, frame in (("decision.csv", decision_frame(decision)),
                        (networks_name, results_frame(trainer))):
        text = io.StringIO()
        frame.to_csv(text, index=False)
        _files.replace_atomically(paths[name], text.getvalue())
    plot_decision(decision, paths["decision.png"])
    return paths


def plot_decision(decision, path):
    """A figure: validation (and test) difference per budget, with the
    decision's interval as error bars; zero is the all-task network."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    budgets = decision.budgets
    x = np.arange(len(budgets))
    figure, axis = plt.subplots(figsize=(1.6 * len(budgets) + 3, 3.4))
    if budgets:
        values = np.array([o.difference for o in budgets])
        errors = np.array([[o.difference - o.low, o.high - o.difference]
                           for o in budgets]).T
        axis.errorbar(x - 0.08, values, yerr=errors, fmt="o", capsize=4,
                      label="validation (decides)")
        axis.plot(x + 0.08, [o.test_difference for o in budgets], "s",
                  label="test (shown only)")
        for i, o in enumerate(budgets):
            axis.annotate(o.decision, (x[i], o.high), textcoords="offset "
                          "points", xytext=(0, 6), ha="center", fontsize=8)
    axis.axhline(0, color="gray", linestyle="--", label="all-task network")
    axis.set_xticks(x, [f"{o.num_groups} networks" for o in budgets])
    axis.set_xlim(-0.6, len(budgets) - 0.4)
    axis.set_ylabel(f"summed {decision.all_tasks.metric} − all-task")
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    _files.replace_atomically(path, buffer.getvalue())
