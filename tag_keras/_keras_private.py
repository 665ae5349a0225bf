"""Every use of a private Keras (or TensorFlow) API, each with its reason.

Keras 3 offers no public way to do the few things below; they are reached
from this module only, and `tests/test_keras_private.py` fails if a Keras
release changes any of them. `setup.py` declares the Keras versions those
tests pass on, from `OLDEST_KERAS` up; CI runs them on the oldest and on
the pinned version, and a Keras newer than `NEWEST_TESTED_KERAS` gets one
warning when this module is imported (`check_keras_version`).
"""

import contextlib
import warnings

import keras
from keras.src.losses import loss as loss_module
from keras.src.models import functional as functional_module
from keras.src.models import model as model_module
from keras.src.saving import object_registration
from keras.src.trainers import data_adapters
from keras.src.trainers.data_adapters import array_data_adapter

from tag_keras._tensorflow import tf

#: The oldest Keras (major, minor) the private uses below work on. Keras
#: 3.7 lacks `scale_loss_for_distribution`, `unscale_loss_for_distribution`
#: and `Model._aggregate_additional_loss`; 3.6 also `CompileLoss._flat_losses`
#: and `Trainer._make_function`.
OLDEST_KERAS = (3, 8)
#: The newest Keras (major, minor) they were tested on.
NEWEST_TESTED_KERAS = (3, 15)


def keras_version_problem(version: str) -> tuple[str, str] | None:
    """`("error" | "warning", message)` for a Keras `version` outside the
    tested range, or None inside it."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        found = None
    tested = (
        f"{OLDEST_KERAS[0]}.{OLDEST_KERAS[1]} to "
        f"{NEWEST_TESTED_KERAS[0]}.{NEWEST_TESTED_KERAS[1]}"
    )
    if found is not None and found < OLDEST_KERAS:
        return (
            "error",
            (
                f"tag_keras needs Keras {OLDEST_KERAS[0]}.{OLDEST_KERAS[1]}"
                f" or newer (it is tested on Keras {tested}); upgrade with "
                f"`pip install 'keras>={OLDEST_KERAS[0]}.{OLDEST_KERAS[1]}'`."
                f" Received: keras {version}"
            ),
        )
    if found is None or found > NEWEST_TESTED_KERAS:
        return (
            "warning",
            (
                f"tag_keras is tested on Keras {tested}; Keras {version} is "
                "newer. It reaches a few Keras internals "
                "(tag_keras/_keras_private.py): if something fails, "
                "`pytest tests/test_keras_private.py` in a source checkout "
                "names what changed, and installing "
                f"`keras=={NEWEST_TESTED_KERAS[0]}.{NEWEST_TESTED_KERAS[1]}.*`"
                " avoids it."
            ),
        )
    return None


def check_keras_version(version: str | None = None) -> None:
    """Raises `ImportError` for a Keras older than `OLDEST_KERAS`; warns
    once for one newer than `NEWEST_TESTED_KERAS`."""
    problem = keras_version_problem(
        keras.__version__ if version is None else version
    )
    if problem is None:
        return
    kind, message = problem
    if kind == "error":
        raise ImportError(message)
    warnings.warn(message, UserWarning, stacklevel=2)


def check_backend(
    backend: str | None = None,
    *,
    what: str = "this part of tag_keras",
    supported: tuple[str, ...] = ("tensorflow",),
) -> None:
    """Raises `InputError` unless Keras runs on a `supported` backend.

    Called when a model or trainer is constructed, so that another
    backend is one line there instead of a trace deep inside `fit`.
    `TaskAffinityModel` runs on TensorFlow and JAX; the rest of the
    package on TensorFlow (docs/guides/backends.md).
    """
    from tag_keras._errors import InputError

    backend = keras.backend.backend() if backend is None else backend
    if backend not in supported:
        names = " or ".join(repr(b) for b in supported)
        raise InputError(
            f"{what[0].upper()}{what[1:]} runs on Keras's {names} backend, "
            f"and this Keras runs on {backend!r}. Set KERAS_BACKEND="
            f'{supported[0]} (or "backend": "{supported[0]}" in '
            f"~/.keras/keras.json) and install it. Received: "
            f"backend={backend!r}"
        )


check_keras_version()

#: The functional model class: `TaskAffinityModel(inputs=, outputs=)` mixes
#: it in per user class (`keras.Model` rewrites class bases instead).
#: No public route: `keras.Model.__new__` makes `Model(inputs, outputs)`
#: functional by swapping in this private class, and a subclass of
#: `keras.Model` that is built the functional way (with its own train
#: step) must be one too. Wrapping a built model instead (composition)
#: would change the user's API (`TaskAffinityModel(model)`), and Keras
#: would not track or save the inner model as its own functional graph.
Functional = functional_module.Functional


def is_functional_call(args, kwargs):
    """Whether `Model(...)` arguments build a functional model.

    Reason: `keras.Model.__new__` decides this with the same private test.
    """
    return model_module.functional_init_arguments(args, kwargs)


def init_trainer(model):
    """What `keras.Model.__init__` does before `Functional.__init__`.

    Reason: the functional variant skips `keras.Model.__init__` (which would
    rewrite the class hierarchy) but needs the trainer's state.
    """
    model_module.Trainer.__init__(model)


def register_saved_name(variant, registered_name):
    """Saves `variant` under `registered_name`, so loading builds its base.

    Reason: `keras.saving` has no public way to alias a class's name.
    """
    object_registration.GLOBAL_CUSTOM_NAMES[variant] = registered_name


def call_in_training(model, x):
    """`model(x)` in training mode, as Keras's `train_step` calls it.

    Reason: Keras passes `training=True` only when `call` accepts it,
    which the private `_call_has_training_arg` records.
    """
    if model._call_has_training_arg:
        return model(x, training=True)
    return model(x)


def stateless_call_in_training(model, trainable, non_trainable, x):
    """`model.stateless_call` in training mode; returns the outputs only."""
    kwargs = {"training": True} if model._call_has_training_arg else {}
    outputs, _ = model.stateless_call(trainable, non_trainable, x, **kwargs)
    return outputs


def stateless_call_for_inference(model, trainable, non_trainable, x):
    """`model.stateless_call` in inference mode; returns the outputs only.

    Reason: as `call_in_training`, `training=` is passed only when `call`
    accepts it (the private `_call_has_training_arg`).
    """
    kwargs = {"training": False} if model._call_has_training_arg else {}
    outputs, _ = model.stateless_call(trainable, non_trainable, x, **kwargs)
    return outputs


def functional_outputs(model):
    """A functional model's output structure (a dict for multi-task), or
    None for a subclassed model.

    Reason: `Functional` keeps the structure it was built with privately.
    """
    return getattr(model, "_outputs_struct", None)


def compile_loss(model):
    """The model's built `CompileLoss` (per-output losses and trackers).

    Reason: Keras computes only the total loss publicly; the per-task
    losses are its entries (`_flat_losses`: loss, weight, output path).
    The public route, rebuilding the losses from the `loss=` and
    `loss_weights=` that `compile` receives (`keras.losses.get`), does
    not give them: `CompileLoss` resolves some names only when it
    is built, from each output's shape ("crossentropy" becomes binary,
    categorical or sparse), maps a single loss or a list onto the
    outputs, and reduces each entry its own way; the measured step's
    per-task losses must add up to Keras's total exactly, or measuring
    would change training (`tests/test_model.py::
    test_measuring_never_changes_training`). Reading the built entries
    is the one way to get Keras's own numbers.
    """
    return model._compile_loss


def loss_entries(compile_loss_object):
    """`[(task, loss_fn, loss_weight)]`, built, in Keras's flattened order."""
    return [
        (entry.path[0], entry.loss, entry.loss_weights)
        for entry in compile_loss_object._flat_losses
    ]


