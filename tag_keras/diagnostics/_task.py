"""A compiled multi-output model seen one task at a time, read-only.

`TaskView` finds the tasks (the output names that have a loss), each
task's parameters θ_k (the trainable variables its loss depends on: the
shared weights and its head), the shared ones (two or more tasks depend on
them), each task's loss per example, and, for classification heads, the
labels a prediction can take. Every forward pass runs in inference mode
(dropout off, BatchNorm on its moving statistics), through
`stateless_call` when parameters are moved, so no measure writes a weight,
a BatchNorm statistic or the optimizer.

Classification is recognised from the loss itself: a head is a
classifier when its loss is a log-loss, i.e. exp(−loss) summed over the
labels the head can take is 1 (softmax with sparse or one-hot labels,
one sigmoid unit with 0/1 labels), whether the outputs are logits or
probabilities. A head of several units with multi-hot labels is
multi-label when its loss is the mean of independent Bernoulli log-losses
(binary cross-entropy over sigmoid units): additive in the labels, with
each unit's probability read from the loss of that unit alone.
"""

import numpy as np
import tensorflow as tf
from keras import ops
from keras import tree

from tag_keras import _keras_private
from tag_keras import _data

#: How far exp(−loss) summed over a head's labels may be from 1.
_PROBABILITY_TOLERANCE = 1e-3


