"""One estimator per affinity method, behind one interface.

`estimator.matrix(gradients, target)` takes the step's `TaskGradients` and
`Target` and returns the `[n, n]` affinity matrix, row = source task (whose
gradient is applied), column = target task (whose loss is measured). The
rows of a lookahead or first-order matrix are computed one source at a time
in a `tf.while_loop` (`rows.one_at_a_time`), so tracing grows with n.
"""

import tensorflow as tf

from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import rows as rows_lib

#: The methods `TaskAffinityModel(affinity_method=...)` accepts.
AFFINITY_METHODS = affinity_lib.AFFINITY_METHODS
#: The tentative steps `TaskAffinityModel(lookahead_step=...)` accepts.
STEPS = ("optimizer", "sgd", "increment")


def check_settings(affinity_method, lookahead_step):
    """Raises `ValueError` for an unknown method or tentative step."""
    if affinity_method not in AFFINITY_METHODS:
        raise ValueError(
            f"`affinity_method` must be one of {list(AFFINITY_METHODS)}. "
            f"Received: affinity_method={affinity_method!r}.")
    if lookahead_step not in STEPS:
        raise ValueError(
            f"`lookahead_step` must be one of {list(STEPS)}. Received: "
            f"lookahead_step={lookahead_step!r}.")


class TentativeStep:
    """A source's tentative update of the shared weights.

    * `"optimizer"`: the compiled optimizer's real next step, its state
      (momentum, Adam moments, iteration count) included: `θs + Δ(g_i)`.
    * `"sgd"`: the paper's plain step with this step's rate, `θs − lr g_i`
      (what the release's Taskonomy code runs in effect).
    * `"increment"`: the optimizer's step as well, but measured against the
      state-only step `θs + Δ(0)` instead of `θs`, which cancels the move
      every source shares (most of it the momentum velocity).

    Args:
        kind: One of `STEPS`.
        lookahead: The `OptimizerLookahead` of the shared variables.
    """

    def __init__(self, kind, lookahead):
        self.kind, self.lookahead = kind, lookahead

    def values(self, gradients, target):
        """The shared weights after the source's step (`gradients`)."""
        if self.kind == "sgd":
            return self.lookahead.sgd_step(gradients, target.shared_values)
        return self.lookahead.step(gradients)

    def reference_values(self, target):
        """The shared weights the step is compared with: `θs`, or for
        `"increment"` the state-only step `θs + Δ(0)`."""
        if self.kind != "increment":
            return target.shared_values
        return self.lookahead.state_step()

    def reference_losses(self, target, values):
        """The target losses at `reference_values` (one forward pass for
        `"increment"`)."""
        if self.kind != "increment":
            return target.before
        return target.losses_at(values)


class LookaheadEstimator:
    """TAG: `1 - L_j(θs after a real optimizer step on g_i) / L_j(θs)`.

    Args:
        step: The `TentativeStep` (its lookahead gives the learning rate).
        scale_by_learning_rate: Divide by this step's learning rate.
    """

    def __init__(self, step, scale_by_learning_rate=True):
        self.step = step
        self.lookahead = step.lookahead
        self.scale_by_learning_rate = scale_by_learning_rate

    def matrix(self, gradients, target):
        return _matrix(self, gradients, target)

    def source_rows(self, gradients, target):
        """`g -> [n]`: every target's affinity from a source of gradient
        `g` (a group's summed gradient), against this step's reference."""
        del gradients
        before = self.step.reference_losses(
            target, self.step.reference_values(target))

        def row(shared_gradients):
            after = target.losses_at(self.step.values(shared_gradients,
                                                      target))
            return affinity_lib.lookahead_affinity(
                before, after[tf.newaxis], _rate(self))[0]

        return row


class FirstOrderEstimator:
    """Its Taylor approximation `-<∇L_j, Δθs_i> / L_j`, `Δθs_i` the step.

    No lookahead forward pass: `L_j` and `∇L_j` are at `θs`, also for
    `"increment"`, whose `Δθs_i = Δ(g_i) − Δ(0)`.

    Args:
        step: The `TentativeStep` giving each source's step `Δθs_i` (for
            `"increment"`, `Δ(g_i) − Δ(0)`).
        optimizer: The compiled optimizer (its `scale_loss` gives the
            gradients' scale under a loss-scale optimizer).
        scale_by_learning_rate: Divide by this step's learning rate.
    """

    def __init__(self, step, optimizer, scale_by_learning_rate=True):
        self.step = step
        self.lookahead = step.lookahead
        self.optimizer = optimizer
        self.scale_by_learning_rate = scale_by_learning_rate

    def matrix(self, gradients, target):
        return _matrix(self, gradients, target)

    def source_rows(self, gradients, target):
        """`g -> [n]`: every target's first-order affinity from a source
        of gradient `g` (a group's summed gradient)."""
        scale = self.optimizer.scale_loss(tf.constant(1.0))
        flat = gradients.global_flat() / tf.cast(scale, tf.float32)
        current = self.step.reference_values(target)

        def row(shared_gradients):
            new_values = self.step.values(shared_gradients, target)
            change = gradients.flatten(
                [n - c for n, c in zip(new_values, current)])
            dots = tf.linalg.matvec(flat, change)
            return affinity_lib.first_order_affinity(
                dots[tf.newaxis], target.before, _rate(self))[0]

        return row


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

    def source_rows(self, gradients, target):
        raise ValueError(
            "Group sources (affinity_sources other than 'tasks') need "
            "affinity_method='lookahead' or 'first_order'. Received: "
            "affinity_method='cosine'.")


def make_estimator(method, lookahead=None, *, optimizer=None,
                   scale_by_learning_rate=True, kernels_only=False,
                   step="optimizer"):
    """The estimator of `method` (one of `AFFINITY_METHODS`), with `step`
    (one of `STEPS`) as each source's tentative update."""
    if method == "lookahead":
        return LookaheadEstimator(TentativeStep(step, lookahead),
                                  scale_by_learning_rate)
    if method == "first_order":
        return FirstOrderEstimator(TentativeStep(step, lookahead), optimizer,
                                   scale_by_learning_rate)
    if method == "cosine":
        return CosineEstimator(kernels_only)
    raise ValueError(
        f"`affinity_method` must be one of {list(AFFINITY_METHODS)}. "
        f"Received: affinity_method={method!r}.")


def _matrix(estimator, gradients, target):
    """`[n, n]`: each task's row from its gradient, one at a time."""
    row = estimator.source_rows(gradients, target)
    gradients.prepare_rows()  # outside the loop
    return rows_lib.one_at_a_time(len(gradients),
                                  lambda i: row(gradients.row(i)))


def _rate(estimator):
    if not estimator.scale_by_learning_rate:
        return None
    return estimator.lookahead.learning_rate
