"""Worst-case sharpness: elementwise-adaptive ℓ∞ sharpness of a task."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from tag_keras import _data
from tag_keras._tensorflow import tf
from tag_keras.diagnostics.conflict import _check_positive
from tag_keras.tasks import labels as labels_lib
from tag_keras.tasks.view import TaskView
from tag_keras.tasks.view import batch_function

if TYPE_CHECKING:  # for annotations only
    import keras


def sharpness(
    model: keras.Model,
    data: Any,
    task: str,
    rho: float = 1e-3,
    batch_size: int = 128,
    max_samples: int = 2048,
    steps: int = 20,
) -> float:
    """E_B max_{|ε| ≤ ρ|θ| elementwise} L_k^B(θ + ε) − L_k^B(θ).

    θ = θ_k, task k's parameters (the shared weights and its head); L_k^B
    is the task's compiled loss without `loss_weights`, the mean over a
    batch B of examples labelled for it, in inference mode. The inner
    maximum is found by projected sign-gradient ascent inside the box:
    ε ← clip(ε + (2/steps)·ρ|θ|·sign(∇ε L), −ρ|θ|, ρ|θ|), from ε = 0, and
    the largest loss met at any iterate is kept, so the value is a lower
    bound of the true maximum that `steps` tightens (one step lands on the
    vertex the linearised loss prefers). The model is never written: the
    moved parameters go through `stateless_call`.

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task.
        data: `(x, y)` arrays, a batched `tf.data.Dataset` or a PyDataset.
        task: The task.
        rho: The box's relative radius ρ > 0.
        batch_size: |B|.
        max_samples: S_k is the first `max_samples` examples labelled for
            `task`, cut into batches of `batch_size`.
        steps: Ascent steps per batch.

    Returns:
        The mean over batches of the loss increase, a float.

    References:
        Mueller, Dredze and Andrews, "Can Optimization Trajectories
        Explain Multi-Task Transfer?", TMLR 2024, appendix B (after
        Andriushchenko et al., 2023).
    """
    if (
        isinstance(rho, bool)
        or not isinstance(rho, (int, float, np.floating))
        or not rho > 0
    ):
        raise ValueError(
            f"`rho` must be a positive number (the box's radius relative to "
            f"each weight, 1e-3 in the paper). Received: rho={rho!r}."
        )
    _check_positive("batch_size", batch_size)
    _check_positive("max_samples", max_samples)
    _check_positive("steps", steps)
    view = TaskView(model, data)
    view.check_task(task)
    x, y = labels_lib.task_examples(data, view.tasks, task, max_samples)
    return sharpness_of(view, task, x, y, float(rho), batch_size, steps)


def sharpness_of(view, task, x, y, rho, batch_size, steps):
    """`sharpness` on examples `(x, y)` of `task` (validated arguments)."""
    ascent = view.cached(
        ("sharpness", task, rho, steps),
        lambda: _Ascent(view, task, rho, steps),
    )
    increases = [
        float(ascent(x_part, y_part))
        for x_part, y_part in _data.slices(x, y, batch_size)
    ]
    return float(np.mean(increases))


class _Ascent:
    """`(x, y) -> max loss − loss` on one batch, by sign-gradient ascent."""

    def __init__(self, view, task, rho, steps):
        self._view, self._task = view, task
        self._rho, self._steps = rho, steps
        self._variables = view.variables(task)
        self._function = batch_function(self._increase)

    def __call__(self, x, y):
        return self._function(x, y)

    def _loss_at(self, values, x, y):
        y_pred = self._view.outputs(x, self._variables, values)[self._task]
        return tf.reduce_mean(self._view.example_losses(self._task, y, y_pred))

    def _increase(self, x, y):
        theta = [tf.convert_to_tensor(v.value) for v in self._variables]
        radius = [self._rho * tf.abs(t) for t in theta]
        step = 2.0 / self._steps
        base = self._loss_at(theta, x, y)
        epsilon = [tf.zeros_like(t) for t in theta]
        best = base
        for _ in range(self._steps):
            with tf.GradientTape() as tape:
                tape.watch(epsilon)
                loss = self._loss_at(
                    [t + e for t, e in zip(theta, epsilon)], x, y
                )
            grads = tape.gradient(loss, epsilon)
            best = tf.maximum(best, loss)
            epsilon = [
                tf.clip_by_value(e + step * r * tf.sign(g), -r, r)
                if g is not None
                else e
                for e, r, g in zip(epsilon, radius, grads)
            ]
        final = self._loss_at([t + e for t, e in zip(theta, epsilon)], x, y)
        return tf.maximum(best, final) - base
