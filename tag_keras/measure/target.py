"""The batch on which the estimators measure the target tasks' losses."""

import keras
from keras import ops

from tag_keras import _distribute
from tag_keras import _keras_private
from tag_keras._tensorflow import tf
from tag_keras.measure import affinity as affinity_lib
from tag_keras.tasks import labels as labels_lib


class Target:
    """Target losses before a step, and a way to measure them after one.

    Attributes:
        tasks: Task names, in matrix order.
        before: `[n]` global-batch task losses at the current weights.
        ok: `[n]` booleans: the task has labels in the batch and a finite,
            non-zero loss, so it can be a target this step.
        shared_values: The shared weights' values before the step.
    """

    def __init__(self, tasks, before, ok, shared_values, losses_at):
        self.tasks, self.before, self.ok = tasks, before, ok
        self.shared_values = shared_values
        self._losses_at = losses_at

    def losses_at(self, shared_values, head_values=None):
        """`[n]` global-batch losses with the shared weights replaced.

        Task heads keep their values unless `head_values` (one per
        `SharedVariables.heads` entry) replace them too; the forward pass
        runs in training mode from the step's non-trainable state, and its
        updates of that state (BatchNorm statistics) are thrown away.
        """
        return self._losses_at(shared_values, head_values)


class TargetBatches:
    """Makes a step's `Target`: its own batch, or a held-out batch.

    Args:
        model: The model.
        task_losses: The model's `TaskLosses`.
        tasks: Task names.
        shared: The model's `SharedVariables`.
        held_out: An iterator of held-out batches (validation affinity),
            or None to measure on the training batch.
    """

    def __init__(self, model, task_losses, tasks, shared, held_out=None):
        self.model, self.task_losses = model, task_losses
        self.tasks, self.shared, self.held_out = tasks, shared, held_out

    def make(self, batch, use_held_out=True):
        """The `Target` of this step's `batch` (a `Batch`)."""
        current = snapshot(self.model.trainable_variables)
        x, y, sample_weight = batch.x, batch.y, batch.sample_weight
        losses, labels, weights = batch.losses, batch.labels, batch.weights
        if self.held_out is not None and use_held_out:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
                labels_lib.mask_missing_in_batch(next(self.held_out))
            )
            losses, labels, weights = self._losses(
                current, batch.snapshot, x, y, sample_weight
            )
        before, ok = self.usable(losses, labels, weights)

        def losses_at(shared_values, head_values=None):
            values = list(current)
            for k, value in zip(self.shared.shared, shared_values):
                values[k] = value
            for k, value in zip(self.shared.heads, head_values or ()):
                values[k] = value
            after, _, _ = self._losses(
                values, batch.snapshot, x, y, sample_weight
            )
            return self.stack(after)

        return Target(
            self.tasks, before, ok, self.shared.pick(current), losses_at
        )

    def stack(self, losses):
        """`[n]` global-batch losses from `{task: replica loss}`."""
        return stack(self.tasks, losses)

    def usable(self, losses, labels, weights):
        """`([n] global-batch losses, [n] usable)` of a batch (`usable`)."""
        return usable(self.tasks, self.shared, losses, labels, weights)

    def _losses(self, trainable, non_trainable, x, y, sample_weight):
        y_pred = _keras_private.stateless_call_in_training(
            self.model, trainable, non_trainable, x
        )
        return self.task_losses(y, y_pred, sample_weight, track=False)


def stack(tasks, losses):
    """`[n]` global-batch losses from `{task: replica loss}` (any backend;
    the sum over replicas is the identity outside `tf.distribute`)."""
    return _distribute.replica_sum(ops.stack([losses[t] for t in tasks]))


def usable(tasks, shared, losses, labels, weights):
    """`([n] global-batch losses, [n] usable)` of a batch, any backend.

    Usable: a label in the batch on some replica, a finite non-zero loss,
    and a loss that depends on the shared weights (`shared`, the
    `SharedVariables`).
    """
    before = stack(tasks, losses)
    labelled = _distribute.replica_any(
        ops.stack(
            [labels_lib.has_labels(labels[t], weights[t]) for t in tasks]
        )
    )
    return before, (
        affinity_lib.usable_loss(before)
        & labelled
        & ops.convert_to_tensor(shared.attached)
    )


class Batch:
    """What a step knows about its batch: inputs, losses, labels, state."""

    def __init__(self, x, y, sample_weight, losses, labels, weights, snapshot):
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.losses, self.labels, self.weights = losses, labels, weights
        self.snapshot = snapshot  # non-trainable values before the step


def snapshot(variables):
    """The current values of `variables`, read now."""
    return [tf.identity(keras.ops.convert_to_tensor(v)) for v in variables]
