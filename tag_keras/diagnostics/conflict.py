"""Gradient conflict: each task's gradient against the multi-task update."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pandas as pd
from keras import ops

from tag_keras import _data
from tag_keras._tensorflow import tf
from tag_keras.tasks import labels as labels_lib
from tag_keras.tasks.view import TaskView
from tag_keras.tasks.view import batch_function

if TYPE_CHECKING:  # for annotations only
    import keras


def gradient_conflict(
    model: keras.Model,
    data: Any,
    tasks: Sequence[str] | None = None,
    max_batches: int = 200,
    batch_size: int = 128,
) -> pd.DataFrame:
    """How much each task's shared-weight gradient conflicts with the rest.

    On each batch, g_k is task k's gradient of the shared weights (those
    two or more tasks' losses depend on) and the uniform multi-task
    gradient (UMTG) is Σ_j g_j. Each task's loss is its compiled loss
    without `loss_weights` (uniform), the mean over the batch's examples
    labelled for it (NaN labels are missing; sample weights are not
    used); the model runs in
    inference mode and nothing is written. A task with no label in a batch
    is left out of that batch (of its own row and of the sum).

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task, with at least two tasks sharing weights.
        data: `(x, y)` / `(x, y, sample_weight)` arrays, a batched
            `tf.data.Dataset` or a `keras.utils.PyDataset`.
        tasks: The tasks to report (default: all); the UMTG always sums
            every task.
        max_batches: At most this many batches are read.
        batch_size: Batch size for arrays (a dataset keeps its own).

    Returns:
        A DataFrame indexed by task with columns `cosine_to_total` (mean
        over batches of cos(g_k, UMTG)), `conflict_rate` (fraction of
        batches where that cosine is negative) and `norm_ratio` (mean over
        batches of ‖g_k‖ divided by the mean ‖g_j‖ over the tasks in the
        batch: magnitude conflict), and `batches` (how many batches each
        row averages).

    References:
        Mueller, Dredze and Andrews, "Can Optimization Trajectories
        Explain Multi-Task Transfer?", TMLR 2024, section 4.
    """
    _check_positive("max_batches", max_batches)
    _check_positive("batch_size", batch_size)
    view = TaskView(model, data)
    if len(view.tasks) < 2 or not view.shared_variables:
        raise ValueError(
            "Gradient conflict needs two or more tasks that share weights. "
            f"Received: a model with tasks {view.tasks} and "
            f"{len(view.shared_variables)} shared variables."
        )
    report = view.tasks if tasks is None else list(tasks)
    for task in report:
        view.check_task(task, "tasks")
    return gradient_conflict_of(
        view, _data.batches(data, batch_size, view.tasks, max_batches), report
    )


def gradient_conflict_of(view, batches, report):
    """`gradient_conflict` over `(x, y, sample_weight)` batches."""
    step = view.cached("conflict", lambda: _ConflictStep(view))
    rows = {task: [] for task in view.tasks}
    for x, y, _ in batches:
        cosines, norms, present = (a.numpy() for a in step(x, y))
        if present.sum() == 0:
            continue
        mean_norm = norms[present].mean()
        for k, task in enumerate(view.tasks):
            if present[k]:
                rows[task].append((cosines[k], norms[k] / mean_norm))
    frame = pd.DataFrame(
        [_summary(rows[task]) for task in report],
        index=pd.Index(report, name="task"),
        columns=["cosine_to_total", "conflict_rate", "norm_ratio", "batches"],
    )
    return frame.astype({"batches": int})


def task_gradients_fn(view):
    """A traced `(x, y, keep) -> ([tasks, P] gradients, [tasks] labelled)`.

    Each row is a task's gradient of the shared variables, flattened, of
    its mean loss over the batch's labelled examples; `y` holds labels
    with the missing ones filled and `keep` each task's labelled mask
    (`labels_lib.fill_missing`).
    """
    variables = view.shared_variables

    @batch_function
    def gradients(x, y, keep):
        with tf.GradientTape(persistent=True) as tape:
            y_pred = view.outputs(x)
            losses, present = [], []
            for task in view.tasks:
                per_example = view.example_losses(task, y[task], y_pred[task])
                weight = tf.cast(keep[task], per_example.dtype)
                count = tf.reduce_sum(weight)
                losses.append(
                    tf.math.divide_no_nan(
                        tf.reduce_sum(per_example * weight), count
                    )
                )
                present.append(count > 0)
        rows = []
        for loss in losses:
            grads = tape.gradient(loss, variables)
            rows.append(
                tf.concat(
                    [
                        tf.reshape(
                            g if g is not None else tf.zeros_like(v), [-1]
                        )
                        for g, v in zip(grads, variables)
                    ],
                    axis=0,
                )
            )
        del tape
        return tf.stack(rows), tf.stack(present)

    return gradients


class _ConflictStep:
    def __init__(self, view):
        self._gradients = task_gradients_fn(view)

    def __call__(self, x, y):
        filled, keep = {}, {}
        for task, labels in y.items():
            filled[task], keep[task] = labels_lib.fill_missing(labels)
        grads, present = self._gradients(x, filled, keep)
        grads = grads * tf.cast(present, grads.dtype)[:, None]
        total = tf.reduce_sum(grads, axis=0)
        norms = tf.norm(grads, axis=1)
        cosines = tf.math.divide_no_nan(
            ops.sum(grads * total[None], axis=1), norms * tf.norm(total)
        )
        return cosines, norms, present


def _summary(values):
    if not values:
        return [np.nan, np.nan, np.nan, 0]
    cosines, ratios = np.asarray(values, dtype=np.float64).T
    return [
        cosines.mean(),
        float((cosines < 0).mean()),
        ratios.mean(),
        len(values),
    ]


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}."
        )