def track_total_loss(model, total, batch_size):
    """Updates the `loss` tracker as Keras's `compute_loss` does.

    Reason: the tracker (`_loss_tracker`) and the unscaling of a replica's
    share of the loss are private.
    """
    model._loss_tracker.update_state(
        loss_module.unscale_loss_for_distribution(total),
        sample_weight=batch_size,
    )


def track_task_loss(tracker, value, batch_size):
    """Updates one `<task>_loss` tracker as `CompileLoss` does."""
    tracker.update_state(
        loss_module.unscale_loss_for_distribution(value),
        sample_weight=batch_size,
    )


def scale_loss_for_distribution(value):
    """A replica's share of a loss term (divided by the replica count).

    Reason: Keras divides each replica's loss this way; an additive loss
    term (uncertainty weights' `s`) must be scaled like the losses.
    """
    return loss_module.scale_loss_for_distribution(value)


def additional_losses(model):
    """The model's `add_loss` terms, each reduced as `compute_loss` does."""
    return [model._aggregate_additional_loss(v) for v in model.losses]


def flat_layers(model):
    """Every layer of `model`, nested ones included.

    Reason: the public `model.layers` lists direct children only.
    """
    return list(model._flatten_layers())


def dataset_from_arrays(x, y, sample_weight, batch_size):
    """A `tf.data.Dataset` batching arrays exactly as `model.fit` does."""
    adapter = data_adapters.get_data_adapter(
        x, y, sample_weight, batch_size=batch_size, shuffle=False
    )
    return adapter.get_tf_dataset()


