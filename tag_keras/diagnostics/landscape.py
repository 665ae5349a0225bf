"""Loss landscapes around the current weights (transference paper, §4.2).

Both functions evaluate the tasks' losses on one batch at moved weights
through `stateless_call` in inference mode: nothing the model owns is
written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import pandas as pd

from tag_keras import _data
from tag_keras._tensorflow import tf
from tag_keras.tasks.view import TaskView

if TYPE_CHECKING:  # for annotations only
    import keras


def loss_along_updates(
    model: keras.Model,
    data: Any,
    learning_rate: float | None = None,
    extent: float = 3.0,
    points: int = 31,
) -> pd.DataFrame:
    """Each task's loss along the shared update of each task's gradient.

    For every source s (each task, and `"total"`: the sum of the task
    gradients, the multi-task update) the shared weights move along
    θs − t · lr · g_s for t from 0 to `extent` (3 = three times the step),
    task heads fixed; at each point every task's loss on the batch. The
    shared weights are those two or more tasks' losses depend on; g_s is
    the gradient of task s's compiled loss without `loss_weights`, in
    inference mode.

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task, with two or more tasks sharing weights.
        data: One batch `(x, y)` (arrays), or data whose first batch is
            used; its labels must be present (no NaN).
        learning_rate: The step size (default: the optimizer's current
            learning rate).
        extent: How far along the line, in steps.
        points: Points on the line (evenly spaced from 0 to `extent`).

    Returns:
        A DataFrame with columns `source`, `step` (t), `target`, `loss`.

    References:
        Fifty, Amid, Zhao, Yu, Anil and Finn, "Measuring and Harnessing
        Transference in Multi-Task Learning", 2020, section 4.2 and
        appendix E.
    """
    if not extent > 0 or isinstance(points, bool) or points < 2:
        raise ValueError(
            "`extent` must be positive and `points` >= 2. "
            f"Received: extent={extent!r}, points={points!r}."
        )
    view = TaskView(model, data)
    if len(view.tasks) < 2 or not view.shared_variables:
        raise ValueError(
            "The update lines need two or more tasks sharing "
            f"weights. Received: tasks {view.tasks}."
        )
    if learning_rate is None:
        learning_rate = float(np.asarray(model.optimizer.learning_rate))
    x, y, _ = next(_data.batches(data, 256, view.tasks))
    shared = view.shared_variables
    grads = _task_gradients(view, shared, x, y)
    grads["total"] = [sum(g) for g in zip(*grads.values())]
    losses = _losses_fn(view, shared, x, y)
    theta = [v.numpy() for v in shared]
    rows = []
    for source, gradient in grads.items():
        for step in np.linspace(0.0, extent, points):
            values = [
                t - step * learning_rate * g for t, g in zip(theta, gradient)
            ]
            for target, loss in zip(view.tasks, losses(values)):
                rows.append((source, float(step), target, float(loss)))
    return pd.DataFrame(rows, columns=["source", "step", "target", "loss"])


def loss_surface(
    model: keras.Model,
    data: Any,
    span: float = 0.1,
    points: int = 21,
    seed: int = 0,
) -> pd.DataFrame:
    """Each task's loss on the plane of two filter-normalised directions.

    Two random Gaussian directions over every trainable variable, each
    filter (slice along the last axis of a kernel) rescaled to the norm of
    the weights' filter (Li et al., 2018; vectors such as biases and
    BatchNorm scales get no direction), so that a coordinate of ±`span`
    moves each filter by ±`span` times its norm; the losses at θ + a·d1 +
    b·d2 on a `points` × `points` grid of a, b in [−span, span].

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task.
        data: One batch `(x, y)`, or data whose first batch is used.
        span: The grid's half-width, relative to each filter's norm.
        points: Grid points per axis.
        seed: Seed of the directions.

    Returns:
        A DataFrame with columns `a`, `b`, `task`, `loss`.
    """
    if not span > 0 or isinstance(points, bool) or points < 2:
        raise ValueError(
            "`span` must be positive and `points` >= 2. "
            f"Received: span={span!r}, points={points!r}."
        )
    view = TaskView(model, data)
    x, y, _ = next(_data.batches(data, 256, view.tasks))
    variables = list(model.trainable_variables)
    theta = [v.numpy() for v in variables]
    rng = np.random.default_rng(seed)
    directions = [
        [_filter_normalised(t, rng) for t in theta] for _ in range(2)
    ]
    losses = _losses_fn(view, variables, x, y)
    grid = np.linspace(-span, span, points)
    rows = []
    for a in grid:
        for b in grid:
            values = [
                t + a * d1 + b * d2 for t, d1, d2 in zip(theta, *directions)
            ]
            for task, loss in zip(view.tasks, losses(values)):
                rows.append((float(a), float(b), task, float(loss)))
    return pd.DataFrame(rows, columns=["a", "b", "task", "loss"])


def _filter_normalised(weights, rng):
    if weights.ndim < 2:
        return np.zeros_like(weights)
    direction = rng.normal(size=weights.shape).astype(weights.dtype)
    axes = tuple(range(weights.ndim - 1))
    norm = np.sqrt(np.sum(weights**2, axis=axes, keepdims=True))
    scale = np.sqrt(np.sum(direction**2, axis=axes, keepdims=True))
    return direction * norm / np.maximum(scale, 1e-12)


def _task_gradients(view, variables, x, y):
    with tf.GradientTape(persistent=True) as tape:
        y_pred = view.outputs(x)
        losses = {
            t: tf.reduce_mean(view.example_losses(t, y[t], y_pred[t]))
            for t in view.tasks
        }
    grads = {}
    for task in view.tasks:
        grads[task] = [
            np.zeros(v.shape, v.dtype.as_numpy_dtype)
            if g is None
            else g.numpy()
            for g, v in zip(tape.gradient(losses[task], variables), variables)
        ]
    del tape
    return grads


def _losses_fn(view, variables, x, y):
    @tf.function
    def losses(values):
        y_pred = view.outputs(x, variables, values)
        return tf.stack(
            [
                tf.reduce_mean(view.example_losses(t, y[t], y_pred[t]))
                for t in view.tasks
            ]
        )

    def call(values):
        return losses([tf.constant(v) for v in values]).numpy()

    return call
