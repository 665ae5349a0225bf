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


def losses_and_errors(view, tasks, x, y, batch_size=256):
    """`{task: (mean loss, error)}` with one forward pass per batch.

    As `loss_and_error` for each of `tasks`, each over the examples of
    `(x, y)` labelled for it (`y` a dict keyed by task; NaN = missing);
    a task without a labelled example is left out.
    """
    evaluate = view.cached(("evaluate_all", tuple(tasks)),
                           lambda: _evaluate_all_fn(view, tasks))
    losses = {t: [] for t in tasks}
    wrong = {t: [] for t in tasks}
    size = len(next(iter(y.values())))
    labels = {t: np.asarray(y[t]) for t in tasks}
    for start in range(0, size, batch_size):
        part = slice(start, start + batch_size)
        kept = {t: _data.labelled(labels[t][part]) for t in tasks}
        filled = {t: np.where(_expand(kept[t], labels[t][part]),
                              labels[t][part], 0).astype(labels[t].dtype)
                  for t in tasks}
        outputs = evaluate(_data.slice_inputs(x, part), filled)
        for task in tasks:
            per_example, candidates = (v.numpy() for v in outputs[task])
            keep = kept[task]
            losses[task].append(per_example[keep])
            if view.is_classifier(task):
                predicted = candidates[keep].argmin(axis=1)
                wrong[task].append(
                    predicted != view.classes(task, filled[task][keep]))
    result = {}
    for task in tasks:
        values = np.concatenate(losses[task])
        if not len(values):
            continue
        error = (float(np.concatenate(wrong[task]).mean())
                 if view.is_classifier(task) else np.nan)
        result[task] = (float(values.mean()), error)
    return result


def _expand(keep, labels):
    return keep.reshape((-1,) + (1,) * (labels.ndim - 1))


def _evaluate_all_fn(view, tasks):
    @batch_function
    def evaluate(x, y):
        y_pred = view.outputs(x)
        result = {}
        for task in tasks:
            losses = view.example_losses(task, y[task], y_pred[task])
            candidates = (view.candidate_losses(task, y_pred[task])
                          if view.is_classifier(task)
                          else tf.zeros([tf.shape(losses)[0], 0]))
            result[task] = (losses, candidates)
        return result

    return evaluate


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