def numpy_batches(x, y, sample_weight, batch_size):
    """A function returning one pass of NumPy batches of arrays, a
    `PyDataset` or a generator, batched exactly as `model.fit` does (no
    shuffling); no TensorFlow needed for arrays.

    Reason: Keras's data adapters are private (`get_data_adapter`).
    """
    adapter = data_adapters.get_data_adapter(
        x, y, sample_weight, batch_size=batch_size, shuffle=False
    )

    def one_pass():
        yield from adapter.get_numpy_iterator()
        adapter.on_epoch_end()

    return one_pass


def optimizer_trainables(optimizer):
    """The variables `optimizer` was built with, in the order its
    `stateless_apply` takes their values.

    Reason: the list is the optimizer's private `_trainable_variables`;
    `stateless_apply` checks its arguments against it.
    """
    return list(optimizer._trainable_variables)


def uses_weight_decay(optimizer, variable):
    """Whether `optimizer` applies weight decay to `variable`.

    Reason: the exclusion lists set by `exclude_from_weight_decay` are
    read only through this private method.
    """
    return optimizer._use_weight_decay(variable)


def slot_prefix(variable):
    """How the names of an optimizer's slots for `variable` begin.

    Reason: `Optimizer.add_variable_from_reference` names a slot
    `{variable.path with '/' -> '_'}_{slot}` (e.g. `dense_kernel_momentum`);
    the lookahead pairs its clone's slots with the real ones by it, and
    Keras offers no public map from a variable to its slots.
    """
    return variable.path.replace("/", "_") + "_"


def share_learning_rate(clone, optimizer):
    """Makes `clone` use `optimizer`'s learning-rate object itself.

    Reason: a schedule or a Variable assigned by callbacks must give the
    clone this step's rate; `learning_rate` is a read-only property.
    """
    clone._learning_rate = optimizer._learning_rate


