"""Per-task losses, computed exactly as `compile(loss=..., loss_weights=...)`.

Keras's `CompileLoss` only returns the total. `TaskLosses` walks the same
built loss entries (`CompileLoss._flat_losses`: the loss object, its weight
and the output it reads) and returns one weighted loss per task, updating
the per-output loss trackers (`<task>_loss` in the logs) as Keras does.
"""

from keras import ops
from keras import tree
from keras.src.losses import loss as loss_module


class TaskLosses:
    """Computes `{task: loss_weight * loss(y_true, y_pred, sample_weight)}`.

    Args:
        compile_loss: The model's `CompileLoss` (`model._compile_loss`).
    """

    def __init__(self, compile_loss):
        self._compile_loss = compile_loss

    def tasks(self, y_true, y_pred):
        """The output names that have a compiled loss."""
        self._build(y_true, y_pred)
        return tuple(entry.path[0] for entry in self._compile_loss._flat_losses)

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
        trackers = self._compile_loss.metrics
        if len(trackers) != len(self._compile_loss._flat_losses):
            trackers = [None] * len(self._compile_loss._flat_losses)
        losses, labels, weights = {}, {}, {}
        for entry, tracker in zip(self._compile_loss._flat_losses, trackers):
            task = entry.path[0]
            y_t, y_p = y_true[task], y_pred[task]
            weight = (
                sample_weight.get(task)
                if isinstance(sample_weight, dict)
                else sample_weight
            )
            value = ops.cast(
                entry.loss(y_t, y_p, weight), dtype=self._compile_loss.dtype
            )
            if track and tracker is not None:
                tracker.update_state(
                    loss_module.unscale_loss_for_distribution(value),
                    sample_weight=tree.flatten(y_p)[0].shape[0],
                )
            if entry.loss_weights is not None:
                value = ops.multiply(value, entry.loss_weights)
            losses[task], labels[task], weights[task] = value, y_t, weight
        return losses, labels, weights

    def _build(self, y_true, y_pred):
        if not self._compile_loss.built:
            self._compile_loss.build(by_task(y_true, y_pred, "y"), y_pred)


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
