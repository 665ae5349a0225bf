"""A task's mean loss and error on examples, in inference mode."""

import numpy as np
import tensorflow as tf

from tag_keras import _data
from tag_keras.diagnostics._task import batch_function


def loss_and_error(view, task, x, y, batch_size=256):
    """`(mean loss, error)` of `task` on `(x, y)`.

    The loss is the task's compiled loss without `loss_weights`, the mean
    over the examples; the error is the fraction of examples whose most
    probable label (the one of least loss) is not their label, NaN for a
    head that is not a classifier.
    """
    evaluate = view.cached(("evaluate", task), lambda: _evaluate_fn(view,
                                                                   task))
    classifier = view.is_classifier(task)
    losses, wrong = [], []
    for x_part, y_part in _data.slices(x, y, batch_size):
        per_example, candidates = evaluate(x_part, y_part)
        losses.append(per_example.numpy())
        if classifier:
            predicted = candidates.numpy().argmin(axis=1)
            wrong.append(predicted != view.classes(task, y_part))
    loss = float(np.concatenate(losses).mean())
    error = float(np.concatenate(wrong).mean()) if classifier else np.nan
    return loss, error


def _evaluate_fn(view, task):
    classifier = view.is_classifier(task)

    @batch_function
    def evaluate(x, y):
        y_pred = view.outputs(x)[task]
        losses = view.example_losses(task, y, y_pred)
        if not classifier:
            return losses, tf.zeros([tf.shape(losses)[0], 0])
        return losses, view.candidate_losses(task, y_pred)

    return evaluate
