"""Per-task losses, computed exactly as `compile(loss=..., loss_weights=...)`.

Keras's `CompileLoss` only returns the total. `TaskLosses` walks the same
built loss entries (the loss object, its weight and the output it reads;
`_keras_private.loss_entries`) and returns one weighted loss per task,
updating the per-output loss trackers (`<task>_loss` in the logs) as Keras
does, or each task's unreduced loss per example (the diagnostics).
"""

import keras
from keras import ops
from keras import tree

from tag_keras import _keras_private


class TaskLosses:
    """Computes `{task: loss_weight * loss(y_true, y_pred, sample_weight)}`.

    Args:
        compile_loss: The model's `CompileLoss`
            (`_keras_private.compile_loss(model)`).
    """

    def __init__(self, compile_loss):
        self._loss_object = compile_loss

    def __call__(self, y_true, y_pred, sample_weight=None, track=True):
        """Returns `(losses, labels, weights)` dicts keyed by task.

        Args:
            y_true: Labels: a dict keyed by task, a list in output order, or
                one tensor for a single output.
            y_pred: The model's output dict.
            sample_weight: None, one tensor for every task, a dict or a list.
            track: Whether to update the per-output loss trackers.
        """
        y_true = by_task(y_true, y_pred, "y")
        sample_weight = by_task(sample_weight, y_pred, "sample_weight")
        self._build(y_true, y_pred)
        entries = _keras_private.loss_entries(self._loss_object)
        trackers = self._loss_object.metrics
        if len(trackers) != len(entries):
            trackers = [None] * len(entries)
        losses, labels, weights = {}, {}, {}
        for (task, loss_fn, loss_weight), tracker in zip(entries, trackers):
            y_t, y_p = y_true[task], y_pred[task]
            weight = (
                sample_weight.get(task)
                if isinstance(sample_weight, dict)
                else sample_weight
            )
            value = ops.cast(
                loss_fn(y_t, y_p, weight), dtype=self._loss_object.dtype
            )
            if track and tracker is not None:
                _keras_private.track_task_loss(
                    tracker, value, tree.flatten(y_p)[0].shape[0]
                )
            if loss_weight is not None:
                value = ops.multiply(value, loss_weight)
            losses[task], labels[task], weights[task] = value, y_t, weight
        return losses, labels, weights

    def functions(self, y_true, y_pred):
        """`{task: loss object}` for the outputs that have a loss, built
        from one batch of labels and predictions if needed."""
        self._build(by_task(y_true, y_pred, "y"), y_pred)
        return {
            task: loss
            for task, loss, _ in _keras_private.loss_entries(self._loss_object)
            if loss is not None
        }

    @staticmethod
    def example_losses(loss, y_true, y_pred):
        """`[batch]`: one loss object's values per example.

        Without `loss_weights`, sample weights or reduction: the loss
        object's unreduced values (as `Loss.__call__` computes them before
        reducing), averaged over any further axes.
        """
        y_pred = ops.convert_to_tensor(y_pred, dtype=loss.dtype)
        y_true = ops.convert_to_tensor(y_true, dtype=loss.dtype)
        values = loss.call(y_true, y_pred)
        if len(values.shape) > 1:
            values = ops.mean(values, axis=list(range(1, len(values.shape))))
        return values

    def _build(self, y_true, y_pred):
        if not self._loss_object.built:
            # Under the loss object's own scope, as Keras builds it inside
            # `CompileLoss.__call__`: its per-output trackers are named
            # after the tasks, and a name such as `_a_loss` is not a valid
            # root scope.
            with keras.name_scope(self._loss_object.name):
                self._loss_object.build(by_task(y_true, y_pred, "y"), y_pred)


def by_task(values, y_pred, name):
    """Returns labels or sample weights as a dict keyed like `y_pred`.

    A list is matched to the outputs in Keras's flattening order (sorted
    names), as `compile` does; one tensor of sample weights applies to every
    task and is returned as it is.
    """
    if values is None or isinstance(values, dict):
        return values
    names = list(y_pred)
    if isinstance(values, (list, tuple)):
        if len(values) != len(names):
            raise ValueError(
                f"`{name}` given as a list must have one entry per output "
                f"{sorted(names)}. Received: {name} with {len(values)} "
                "entries."
            )
        return tree.pack_sequence_as(y_pred, list(values))
    if name == "sample_weight":
        return values
    if len(names) == 1:
        return {names[0]: values}
    raise ValueError(
        f"`{name}` must be a dict keyed by task name for a model with "
        f"outputs {names}. Received: {name} of type {type(values).__name__}."
    )
