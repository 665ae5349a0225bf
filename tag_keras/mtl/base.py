"""The protocol a multi-task training method follows inside a step."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras

from tag_keras._tensorflow import tf
from tag_keras.tasks.gradients import TaskGradients


class TrainingMethod(keras.layers.Layer):
    """Turns per-task losses and gradients into one multi-task update.

    `TaskAffinityModel(..., training_method=...)` calls a method at three
    points of every training step (TensorFlow graph mode):

    1. `weight_losses(losses)` maps each task's compiled loss (already
       multiplied by its `loss_weights` entry) to the loss that is
       differentiated: uncertainty weights, GradNorm weights. The default
       returns the losses unchanged.
    2. `combine(gradients, context)` receives the step's `TaskGradients`
       (`tag_keras.tasks.TaskGradients`: dense per-task gradients of the
       shared variables, with flatten, unflatten and subset sums) and a
       `StepContext` (this step's losses and, on demand, lookahead steps of
       the compiled optimizer), and returns one gradient per shared
       variable: PCGrad, IT-MTL. The default is the sum. It is called on
       every step when `needs_task_gradients` is True, otherwise on the
       steps where the model measures affinity; on other steps the model
       differentiates the sum of the weighted losses once, which equals
       the default.
    3. `update(losses, gradients)` runs after `combine`, for methods that
       keep their own state updated by their own rule (GradNorm's task
       weights); `losses` are the compiled losses before `weight_losses`.

    Before the first step the model calls `build_tasks(task_names)` (create
    variables here) and, once it knows them, `set_shared_variables(list)`.

    Variables a method creates in `build_tasks` are tracked by the model:
    trainable ones are updated by the compiled optimizer through the
    gradient of the total loss (uncertainty weights), non-trainable ones
    are saved with the model and restored by `BackupAndRestore`.
    Subclasses registered with `keras.saving.register_keras_serializable`
    and a complete `get_config` are saved and loaded with the model.

    Keyword arguments (such as `name`) go to `keras.layers.Layer`.
    """

    #: True when `combine` must see every step (n backward passes per
    #: step), not only the steps where the model measures affinity.
    needs_task_gradients = False

    #: True when `StepContext.lookahead` also moves the task heads by their
    #: own optimizer step, before and after the shared step alike (IT-MTL's
    #: Algorithm 1: heads first).
    lookahead_heads = False

    #: True when `combine` reads `StepContext.representation_gram()`: the
    #: model then runs its forward pass through a functional copy that
    #: also returns the shared representation (`representation_layer`).
    needs_representation = False

    #: With `needs_representation`: the layer whose output is the shared
    #: representation, or None for the one tensor every head reads.
    representation_layer: str | None = None

    def build_tasks(self, task_names: Sequence[str]) -> None:
        """Creates the method's variables for these tasks, in this order."""
        self.task_names = tuple(task_names)
        self.built = True

    def set_shared_variables(self, variables: Sequence) -> None:
        """Receives the shared variables (gradient order). No-op."""
        del variables

    def weight_losses(
        self, losses: Mapping[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        """Returns `{task: loss to differentiate}` for `{task: loss}`."""
        return dict(losses)

    def combine(self, gradients: TaskGradients, context: StepContext) -> list:
        """Returns the shared-variable gradients to apply (default: sum).

        Args:
            gradients: The step's `TaskGradients`.
            context: The step's `StepContext`.
        """
        del context
        return gradients.sum()

    def update(self, losses: tf.Tensor, gradients: TaskGradients) -> None:
        """Updates the method's own state after the gradients are known."""
        del losses, gradients

    def loss_multipliers(self) -> tf.Tensor | None:
        """`[n]` factors `weight_losses` multiplies each task's loss by.

        The gradient of task `i`'s weighted loss with respect to a shared
        weight is its multiplier times the gradient of its compiled loss.
        None means all ones.
        """
        return None

    def attach(self, model: keras.Model) -> None:
        """Called by `TaskAffinityModel.fit` at train begin with the model.

        For methods that read the model between steps (SVD task weights
        recompute from its representation); keep it untracked (e.g. a
        `weakref`), a layer must not own its model. Default: no-op.
        """
        del model

    def on_epoch_begin(self) -> None:
        """Called by `TaskAffinityModel.fit` before any other callback."""

    def on_epoch_end(self) -> None:
        """Called by `TaskAffinityModel.fit` before any other callback."""


class WeightedMethod(TrainingMethod):
    """A method that combines gradients of optionally weighted losses.

    Delegates loss weighting (and its own state and update) to the
    `loss_weighting` method, e.g. `UncertaintyWeights()`.

    Args:
        loss_weighting: None, a method, or its serialized config.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(
        self, loss_weighting: TrainingMethod | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        loss_weighting = deserialize(loss_weighting)
        if loss_weighting is not None and not isinstance(
            loss_weighting, TrainingMethod
        ):
            raise TypeError(
                "`loss_weighting` must be a tag_keras.mtl method such as "
                "UncertaintyWeights(). Received: "
                f"{type(loss_weighting).__name__}."
            )
        self.loss_weighting = loss_weighting

    def build_tasks(self, task_names: Sequence[str]) -> None:
        super().build_tasks(task_names)
        if self.loss_weighting is not None:
            self.loss_weighting.build_tasks(task_names)

    def set_shared_variables(self, variables: Sequence) -> None:
        if self.loss_weighting is not None:
            self.loss_weighting.set_shared_variables(variables)

    def weight_losses(
        self, losses: Mapping[str, tf.Tensor]
    ) -> dict[str, tf.Tensor]:
        if self.loss_weighting is None:
            return dict(losses)
        return self.loss_weighting.weight_losses(losses)

    def update(self, losses: tf.Tensor, gradients: TaskGradients) -> None:
        if self.loss_weighting is not None:
            self.loss_weighting.update(losses, gradients)

    def loss_multipliers(self) -> tf.Tensor | None:
        if self.loss_weighting is None:
            return None
        return self.loss_weighting.loss_multipliers()

    def get_config(self):
        return {
            **super().get_config(),
            "loss_weighting": serialize(self.loss_weighting),
        }


class StepContext:
    """What a training step offers `combine` beyond the task gradients.

    Attributes:
        losses: `[n]` global-batch compiled losses of the tasks (before any
            weighting), in task order.
        usable: `[n]` booleans: the task's loss is positive and finite and
            the batch has its labels.
    """

    def __init__(
        self,
        losses: tf.Tensor,
        usable: tf.Tensor,
        lookahead: Callable[[list], tf.Tensor],
        representation_gram: Callable[[], tf.Tensor] | None = None,
    ) -> None:
        self.losses, self.usable = losses, usable
        self._lookahead = lookahead
        self._representation_gram = representation_gram

    def representation_gram(self) -> tf.Tensor:
        """`[n, n]` inner products of the tasks' gradients with respect to
        the shared representation, over the global batch (methods with
        `needs_representation` only)."""
        if self._representation_gram is None:
            raise ValueError(
                "representation_gram() needs a method with "
                "needs_representation = True."
            )
        return self._representation_gram()

    def lookahead(self, shared_gradients: list) -> tf.Tensor:
        """`[n]` task losses on this batch after one real optimizer step.

        The step is the compiled optimizer's, with its current state, on
        `shared_gradients` (one per shared variable); task heads keep their
        values. Nothing the model or optimizer owns is written.
        """
        return self._lookahead(shared_gradients)


def serialize(method):
    """A method's Keras config (None stays None)."""
    if method is None:
        return None
    return keras.saving.serialize_keras_object(method)


def deserialize(method):
    """A method from `serialize`'s output; methods pass through."""
    if isinstance(method, dict):
        method = keras.saving.deserialize_keras_object(method)
    return method


def representation_tensor(model, layer=None):
    """The symbolic tensor of a functional model's shared representation.

    The output of the layer named `layer`, or (None) the one tensor every
    output layer reads.

    Raises:
        ValueError: for an unknown layer, or heads that read different
            tensors.
    """
    from keras import tree

    if layer is not None:
        names = [item.name for item in model.layers]
        if layer not in names:
            raise ValueError(
                f"Unknown layer {layer!r}; the model's layers: "
                f"{names}. Received: layer={layer!r}."
            )
        return model.get_layer(layer).output
    outputs = {id(t) for t in tree.flatten(model.output)}
    inputs = [
        item.input
        for item in model.layers
        if any(id(t) in outputs for t in tree.flatten(item.output))
    ]
    if (
        not inputs
        or len({id(t) for t in inputs}) != 1
        or isinstance(inputs[0], (list, dict, tuple))
    ):
        raise ValueError(
            "The task heads do not read one common tensor: name the layer "
            "whose output is the shared representation. Received: "
            "layer=None."
        )
    return inputs[0]


def largest_entry(values):
    """The largest absolute entry of `values`, or 1 where that is 0 or
    not finite: the scale at which scale-free methods (PCGrad's
    projections, MGDA's weights) compute, so that squares of gradients
    near 1e19 do not overflow float32 nor those near 1e-20 underflow."""
    largest = tf.reduce_max(tf.abs(values))
    usable = tf.math.is_finite(largest) & (largest > 0)
    return tf.where(usable, largest, tf.ones_like(largest))
