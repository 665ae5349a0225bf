"""The decision written down: `decision.json`, `decision.csv`, the
per-network table, `decision.png` and the printed table."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tag_keras import _files
from tag_keras.train.comparison import UNDECIDED

if TYPE_CHECKING:  # for annotations only
    from tag_keras.train.decision import Decision
    from tag_keras.train.networks import GroupTrainer


def results_frame(trainer, networks=None):
    """One row per network, seed, task and split: the mean loss and error.

    Columns: group (tasks joined by "|"), seed, task, split, loss, error,
    examples (labelled examples), seconds, epochs. Rows are in one order
    whatever order the networks were trained in (parallel workers finish
    in any order): larger groups first, then by the tasks' positions,
    then by seed.
    """
    position = {task: i for i, task in enumerate(trainer.tasks)}
    rows = []
    for network in sorted(
        networks or trainer.stored(),
        key=lambda n: (
            -len(n.tasks),
            [position.get(t, len(position)) for t in n.tasks],
            n.seed,
        ),
    ):
        for split, per_task in network.outcomes.items():
            for task, (loss, _) in per_task.items():
                rows.append(
                    {
                        "group": "|".join(network.tasks),
                        "seed": network.seed,
                        "task": task,
                        "split": split,
                        "loss": network.mean(split, task, "loss"),
                        "error": network.mean(split, task, "error"),
                        "examples": int((~np.isnan(loss)).sum()),
                        "seconds": network.seconds,
                        "epochs": network.epochs,
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "group",
            "seed",
            "task",
            "split",
            "loss",
            "error",
            "examples",
            "seconds",
            "epochs",
        ],
    )


#: `decision.csv`'s columns taken from each `Option`, in order.
_OPTION_COLUMNS = (
    "num_groups",
    "decision",
    "answer_detail",
    "difference",
    "low",
    "high",
    "standard_error",
    "df",
    "margin",
    "seeds",
    "seeds_needed",
    "validation_factor",
    "metric",
    "other_metric",
    "other_difference",
    "other_low",
    "other_high",
    "disagreement",
    "test_difference",
    "validation_total",
    "validation_total_se",
    "test_total",
    "test_total_se",
    "test_error_total",
    "test_error_total_se",
    "candidates",
    "comparisons",
)


def decision_frame(decision):
    """One row per option (all-task, each budget, baselines, random
    groupings), with the answer overall on every row."""
    rows = []
    named = [("all tasks", decision.all_tasks)]
    named += [("groups", o) for o in decision.budgets]
    named += list(decision.baselines.items())
    for name, o in named:
        row = {"option": name, "groups": _groups_text(o.groups)}
        row.update({c: getattr(o, c) for c in _OPTION_COLUMNS})
        rows.append(row)
    for budget, r in decision.random.items():
        rows.append(
            {
                "option": "random groupings",
                "num_groups": budget,
                "difference": r["difference"],
                "test_difference": r["test_difference"],
                "candidates": r["partitions"],
            }
        )
    frame = pd.DataFrame(rows)
    frame.insert(0, "answer", decision.answer)
    return frame


def format_table(decision: Decision) -> str:
    """The decision as a Markdown table, with what would decide each
    undecided budget and a closing line."""
    metric, other = decision.all_tasks.metric, decision.all_tasks.other_metric
    level = 1 - decision.alpha
    lines = [
        (
            f"| option | networks | validation {metric} vs all tasks "
            f"[one-sided {level:.1%} bounds, corrected] | answer | seeds | "
            f"validation {other} vs all tasks | test {metric} vs all tasks | "
            f"summed test error (% points, {len(decision.all_tasks.serve)} "
            "tasks) mean ± SE |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in (decision.all_tasks, *decision.budgets):
        name = "all tasks" if o.num_groups == 1 else _groups_text(o.groups)
        compared = (
            "(reference)"
            if o.num_groups == 1
            else f"{o.difference:+.4f} [{o.low:+.4f}, {o.high:+.4f}]"
        )
        answer = "" if o.num_groups == 1 else _answer_text(o)
        flag = " (disagrees)" if o.disagreement else ""
        lines.append(
            f"| {name} | {len(o.groups)} | {compared} | {answer} | {o.seeds} "
            f"| {_signed(o.other_difference)}{flag} | "
            f"{_signed(o.test_difference)} | "
            f"{_pm(o.test_error_total, o.test_error_total_se)} |"
        )
    for name, o in decision.baselines.items():
        lines.append(
            f"| {name} (baseline) | {len(o.groups)} | {o.difference:+.4f} "
            f"[{o.low:+.4f}, {o.high:+.4f}] | | {o.seeds} | "
            f"{_signed(o.other_difference)} | {_signed(o.test_difference)}"
            f" | {_pm(o.test_error_total, o.test_error_total_se)} |"
        )
    for budget, r in decision.random.items():
        kind = (
            "exact"
            if r["exact"]
            else (f"{r['partitions']} sampled, SE {r['sampling_se']:.4f}")
        )
        lines.append(
            f"| random groupings ({kind}) | {budget} | "
            f"{r['difference']:+.4f} | | | | "
            f"{_signed(r['test_difference'])} | |"
        )
    lines.append("")
    for o in decision.budgets:
        if o.decision == UNDECIDED:
            lines.append(
                f"{o.num_groups} networks: undecided; {o.answer_detail}."
            )
        if o.disagreement:
            lines.append(
                f"{o.num_groups} networks: the validation {metric} and "
                f"{other} exclude zero in opposite directions; judge on the "
                "one you will use the networks by (--metric)."
            )
        if o.candidates > 1:
            lines.append(
                f"{o.num_groups} networks: chosen from {o.candidates} "
                "candidates on the same validation data: the difference is "
                "selected (optimistic); the bounds are corrected for it."
            )
    best = decision.best
    verdict = {
        "split": f"split into {best.num_groups} networks",
        "keep together": "keep all tasks in one network",
        "undecided": (
            "undecided (no budget is shown better or shown not worth it)"
        ),
    }[decision.answer]
    lines += [
        (
            f"Answer: {verdict}. Margin {decision.margin:.4g} (summed "
            f"validation {metric}); seeds {list(decision.seeds)}; each "
            f"answer wrong at most {decision.alpha:g} of the time over "
            "every budget, candidate and look; negative = lower "
            f"{metric} than the all-task network; test numbers are "
            "shown, never used."
        )
    ]
    return "\n".join(lines)


def _answer_text(option):
    if option.decision == "keep together":
        return f"keep together ({option.answer_detail})"
    return option.decision


def _groups_text(groups):
    return " ".join("(" + ", ".join(g) + ")" for g in groups)


def _signed(value):
    return "n/a" if not math.isfinite(value) else f"{value:+.4f}"


def _pm(mean, se):
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.2f}" + ("" if not math.isfinite(se) else f" ± {se:.2f}")


def write_decision(
    directory: str | os.PathLike,
    decision: Decision,
    trainer: GroupTrainer,
    networks_name: str = "results.csv",
) -> dict:
    """Writes `decision.json`, `decision.csv`, the per-network table
    (`results.csv`, or `networks_name`) and `decision.png` in `directory`;
    returns their paths, keyed by those names."""
    os.makedirs(directory, exist_ok=True)
    paths = {
        name: os.path.join(directory, name)
        for name in (
            "decision.json",
            "decision.csv",
            networks_name,
            "decision.png",
        )
    }
    marker = os.path.join(directory, COMPLETE)
    with contextlib.suppress(FileNotFoundError):
        os.remove(marker)  # the files below are not one set until it is back
    _files.replace_atomically(
        paths["decision.json"],
        json.dumps(decision.to_dict(), indent=2, allow_nan=False),
    )
    for name, frame in (
        ("decision.csv", decision_frame(decision)),
        (networks_name, results_frame(trainer)),
    ):
        text = io.StringIO()
        frame.to_csv(text, index=False)
        _files.replace_atomically(paths[name], text.getvalue())
    plot_decision(decision, paths["decision.png"])
    _files.replace_atomically(
        marker,
        json.dumps(
            {name: _file_digest(path) for name, path in paths.items()},
            indent=2,
        ),
    )
    return paths


#: The completion marker `write_decision` writes last: each file's name
#: and SHA-1, so a reader can tell a whole set from a torn one.
COMPLETE = "decision.complete.json"


def _file_digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha1(handle.read()).hexdigest()


def read_decision(directory: str | os.PathLike) -> dict:
    """`decision.json` of `directory`, after checking that it belongs to
    one complete set of outputs (the completion marker is there and every
    file matches it); raises `ValueError` naming what is wrong."""
    marker = os.path.join(directory, COMPLETE)
    if not os.path.exists(marker):
        raise ValueError(
            f"{directory} holds no complete set of decision files ({COMPLETE}"
            " is missing: the run was interrupted while writing, or is "
            "still running); rerun it to finish."
        )
    with open(marker) as handle:
        digests = json.load(handle)
    for name, digest in digests.items():
        path = os.path.join(directory, name)
        if not os.path.exists(path) or _file_digest(path) != digest:
            raise ValueError(
                f"{path} does not match {COMPLETE}: the files are not one "
                "run's set; rerun to write them again."
            )
    with open(os.path.join(directory, "decision.json")) as handle:
        return json.load(handle)


def plot_decision(decision, path):
    """A figure: validation (and test) difference per budget, with the
    decision's bounds as error bars; zero is the all-task network and the
    dotted line the margin."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    budgets = decision.budgets
    x = np.arange(len(budgets))
    figure, axis = plt.subplots(figsize=(1.6 * len(budgets) + 3, 3.4))
    if budgets:
        values = np.array([o.difference for o in budgets])
        errors = np.array(
            [[o.difference - o.low, o.high - o.difference] for o in budgets]
        ).T
        axis.errorbar(
            x - 0.08,
            values,
            yerr=errors,
            fmt="o",
            capsize=4,
            label="validation (decides)",
        )
        axis.plot(
            x + 0.08,
            [o.test_difference for o in budgets],
            "s",
            label="test (shown only)",
        )
        for i, o in enumerate(budgets):
            axis.annotate(
                f"{o.decision}\n{o.seeds} seeds",
                (x[i], o.high),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
    axis.axhline(0, color="gray", linestyle="--", label="all-task network")
    axis.axhline(
        -decision.margin, color="gray", linestyle=":", label="− margin"
    )
    axis.set_xticks(x, [f"{o.num_groups} networks" for o in budgets])
    axis.set_xlim(-0.6, len(budgets) - 0.4)
    axis.set_ylabel(f"summed {decision.metric} − all-task")
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    _files.replace_atomically(path, buffer.getvalue())
