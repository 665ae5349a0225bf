"""The tasks' mean losses and errors on examples, in inference mode."""

import numpy as np

from tag_keras import _data
from tag_keras._tensorflow import tf
from tag_keras.tasks import labels as labels_lib
from tag_keras.tasks.view import batch_function


def losses_and_errors(view, tasks, x, y, batch_size=256):
    """`{task: (mean loss, error)}` with one forward pass per batch.

    For each of `tasks`, over the examples of `(x, y)` labelled for it
    (`y` a dict keyed by task; NaN = missing): the means of
    `example_losses_and_errors`. A task without a labelled example is left
    out; the error is NaN for a head that is neither a classifier nor
    multi-label.
    """
    result = {}
    for task, (losses, errors) in example_losses_and_errors(
        view, tasks, x, y, batch_size
    ).items():
        keep = ~np.isnan(losses)
        if keep.any():
            result[task] = (
                float(losses[keep].mean()),
                float(errors[keep].mean()),
            )
    return result


def example_losses_and_errors(view, tasks, x, y, batch_size=256):
    """`{task: (losses, errors)}`, one value per example of `(x, y)`.

    The loss is the task's compiled loss without `loss_weights`; the error
    is 1 where the most probable label (the one of least loss) is not the
    example's label, else 0; for a multi-label head (several sigmoid
    units, multi-hot labels) the fraction of unit decisions (probability
    above 1/2) that disagree with the labels; NaN for a head that is
    neither. Examples not labelled for the task (`y[task]` NaN) are NaN in
    both.
    """
    evaluate = view.cached(
        ("evaluate_all", tuple(tasks)), lambda: _evaluate_all_fn(view, tasks)
    )
    size = len(next(iter(y.values())))
    labels = {t: np.asarray(y[t]) for t in tasks}
    losses = {t: np.full(size, np.nan) for t in tasks}
    errors = {t: np.full(size, np.nan) for t in tasks}
    for start in range(0, size, batch_size):
        part = slice(start, start + batch_size)
        rows = np.arange(size)[part]
        filled, kept = {}, {}
        for task in tasks:
            filled[task], kept[task] = labels_lib.fill_missing(
                labels[task][part]
            )
        outputs = evaluate(_data.slice_inputs(x, part), filled)
        for task in tasks:
            per_example, candidates = (v.numpy() for v in outputs[task])
            keep = kept[task]
            losses[task][rows[keep]] = per_example[keep]
            if view.heads.is_multi_label(task):
                truth = filled[task][keep].reshape(candidates[keep].shape)
                errors[task][rows[keep]] = (
                    (candidates[keep] > 0.5) != (truth > 0.5)
                ).mean(axis=1)
            elif view.heads.is_classifier(task):
                predicted = candidates[keep].argmin(axis=1)
                errors[task][rows[keep]] = predicted != view.heads.classes(
                    task, filled[task][keep]
                )
    return {t: (losses[t], errors[t]) for t in tasks}


def _evaluate_all_fn(view, tasks):
    @batch_function
    def evaluate(x, y):
        y_pred = view.outputs(x)
        result = {}
        for task in tasks:
            losses = view.example_losses(task, y[task], y_pred[task])
            if view.heads.is_multi_label(task):  # Each unit's probability.
                candidates = view.heads.unit_probabilities(task, y_pred[task])
            elif view.heads.is_classifier(task):
                candidates = view.heads.candidate_losses(task, y_pred[task])
            else:
                candidates = tf.zeros([tf.shape(losses)[0], 0])
            result[task] = (losses, candidates)
        return result

    return evaluate
