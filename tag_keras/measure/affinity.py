"""The affinity measures: which pairs enter the averages, and the means,
standard errors and labelled frames of the accumulated sums.

Orientation everywhere: the first index (row) is the *source* task, whose
gradient is applied; the second index (column) is the *target* task, whose
loss is measured. `Z[i, j]` is the affinity of task i onto task j. The
formulas themselves are in the task core (`tag_keras.tasks.affinity`),
shared with IT-MTL, and named here too.
"""

import numpy as np
import pandas as pd
from keras import ops

from tag_keras.tasks.affinity import cosine_affinity  # noqa: F401
from tag_keras.tasks.affinity import first_order_affinity  # noqa: F401
from tag_keras.tasks.affinity import lookahead_affinity  # noqa: F401

#: The built-in measurement methods (`TaskAffinityModel(affinity_method=...)`
#: also accepts those registered with `register_affinity_method`).
AFFINITY_METHODS = ("lookahead", "first_order", "cosine")


def valid_pairs(z, source_ok, target_ok):
    """Which `(source, target)` pairs of one step enter the averages.

    A pair is skipped when the source task had no usable loss this step
    (no labels, zero or non-finite loss or gradient), when the target had no
    usable loss, or when the affinity itself is not finite.

    Args:
        z: `[n, n]` affinity tensor of one step.
        source_ok: `[n]` boolean tensor.
        target_ok: `[n]` boolean tensor.

    Returns:
        `[n, n]` boolean tensor.
    """
    return (
        ops.expand_dims(source_ok, 1)
        & ops.expand_dims(target_ok, 0)
        & ops.isfinite(z)
    )


def usable_loss(loss):
    """True where a task's loss can be divided by: finite and non-zero."""
    return ops.logical_and(ops.isfinite(loss), ops.not_equal(loss, 0.0))


def mean_of(sums, counts):
    """Elementwise `sums / counts`; NaN where the count is zero."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def stderr_of(sums, squares, counts):
    """Standard error of the mean from running sums and sums of squares.

    `sqrt(var / count)` with `var` the sample variance (ddof = 1); NaN
    where the count is below two.
    """
    sums = np.asarray(sums, dtype=np.float64)
    squares = np.asarray(squares, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    safe = np.maximum(counts, 2)
    variance = np.maximum(squares - sums * sums / safe, 0.0) / (safe - 1)
    return np.where(counts >= 2, np.sqrt(variance / safe), np.nan)


def mean_matrix(sums, counts, task_names):
    """The mean affinity as a DataFrame (index = source, columns = target).

    Pairs with a zero count are NaN: they were never measured.
    """
    return as_frame(mean_of(sums, counts), task_names)


def as_frame(matrix, task_names):
    """Labels an `[n, n]` array with task names in the package orientation."""
    frame = pd.DataFrame(
        np.asarray(matrix), index=list(task_names), columns=list(task_names)
    )
    frame.index.name = "source"
    frame.columns.name = "target"
    return frame
