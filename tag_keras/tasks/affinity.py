"""The affinity formulas: pure functions on tensors, one per method
(`keras.ops`, so any backend's tensors).

Orientation everywhere: the first index (row) is the *source* task, whose
gradient is applied; the second index (column) is the *target* task, whose
loss is measured. `Z[i, j]` is the affinity of task i onto task j.

The measurement's estimators (`tag_keras.measure.estimators`) and IT-MTL's
candidate scores (`tag_keras.mtl.ITMTL`) both compute with these, so that
the two cannot drift apart.
"""

from keras import ops


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
    z = 1.0 - loss_after / ops.expand_dims(loss_before, 0)
    if learning_rate is not None:
        z = z / ops.cast(learning_rate, z.dtype)
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
    z = -dot_products / ops.expand_dims(loss_before, 0)
    if learning_rate is not None:
        z = z / ops.cast(learning_rate, z.dtype)
    return z


def cosine_affinity(gram):
    """Cosine similarities from a Gram matrix of flattened task gradients.

    Args:
        gram: `[n, n]` tensor, `gram[i, j] = <g_i, g_j>`.

    Returns:
        `[n, n]` tensor of `<g_i, g_j> / (|g_i| |g_j|)` (symmetric).
    """
    norms = ops.sqrt(ops.diagonal(gram))
    return gram / (ops.expand_dims(norms, 1) * ops.expand_dims(norms, 0))
