"""TaskAffinityModel: a Keras model whose training step measures affinity."""

import functools
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras.src.models import functional as functional_module
from keras.src.models import model as model_module
from keras.src.saving import object_registration

from tag_keras import _data
from tag_keras import _distribute
from tag_keras import _step
from tag_keras import affinity as affinity_lib
from tag_keras._losses import TaskLosses
from tag_keras.mtl import base as mtl_base


@keras.saving.register_keras_serializable(package="tag_keras")
class TaskAffinityModel(_distribute.MultiWorkerFixes, keras.Model):
    """A multi-task `keras.Model` that measures inter-task affinity in `fit`.

    Build it like a functional model whose outputs are a dict keyed by task
    name (or subclass it with a `call` that returns such a dict), compile it
    with one loss per task, and fit it as usual. Training is what a plain
    `keras.Model` with the same compile arguments does; in addition, every
    `affinity_every_n_steps` steps the model measures, on the current batch,
    how a step on each task's gradient changes every task's loss:

    * `"lookahead"` (default), the exact TAG affinity
      `Z(i→j) = 1 - L_j(θs after a real optimizer step on ∇L_i) / L_j(θs)`.
      The step is the compiled optimizer's own update (momentum, Adam
      moments, iteration count, this step's scheduled learning rate), made
      on shadow copies of the shared weights by a clone of the optimizer;
      the lookahead forward pass runs in training mode and its BatchNorm
      statistics are thrown away. Task-specific weights never move.
    * `"first_order"`, its Taylor approximation `-<∇L_j, Δθs_i> / L_j`,
      where `Δθs_i` is the same optimizer step (for plain SGD,
      `lr <∇L_j, ∇L_i> / L_j`); no lookahead forward pass.
    * `"cosine"`, the cosine similarity of the two tasks' shared gradients
      (the CS baseline); `cosine_kernels_only=True` keeps weight tensors of
      rank > 1 only, as the original release does.

    Row = source task (whose gradient is applied), column = target task
    (whose loss is measured). The running sums and counts live in
    non-trainable variables of the model, so checkpoints and
    `keras.callbacks.BackupAndRestore` keep them. `affinity()` returns the
    mean over all measured steps; during `fit`, `epoch_affinity` holds the
    mean over the epoch that just ended (set before any user callback's
    `on_epoch_end`).

    Skipped pairs: a task whose labels in the batch are all masked (NaN
    labels or zero sample weights), or whose loss is zero or not finite, is
    left out as a source and as a target for that step; so is any pair
    whose affinity is not finite. Skips are counted (`affinity_skipped()`),
    and a warning is given once; they never enter the averages.

    Args:
        affinity_every_n_steps: Measure on steps 0, n, 2n, ... of training
            (the optimizer's iteration count). 0 never measures, and a step
            then costs what a plain Keras step costs.
        affinity_method: `"lookahead"`, `"first_order"` or `"cosine"`.
        scale_by_learning_rate: Divide lookahead and first-order affinities
            by the step's learning rate, as the original release does, so
            values stay comparable while the rate decays. With False the
            value is the paper's equation.
        shared_layers: Optional names of the layers whose weights are shared.
            By default, the shared weights are the trainable weights that two
            or more task losses depend on.
        affinity_data: Optional held-out data on which the lookahead losses
            are measured instead of the training batch (validation
            affinity): a batched `tf.data.Dataset`, a
            `keras.utils.PyDataset`, a generator or an `(x, y)` /
            `(x, y, sample_weight)` tuple of arrays. It is cycled.
        affinity_batch_size: Batch size used when `affinity_data` is arrays.
        cosine_kernels_only: With `"cosine"`, use only weight tensors of
            rank > 1 (kernels, not biases or normalisation vectors).
        strategy: Optional `tag_keras.mtl.TrainingStrategy` (uncertainty
            weights, GradNorm, PCGrad) that turns per-task losses and
            gradients into the update.
        task_names: Optional task order for the matrices. Defaults to the
            output dict's order, restricted to outputs with a compiled loss.
        **kwargs: Passed to `keras.Model` (`inputs`, `outputs`, `name`, ...).

    Example:

    ```python
    inputs = keras.Input(shape=(3,))
    trunk = keras.layers.Dense(8, activation="relu")(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs,
        outputs={"a": keras.layers.Dense(1)(trunk),
                 "b": keras.layers.Dense(1)(trunk)},
        affinity_every_n_steps=1)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss={"a": "mse", "b": "mse"})
    model.fit(x, {"a": y_a, "b": y_b}, epochs=2)
    model.affinity()   # DataFrame, index = source, columns = target
    ```
    """

    def __new__(cls, *args, **kwargs):
        if model_module.functional_init_arguments(
            args, kwargs
        ) and not issubclass(cls, functional_module.Functional):
            cls = _functional_variant(cls)
        return super().__new__(cls, *args, **kwargs)

    def __init__(
        self,
        *args,
        affinity_every_n_steps=10,
        affinity_method="lookahead",
        scale_by_learning_rate=True,
        shared_layers=None,
        affinity_data=None,
        affinity_batch_size=32,
        cosine_kernels_only=False,
        strategy=None,
        task_names=None,
        **kwargs,
    ):
        _validate_arguments(
            affinity_every_n_steps,
            affinity_method,
            shared_layers,
            affinity_data,
            task_names,
        )
        if model_module.functional_init_arguments(args, kwargs):
            # What `keras.Model.__init__` does, minus rewriting the class
            # hierarchy (see `_functional_variant`).
            model_module.Trainer.__init__(self)
        super().__init__(*args, **kwargs)
        self.affinity_every_n_steps = int(affinity_every_n_steps)
        self.affinity_method = affinity_method
        self.scale_by_learning_rate = bool(scale_by_learning_rate)
        self.shared_layers = None if shared_layers is None else list(
            shared_layers
        )
        self.cosine_kernels_only = bool(cosine_kernels_only)
        self._affinity_data = affinity_data
        self._affinity_batch_size = affinity_batch_size
        strategy = mtl_base.deserialize(strategy)
        if strategy is not None and not isinstance(
            strategy, mtl_base.TrainingStrategy
        ):
            raise TypeError(
                "`strategy` must be a tag_keras.mtl strategy such as "
                "tag_keras.mtl.PCGrad(). Received: "
                f"strategy={strategy!r}."
            )
        self.strategy = strategy
        self.epoch_affinity = None
        self._runtime = _Runtime()
        outputs = getattr(self, "_outputs_struct", None)
        if outputs is not None and not isinstance(outputs, dict):
            raise TypeError(
                "TaskAffinityModel needs the model's outputs to be a dict "
                "keyed by task name, e.g. outputs={'a': head_a, 'b': head_b}. "
                f"Received: outputs of type {type(outputs).__name__}."
            )
        self._task_names = None if task_names is None else tuple(task_names)
        if self._task_names is None and outputs is not None:
            self._task_names = tuple(outputs)
        if self.shared_layers is not None and self.built:
            self._check_shared_layers()
        if self._task_names is not None:
            self._create_affinity_state()

    # ------------------------------------------------------------------
    # Public API.

    @property
    def task_names(self):
        """The task names, in the order of the affinity matrices."""
        if self._task_names is None:
            raise ValueError(
                "The task names are not known yet: compile the model with a "
                "loss dict keyed by task, pass `task_names=`, or train it."
            )
        return self._task_names

    @property
    def shared_variables(self):
        """The trainable variables treated as shared (known after a step)."""
        measurement = self._runtime.measurement
        if measurement is None:
            raise ValueError(
                "The shared variables are found when the first training step "
                "is traced: call `fit` or `train_on_batch` first."
            )
        variables = self.trainable_variables
        return [variables[k] for k in measurement.shared]

    def affinity(self):
        """Mean affinity over all measured steps (DataFrame, NaN = never)."""
        self._require_state("affinity")
        return affinity_lib.mean_matrix(
            self.affinity_sum.numpy(), self.affinity_count.numpy(),
            self.task_names,
        )

    def affinity_counts(self):
        """How many steps entered each pair's mean (DataFrame of ints)."""
        self._require_state("affinity_counts")
        counts = self.affinity_count.numpy().astype(np.int64)
        return affinity_lib.as_frame(counts, self.task_names)

    def affinity_skipped(self):
        """How many measured steps skipped each pair (DataFrame of ints)."""
        self._require_state("affinity_skipped")
        skipped = self.affinity_skip_count.numpy().astype(np.int64)
        return affinity_lib.as_frame(skipped, self.task_names)

    def last_step_affinity(self):
        """`(step, DataFrame)` of the last measured step, or None.

        `step` is the 0-based training step (the optimizer's iteration count
        before that step's update); skipped pairs are NaN.
        """
        self._require_state("last_step_affinity")
        step = int(self.affinity_last_step.numpy())
        if step < 0:
            return None
        return step, affinity_lib.as_frame(
            self.affinity_last.numpy(), self.task_names
        )

    def affinity_totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        self._require_state("affinity_totals")
        return self.affinity_sum.numpy(), self.affinity_count.numpy()

    # ------------------------------------------------------------------
    # Keras hooks.

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        if type(self).compute_loss is not keras.Model.compute_loss:
            raise NotImplementedError(
                "TaskAffinityModel computes one loss per task from "
                "`compile(loss=...)`; overriding `compute_loss` is not "
                f"supported. Received: a {type(self).__name__} that overrides "
                "it."
            )
        if self._task_names is None and isinstance(kwargs.get("loss"), dict):
            self._task_names = tuple(kwargs["loss"])
            self._create_affinity_state()
        self._runtime = _Runtime()

    def get_compile_config(self):
        # `compile` is overridden only to add checks; its config is Keras's.
        return super().get_compile_config()

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, *args, **kwargs):
        callbacks = kwargs.pop("callbacks", None)
        if len(args) > 5:
            args, callbacks = args[:5] + args[6:], args[5]
        tracker = _EpochAffinity()
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks.callbacks.insert(0, tracker)
            tracker.set_model(self)
        else:
            callbacks = [tracker, *(callbacks or [])]
        self._runtime.next_step = None
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def train_step(self, data):
        if self.affinity_every_n_steps == 0 and self.strategy is None:
            return super().train_step(data)
        return _step.train_step(self, data)

    def make_train_function(self, force=False):
        """Two traced steps, measured and plain, chosen per step in Python.

        Deciding outside the graph keeps unmeasured steps exactly Keras's
        step, and is required under `tf.distribute`, which does not support
        the optimizer's cross-replica synchronisation inside a `tf.cond`.
        With `steps_per_execution > 1` one function decides in the graph.
        """
        if self.train_function is not None and not force:
            return self.train_function
        if self.affinity_every_n_steps == 0 and self.strategy is None:
            return super().make_train_function(force)
        if self.steps_per_execution > 1:
            if self.distribute_strategy.num_replicas_in_sync > 1:
                raise ValueError(
                    "Measuring affinity under a distribution strategy needs "
                    "steps_per_execution=1. Received: steps_per_execution="
                    f"{self.steps_per_execution}."
                )
            self.train_function = self._make_function(self.train_step)
            return self.train_function
        measured = self._make_function(
            functools.partial(_step.train_step, self, measure=True)
        )
        if self.strategy is None:
            plain = self._make_function(super().train_step)
        else:
            plain = self._make_function(
                functools.partial(_step.train_step, self, measure=False)
            )
        every = self.affinity_every_n_steps
        runtime = self._runtime

        def function(iterator):
            if runtime.next_step is None:
                runtime.next_step = int(
                    ops.convert_to_numpy(self.optimizer.iterations)
                )
            due = every > 0 and runtime.next_step % every == 0
            logs = (measured if due else plain)(iterator)
            runtime.next_step += 1
            return logs

        self.train_function = function
        return function

    def get_config(self):
        config = super().get_config()
        config.update(
            affinity_every_n_steps=self.affinity_every_n_steps,
            affinity_method=self.affinity_method,
            scale_by_learning_rate=self.scale_by_learning_rate,
            shared_layers=self.shared_layers,
            cosine_kernels_only=self.cosine_kernels_only,
            strategy=mtl_base.serialize(self.strategy),
            task_names=None if self._task_names is None else list(
                self._task_names
            ),
        )
        return config

    # ------------------------------------------------------------------
    # Internals used by `_step`.

    def _create_affinity_state(self):
        n = len(self._task_names)
        if hasattr(self, "affinity_sum"):
            if self.affinity_sum.shape[0] != n:
                raise ValueError(
                    f"The model was built for {self.affinity_sum.shape[0]} "
                    f"tasks. Received: task_names={list(self._task_names)}."
                )
            return

        def matrix(name, fill=0.0):
            return self.add_weight(
                shape=(n, n),
                initializer=keras.initializers.Constant(fill),
                dtype="float64",
                trainable=False,
                aggregation="only_first_replica",
                name=name,
            )

        self.affinity_sum = matrix("affinity_sum")
        self.affinity_count = matrix("affinity_count")
        self.affinity_skip_count = matrix("affinity_skip_count")
        self.affinity_last = matrix("affinity_last", np.nan)
        self.affinity_last_step = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(-1),
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
            name="affinity_last_step",
        )
        if self.strategy is not None and not self.strategy.built:
            self.strategy.build_tasks(self._task_names)

    def _task_losses(self, y, y_pred, sample_weight, track=True):
        if self._runtime.task_losses is None:
            self._runtime.task_losses = TaskLosses(self._compile_loss)
        return self._runtime.task_losses(y, y_pred, sample_weight, track)

    def _total_loss(self, losses):
        """The total loss exactly as `keras.Model.compute_loss` sums it."""
        parts = [sum(losses.values())]
        for loss in self.losses:
            parts.append(self._aggregate_additional_loss(loss))
        return parts[0] if len(parts) == 1 else ops.sum(parts)

    def _check_shared_layers(self):
        names = [layer.name for layer in self._flatten_layers()]
        unknown = [n for n in self.shared_layers if n not in names]
        if unknown:
            raise ValueError(
                f"`shared_layers` names layers the model does not have: "
                f"{unknown}. Valid layer names: {names}. Received: "
                f"shared_layers={self.shared_layers}."
            )

    def _shared_variable_ids(self):
        self._check_shared_layers()
        ids = set()
        for layer in self._flatten_layers():
            if layer.name in self.shared_layers:
                ids.update(id(v) for v in layer.trainable_variables)
        return ids

    def _held_out_iterator(self):
        if self._affinity_data is None:
            return None
        with tf.init_scope():
            return _data.cycle(self._affinity_data, self._affinity_batch_size)

    def _require_state(self, method):
        if not hasattr(self, "affinity_sum"):
            raise ValueError(
                f"`{method}()` needs the task names: compile the model with a "
                "loss dict keyed by task, pass `task_names=`, or train it "
                "first."
            )

    def _warn_skips_once(self):
        if self._runtime.warned or not hasattr(self, "affinity_skip_count"):
            return
        skipped = self.affinity_skip_count.numpy()
        if skipped.sum() > 0:
            self._runtime.warned = True
            pairs = int((skipped > 0).sum())
            warnings.warn(
                f"Affinity: {pairs} (source, target) pairs were skipped on "
                f"some measured steps ({int(skipped.sum())} skips in all) "
                "because a task had no labels in the batch or a zero or "
                "non-finite loss. Skipped pairs do not enter the averages; "
                "see `model.affinity_skipped()` and `affinity_counts()`.",
                stacklevel=2,
            )


