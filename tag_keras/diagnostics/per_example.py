"""Measures built on per-example gradients: Fisher trace and coherence.

Both use θ_k, task k's parameters (the shared weights and its head), and
the task's compiled loss per example without `loss_weights`, on up to
`max_samples` examples labelled for the task, in inference mode.
Per-example gradients come from one vectorised Jacobian per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from keras import tree

from tag_keras import _data
from tag_keras._tensorflow import tf
from tag_keras.diagnostics.conflict import _check_positive
from tag_keras.tasks import labels as labels_lib
from tag_keras.tasks.view import TaskView
from tag_keras.tasks.view import batch_function

if TYPE_CHECKING:  # for annotations only
    import keras

#: Variance of the Gaussian whose negative log-likelihood is the squared
#: error up to a constant: N(f(x), 1/2).
_SQUARED_ERROR_VARIANCE = 0.5


def fisher_trace(
    model: keras.Model,
    data: Any,
    task: str,
    batch_size: int = 16,
    max_samples: int = 2048,
    samples: int | None = None,
    seed: int = 0,
) -> float:
    """The trace of the empirical-model Fisher information of task k.

    F = E_{x ∈ S_k, ŷ ∼ f(x)} ‖∇θ ℓ(f(x), ŷ)‖² with ŷ drawn from the
    model's own predictive distribution, not the data's labels.

    For a classification head (softmax with sparse or one-hot labels, or
    one sigmoid unit with 0/1 labels: a loss for which exp(−loss) over the
    labels sums to one) the expectation over ŷ is exact: a sum over the
    labels weighted by their predicted probabilities. So it is for a
    multi-label head (several sigmoid units with multi-hot labels and
    binary cross-entropy: independent Bernoulli units), where the loss is
    linear in the labels. With `samples=m`, m labels per example are drawn
    instead (per unit from Bernoulli(p_u) for a multi-label head); for a
    head that is neither they are drawn from N(f(x), 1/2), the Gaussian
    whose negative log-likelihood is the squared error (right for
    `mean_squared_error`; other regression losses are not modelled).

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task. Nothing is written.
        data: `(x, y)` arrays, a batched `tf.data.Dataset` or a PyDataset.
        task: The task.
        batch_size: Examples per vectorised Jacobian (16 in the paper).
        max_samples: S_k is the first `max_samples` examples labelled for
            `task`.
        samples: None for the exact expectation (classifiers and
            multi-label heads only), or
            the number of labels drawn per example.
        seed: Seed of the draws (with `samples`).

    Returns:
        The trace, a float.

    References:
        Mueller, Dredze and Andrews, "Can Optimization Trajectories
        Explain Multi-Task Transfer?", TMLR 2024, appendix B.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("max_samples", max_samples)
    if samples is not None:
        _check_positive("samples", samples)
    view = TaskView(model, data)
    view.check_task(task)
    if samples is None and not (
        view.heads.is_classifier(task) or view.heads.is_multi_label(task)
    ):
        raise ValueError(
            f"Task {task!r}'s loss is not the log-loss of a classifier "
            "(exp(-loss) over its labels does not sum to one) nor of "
            "independent Bernoulli units, so the "
            "expectation over the model's predictions cannot be computed "
            "exactly. Pass `samples=` (e.g. samples=8) to estimate it by "
            f"sampling. Received: samples={samples!r}."
        )
    x, _ = labels_lib.task_examples(data, view.tasks, task, max_samples)
    return fisher_trace_of(view, task, x, batch_size, samples, seed)


def fisher_trace_of(view, task, x, batch_size, samples=None, seed=0):
    """`fisher_trace` on inputs `x` of `task` (validated arguments)."""
    norms = view.cached(
        ("fisher", task, samples, seed),
        lambda: _FisherNorms(view, task, samples, seed),
    )
    total, y = 0.0, np.zeros(len(_first(x)))
    for index, (x_part, _) in enumerate(_data.slices(x, y, batch_size)):
        total += float(tf.reduce_sum(norms(x_part, index)))
    return total / len(y)


def gradient_coherence(
    model: keras.Model,
    data: Any,
    task: str,
    batch_size: int = 128,
    max_samples: int = 2048,
) -> float:
    """The trace of the per-example gradient covariance of task k.

    E_{(x, y) ∈ S_k} ‖∇θ ℓ(x, y) − ∇θ L_k‖², with L_k the mean loss over
    S_k, computed as E‖∇θ ℓ‖² − ‖∇θ L_k‖² (accumulated in float64).
    Smaller means the examples' gradients agree more.

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task. Nothing is written.
        data: `(x, y)` arrays, a batched `tf.data.Dataset` or a PyDataset.
        task: The task.
        batch_size: Examples per vectorised Jacobian.
        max_samples: S_k is the first `max_samples` examples labelled for
            `task`.

    Returns:
        The trace, a float.

    References:
        Mueller, Dredze and Andrews, "Can Optimization Trajectories
        Explain Multi-Task Transfer?", TMLR 2024, appendix B.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("max_samples", max_samples)
    view = TaskView(model, data)
    view.check_task(task)
    x, y = labels_lib.task_examples(data, view.tasks, task, max_samples)
    return gradient_coherence_of(view, task, x, y, batch_size)


def gradient_coherence_of(view, task, x, y, batch_size):
    """`gradient_coherence` on examples `(x, y)` of `task`."""
    per_example = view.cached(
        ("coherence", task), lambda: _per_example_gradients_fn(view, task)
    )
    mean, squares = 0.0, 0.0
    for x_part, y_part in _data.slices(x, y, batch_size):
        grads = per_example(x_part, y_part).numpy().astype(np.float64)
        mean = mean + grads.sum(axis=0)
        squares += float(np.square(grads).sum())
    mean = mean / len(y)
    return max(squares / len(y) - float(mean @ mean), 0.0)


def _per_example_gradients_fn(view, task):
    """A traced `(x, y) -> [batch, P]`: each example's flat ∇θ ℓ."""
    variables = view.variables(task)

    @batch_function
    def gradients(x, y):
        with tf.GradientTape() as tape:
            losses = view.example_losses(task, y, view.outputs(x)[task])
        jacobian = tape.jacobian(losses, variables)
        return _flatten_rows(jacobian, variables, 1)

    return gradients


