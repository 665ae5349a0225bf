"""The affinity measures themselves: pure functions on tensors and arrays.

Orientation everywhere: the first index (row) is the *source* task, whose
gradient is applied; the second index (column) is the *target* task, whose
loss is measured. `Z[i, j]` is the affinity of task i onto task j.
"""

import numpy as np
import pandas as pd
import tensorflow as tf

#: The measurement methods `TaskAffinityModel(affinity_method=...)` accepts.
AFFINITY_METHODS = ("lookahead", "first_order", "cosine")


def lookahead_affinity(loss_before, loss_after, learning_rate=None):
    """The TAG lookahead affinity `1 - L_j(after i) / L_j(before)`.

    Args:
        loss_before: `[n]` tensor, each target task's loss before the step.
        loss_after: `[n, n]` tensor, `loss_after[i, j]` is target j's loss
            after one optimizer step on source i's gradient.
        learning_rate: Optional scalar; when given the result is divided by
            it (the original release's scaling).

    Returns:
        `[n, n]` tensor `Z[i, j]`.
    """
    z = 1.0 - loss_after / loss_before[tf.newaxis, :]
    if learning_rate is not None:
        z = z / tf.cast(learning_rate, z.dtype)
    return z


def first_order_affinity(dot_products, loss_before, learning_rate=None):
    """The first-order (Taylor) approximation of the lookahead affinity.

    With `Δθ_i` the shared-weight change of one optimizer step on source i's
    gradient, `L_j(θ + Δθ_i) ≈ L_j(θ) + <∇L_j, Δθ_i>`, so
    `Z[i, j] ≈ -<∇L_j, Δθ_i> / L_j`. For plain SGD `Δθ_i = -lr ∇L_i` and this
    is the paper's first-order form `lr <∇L_j, ∇L_i> / L_j`.

    Args:
        dot_products: `[n, n]` tensor, `dot_products[i, j] = <∇L_j, Δθ_i>`.
        loss_before: `[n]` tensor of target losses.
        learning_rate: Optional scalar to divide by.

    Returns:
        `[n, n]` tensor `Z[i, j]`.
    """
    z = -dot_products / loss_before[tf.newaxis, :]
    if learning_rate is not None:
        z = z / tf.cast(learning_rate, z.dtype)
    return z


def cosine_affinity(gram):
    """Cosine similarities from a Gram matrix of flattened task gradients.

    Args:
        gram: `[n, n]` tensor, `gram[i, j] = <g_i, g_j>`.

    Returns:
        `[n, n]` tensor of `<g_i, g_j> / (|g_i| |g_j|)` (symmetric).
    """
    norms = tf.sqrt(tf.linalg.diag_part(gram))
    return gram / (norms[:, tf.newaxis] * norms[tf.newaxis, :])


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
        source_ok[:, tf.newaxis]
        & target_ok[tf.newaxis, :]
        & tf.math.is_finite(z)
    )


def usable_loss(loss):
    """True where a task's loss can be divided by: finite and non-zero."""
    return tf.math.is_finite(loss) & tf.not_equal(loss, 0.0)


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