_FUNCTIONAL_VARIANTS = {}


def _functional_variant(cls):
    """`cls` with `Functional` mixed in, for `cls(inputs=..., outputs=...)`.

    `keras.Model.__init__` makes a subclass functional by rewriting the
    `__bases__` of the class and all its ancestors, which would turn
    `TaskAffinityModel` itself into a functional class for good, and break
    later subclasses with their own `call`. A derived class per user class
    keeps the public classes untouched.
    """
    if cls not in _FUNCTIONAL_VARIANTS:
        variant = type(
            cls.__name__,
            (cls, functional_module.Functional),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
        )
        # Saved under the public class's registered name, so loading
        # builds `cls` (which makes the variant again).
        registered = keras.saving.get_registered_name(cls)
        if registered != cls.__name__:
            object_registration.GLOBAL_CUSTOM_NAMES[variant] = registered
        _FUNCTIONAL_VARIANTS[cls] = variant
    return _FUNCTIONAL_VARIANTS[cls]


class _Runtime:
    """Per-compile Python state, deliberately not tracked by Keras."""

    def __init__(self):
        self.task_losses = None
        self.measurement = None
        self.warned = False
        self.next_step = None


class _EpochAffinity(keras.callbacks.Callback):
    """Sets `model.epoch_affinity`; `fit` places it first in the list."""

    def __init__(self):
        super().__init__()
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch_affinity = None
        if self.model.strategy is not None:
            self.model.strategy.on_epoch_begin()
        if hasattr(self.model, "affinity_sum"):
            self._start = self.model.affinity_totals()

    def on_epoch_end(self, epoch, logs=None):
        if self.model.strategy is not None:
            self.model.strategy.on_epoch_end()
        if self._start is None or not hasattr(self.model, "affinity_sum"):
            self._start = None
            return
        sums, counts = self.model.affinity_totals()
        sums, counts = sums - self._start[0], counts - self._start[1]
        if counts.sum() > 0:
            self.model.epoch_affinity = affinity_lib.mean_matrix(
                sums, counts, self.model.task_names
            )
        self.model._warn_skips_once()

    def on_train_end(self, logs=None):
        self.model._warn_skips_once()


