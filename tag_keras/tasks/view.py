"""A compiled multi-output model seen one task at a time, read-only.

`TaskView` finds the tasks (the output names that have a loss), each
task's parameters θ_k (the trainable variables its loss depends on: the
shared weights and its head), the shared ones (two or more tasks depend on
them) and each task's loss per example, all through the task core
(`tag_keras.tasks`: the same losses and the same shared-variable discovery
as the training step). `heads` (`tasks.heads.HeadLosses`) tells classification
heads apart and gives the loss of every label they can take. Every forward
pass runs in inference mode (dropout off, BatchNorm on its moving
statistics), through `stateless_call` when parameters are moved, so no
measure writes a weight, a BatchNorm statistic or the optimizer.
"""

import numpy as np
from keras import ops
from keras import tree

from tag_keras import _data
from tag_keras import _keras_private
from tag_keras._tensorflow import tf
from tag_keras.tasks import shared as shared_lib
from tag_keras.tasks.heads import HeadLosses
from tag_keras.tasks.losses import TaskLosses


class TaskView:
    """Per-task losses and parameters of a compiled dict-output model.

    Args:
        model: A compiled Keras model whose outputs are a dict keyed by
            task (a `TaskAffinityModel`, a multi-output `keras.Model`, or a
            one-task model).
        data: Data as `model.fit` takes it; its first batch builds the
            view (labels' format, which variables each task uses).

    Attributes:
        tasks: The outputs that have a loss, in output order.
        shared_variables: The trainable variables two or more tasks'
            losses depend on.
        heads: The `HeadLosses` of the tasks (classifiers, label losses).
    """

    def __init__(self, model, data):
        _keras_private.check_backend(what="the diagnostics (TaskView)")
        _data.check_data(data)
        if not getattr(model, "compiled", False):
            raise ValueError(
                "The diagnostics need a compiled model: each task's loss is "
                "the one given to `compile(loss=...)`. Call `model.compile` "
                f"first. Received: an uncompiled {type(model).__name__}."
            )
        self.model = model
        self._cache = {}
        x, y = _data.first_batch(data)
        outputs = self.outputs(x)
        if not isinstance(outputs, dict):
            raise TypeError(
                "The diagnostics need a model whose outputs are a dict "
                "keyed by task name, e.g. `keras.Model(inputs, {'a': ..., "
                "'b': ...})`. Received: outputs of type "
                f"{type(outputs).__name__}."
            )
        y = _data.labels_by_task(y, list(outputs))
        task_losses = TaskLosses(_keras_private.compile_loss(model))
        self._losses = task_losses.functions(
            {t: tf.convert_to_tensor(v) for t, v in y.items()}, outputs
        )
        self.tasks = [t for t in outputs if t in self._losses]
        self._labelled = [t for t in self.tasks if t in y]
        self._task_variables, self.shared_variables = self._find_variables(
            x, y
        )
        self.heads = HeadLosses(self, y, outputs)

    def check_task(self, task, name="task"):
        """Raises unless `task` is one of the model's tasks."""
        if task not in self.tasks:
            raise ValueError(
                f"Unknown task {task!r}: the model's tasks are {self.tasks}. "
                f"Received: {name}={task!r}."
            )
        if task not in self._labelled:
            raise ValueError(
                f"The data has no labels for task {task!r}. Received: "
                f"{name}={task!r}."
            )

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

    def outputs(self, x, variables=None, values=None):
        """The outputs in inference mode, with `variables` set to `values`.

        Nothing is written: moved variables go through `stateless_call`.
        """
        if variables is None:
            return self.model(x, training=False)
        replace = {id(v): value for v, value in zip(variables, values)}
        trainable = [
            replace.get(id(v), v.value) for v in self.model.trainable_variables
        ]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        return _keras_private.stateless_call_for_inference(
            self.model, trainable, non_trainable, x
        )

    def example_losses(self, task, y_true, y_pred):
        """`[batch]`: `task`'s loss per example, without `loss_weights`."""
        return TaskLosses.example_losses(self._losses[task], y_true, y_pred)

    def _find_variables(self, x, y):
        """`({task: θ_k}, shared variables)`, from one tape."""
        variables = self.model.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self.model(x, training=False)
            losses = {
                t: ops.mean(
                    self.example_losses(t, np.nan_to_num(y[t]), y_pred[t])
                )
                for t in self._labelled
            }
        found = shared_lib.discover(
            self.model, tape, losses, None, self._labelled
        )
        del tape
        per_task = dict(zip(self._labelled, found.per_task))
        return (
            {
                t: [variables[k] for k in per_task.get(t, [])]
                for t in self.tasks
            },
            found.pick(variables),
        )


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