class BuildFromSpecUnderStrategy:
    """Model mixin fixing Keras's build under a `tf.distribute` strategy.

    The bug (Keras 3.8 to 3.15, `TensorFlowTrainer._maybe_symbolic_build`):
    under a strategy Keras builds the model before `fit` from the first
    batch of the training data, which (1) advances a reshuffling dataset
    by one epoch, so that epoch k of a distributed run sees the order of
    epoch k + 1 of the same run on one device, and (2) under
    `MultiWorkerMirroredStrategy` fails outright: it averages that batch
    over replicas with one `strategy.reduce` over the whole (x, y)
    structure, which the collective strategy rejects. Only shapes and
    dtypes matter for the build: this mixin builds from the dataset's
    `element_spec` (one replica's, for an already distributed dataset)
    and reads no data. Without a strategy Keras's own build runs.

    Reason: it overrides the private trainer hook `_maybe_symbolic_build`.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator, data_batch)
        data_batch = _element_spec(iterator)
        if data_batch is None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    _first_replica, next(batches)
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)


class ScalarLogsUnderMultiWorker:
    """Model mixin fixing Keras's step logs under multi-worker training.

    The bug (Keras 3.8 to 3.15, `reduce_per_replica`): under
    `MultiWorkerMirroredStrategy` Keras reduces each step's scalar logs
    with `strategy.reduce("MEAN", value, axis=0)`, which needs an axis,
    so the first step fails. Each log gets a leading axis of length one;
    under any other strategy, or none, Keras's step function is unchanged.

    Reason: it overrides the private trainer hook `_make_function`.
    """

    def _make_function(self, step_function, *args, **kwargs):
        if keras.backend.backend() != "tensorflow" or not _is_multi_worker(
            self.distribute_strategy
        ):
            return super()._make_function(step_function, *args, **kwargs)

        def with_axis(data):
            logs = step_function(data)
            return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), logs)

        return super()._make_function(with_axis)


class MultiWorkerFixes(BuildFromSpecUnderStrategy, ScalarLogsUnderMultiWorker):
    """Model mixin: Keras's TensorFlow trainer under any strategy.

    Public as `tag_keras.MultiWorkerFixes`. The two fixes for the Keras
    bugs that bite distributed `fit` (each a no-op where its bug does
    not bite): `BuildFromSpecUnderStrategy` (the build reads a batch
    under a strategy) and `ScalarLogsUnderMultiWorker` (the multi-worker
    reduction of the step's logs needs an axis). `TaskAffinityModel` has
    them; mix them into a plain model (`class Plain(
    tag_keras.MultiWorkerFixes, keras.Model)`) to compare one with it
    under the same strategy.
    """


class ArraysWithoutAutotune:
    """Model mixin: the pipeline Keras builds from arrays, without the
    end-of-fit stall (`without_autotune_thread`); a `tf.data.Dataset`
    keeps its own options.

    Reason: it overrides the private trainer hook `_maybe_symbolic_build`,
    where the epoch iterator is first seen.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            without_autotune_thread(iterator)
        return super()._maybe_symbolic_build(iterator, data_batch)


def without_autotune_thread(iterator):
    """Turns tf.data autotuning off in the pipeline Keras built from arrays.

    Deleting a tf.data iterator waits for the pipeline's autotuning thread
    (`RootDataset`'s model thread), and after epochs of CPU-heavy steps
    that wait reaches tens of seconds (issue 28 item 11: 23-51 s after a
    fit of 8 measured CelebA-encoder steps; the same 20-line pipeline
    outside Keras waits 29 s when its consumer is busy and none with
    autotuning off). Keras deletes the epoch's iterator as `fit` returns,
    so every affected `fit` stalls there. An in-memory pipeline (a gather
    per batch) gains nothing from autotuning. The options are added on
    top of the built dataset, so its graph, shuffling seeds included, is
    the one Keras built. Only arrays: a `tf.data.Dataset` the user passes
    keeps the options the user gave it.

    Reason: `TFEpochIterator` keeps its dataset in the private
    `_distributed_dataset`, and `ArrayDataAdapter` is Keras's private
    adapter of arrays.
    """
    adapter = getattr(iterator, "data_adapter", None)
    dataset = getattr(iterator, "_distributed_dataset", None)
    if not isinstance(adapter, array_data_adapter.ArrayDataAdapter) or (
        not isinstance(dataset, tf.data.Dataset)
    ):
        return  # Not arrays, or distributed by a strategy: as built.
    options = tf.data.Options()
    options.autotune.enabled = False
    iterator._distributed_dataset = dataset.with_options(options)


def keep_loop_whole(loop_output):
    """Keeps the `tf.while_loop` that produced `loop_output` a functional
    `While` op in a traced function, instead of lowering it to
    Switch/Merge frames; returns nothing.

    Reason: TensorFlow lowers every loop of a `tf.function` (a private op
    attribute, `_lower_using_switch_merge`, decides), and a graph holding
    loop frames runs all its ops under the executor's frame bookkeeping:
    measured, a 50-task MLP's measured step about 1.2x slower. Kept whole,
    the loop's body runs as a function of its own. No-op when eager.
    """
    if tf.executing_eagerly():
        return
    from tensorflow.core.framework import attr_value_pb2

    op = loop_output.op
    while op.type not in ("While", "StatelessWhile"):
        if not op.inputs:
            raise ValueError(
                "keep_loop_whole needs an output of a tf.while_loop. "
                f"Received: the output of a {op.type} op."
            )
        op = op.inputs[0].op
    op._set_attr(
        "_lower_using_switch_merge",  # pylint: disable=protected-access
        attr_value_pb2.AttrValue(b=False),
    )


#: Prefix of the names `tf.custom_gradient` registers in graph mode.
_CUSTOM_GRADIENT = "CustomGradient-"


@contextlib.contextmanager
def forgetting_custom_gradients():
    """Unregisters, on exit, the custom gradients traced inside.

    Every `tf.custom_gradient` traced in graph mode registers its
    gradient function under a new name in TensorFlow's global gradient
    registry, which never drops it, and the function holds the traced
    graph alive. Keras's train and test steps trace one each (through
    `ReplicaContext.all_reduce`), so every network trained in a process
    kept its step graphs: measured, about 6,000 Python objects per
    network, and after a few hundred networks each garbage collection
    (one per `keras.backend.clear_session()`) took seconds. Use it around
    the whole life of models that are dropped at the end (a network
    trained, evaluated and discarded): a gradient asked of those graphs
    after the exit would not find its function. Registrations made by
    another thread meanwhile are dropped too.

    Reason: the registry is TensorFlow's private
    `ops._gradient_registry`, which has no public way to unregister.
    """
    from tensorflow.python.framework import ops as tf_ops

    registry = tf_ops._gradient_registry._registry  # pylint: disable=protected-access
    before = set(registry)
    try:
        yield
    finally:
        for name in set(registry) - before:
            if name.startswith(_CUSTOM_GRADIENT):
                registry.pop(name, None)


def make_function(model, step_function):
    """`step_function` traced and wrapped as Keras wraps `train_step`.

    Reason: Keras's `_make_function` applies `jit_compile`, the
    distribution strategy and `steps_per_execution` to a step function.
    """
    return model._make_function(step_function)


def _is_multi_worker(strategy):
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def _element_spec(iterator):
    """One replica's element spec of the training data, or None."""
    adapter = getattr(iterator, "data_adapter", None)
    if adapter is None:
        return None
    spec = getattr(adapter.get_tf_dataset(), "element_spec", None)
    if spec is None:
        return None
    return tf.nest.map_structure(_first_replica_spec, spec)


def _first_replica_spec(spec):
    replicas = getattr(spec, "_value_specs", None)  # PerReplicaSpec
    return spec if replicas is None else replicas[0]


def _first_replica(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value
