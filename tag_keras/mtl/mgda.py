"""MGDA: the min-norm point of the task gradients (Sener & Koltun, 2018)."""

from __future__ import annotations

from typing import Any

import keras

from tag_keras._tensorflow import tf
from tag_keras.mtl.base import TrainingMethod
from tag_keras.mtl.base import largest_entry


@keras.saving.register_keras_serializable(package="tag_keras")
class MGDA(TrainingMethod):
    """Steps along the smallest vector in the convex hull of the gradients.

    With g_i each task's gradient of the shared weights (over all shared
    variables together, on the global batch), the shared update is
    n · Σ α_i g_i with α the minimiser of ‖Σ α_i g_i‖² over the simplex:
    a direction that decreases every task's loss when one exists (the
    multiple-gradient descent algorithm). The factor n keeps the step's
    scale that of the plain sum when all gradients agree; the paper and
    the reference implementations step Σ α_i g_i, so a published MGDA
    run is reproduced with its learning rate divided by n. α is found
    exactly for two tasks and by Frank-Wolfe on the Gram matrix otherwise
    (Sener & Koltun's Algorithm 2), `iterations` steps at most. Task heads
    update with their own gradients.

    `upper_bound=True` is MGDA-UB: α minimises ‖Σ α_i ∇_Z L_i‖² with Z the
    shared representation (the heads' common input, or the output of
    `representation_layer`) over the global batch, the paper's cheaper
    upper bound; the update is still n · Σ α_i g_i on the shared weights.
    Here the per-task shared gradients are computed anyway (this step
    needs them), so MGDA-UB saves no time over MGDA; it gives the UB
    variant's weights. It needs a functional model.

    Needs one backward pass per task on every step.

    Args:
        upper_bound: Weights from the representation's gradients (MGDA-UB)
            instead of the shared weights' (MGDA).
        representation_layer: With `upper_bound`, the layer whose output
            is the shared representation (None: the heads' common input).
        iterations: Frank-Wolfe steps (three or more tasks).
        tolerance: Stop when a step changes α by less than this.
        **kwargs: Layer arguments such as `name`.

    References:
        Sener and Koltun, "Multi-Task Learning as Multi-Objective
        Optimization", NeurIPS 2018. Désidéri, "Multiple-gradient descent
        algorithm (MGDA) for multiobjective optimization", 2012.
    """

    needs_task_gradients = True

    def __init__(
        self,
        upper_bound: bool = False,
        representation_layer: str | None = None,
        iterations: int = 250,
        tolerance: float = 1e-6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.upper_bound = bool(upper_bound)
        self.needs_representation = self.upper_bound
        self.representation_layer = representation_layer
        if (
            isinstance(iterations, bool)
            or not isinstance(iterations, int)
            or iterations < 1
        ):
            raise ValueError(
                "`iterations` must be a positive integer. "
                f"Received: iterations={iterations!r}."
            )
        if not tolerance > 0:
            raise ValueError(
                "`tolerance` must be positive. Received: "
                f"tolerance={tolerance!r}."
            )
        self.iterations, self.tolerance = iterations, float(tolerance)

    def combine(self, gradients, context):
        flat = gradients.global_flat()
        alpha = (
            min_norm_weights(
                context.representation_gram(), self.iterations, self.tolerance
            )
            if self.upper_bound
            else gradient_weights(flat, self.iterations, self.tolerance)
        )
        n = tf.cast(tf.shape(flat)[0], flat.dtype)
        total = n * tf.linalg.matvec(flat, alpha, transpose_a=True)
        return gradients.replica_share(total)

    def get_config(self):
        return {
            **super().get_config(),
            "upper_bound": self.upper_bound,
            "representation_layer": self.representation_layer,
            "iterations": self.iterations,
            "tolerance": self.tolerance,
        }


def gradient_weights(flat, iterations=250, tolerance=1e-6):
    """MGDA's α for the task gradients `flat` (`[n, d]`, one row each).

    α does not depend on the gradients' scale, so the Gram matrix is
    taken at the largest entry's scale: gradients near 1e19 (whose
    squares overflow float32) or 1e-20 (whose squares underflow) give
    the α of gradients of norm about 1.
    """
    flat = flat / largest_entry(flat)
    gram = tf.matmul(flat, flat, transpose_b=True)
    return min_norm_weights(gram, iterations, tolerance)


def min_norm_weights(gram, iterations=250, tolerance=1e-6):
    """α on the simplex minimising αᵀ G α, for a Gram matrix G = [gᵢ·gⱼ].

    Two tasks: the closed form α₁ = clip((g₂·g₂ − g₁·g₂) / ‖g₁ − g₂‖², 0,
    1). More: Frank-Wolfe from the best pair's solution; each step moves
    toward the vertex e_t with the smallest (Gα)_t by the exact line
    search between two points.
    """
    gram = tf.convert_to_tensor(gram, tf.float32)
    # α does not depend on the Gram matrix's scale (a representation Gram
    # included): solve at unit scale.
    gram = gram / largest_entry(gram)
    n = gram.shape[0]
    if n == 1:
        return tf.ones([1], gram.dtype)
    if n == 2:
        return _pair(gram[0, 0], gram[0, 1], gram[1, 1], 0, 1, 2)
    alpha = _best_pair(gram, n)

    def body(step, alpha, change):
        product = tf.linalg.matvec(gram, alpha)
        t = tf.argmin(product)
        vertex = tf.one_hot(t, n, dtype=gram.dtype)
        vv = tf.tensordot(alpha, product, 1)  # current point · itself
        tv = product[t]  # vertex · point
        tt = gram[t, t]
        gamma = _line(vv, tv, tt)
        updated = (1.0 - gamma) * alpha + gamma * vertex
        return step + 1, updated, tf.reduce_sum(tf.abs(updated - alpha))

    _, alpha, _ = tf.while_loop(
        lambda step, alpha, change: tf.logical_and(
            step < iterations, change >= tolerance
        ),
        body,
        (tf.constant(0), alpha, tf.constant(1.0, gram.dtype)),
    )
    return alpha


def _line(vv, uv, uu):
    """γ ∈ [0, 1] minimising ‖(1 − γ)v + γu‖² given v·v, u·v, u·u."""
    denominator = vv - 2.0 * uv + uu
    gamma = tf.math.divide_no_nan(vv - uv, denominator)
    return tf.clip_by_value(gamma, 0.0, 1.0)


def _pair(gii, gij, gjj, i, j, n):
    """The min-norm weights of two gradients, as an `[n]` vector."""
    # Weight β on gᵢ: ‖β gᵢ + (1 − β) gⱼ‖² is least at this β.
    beta = _line(gjj, gij, gii)
    return beta * tf.one_hot(i, n, dtype=gii.dtype) + (
        1.0 - beta
    ) * tf.one_hot(j, n, dtype=gii.dtype)


def _best_pair(gram, n):
    """The min-norm weights of the pair whose min-norm point is smallest."""
    best, best_norm = None, None
    for i in range(n):
        for j in range(i + 1, n):
            alpha = _pair(gram[i, i], gram[i, j], gram[j, j], i, j, n)
            norm = tf.tensordot(alpha, tf.linalg.matvec(gram, alpha), 1)
            if best is None:
                best, best_norm = alpha, norm
            else:
                better = norm < best_norm
                best = tf.where(better, alpha, best)
                best_norm = tf.where(better, norm, best_norm)
    return best