class TaskView:
    """Per-task losses and parameters of a compiled dict-output model.

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task (a `TaskAffinityModel`, a multi-output `keras.Model`, or a
            one-task model).
        data: Data as `model.fit` takes it; its first batch builds the
            view (labels' format, which variables each task uses).
    """

    def __init__(self, model, data):
        _data.check_data(data)
        if not getattr(model, "compiled", False):
            raise ValueError(
                "The diagnostics need a compiled model: each task's loss is "
                "the one given to `compile(loss=...)`. Call `model.compile` "
                f"first. Received: an uncompiled {type(model).__name__}.")
        self.model = model
        self._cache = {}
        x, y = _data.first_batch(data)
        outputs = self.outputs(x)
        if not isinstance(outputs, dict):
            raise TypeError(
                "The diagnostics need a model whose outputs are a dict "
                "keyed by task name, e.g. `keras.Model(inputs, {'a': ..., "
                "'b': ...})`. Received: outputs of type "
                f"{type(outputs).__name__}.")
        y = _data.labels_by_task(y, list(outputs))
        compile_loss = _keras_private.compile_loss(model)
        if not compile_loss.built:
            compile_loss.build(
                {t: tf.convert_to_tensor(v) for t, v in y.items()}, outputs)
        self._losses = {task: loss for task, loss, _ in
                        _keras_private.loss_entries(compile_loss)
                        if loss is not None}
        self.tasks = [t for t in outputs if t in self._losses]
        self._label_specs = {t: (np.asarray(y[t]).shape[1:],
                                 np.asarray(y[t]).dtype)
                             for t in self.tasks if t in y}
        self._widths = {t: int(outputs[t].shape[-1]) for t in self.tasks}
        self._task_variables = self._find_variables(x, y)
        counts = {}
        for variables in self._task_variables.values():
            for v in variables:
                counts[id(v)] = counts.get(id(v), 0) + 1
        self.shared_variables = [
            v for v in model.trainable_variables if counts.get(id(v), 0) >= 2]
        self._classifier = {t: self._is_classifier(t, outputs[t])
                            for t in self.tasks}
        self._multi_label = {
            t: not self._classifier[t] and self._is_multi_label(t, outputs[t])
            for t in self.tasks}

    # ------------------------------------------------------------------

    def check_task(self, task, name="task"):
        """Raises unless `task` is one of the model's tasks."""
        if task not in self.tasks:
            raise ValueError(
                f"Unknown task {task!r}: the model's tasks are {self.tasks}. "
                f"Received: {name}={task!r}.")
        if task not in self._label_specs:
            raise ValueError(
                f"The data has no labels for task {task!r}. Received: "
                f"{name}={task!r}.")

    def cached(self, key, make):
        """The object stored under `key`, made by `make()` the first time.

        Traced functions are kept here, so that measuring every epoch
        traces each once.
        """
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def variables(self, task):
        """θ_k: the trainable variables `task`'s loss depends on."""
        return self._task_variables[task]

    def is_classifier(self, task):
        """Whether `task`'s loss is a log-loss over a few labels."""
        return self._classifier[task]

    def is_multi_label(self, task):
        """Whether `task`'s loss is the mean over its units of independent
        Bernoulli log-losses (several sigmoid units, multi-hot labels)."""
        return self._multi_label[task]

    def unit_losses(self, task, y_pred):
        """`[batch, w + 1]`: the loss of no label and of each unit alone."""
        width = self._widths[task]
        labels = tf.concat([tf.zeros([1, width]), tf.eye(width)], axis=0)
        labels = tf.broadcast_to(labels[:, None, :], tf.concat(
            [[width + 1], tf.shape(y_pred)[:1], [width]], axis=0))
        return self.losses_for_labels(task, labels, y_pred)

    def unit_probabilities(self, task, y_pred, losses=None):
        """`[batch, w]`: each unit's predicted probability (multi-label
        heads): from ℓ_u(1) − ℓ_u(0) = w (loss(e_u) − loss(0)) =
        log((1 − p_u) / p_u)."""
        losses = self.unit_losses(task, y_pred) if losses is None else losses
        width = self._widths[task]
        return tf.sigmoid(-width * (losses[:, 1:] - losses[:, :1]))

    def outputs(self, x, variables=None, values=None):
        """The outputs in inference mode, with `variables` set to `values`.

        Nothing is written: moved variables go through `stateless_call`.
        """
        if variables is None:
            return self.model(x, training=False)
        replace = {id(v): value for v, value in zip(variables, values)}
        trainable = [replace.get(id(v), v.value)
                     for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        return _keras_private.stateless_call_for_inference(
            self.model, trainable, non_trainable, x)

    def example_losses(self, task, y_true, y_pred):
        """`[batch]`: `task`'s loss per example, without `loss_weights`.

        The compiled loss object's unreduced values (as `Loss.__call__`
        computes them before reducing), averaged over any further axes.
        """
        loss = self._losses[task]
        y_pred = ops.convert_to_tensor(y_pred, dtype=loss.dtype)
        y_true = ops.convert_to_tensor(y_true, dtype=loss.dtype)
        values = loss.call(y_true, y_pred)
        if len(values.shape) > 1:
            values = ops.mean(values, axis=list(range(1, len(values.shape))))
        return values

    def candidate_losses(self, task, y_pred):
        """`[batch, labels]`: the loss of each label the head can take.

        Only for classification heads; exp(−value) is the predicted
        probability of each label.
        """
        labels = self._candidates(task, y_pred)
        return self.losses_for_labels(task, labels, y_pred)

    def losses_for_labels(self, task, labels, y_pred):
        """`[batch, m]`: the loss of `labels[j]` for each of m label sets.

        `labels` is `[m, batch, ...]`; computed in one vectorised call on
        the predictions repeated m times.
        """
        count = tf.shape(labels)[0]
        batch = tf.shape(y_pred)[0]
        flat = tf.reshape(labels, tf.concat([[count * batch],
                                             tf.shape(labels)[2:]], axis=0))
        repeated = tf.reshape(
            tf.repeat(y_pred[None], count, axis=0),
            tf.concat([[count * batch], tf.shape(y_pred)[1:]], axis=0))
        losses = self.example_losses(task, flat, repeated)
        return tf.transpose(tf.reshape(losses, [count, batch]))

    def classes(self, task, labels):
        """`[batch]` int: each label as a class index (classifiers only)."""
        labels = np.asarray(labels)
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width > 1 and tuple(shape[-1:]) == (width,):
            return labels.reshape(len(labels), width).argmax(axis=1)
        return np.rint(labels.reshape(len(labels))).astype(int)

    # ------------------------------------------------------------------

    def _candidates(self, task, y_pred):
        """`[labels, batch, ...]`: every label, for every example.

        0 and 1 for one unit; each class index (sparse labels) or one-hot
        row otherwise.
        """
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width > 1 and tuple(shape[-1:]) == (width,):
            labels = tf.eye(width)[:, None, :]
        else:
            count = 2 if width == 1 else width
            labels = tf.reshape(tf.range(count, dtype=tf.float32),
                                [count, 1] + [1] * len(shape))
        full = tf.concat([tf.shape(labels)[:1], tf.shape(y_pred)[:1],
                          tf.constant(shape, tf.int32)], axis=0)
        return tf.broadcast_to(labels, full)

    def _is_classifier(self, task, y_pred):
        if task not in self._label_specs:
            return False
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width > 1 and tuple(shape[-1:]) not in ((), (1,), (width,)):
            return False
        total = np.exp(-self.candidate_losses(task, y_pred).numpy()).sum(1)
        return bool(np.all(np.abs(total - 1.0) < _PROBABILITY_TOLERANCE))

    def _is_multi_label(self, task, y_pred):
        if task not in self._label_specs:
            return False
        shape, _ = self._label_specs[task]
        width = self._widths[task]
        if width < 2 or tuple(shape[-1:]) != (width,):
            return False
        losses = self.unit_losses(task, y_pred)
        p = self.unit_probabilities(task, y_pred, losses).numpy()
        none = losses[:, 0].numpy()
        every = self.losses_for_labels(
            task, tf.ones(tf.concat([[1], tf.shape(y_pred)], 0)),
            y_pred)[:, 0].numpy()
        # Bernoulli units: loss(0) = mean −log(1 − p_u); additive in y.
        normal = np.mean(-np.log(np.clip(1 - p, 1e-30, 1)), axis=1)
        additive = none + np.sum(losses[:, 1:].numpy() - none[:, None], 1)
        scale = 1 + np.abs(none)
        return bool(np.all(np.abs(normal - none) < _PROBABILITY_TOLERANCE
                           * scale)
                    and np.all(np.abs(additive - every)
                               < _PROBABILITY_TOLERANCE * scale))

    def _find_variables(self, x, y):
        variables = self.model.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self.model(x, training=False)
            losses = {t: ops.mean(self.example_losses(
                t, np.nan_to_num(y[t]), y_pred[t]))
                for t in self.tasks if t in y}
        found = {}
        for task in self.tasks:
            if task not in losses:
                found[task] = []
                continue
            grads = tape.gradient(losses[task], variables)
            found[task] = [v for v, g in zip(variables, grads)
                           if g is not None]
        del tape
        return found


def batch_function(python_function):
    """`tf.function(python_function)`, traced once for any batch size.

    NumPy arguments are traced with an unknown leading (batch) dimension,
    so that the short last batch does not trace the step again; tensor
    arguments keep their shapes.
    """
    function = tf.function(python_function)
    traced = []

    def call(*args):
        if not traced:
            function.get_concrete_function(*tree.map_structure(_spec, args))
            traced.append(True)
        return function(*args)

    return call


def _spec(value):
    if isinstance(value, np.ndarray):
        return tf.TensorSpec([None, *value.shape[1:]], value.dtype)
    return value
