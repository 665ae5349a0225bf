"""The protocol a multi-task training augmentation follows inside a step."""

import keras
import tensorflow as tf


class TrainingStrategy(keras.layers.Layer):
    """Turns per-task losses and gradients into one multi-task update.

    `TaskAffinityModel(..., strategy=...)` calls a strategy at three points of
    every training step (TensorFlow graph mode, inside `train_step`):

    1. `weight_losses(losses)` maps each task's compiled loss (already
       multiplied by its `loss_weights` entry) to the loss that is
       differentiated: uncertainty weights, GradNorm weights. The default
       returns the losses unchanged.
    2. `combine(task_gradients)` receives, for the shared variables only, one
       list of gradients per task (a `None` entry where the task's loss does
       not depend on that variable) and returns the list of gradients to
       apply to the shared variables: PCGrad. The default sums them. It is
       only called when `needs_task_gradients` is True or the model measures
       affinity on this step; otherwise the model differentiates the sum of
       the weighted losses once, which equals the default.
    3. `update(losses, task_gradients)` runs after `combine`, for strategies
       that keep their own state updated by their own rule (GradNorm's task
       weights); `losses` are the compiled losses before `weight_losses`.
       The default does nothing.

    Before the first step the model calls `build_tasks(task_names)` (create
    variables here) and, once it knows them, `set_shared_variables(list)`
    with the shared variables in the order of the gradient lists.

    Variables a strategy creates in `build_tasks` are tracked by the model:
    trainable ones are updated by the compiled optimizer through the gradient
    of the total loss (uncertainty weights), non-trainable ones are saved with
    the model's weights and restored by `keras.callbacks.BackupAndRestore`.

    Subclasses registered with `keras.saving.register_keras_serializable`
    and a complete `get_config` are saved and loaded with the model.

    Args:
        **kwargs: Layer arguments such as `name`.
    """

    #: When True the model computes one gradient per task on every step
    #: (n backward passes), not only on the steps where it measures affinity.
    needs_task_gradients = False

    #: When True `combine` is called as `combine(task_gradients, context)`
    #: with a `StepContext`: this step's task losses and, when
    #: `uses_lookahead` is also True, lookahead steps of the compiled
    #: optimizer on candidate gradients (IT-MTL).
    needs_step_context = False
    uses_lookahead = False

    def build_tasks(self, task_names):
        """Creates the strategy's variables for these tasks, in this order."""
        self.task_names = tuple(task_names)
        self.built = True

    def set_shared_variables(self, variables):
        """Receives the shared variables (gradient list order). No-op."""
        del variables

    def weight_losses(self, losses):
        """Returns `{task: loss to differentiate}` for `{task: loss}`."""
        return dict(losses)

    def combine(self, task_gradients):
        """Returns the shared-variable gradients to apply.

        Args:
            task_gradients: `{task: [gradient or None per shared variable]}`,
                every list in the same variable order.
        """
        lists = list(task_gradients.values())
        combined = []
        for per_variable in zip(*lists):
            present = [g for g in per_variable if g is not None]
            combined.append(tf.add_n(present) if present else None)
        return combined

    def update(self, losses, task_gradients):
        """Updates the strategy's own state after the gradients are known."""
        del losses, task_gradients

    def loss_multipliers(self):
        """`[n]` factors `weight_losses` multiplies each task's loss by.

        The gradient of task `i`'s weighted loss with respect to a shared
        weight is its multiplier times the gradient of its compiled loss.
        None means all ones.
        """
        return None

    def on_epoch_begin(self):
        """Called by `TaskAffinityModel.fit` before any other callback."""

    def on_epoch_end(self):
        """Called by `TaskAffinityModel.fit` before any other callback."""


class WeightedStrategy(TrainingStrategy):
    """A strategy that combines gradients of optionally weighted losses.

    Delegates loss weighting (and its own state and update) to the
    `loss_weighting` strategy, e.g. `UncertaintyWeights()`.

    Args:
        loss_weighting: None, a strategy, or its serialized config.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(self, loss_weighting=None, **kwargs):
        super().__init__(**kwargs)
        loss_weighting = deserialize(loss_weighting)
        if loss_weighting is not None and not isinstance(
            loss_weighting, TrainingStrategy
        ):
            raise TypeError(
                "`loss_weighting` must be a tag_keras.mtl strategy such as "
                "UncertaintyWeights(). Received: "
                f"{type(loss_weighting).__name__}."
            )
        self.loss_weighting = loss_weighting

    def build_tasks(self, task_names):
        super().build_tasks(task_names)
        if self.loss_weighting is not None:
            self.loss_weighting.build_tasks(task_names)

    def set_shared_variables(self, variables):
        if self.loss_weighting is not None:
            self.loss_weighting.set_shared_variables(variables)

    def weight_losses(self, losses):
        if self.loss_weighting is None:
            return dict(losses)
        return self.loss_weighting.weight_losses(losses)

    def update(self, losses, task_gradients):
        if self.loss_weighting is not None:
            self.loss_weighting.update(losses, task_gradients)

    def loss_multipliers(self):
        if self.loss_weighting is None:
            return None
        return self.loss_weighting.loss_multipliers()

    def get_config(self):
        return {**super().get_config(),
                "loss_weighting": serialize(self.loss_weighting)}


class StepContext:
    """What a training step offers `combine` beyond the task gradients.

    Attributes:
        losses: `[n]` global-batch compiled losses of the tasks (before any
            weighting), in task order.
        usable: `[n]` booleans: the task's loss is positive and finite and
            the batch has its labels.
    """

    def __init__(self, losses, usable, lookahead=None, flatten=None):
        self.losses, self.usable = losses, usable
        self._lookahead, self._flatten = lookahead, flatten

    def lookahead(self, shared_gradients):
        """`[n]` task losses on this batch after one real optimizer step.

        The step is the compiled optimizer's, with its current state, on
        `shared_gradients` (one per shared variable); task heads keep their
        values. Nothing the model or optimizer owns is written.
        """
        if self._lookahead is None:
            raise ValueError(
                "This strategy did not ask for lookahead steps: set "
                "`uses_lookahead = True`.")
        return self._lookahead(shared_gradients)

    def flatten(self, shared_gradients):
        """One float32 vector of the shared gradients, summed over replicas."""
        return self._flatten(shared_gradients)


def serialize(strategy):
    """A strategy's Keras config (None stays None)."""
    if strategy is None:
        return None
    return keras.saving.serialize_keras_object(strategy)


def deserialize(strategy):
    """A strategy from `serialize`'s output; strategies pass through."""
    if isinstance(strategy, dict):
        strategy = keras.saving.deserialize_keras_object(strategy)
    return strategy
