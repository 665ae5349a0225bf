"""The tasks' mean losses and errors on examples, in inference mode."""

import numpy as np
import tensorflow as tf

from tag_keras import _data
from tag_keras.diagnostics._task import batch_function


def losses_and_errors(view, tasks, x, y, batch_size=256):
    """`{task: (mean loss, error)}` with one forward pass per batch.

    For each of `tasks`, over the examples of `(x, y)` labelled for it
    (`y` a dict keyed by task; NaN = missing): the loss is the task's
    compiled loss without `loss_weights`, the mean over those examples;
    the error is the fraction whose most probable label (the one of least
    loss) is not their label; for a multi-label head (several sigmoid
    units, multi-hot labels) the fraction of unit decisions (probability
    above 1/2) that disagree with the labels; NaN for a head that is
    neither. A task without a labelled example is left out.
    """
    evaluate = view.cached(("evaluate_all", tuple(tasks)),
                           lambda: _evaluate_all_fn(view, tasks))
    losses = {t: [] for t in tasks}
    wrong = {t: [] for t in tasks}
    size = len(next(iter(y.values())))
    labels = {t: np.asarray(y[t]) for t in tasks}
    for start in range(0, size, batch_size):
        part = slice(start, start + batch_size)
        filled, kept = {}, {}
        for task in tasks:
            filled[task], kept[task] = _data.fill_missing(labels[task][part])
        outputs = evaluate(_data.slice_inputs(x, part), filled)
        for task in tasks:
            per_example, candidates = (v.numpy() for v in outputs[task])
            keep = kept[task]
            losses[task].append(per_example[keep])
            if view.is_multi_label(task):
                truth = filled[task][keep].reshape(candidates[keep].shape)
                wrong[task].append(
                    ((candidates[keep] > 0.5) != (truth > 0.5)).mean(axis=1))
            elif view.is_classifier(task):
                predicted = candidates[keep].argmin(axis=1)
                wrong[task].append(
                    predicted != view.classes(task, filled[task][keep]))
    result = {}
    for task in tasks:
        values = np.concatenate(losses[task])
        if not len(values):
            continue
        error = (float(np.concatenate(wrong[task]).mean())
                 if wrong[task] else np.nan)
        result[task] = (float(values.mean()), error)
    return result


def _evaluate_all_fn(view, tasks):
    @batch_function
    def evaluate(x, y):
        y_pred = view.outputs(x)
        result = {}
        for task in tasks:
            losses = view.example_losses(task, y[task], y_pred[task])
            if view.is_multi_label(task):  # Each unit's probability.
                candidates = view.unit_probabilities(task, y_pred[task])
            elif view.is_classifier(task):
                candidates = view.candidate_losses(task, y_pred[task])
            else:
                candidates = tf.zeros([tf.shape(losses)[0], 0])
            result[task] = (losses, candidates)
        return result

    return evaluate
