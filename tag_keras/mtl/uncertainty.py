"""Uncertainty weights (Kendall, Gal and Cipolla, 2018)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import keras
from keras import ops

from tag_keras import _keras_private
from tag_keras.mtl.base import TrainingMethod

if TYPE_CHECKING:  # for annotations only
    import tensorflow as tf


@keras.saving.register_keras_serializable(package="tag_keras")
class UncertaintyWeights(TrainingMethod):
    """Learns one log standard deviation `s` per task.

    Each task's loss `L` becomes `L * exp(-2 s) + s`; the compiled optimizer
    learns `s` with the network (it is a trainable weight of the model).
    After every update `s` is clipped to `clip` (the TAG release clips to
    [0.01, 10]).

    ```python
    model = tag_keras.TaskAffinityModel(
        inputs, outputs, training_method=tag_keras.mtl.UncertaintyWeights())
    ```

    Args:
        initial_value: Starting `s` of every task (inside `clip`).
        clip: `(low, high)` bounds of `s`, or None for no bounds.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(
        self,
        initial_value: float = 0.01,
        clip: tuple[float, float] | None = (0.01, 10.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if clip is not None:
            low, high = (float(c) for c in clip)
            if not low < high:
                raise ValueError(
                    "`clip` must be (low, high) with low < high. Received: "
                    f"clip={clip}."
                )
            if not low <= initial_value <= high:
                raise ValueError(
                    f"`initial_value` must lie inside `clip` {clip}. "
                    f"Received: initial_value={initial_value}."
                )
            clip = (low, high)
        self.initial_value = float(initial_value)
        self.clip = clip

    def build_tasks(self, task_names):
        super().build_tasks(task_names)
        constraint = None
        if self.clip is not None:
            constraint = _Clip(*self.clip)
        # One scalar per task: a single vector would receive gradients from
        # every task's loss and count as a shared weight.
        self.log_sigmas = [
            self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.initial_value),
                constraint=constraint,
                trainable=True,
                name=f"log_sigma_{k}",
            )
            for k in range(len(self.task_names))
        ]

    @property
    def log_sigma(self) -> tf.Tensor:
        """The current `s` of every task, in task order (a tensor)."""
        return ops.stack([v.value for v in self.log_sigmas])

    def weight_losses(self, losses):
        weighted = {}
        for task, variable in zip(self.task_names, self.log_sigmas):
            s = ops.cast(variable, losses[task].dtype)
            # Under tf.distribute each replica's loss is already divided by
            # the number of replicas; the additive term must be as well.
            weighted[task] = losses[task] * ops.exp(
                -2.0 * s
            ) + _keras_private.scale_loss_for_distribution(s)
        return weighted

    def task_weights(self) -> dict[str, float]:
        """`{task: exp(-2 s)}`, the current multiplier of each task's loss."""
        values = ops.convert_to_numpy(ops.exp(-2.0 * self.log_sigma))
        return dict(zip(self.task_names, values.tolist()))

    def loss_multipliers(self):
        return ops.exp(-2.0 * self.log_sigma)

    def get_config(self):
        return {
            **super().get_config(),
            "initial_value": self.initial_value,
            "clip": self.clip,
        }


@keras.saving.register_keras_serializable(package="tag_keras")
class _Clip(keras.constraints.Constraint):
    def __init__(self, low, high):
        self.low, self.high = low, high

    def __call__(self, w):
        return ops.clip(w, self.low, self.high)

    def get_config(self):
        return {"low": self.low, "high": self.high}
