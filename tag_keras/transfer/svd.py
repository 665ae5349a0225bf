"""SVD task re-weighting (Wu, Zhang and Ré, ICLR 2020, Algorithm 2)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def svd_task_weights(
    features: np.ndarray, labels: Mapping[str, np.ndarray], rank: int
) -> dict[str, float]:
    """Weights that shrink tasks whose labels leave the shared subspace.

    θ_i = Xᵀ y_i for each task i (over the examples labelled for it); U_r
    holds the first r left singular vectors of [θ_1 … θ_k], the best
    rank-r approximation; task i's weight is α_i = ‖θ_iᵀ U_r‖. A task
    whose labels are noise has a θ_i outside the span the others share,
    so a small weight.

    Labels become columns: integer labels with two classes, and float
    labels that are all 0 or 1, one column of ±1 (2y − 1, the paper's
    multi-label setting); integer labels with more than two classes one
    one-hot column per class (θ_i is then a matrix and ‖·‖ the Frobenius
    norm); other float labels (regression) one column as they are; a
    multi-column array (e.g. already one-hot) as given. NaN marks a
    missing label.

    Args:
        features: `[examples, d]` (e.g. the shared representation).
        labels: `{task: [examples] or [examples, c]}`; NaN marks a missing
            label (that example does not count for the task).
        rank: r, from 1 to the number of tasks.

    Returns:
        `{task: α}` (floats, not normalised).

    References:
        Wu, Zhang and Ré, "Understanding and Improving Information
        Transfer in Multi-Task Learning", ICLR 2020, Algorithm 2.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or not x.size:
        raise ValueError(
            "`features` must be a non-empty 2-D array "
            "[examples, d]. Received: features with shape "
            f"{x.shape}."
        )
    if not isinstance(labels, dict) or not labels:
        raise ValueError(
            "`labels` must be a non-empty dict {task: labels}. "
            f"Received: labels of type {type(labels).__name__}."
        )
    if (
        isinstance(rank, bool)
        or not isinstance(rank, (int, np.integer))
        or (not 1 <= rank <= len(labels))
    ):
        raise ValueError(
            f"`rank` must be an integer from 1 to the number of "
            f"tasks ({len(labels)}). Received: rank={rank!r}."
        )
    thetas = {}
    for task, values in labels.items():
        columns = label_columns(values, task)
        if len(columns) != len(x):
            raise ValueError(
                f"`labels[{task!r}]` must have one row per row of "
                f"`features` ({len(x)}). Received: {len(columns)} rows."
            )
        present = ~np.isnan(columns).any(axis=1)
        if not present.any():
            raise ValueError(
                f"Task {task!r} has no labelled example (all its "
                "labels are NaN)."
            )
        thetas[task] = x[present].T @ columns[present]
    stacked = np.concatenate(list(thetas.values()), axis=1)
    u, _, _ = np.linalg.svd(stacked, full_matrices=False)
    basis = u[:, :rank]
    return {
        task: float(np.linalg.norm(theta.T @ basis))
        for task, theta in thetas.items()
    }


def label_columns(values, task="task"):
    """A task's labels as `[examples, c]` float columns (see above)."""
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] > 1:
        return values.astype(np.float64)
    flat = values.reshape(len(values)).astype(np.float64)
    present = ~np.isnan(flat)
    known = flat[present]
    if not np.issubdtype(values.dtype, np.integer):
        if set(np.unique(known)) <= {0.0, 1.0}:
            return (2 * flat - 1)[:, None]
        return flat[:, None]
    if len(known) and known.min() < 0:
        raise ValueError(
            f"Task {task!r}: class labels must be 0, 1, …. "
            f"Received: a label {known.min():g}."
        )
    count = int(known.max()) + 1 if len(known) else 2
    if count <= 2:
        return (2 * flat - 1)[:, None]
    columns = np.full((len(flat), count), np.nan)
    columns[present] = np.eye(count)[known.astype(int)]
    return columns
