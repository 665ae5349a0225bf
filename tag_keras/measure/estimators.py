"""One estimator per affinity method, behind one interface.

`estimator.matrix(gradients, target)` takes the step's `TaskGradients` and
`Target` and returns the `[n, n]` affinity matrix, row = source task (whose
gradient is applied), column = target task (whose loss is measured).
"""

import tensorflow as tf

from tag_keras.measure import affinity as affinity_lib

#: The methods `TaskAffinityModel(affinity_method=...)` accepts.
METHODS = affinity_lib.METHODS


class LookaheadEstimator:
    """TAG: `1 - L_j(θs after a real optimizer step on g_i) / L_j(θs)`.

    Args:
        lookahead: The `OptimizerLookahead` of the shared variables.
        scale_by_learning_rate: Divide by this step's learning rate.
    """

    def __init__(self, lookahead, scale_by_learning_rate=True):
        self.lookahead = lookahead
        self.scale_by_learning_rate = scale_by_learning_rate

    def matrix(self, gradients, target):
        rows = [target.losses_at(self.lookahead.step(gradients.of(t)))
                for t in gradients.tasks]
        return affinity_lib.lookahead_affinity(
            target.before, tf.stack(rows), _rate(self))


class FirstOrderEstimator:
    """Its Taylor approximation `-<∇L_j, Δθs_i> / L_j`, `Δθs_i` the real step.

    Args:
        lookahead: The `OptimizerLookahead` giving each source's step.
        optimizer: The compiled optimizer (its `scale_loss` gives the
            gradients' scale under a loss-scale optimizer).
        scale_by_learning_rate: Divide by this step's learning rate.
    """

    def __init__(self, lookahead, optimizer, scale_by_learning_rate=True):
        self.lookahead = lookahead
        self.optimizer = optimizer
        self.scale_by_learning_rate = scale_by_learning_rate

    def matrix(self, gradients, target):
        scale = self.optimizer.scale_loss(tf.constant(1.0))
        flat = gradients.global_flat() / tf.cast(scale, tf.float32)
        current = target.shared_values
        steps = []
        for task in gradients.tasks:
            new_values = self.lookahead.step(gradients.of(task))
            steps.append(gradients.flatten(
                [n - c for n, c in zip(new_values, current)]))
        dots = tf.matmul(tf.stack(steps), flat, transpose_b=True)
        return affinity_lib.first_order_affinity(dots, target.before,
                                                 _rate(self))


class CosineEstimator:
    """The CS baseline: cosine similarity of the shared gradients.

    Args:
        kernels_only: Use weight tensors of rank > 1 only (the release's
            choice).
    """

    def __init__(self, kernels_only=False):
        self.kernels_only = kernels_only

    def matrix(self, gradients, target):
        del target
        flat = gradients.global_flat(kernels_only=self.kernels_only)
        gram = tf.matmul(flat, flat, transpose_b=True)
        return affinity_lib.cosine_affinity(gram)


def make_estimator(method, lookahead=None, *, optimizer=None,
                   scale_by_learning_rate=True, kernels_only=False):
    """The estimator of `method` (one of `METHODS`)."""
    if method == "lookahead":
        return LookaheadEstimator(lookahead, scale_by_learning_rate)
    if method == "first_order":
        return FirstOrderEstimator(lookahead, optimizer,
                                   scale_by_learning_rate)
    if method == "cosine":
        return CosineEstimator(kernels_only)
    raise ValueError(f"`affinity_method` must be one of {list(METHODS)}. "
                     f"Received: affinity_method={method!r}.")


def _rate(estimator):
    if not estimator.scale_by_learning_rate:
        return None
    return estimator.lookahead.learning_rate