def _validate_arguments(every, method, shared_layers, affinity_data, tasks):
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)):
        raise TypeError(
            "`affinity_every_n_steps` must be a non-negative integer. "
            f"Received: affinity_every_n_steps={every!r}."
        )
    if every < 0:
        raise ValueError(
            "`affinity_every_n_steps` must be >= 0 (0 never measures). "
            f"Received: affinity_every_n_steps={every}."
        )
    if method not in affinity_lib.METHODS:
        raise ValueError(
            f"`affinity_method` must be one of {list(affinity_lib.METHODS)}. "
            f"Received: affinity_method={method!r}."
        )
    if shared_layers is not None and (
        isinstance(shared_layers, str)
        or not all(isinstance(n, str) for n in shared_layers)
    ):
        raise TypeError(
            "`shared_layers` must be a list of layer names. Received: "
            f"shared_layers={shared_layers!r}."
        )
    if affinity_data is not None and method != "lookahead":
        raise ValueError(
            "`affinity_data` (held-out affinity) needs "
            "affinity_method='lookahead'. Received: "
            f"affinity_method={method!r}."
        )
    if tasks is not None and (
        isinstance(tasks, str) or len(set(tasks)) != len(tasks)
    ):
        raise ValueError(
            "`task_names` must be a list of distinct names. Received: "
            f"task_names={tasks!r}."
        )

