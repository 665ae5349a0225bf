"""Comparing trajectories at matched training loss, and their summaries."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

_COLUMNS = ["epoch", "task", "measure", "value"]


def read_trajectory(
    trajectory: str | os.PathLike | pd.DataFrame,
) -> pd.DataFrame:
    """A trajectory as a DataFrame `epoch,task,measure,value`.

    Args:
        trajectory: A DataFrame with those columns, a `trajectory.csv`
            path, or the `log_dir` of a `TrajectoryLogger`.
    """
    if isinstance(trajectory, pd.DataFrame):
        frame = trajectory
    elif isinstance(trajectory, (str, os.PathLike)):
        path = os.fspath(trajectory)
        if os.path.isdir(path):
            path = os.path.join(path, "trajectory.csv")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No trajectory file at {path!r}: pass a TrajectoryLogger's "
                f"log_dir or its trajectory.csv. Received: {trajectory!r}."
            )
        frame = pd.read_csv(path)
    else:
        raise TypeError(
            "A trajectory must be a DataFrame with columns epoch, task, "
            "measure, value, or the path of a trajectory.csv. Received: "
            f"{type(trajectory).__name__}."
        )
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"A trajectory needs the columns {_COLUMNS}; {missing} are "
            f"missing. Received columns: {list(frame.columns)}."
        )
    return frame


def series(trajectory, task, measure):
    """`task`'s `measure` by epoch (a Series indexed by epoch)."""
    frame = read_trajectory(trajectory)
    rows = frame[(frame["task"] == task) & (frame["measure"] == measure)]
    if rows.empty:
        known = sorted(frame.loc[frame["task"] == task, "measure"].unique())
        raise ValueError(
            f"The trajectory has no {measure!r} values for task {task!r} "
            f"(its measures for that task: {known}; its tasks: "
            f"{sorted(frame['task'].unique())})."
        )
    return rows.groupby("epoch")["value"].last().sort_index()


def generalization_gap(
    trajectory_a: str | os.PathLike | pd.DataFrame,
    trajectory_b: str | os.PathLike | pd.DataFrame,
    task: str,
    bins: int = 20,
    loss: str = "loss",
    metric: str = "error",
    early: tuple[int, int] = (2, 5),
    end: int = 3,
) -> pd.DataFrame:
    """Test metric of two trajectories compared at equal training loss.

    The training-loss range both trajectories cover together is cut into
    `bins` geometrically spaced bins, numbered 1 (highest loss, the start
    of training) to `bins` (lowest loss). In each bin, each trajectory's
    mean `metric` over its checkpoints whose training loss falls in it;
    `gap` = a − b (with `metric="error"`, a positive gap means trajectory a
    generalises worse at that loss). Windows, as in the paper's appendix:
    `"early"` = bins `early[0]`..`early[1]` (2-5); `"end"` = the last
    `end` bins that the trajectory with the higher minimum loss reaches,
    so both are compared where both trained.

    Args:
        trajectory_a: A trajectory (`read_trajectory`), e.g. the
            single-task run of the task.
        trajectory_b: The other trajectory, e.g. the multi-task run.
        task: The task.
        bins: The number of loss bins (20 in the paper).
        loss: The measure that orders the trajectories (training loss).
        metric: The measure compared (test error).
        early: First and last bin of the early window.
        end: How many bins the end window holds.

    Returns:
        A DataFrame indexed by `bin` with columns `loss_high`, `loss_low`
        (the bin's edges), `metric_a`, `metric_b`, `count_a`, `count_b`,
        `gap` and `window` (`"early"`, `"end"` or `""`).

    References:
        Mueller, Dredze and Andrews, "Can Optimization Trajectories
        Explain Multi-Task Transfer?", TMLR 2024, appendix A.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(
            f"`bins` must be an integer >= 2. Received: bins={bins!r}."
        )
    pairs = [
        _pairs(t, task, loss, metric) for t in (trajectory_a, trajectory_b)
    ]
    losses = np.concatenate([p[:, 0] for p in pairs])
    if np.any(losses <= 0):
        raise ValueError(
            f"Geometric loss bins need positive losses; {loss!r} of task "
            f"{task!r} has values <= 0 (smallest {losses.min()!r})."
        )
    edges = np.geomspace(losses.max(), losses.min(), bins + 1)
    numbers = [_bin_numbers(p[:, 0], edges) for p in pairs]
    rows = []
    for number in range(1, bins + 1):
        row = {
            "bin": number,
            "loss_high": edges[number - 1],
            "loss_low": edges[number],
        }
        for name, p, n in zip("ab", pairs, numbers):
            inside = p[n == number, 1]
            row[f"metric_{name}"] = inside.mean() if len(inside) else np.nan
            row[f"count_{name}"] = len(inside)
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("bin")
    frame["gap"] = frame["metric_a"] - frame["metric_b"]
    frame["window"] = ""
    frame.loc[early[0] : early[1], "window"] = "early"
    higher = int(np.argmax([p[:, 0].min() for p in pairs]))
    last = int(numbers[higher].max())
    frame.loc[max(1, last - end + 1) : last, "window"] = "end"
    return frame


def summarize(
    trajectory: str | os.PathLike | pd.DataFrame,
    task: str,
    best: int = 10,
    last: int = 20,
    largest: int = 20,
) -> dict:
    """One number per measure, as the paper's footnote summarises a run.

    * `generalization`: mean test `error` of the `best` checkpoints with
      the lowest `val_error` (needs `validation_data` in the logger).
    * `sharpness`, `coherence`, `conflict`: mean of the last `last`
      checkpoints.
    * `fisher`: mean of the `largest` largest values (its early peak).

    Returns:
        A dict with the measures the trajectory holds.
    """
    frame = read_trajectory(trajectory)
    rows = frame[frame["task"] == task]
    if rows.empty:
        raise ValueError(
            f"The trajectory has no rows for task {task!r}. Its tasks: "
            f"{sorted(frame['task'].unique())}."
        )
    measures = set(rows["measure"])
    summary = {}
    if {"val_error", "error"} <= measures:
        val = series(frame, task, "val_error")
        test = series(frame, task, "error")
        chosen = val.nsmallest(best, keep="first").index
        summary["generalization"] = float(test.reindex(chosen).mean())
    for name in ("sharpness", "coherence", "conflict"):
        if name in measures:
            summary[name] = float(
                series(frame, task, name).iloc[-last:].mean()
            )
    if "fisher" in measures:
        summary["fisher"] = float(
            series(frame, task, "fisher").nlargest(largest).mean()
        )
    return summary


def _pairs(trajectory, task, loss, metric):
    """`[checkpoints, 2]`: (training loss, metric) at common epochs."""
    both = pd.concat(
        [
            series(trajectory, task, loss).rename("loss"),
            series(trajectory, task, metric).rename("metric"),
        ],
        axis=1,
    ).dropna()
    if both.empty:
        raise ValueError(
            f"The trajectory has no epoch with both {loss!r} and {metric!r} "
            f"for task {task!r}."
        )
    return both.to_numpy(dtype=np.float64)


def _bin_numbers(values, edges):
    """Bin number (1 = highest loss) of each value; edges descend."""
    inner = edges[1:-1]
    # Count how many inner edges lie strictly above each value.
    return 1 + np.sum(values[:, None] < inner[None, :], axis=1)
