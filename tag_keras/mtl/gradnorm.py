"""GradNorm: task weights that balance gradient norms (Chen et al., 2018)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tag_keras._distribute import replica_sum
from tag_keras._tensorflow import tf
from tag_keras.mtl.base import TrainingMethod


@keras.saving.register_keras_serializable(package="tag_keras")
class GradNorm(TrainingMethod):
    """Learns task weights `w` so weighted gradient norms train at one pace.

    Each step, with `G_i` the norm of the gradient of `w_i L_i` with respect
    to the last shared layer's kernel, `r_i = (L_i / L_i(0)) / mean_j(L_j /
    L_j(0))` and the target `T_i = mean_j(G_j) * r_i ** alpha` held
    constant, the weights take one gradient-descent step on
    `sum_i |G_i - T_i|` (a task with no initial loss yet, absent from the
    batches so far, has `r_i = 1`):

        w_i <- w_i - learning_rate * sign(G_i - T_i) * G_i / w_i

    (`G_i / w_i` is the unweighted gradient norm), are clipped to `clip` and
    renormalised to sum to the number of tasks. `L_i(0)` is the task's loss
    on the first training step where it had a label. The weights are
    non-trainable model weights: saved with the model and restored by
    `BackupAndRestore`.

    Needs one backward pass per task on every step.

    Args:
        alpha: Restoring force; larger pulls slow tasks harder (the paper
            searches 0.01 to 5).
        learning_rate: Step size of the weights' update.
        clip: `(low, high)` bounds applied before renormalising.
        kernel: Optional name of the shared layer whose kernel gives the
            norms; by default the last shared weight of rank 2 or more in
            the model's variable order (the last shared layer's kernel).
        **kwargs: Layer arguments such as `name`.
    """

    needs_task_gradients = True

    def __init__(
        self,
        alpha: float = 1.5,
        learning_rate: float = 0.01,
        clip: tuple[float, float] = (0.1, 10.0),
        kernel: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not alpha >= 0:
            raise ValueError(f"`alpha` must be >= 0. Received: alpha={alpha}.")
        if not learning_rate > 0:
            raise ValueError(
                "`learning_rate` must be positive. Received: "
                f"learning_rate={learning_rate}."
            )
        low, high = (float(c) for c in clip)
        if not 0 < low < high:
            raise ValueError(
                "`clip` must be (low, high) with 0 < low < high. "
                f"Received: clip={clip}."
            )
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)
        self.clip = (low, high)
        self.kernel = kernel
        self._kernel_index = None

    def build_tasks(self, task_names):
        super().build_tasks(task_names)
        n = len(self.task_names)
        # Computed from global-batch values, identical on every replica.
        self.task_weight = self.add_weight(
            shape=(n,),
            initializer="ones",
            trainable=False,
            aggregation="only_first_replica",
            name="task_weight",
        )
        self.initial_losses = self.add_weight(
            shape=(n,),
            initializer=keras.initializers.Constant(float("nan")),
            trainable=False,
            aggregation="only_first_replica",
            name="initial_losses",
        )

    def weight_losses(self, losses):
        return {
            task: losses[task]
            * ops.cast(self.task_weight[k], losses[task].dtype)
            for k, task in enumerate(self.task_names)
        }

    def set_shared_variables(self, variables):
        self._kernel_index = _kernel_index(variables, self.kernel)

    def update(self, losses, gradients):
        index = self._kernel_index
        if index is None:
            raise ValueError(
                "GradNorm learns from the shared layers' "
                "gradients: use it as TaskAffinityModel's "
                "`training_method`."
            )
        # Global-batch gradients and losses (sums over replicas).
        kernels = replica_sum(
            tf.stack(
                [
                    tf.cast(gradients.of(t)[index], tf.float32)
                    for t in self.task_names
                ]
            )
        )
        # The norms of the losses' own gradients: a loss-scaled optimizer's
        # scale divided out.
        norms = tf.norm(
            tf.reshape(kernels, [len(self.task_names), -1]), axis=1
        ) / tf.cast(gradients.loss_scale, tf.float32)
        loss = replica_sum(
            tf.stack([tf.cast(losses[t], tf.float32) for t in self.task_names])
        )
        w, initial = self.task_weight, self.initial_losses
        # A task's initial loss is its loss on the first step where it had
        # a label (a positive loss): a task absent from the first batch
        # has loss 0 there, which would make every later ratio infinite.
        seen = tf.math.is_finite(loss) & (loss > 0)
        initial_value = tf.where(tf.math.is_nan(initial) & seen, loss, initial)
        new = gradnorm_update(
            tf.convert_to_tensor(w),
            norms,
            loss,
            initial_value,
            alpha=self.alpha,
            learning_rate=self.learning_rate,
            clip=self.clip,
        )
        ok = tf.reduce_all(tf.math.is_finite(new))
        w.assign(tf.where(ok, new, w))
        initial.assign(initial_value)

    def loss_multipliers(self):
        return self.task_weight.value

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "learning_rate": self.learning_rate,
            "clip": self.clip,
            "kernel": self.kernel,
        }


def gradnorm_update(
    weights, norms, losses, initial_losses, *, alpha, learning_rate, clip
):
    """One GradNorm step on the task weights (see `GradNorm`).

    Args:
        weights: `[n]` current task weights.
        norms: `[n]` gradient norms of the weighted losses.
        losses: `[n]` current task losses.
        initial_losses: `[n]` first-step task losses; NaN (or not
            positive) for a task with no initial loss yet, which counts as
            training at the mean pace of the others.
    """
    known = tf.math.is_finite(initial_losses) & (initial_losses > 0)
    ratios = tf.where(
        known,
        losses / tf.where(known, initial_losses, 1),
        tf.zeros_like(losses),
    )
    count = tf.reduce_sum(tf.cast(known, losses.dtype))
    mean = tf.reduce_sum(ratios) / tf.maximum(count, 1)
    relative = tf.where(known, ratios / mean, tf.ones_like(ratios))
    target = tf.stop_gradient(tf.reduce_mean(norms) * relative**alpha)
    raw_norms = norms / weights
    grad = tf.sign(norms - target) * raw_norms
    new = tf.clip_by_value(weights - learning_rate * grad, *clip)
    return new * (tf.cast(tf.size(new), new.dtype) / tf.reduce_sum(new))


def _kernel_index(variables, kernel):
    """Position of the kernel whose gradient norms GradNorm balances."""
    if kernel is not None:
        matches = [
            k
            for k, v in enumerate(variables)
            if v.path.split("/")[0] == kernel and len(v.shape) >= 2
        ]
        if not matches:
            names = sorted({v.path.split("/")[0] for v in variables})
            raise ValueError(
                f"GradNorm's `kernel` names no shared layer with a kernel. "
                f"Shared layers: {names}. Received: kernel={kernel!r}."
            )
        return matches[-1]
    ranked = [k for k, v in enumerate(variables) if len(v.shape) >= 2]
    return ranked[-1] if ranked else len(variables) - 1
