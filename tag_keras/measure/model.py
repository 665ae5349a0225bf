"""TaskAffinityModel: a Keras model whose training step measures affinity.

Affinity methods (`affinity_method=`), row = source task (whose gradient is
applied), column = target task (whose loss is measured):

* `"lookahead"` (default), the exact TAG affinity
  `Z(i→j) = 1 - L_j(θs after a real optimizer step on ∇L_i) / L_j(θs)`.
  The step is the compiled optimizer's own update (momentum, Adam moments,
  iteration count, this step's scheduled learning rate), made on shadow
  copies of the shared weights by a clone of the optimizer; the lookahead
  forward pass runs in training mode and its BatchNorm statistics are
  thrown away. Task-specific weights never move.
* `"first_order"`, its Taylor approximation `-<∇L_j, Δθs_i> / L_j`, where
  `Δθs_i` is the same optimizer step (for plain SGD, `lr <∇L_j, ∇L_i> /
  L_j`); no lookahead forward pass.
* `"cosine"`, the cosine similarity of the two tasks' shared gradients (the
  CS baseline); `cosine_kernels_only=True` keeps weight tensors of rank > 1
  only, as the original release does.

The running sums live in the model's `AffinityState` layer (non-trainable
weights), so checkpoints and `keras.callbacks.BackupAndRestore` keep them.

Skipped pairs: a task whose labels in the batch are all masked (NaN labels
or zero sample weights), or whose loss is zero or not finite, is left out
as a source and as a target for that step; so is any pair whose affinity is
not finite. Skips are counted (`affinity_skipped()`), and a warning is
given once; they never enter the averages.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tag_keras import _compat
from tag_keras import _keras_private
from tag_keras._tensorflow import tf
from tag_keras.measure import estimators
from tag_keras.measure import held_out
from tag_keras.measure import sources as sources_lib
from tag_keras.measure import step as step_lib
from tag_keras.measure.epochs import EpochAffinity
from tag_keras.measure.readout import AffinityReadout
from tag_keras.measure.settings import AffinitySettings
from tag_keras.mtl import base as mtl_base
from tag_keras.tasks import labels
from tag_keras.tasks import shared as shared_lib
from tag_keras.tasks.names import check_task_names


@keras.saving.register_keras_serializable(package="tag_keras")
class TaskAffinityModel(
    AffinityReadout,
    _keras_private.ArraysWithoutAutotune,
    _keras_private.MultiWorkerFixes,
    keras.Model,
):
    """A multi-task `keras.Model` that measures inter-task affinity in `fit`.

    Build it like a functional model whose outputs are a dict keyed by task
    name (or subclass it with a `call` that returns such a dict), compile it
    with one loss per task, and fit it as usual. Training is what a plain
    `keras.Model` with the same compile arguments does; in addition, every
    `affinity_every_n_steps` steps the model measures, on the current batch,
    how a step on each task's gradient changes every task's loss (see the
    module docstring for the methods). `affinity()` is the mean over all
    measured steps; during `fit`, `epoch_affinity` holds the mean over the
    epoch that just ended and `fit_affinity` the mean over every step
    measured up to it (both set before any user callback's `on_epoch_end`;
    `fit_affinity` is not rolled back by `EarlyStopping`'s restore).

    Args:
        affinity_every_n_steps: Measure on steps 0, n, 2n, ... (the
            optimizer's iteration count). 0 never measures.
        affinity_method: `"lookahead"`, `"first_order"`, `"cosine"` or a
            name registered with `tag_keras.register_affinity_method`.
        scale_by_learning_rate: Divide lookahead and first-order affinities
            by the step's learning rate, as the original release does.
        shared_layers: Optional names of the layers whose weights are
            shared. By default, the trainable weights that two or more task
            losses depend on.
        affinity_data: Optional held-out data on which the lookahead losses
            are measured (validation affinity): a batched `tf.data.Dataset`,
            a `keras.utils.PyDataset`, a generator or an `(x, y)` /
            `(x, y, sample_weight)` tuple of arrays. It is cycled.
        affinity_batch_size: Batch size used when `affinity_data` is arrays.
        cosine_kernels_only: With `"cosine"`, use only weight tensors of
            rank > 1 (kernels, not biases or normalisation vectors).
        training_method: Optional `tag_keras.mtl.TrainingMethod`
            (uncertainty weights, GradNorm, PCGrad, IT-MTL) that turns
            per-task losses and gradients into the update. Not to be
            confused with a `tf.distribute` strategy.
        task_names: Optional task order for the matrices. Defaults to the
            output dict's order, restricted to outputs with a compiled loss.
        lookahead_step: Each source's tentative step, for `"lookahead"`
            and `"first_order"`: `"optimizer"` (default; the compiled
            optimizer's real step with its state, as the release's CelebA
            code), `"sgd"` (the paper's `θs − lr g_i` with this step's
            rate), or `"increment"` (the optimizer's step measured against
            its state-only step `θs + Δ(0)`, which cancels the momentum
            move every source shares).
        affinity_sources: Which groups of tasks are also stepped on, with
            the sum of their gradients, for `group_affinity()`: `"tasks"`
            (none: single tasks only), `"tasks+all"` (the all-task group,
            the release's order 1), `"subsets"` (every group of two or
            more tasks, the release's default; at most `max_subset_tasks`
            tasks) or an integer k (every group of 2..k tasks). Each group
            costs one lookahead per measured step, no backward pass.
        affinity_random_subsets: Optional m: also draw m groups at random
            each measured step (seeded by `affinity_seed` and the step)
            among the groups of two or more tasks not measured anyway.
        affinity_seed: Seed of those draws.
        max_subset_tasks: Most tasks for `"subsets"` and random draws.
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

    #: Keras's compiled training function (set by `make_train_function`).
    train_function: Callable | None

    def __new__(cls, *args, **kwargs):
        _keras_private.check_backend(
            what="TaskAffinityModel", supported=("tensorflow", "jax")
        )
        if _keras_private.is_functional_call(args, kwargs) and not issubclass(
            cls, _keras_private.Functional
        ):
            # Deliberate: the zero-argument super() below must see the
            # functional variant as the class being created.
            cls = _functional_variant(cls)  # noqa: PLW0642
        return super().__new__(cls, *args, **kwargs)

    def __init__(
        self,
        *args: Any,
        affinity_every_n_steps: int = 10,
        affinity_method: str = "lookahead",
        scale_by_learning_rate: bool = True,
        shared_layers: Sequence[str] | None = None,
        affinity_data: Any = None,
        affinity_batch_size: int = 32,
        cosine_kernels_only: bool = False,
        training_method: mtl_base.TrainingMethod | None = None,
        task_names: Sequence[str] | None = None,
        lookahead_step: str = "optimizer",
        affinity_sources: str | int = "tasks",
        affinity_random_subsets: int | None = None,
        affinity_seed: int = 0,
        max_subset_tasks: int = sources_lib.MAX_SUBSET_TASKS,
        **kwargs: Any,
    ) -> None:
        training_method = _training_method(training_method, kwargs)
        settings = AffinitySettings.from_keywords(
            affinity_method=affinity_method,
            lookahead_step=lookahead_step,
            scale_by_learning_rate=scale_by_learning_rate,
            cosine_kernels_only=cosine_kernels_only,
            affinity_sources=affinity_sources,
            affinity_random_subsets=affinity_random_subsets,
            affinity_seed=affinity_seed,
            max_subset_tasks=max_subset_tasks,
        )
        _validate_arguments(
            affinity_every_n_steps,
            affinity_method,
            shared_layers,
            affinity_data,
            task_names,
        )
        if _keras_private.is_functional_call(args, kwargs):
            # What `keras.Model.__init__` does, minus rewriting the class
            # hierarchy (see `_functional_variant`).
            _keras_private.init_trainer(self)
        super().__init__(*args, **kwargs)
        self.affinity_settings = settings
        self.affinity_every_n_steps = int(affinity_every_n_steps)
        self.shared_layers = (
            None if shared_layers is None else list(shared_layers)
        )
        self._affinity_data = affinity_data
        self._affinity_batch_size = affinity_batch_size
        self.training_method = training_method
        self.next_train_step = None
        self._train_step: Any = None  # step_lib.TrainStep, once compiled
        self._recorder = None
        self._decide_task_names(task_names or _checked_outputs(self))

    # Public API (the settings and matrices: `AffinityReadout`) ---------

    @property
    def shared_variables(self) -> list:
        """The trainable variables treated as shared (known after a step)."""
        found = (
            None
            if self._train_step is None
            else self._train_step.found_shared()
        )
        if found is None:
            raise ValueError(
                "The shared variables are found when the first training step "
                "is traced: call `fit` or `train_on_batch` first."
            )
        return found.pick(self.trainable_variables)

    # Keras hooks -------------------------------------------------------

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        if type(self).compute_loss is not keras.Model.compute_loss:
            raise NotImplementedError(
                "TaskAffinityModel computes one loss per task from "
                "`compile(loss=...)`; overriding `compute_loss` is not "
                f"supported. Received: a {type(self).__name__} that overrides "
                "it."
            )
        if isinstance(kwargs.get("loss"), dict):
            self._decide_task_names(kwargs["loss"])
        if keras.backend.backend() == "jax":
            from tag_keras.measure import jax_step

            jax_step.check_supported(self)
            self._train_step = jax_step.JaxTrainStep(self)
        else:
            self._train_step = step_lib.TrainStep(self)

    def get_compile_config(self):
        # `compile` is overridden only to add checks; its config is Keras's.
        return super().get_compile_config()

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, *args, **kwargs):
        # `callbacks` found by Keras's own signature, however it is given.
        arguments = (
            inspect.signature(keras.Model.fit)
            .bind(self, *args, **kwargs)
            .arguments
        )
        del arguments["self"]
        arguments["callbacks"] = EpochAffinity.first_in(
            arguments.get("callbacks"), self
        )
        self.next_train_step = None
        return super().fit(**arguments)

    def train_step(self, *args):
        if keras.backend.backend() == "jax":  # (state, data): unmeasured
            return self._train_step.plain(*args)
        (data,) = args
        return self.step(data, measure=self.affinity_every_n_steps > 0)

    def test_step(self, *args):
        *state, data = args  # JAX: (state, data)
        return super().test_step(*state, labels.mask_missing_in_batch(data))

    def step(self, data: Any, measure: bool) -> dict[str, Any]:
        """One training step, measured or not (NaN labels masked)."""
        data = labels.mask_missing_in_batch(data)
        if measure or self.training_method is not None:
            return self._train_step(data, measure=measure)
        return keras.Model.train_step(self, data)

    def make_train_function(self, force: bool = False) -> Callable:
        """Measured and plain steps, chosen per step (`step.make_train_...`)."""
        if self.train_function is not None and not force:
            return self.train_function
        if self.affinity_every_n_steps == 0:
            return super().make_train_function(force)
        if keras.backend.backend() == "jax":
            from tag_keras.measure import jax_step

            self.train_function = jax_step.make_train_function(self)
            return self.train_function
        self.train_function = step_lib.make_train_function(self)
        return self.train_function

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return super().from_config(
            _compat.renamed_config("TaskAffinityModel", config),
            custom_objects=custom_objects,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "affinity_every_n_steps": self.affinity_every_n_steps,
            **self.affinity_settings.to_config(),
            "shared_layers": self.shared_layers,
            "training_method": mtl_base.serialize(self.training_method),
            "task_names": (
                list(self.task_names) if self.has_task_names else None
            ),
        }

    def _task_names_decided(self, names):
        method = self.training_method
        if method is not None and not method.built:
            method.build_tasks(names)

    # Used by the train step --------------------------------------------

    def held_out_batches(self) -> Iterator | None:
        """An endless iterator of `affinity_data` batches, or None."""
        if self._affinity_data is None:
            return None
        with tf.init_scope():  # The traced steps advance it.
            return held_out.cycle(
                self._affinity_data, self._affinity_batch_size
            )


def _checked_outputs(model):
    """A functional model's output dict (None for a subclass); raises for
    outputs that are not a dict or unknown `shared_layers`."""
    outputs = _keras_private.functional_outputs(model)
    if outputs is not None and not isinstance(outputs, dict):
        raise TypeError(
            "TaskAffinityModel needs the model's outputs to be a dict "
            "keyed by task name, e.g. outputs={'a': head_a, 'b': head_b}. "
            f"Received: outputs of type {type(outputs).__name__}."
        )
    if model.shared_layers is not None and model.built:
        shared_lib.check_layer_names(model, model.shared_layers)
    return outputs


_FUNCTIONAL_VARIANTS: dict = {}


def _functional_variant(cls):
    """`cls` with `Functional` mixed in, for `cls(inputs=..., outputs=...)`.

    `keras.Model.__init__` makes a subclass functional by rewriting the
    `__bases__` of the class and all its ancestors, which would turn
    `TaskAffinityModel` itself into a functional class for good. A derived
    class per user class keeps the public classes untouched; it is saved
    under the public class's registered name.
    """
    if cls not in _FUNCTIONAL_VARIANTS:
        variant = type(
            cls.__name__,
            (cls, _keras_private.Functional),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
        )
        registered = keras.saving.get_registered_name(cls)
        if registered != cls.__name__:
            _keras_private.register_saved_name(variant, registered)
        _FUNCTIONAL_VARIANTS[cls] = variant
    return _FUNCTIONAL_VARIANTS[cls]


def _training_method(method, kwargs):
    """`training_method=` checked; the former `strategy=` refused."""
    _compat.refuse_renamed_argument("TaskAffinityModel", kwargs)
    method = mtl_base.deserialize(method)
    if method is not None and not isinstance(method, mtl_base.TrainingMethod):
        raise TypeError(
            "`training_method` must be a tag_keras.mtl method such as "
            "tag_keras.mtl.PCGrad(). Received: "
            f"training_method={method!r}."
        )
    return method


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
    if shared_layers is not None and (
        isinstance(shared_layers, str)
        or not all(isinstance(n, str) for n in shared_layers)
    ):
        raise TypeError(
            "`shared_layers` must be a list of layer names. "
            f"Received: shared_layers={shared_layers!r}."
        )
    if (
        affinity_data is not None
        and not estimators.estimator_class(method).held_out
    ):
        raise ValueError(
            "`affinity_data` (held-out affinity) needs a method that "
            "measures the target losses on other batches: one of "
            f"{estimators.methods_with('held_out')}. "
            f"Received: affinity_method={method!r}."
        )
    if tasks is not None:
        check_task_names(tasks)