class _FisherNorms:
    """`(x, batch_index) -> [batch]`: E_ŷ ‖∇θ ℓ(f(x), ŷ)‖² per example."""

    def __init__(self, view, task, samples, seed):
        self._view, self._task = view, task
        self._samples, self._seed = samples, seed
        self._variables = view.variables(task)
        self._function = batch_function(self._norms)

    def __call__(self, x, index):
        return self._function(x, tf.constant([self._seed, index], tf.int32))

    def _norms(self, x, seed):
        view, task = self._view, self._task
        if view.heads.is_multi_label(task) and self._samples is None:
            return self._multi_label_norms(x)
        with tf.GradientTape() as tape:
            y_pred = view.outputs(x)[task]
            losses, weights = self._losses(y_pred, seed)
        jacobian = tape.jacobian(losses, self._variables)
        squares = sum(
            tf.reduce_sum(tf.square(j), axis=list(range(2, len(j.shape))))
            for j in jacobian
        )
        return tf.reduce_sum(tf.stop_gradient(weights) * squares, axis=1)

    def _multi_label_norms(self, x):
        """The exact E_ŷ‖∇ℓ(ŷ)‖² for independent Bernoulli units.

        The loss is linear in the labels, ∇ℓ(ŷ) = g_0 + Σ_u ŷ_u h_u with
        g_0 the gradient at no label and h_u = ∇ℓ(e_u) − g_0, so with
        ŷ_u ~ Bernoulli(p_u) independent: ‖g_0 + Σ p_u h_u‖² +
        Σ p_u (1 − p_u) ‖h_u‖².
        """
        view, task = self._view, self._task
        with tf.GradientTape() as tape:
            losses = view.heads.unit_losses(task, view.outputs(x)[task])
        p = tf.stop_gradient(view.heads.unit_probabilities(task, None, losses))
        rows = _flatten_rows(
            tape.jacobian(losses, self._variables), self._variables, 2
        )  # [batch, w + 1, P]
        changes = rows[:, 1:] - rows[:, :1]
        mean = rows[:, 0] + tf.einsum("bu,bup->bp", p, changes)
        spread = tf.reduce_sum(tf.square(changes), axis=2)
        return tf.reduce_sum(tf.square(mean), axis=1) + tf.reduce_sum(
            p * (1 - p) * spread, axis=1
        )

    def _losses(self, y_pred, seed):
        """`([batch, m] losses, [batch, m] weights)` for the expectation."""
        view, task = self._view, self._task
        if view.heads.is_multi_label(task):
            p = tf.stop_gradient(view.heads.unit_probabilities(task, y_pred))
            uniform = tf.random.stateless_uniform(
                tf.concat([[self._samples], tf.shape(p)], axis=0), seed
            )
            labels = tf.cast(uniform < p[None], y_pred.dtype)
            losses = view.heads.losses_for_labels(task, labels, y_pred)
            return losses, tf.fill(tf.shape(losses), 1.0 / self._samples)
        if view.heads.is_classifier(task):
            losses = view.heads.candidate_losses(task, y_pred)
            probabilities = tf.exp(-losses)
            if self._samples is None:
                return losses, probabilities
            drawn = tf.random.stateless_categorical(
                tf.math.log(tf.stop_gradient(probabilities) + 1e-30),
                self._samples,
                seed,
            )
            picked = tf.gather(losses, drawn, batch_dims=1)
            return picked, tf.fill(tf.shape(picked), 1.0 / self._samples)
        noise = tf.random.stateless_normal(
            tf.concat([[self._samples], tf.shape(y_pred)], axis=0),
            seed,
            stddev=float(np.sqrt(_SQUARED_ERROR_VARIANCE)),
            dtype=y_pred.dtype,
        )
        labels = tf.stop_gradient(y_pred)[None] + noise
        losses = view.heads.losses_for_labels(task, labels, y_pred)
        return losses, tf.fill(tf.shape(losses), 1.0 / self._samples)


def _first(x):
    return tree.flatten(x)[0]


def _flatten_rows(jacobian, variables, leading):
    """Jacobian blocks `[*lead, *shape]` as one `[*lead, P]` tensor."""
    blocks = []
    for block, variable in zip(jacobian, variables):
        if block is None:
            block = tf.zeros([*([1] * leading), *variable.shape])
        lead = tf.shape(block)[:leading]
        blocks.append(tf.reshape(block, tf.concat([lead, [-1]], axis=0)))
    return tf.concat(blocks, axis=-1)
