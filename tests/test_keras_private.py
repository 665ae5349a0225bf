"""Every private Keras API tag_keras uses still behaves as it relies on.

`tag_keras._keras_private` is the only module that reaches Keras
internals; a Keras release that changes one of them fails here first.
"""

import contextlib
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tag_keras
from tag_keras import _keras_private as private

pytestmark = pytest.mark.keras_range


def _model(dropout=0.0):
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, name="trunk")(inputs)
    h = keras.layers.Dropout(dropout)(h)
    return keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(h),
                                "b": keras.layers.Dense(1, name="b")(h)})


def test_the_installed_keras_is_in_the_tested_range():
    minor = tuple(int(p) for p in keras.__version__.split(".")[:2])
    assert private.OLDEST_KERAS <= minor <= private.NEWEST_TESTED_KERAS
    assert private.keras_version_problem(keras.__version__) is None


@pytest.mark.parametrize("version, kind", [
    ("3.7.0", "error"), ("2.15.0", "error"), ("3.8.0", None),
    ("3.11.3", None), ("3.15.1", None), ("3.16.0", "warning"),
    ("4.0.0", "warning"), ("3.16.0.dev2026", "warning"),
    ("nightly", "warning")])
def test_keras_outside_the_tested_range_is_refused_or_warned(version, kind):
    problem = private.keras_version_problem(version)
    assert (problem and problem[0]) == kind
    if kind is None:
        private.check_keras_version(version)
        return
    message = problem[1]
    assert f"keras {version}" in message.lower()
    assert "3.8 to 3.15" in message
    if kind == "error":
        with pytest.raises(ImportError, match="needs Keras 3.8 or newer"):
            private.check_keras_version(version)
    else:
        with pytest.warns(UserWarning, match="is newer") as caught:
            private.check_keras_version(version)
        assert len(caught) == 1


def test_another_backend_is_one_line_naming_it():
    private.check_backend("tensorflow")
    with pytest.raises(tag_keras.InputError,
                       match=r"^GroupTrainer runs on Keras's 'tensorflow' "
                       r"backend, and this Keras runs on 'jax'.*"
                       r"KERAS_BACKEND=tensorflow"):
        private.check_backend("jax", what="GroupTrainer")
    private.check_backend("jax", supported=("tensorflow", "jax"))


@pytest.mark.parametrize("construct, backend", [
    ("model", "torch"), ("trainer", "jax"), ("trainer", "torch")])
def test_another_backend_is_refused_when_built(monkeypatch, construct,
                                                backend):
    # Keras's answer is replaced, which is all the check reads: the model
    # runs on TensorFlow and JAX, group training on TensorFlow only.
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    with pytest.raises(tag_keras.InputError, match=f"runs on '{backend}'"):
        if construct == "model":
            inputs = keras.Input((3,))
            tag_keras.TaskAffinityModel(
                inputs=inputs, outputs={"a": keras.layers.Dense(1)(inputs)})
        else:
            from tag_keras import train

            x = np.zeros((4, 3), "float32")
            splits = {"train": (x, {"a": np.zeros(4)}),
                      "validation": (x, {"a": np.zeros(4)})}
            train.GroupTrainer(lambda tasks: None, splits)


def test_functional_arguments_and_the_functional_variant():
    inputs = keras.Input((3,))
    outputs = {"a": keras.layers.Dense(1)(inputs)}
    assert private.is_functional_call((), {"inputs": inputs,
                                           "outputs": outputs})
    assert private.is_functional_call((inputs, outputs), {})
    assert not private.is_functional_call((), {"name": "x"})
    model = tag_keras.TaskAffinityModel(inputs=inputs, outputs=outputs)
    assert isinstance(model, private.Functional)
    assert type(model) is not tag_keras.TaskAffinityModel
    assert keras.saving.get_registered_name(type(model)) == (
        "tag_keras>TaskAffinityModel")
    assert "train_function" in vars(model)  # What `init_trainer` sets.
    assert list(private.functional_outputs(model)) == ["a"]
    assert private.functional_outputs(keras.Sequential()) is None


def test_calls_in_training_mode_use_dropout():
    model = _model(dropout=0.9)
    x = np.ones((64, 3), "float32")
    keras.utils.set_random_seed(0)
    inference = model(x)["a"]
    training = private.call_in_training(model, x)["a"]
    assert not np.allclose(inference, training)
    stateless = private.stateless_call_in_training(
        model, [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], x)
    assert not np.allclose(inference, stateless["a"])
    stateless = private.stateless_call_for_inference(
        model, [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], x)
    np.testing.assert_allclose(inference, stateless["a"])


def test_compile_loss_entries_and_trackers():
    model = _model()
    model.compile(optimizer="sgd", loss={"a": "mse", "b": "mae"},
                  loss_weights={"a": 2.0, "b": 1.0})
    x = np.ones((4, 3), "float32")
    y = {"a": np.zeros((4, 1)), "b": np.zeros((4, 1))}
    compile_loss = private.compile_loss(model)
    compile_loss.build(y, model(x))
    entries = private.loss_entries(compile_loss)
    assert sorted(task for task, _, _ in entries) == ["a", "b"]
    assert dict((t, w) for t, _, w in entries) == {"a": 2.0, "b": 1.0}
    assert all(callable(fn) for _, fn, _ in entries)
    private.track_total_loss(model, tf.constant(3.0), 4)
    assert float(model._loss_tracker.result()) == 3.0
    tracker = compile_loss.metrics[0]
    private.track_task_loss(tracker, tf.constant(5.0), 4)
    assert float(tracker.result()) == 5.0


def test_loss_scaling_for_distribution_is_identity_on_one_device():
    assert float(private.scale_loss_for_distribution(tf.constant(3.0))) == 3.0


def test_additional_losses_and_nested_layers():
    class WithLoss(keras.layers.Layer):
        def call(self, x):
            self.add_loss(keras.ops.sum(x))
            return x

    inner = keras.Sequential([keras.layers.Dense(2, name="deep")],
                             name="inner")
    inputs = keras.Input((2,))
    model = keras.Model(inputs, {"a": WithLoss()(inner(inputs))})
    model(np.ones((1, 2), "float32"))
    assert len(private.additional_losses(model)) == 1
    assert "deep" in [layer.name for layer in private.flat_layers(model)]
    assert "deep" not in [layer.name for layer in model.layers]


def test_dataset_from_arrays_batches_like_fit():
    dataset = private.dataset_from_arrays(
        np.arange(10.0).reshape(5, 2), np.arange(5.0), None, 2)
    sizes = [int(tf.shape(x)[0]) for x, *_ in dataset]
    assert sizes == [2, 2, 1]


def test_optimizer_internals_the_lookahead_uses():
    kernel = keras.Variable(np.ones((2, 2)), name="kernel")
    bias = keras.Variable(np.ones(2), name="bias")
    optimizer = keras.optimizers.AdamW(0.1, weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_list=[bias])
    optimizer.build([kernel, bias])
    built = private.optimizer_trainables(optimizer)
    assert len(built) == 2 and built[0] is kernel and built[1] is bias
    assert private.uses_weight_decay(optimizer, kernel)
    assert not private.uses_weight_decay(optimizer, bias)
    clone = keras.optimizers.AdamW.from_config(optimizer.get_config())
    private.share_learning_rate(clone, optimizer)
    optimizer.learning_rate.assign(0.5)
    assert float(clone.learning_rate) == 0.5


@pytest.mark.parametrize("optimizer, slots", [
    (keras.optimizers.SGD(0.1, momentum=0.9), {"momentum"}),
    (keras.optimizers.Adam(0.1), {"momentum", "velocity"}),
    (keras.optimizers.RMSprop(0.1, momentum=0.5),
     {"velocity", "momentum"}),
])
def test_optimizer_slots_are_named_by_their_variables_path(optimizer, slots):
    with keras.name_scope("block"):
        kernel = keras.Variable(np.ones((2, 2)), name="kernel")
    bias = keras.Variable(np.ones(2), name="bias")
    optimizer.build([kernel, bias])
    for variable in (kernel, bias):
        prefix = private.slot_prefix(variable)
        found = {v.name[len(prefix):] for v in optimizer.variables
                 if v.name.startswith(prefix)}
        assert found == slots, (prefix, [v.name for v in optimizer.variables])


@pytest.mark.parametrize("hook", ["_maybe_symbolic_build", "_symbolic_build",
                                  "_make_function"])
def test_the_trainer_hooks_multi_worker_fixes_override_exist(hook):
    assert callable(getattr(keras.Model, hook))
    if hook == "_maybe_symbolic_build":
        parameters = inspect.signature(keras.Model._maybe_symbolic_build)
        assert list(parameters.parameters)[1:] == ["iterator", "data_batch"]


def test_no_other_module_imports_keras_internals():
    import pathlib

    root = pathlib.Path(tag_keras.__file__).parent
    users = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
             if any(s in p.read_text() for s in (
                 "keras.src", "._call_has", "_outputs_struct",
                 "._compile_loss", "._loss_tracker", "tensorflow.core",
                 "tensorflow.python", "._set_attr",
                 "._update_metrics_variables", "jax._src", ".eqns"))]
    # The TensorFlow-side uses and their JAX twin.
    assert sorted(users) == ["_keras_jax_private.py", "_keras_private.py"]


def test_a_loop_kept_whole_is_not_lowered_and_computes_the_same():
    def loop(keep):
        def body(i, total):
            return i + 1, total + tf.cast(i, tf.float32) ** 2

        last, total = tf.while_loop(lambda i, _: i < 5, body,
                                    [tf.constant(0), tf.constant(0.0)])
        if keep:
            private.keep_loop_whole(last)
        return total

    for keep in (False, True):
        function = tf.function(lambda keep=keep: loop(keep))
        graph = function.get_concrete_function().graph
        [op] = [op for op in graph.get_operations()
                if op.type in ("While", "StatelessWhile")]
        # TensorFlow lowers a loop unless this private attribute says no.
        assert op.get_attr("_lower_using_switch_merge") is (not keep)
        assert float(function()) == 30.0
    private.keep_loop_whole(tf.constant(1))  # eager: nothing to do
    with pytest.raises(ValueError, match="tf.while_loop"):
        tf.function(lambda: private.keep_loop_whole(
            tf.constant(1.0) + 1.0)).get_concrete_function()


def _epoch_iterator(x, y, **options):
    from keras.src.backend.tensorflow.trainer import TFEpochIterator

    return TFEpochIterator(x=x, y=y, batch_size=4, steps_per_epoch=None,
                           distribute_strategy=tf.distribute.get_strategy(),
                           **options)


def test_arrays_are_read_without_the_autotune_thread_and_the_same_batches():
    # Issue 28 item 11: deleting an autotuned iterator after CPU-heavy
    # steps waited for tf.data's autotuning thread for tens of seconds.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype("float32")
    y = rng.normal(size=(20, 1)).astype("float32")
    for shuffle in (False, True):
        keras.utils.set_random_seed(1)
        plain = _epoch_iterator(x, y, shuffle=shuffle)
        keras.utils.set_random_seed(1)
        fixed = _epoch_iterator(x, y, shuffle=shuffle)
        private.without_autotune_thread(fixed)
        dataset = fixed._distributed_dataset
        assert dataset.options().autotune.enabled is False
        assert plain._distributed_dataset.options().autotune.enabled is None
        # The same pipeline (shuffling seeds included): the same batches.
        got = [b[0] for b in dataset.as_numpy_iterator()]
        want = [b[0] for b in plain._distributed_dataset.as_numpy_iterator()]
        np.testing.assert_array_equal(np.concatenate(got),
                                      np.concatenate(want))
        if shuffle:
            assert not np.array_equal(np.concatenate(got), x)


def test_a_users_dataset_keeps_its_own_options():
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32"))).batch(4)
    iterator = _epoch_iterator(dataset, None)
    before = iterator._distributed_dataset
    private.without_autotune_thread(iterator)
    assert iterator._distributed_dataset is before


def test_fit_on_arrays_reads_them_without_the_autotune_thread():
    inputs = keras.Input((3,))
    trunk = keras.layers.Dense(2)(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs={"a": keras.layers.Dense(1)(trunk),
                                "b": keras.layers.Dense(1)(trunk)})
    model.compile(optimizer="sgd", loss={"a": "mse", "b": "mse"})
    seen = []
    original = private.without_autotune_thread

    def spy(iterator):
        original(iterator)
        seen.append(iterator._distributed_dataset.options().autotune.enabled)

    private.without_autotune_thread = spy
    try:
        x = np.zeros((8, 3), "float32")
        model.fit(x, {"a": np.zeros((8, 1)), "b": np.zeros((8, 1))},
                  batch_size=4, verbose=0)
    finally:
        private.without_autotune_thread = original
    assert seen == [False]


def test_traced_steps_are_released_after_forgetting_custom_gradients():
    import gc

    from tensorflow.python.framework import ops as tf_ops

    registry = tf_ops._gradient_registry._registry

    def graphs():
        gc.collect()
        return sum(type(o).__name__ == "FuncGraph" for o in gc.get_objects())

    def fit_one():
        model = _model()
        model.compile(optimizer="sgd", loss="mse")
        x = np.zeros((8, 3), "float32")
        model.fit(x, {"a": np.zeros(8), "b": np.zeros(8)}, epochs=1,
                  verbose=0)
        model.evaluate(x, {"a": np.zeros(8), "b": np.zeros(8)}, verbose=0)

    before_names, before_graphs = set(registry), graphs()
    with private.forgetting_custom_gradients():
        fit_one()
        # Keras's steps registered their custom gradients meanwhile.
        assert any(name.startswith("CustomGradient-")
                   for name in set(registry) - before_names)
    assert not any(name.startswith("CustomGradient-")
                   for name in set(registry) - before_names)
    assert graphs() <= before_graphs


class BuiltFromSpec(private.BuildFromSpecUnderStrategy, keras.Model):
    pass


def _kernel_after_one_epoch(model_class, strategy):
    """A linear model's kernel after one epoch of a reshuffled dataset."""
    keras.utils.set_random_seed(1)
    with strategy.scope() if strategy else contextlib.nullcontext():
        inputs = keras.Input((3,))
        model = model_class(inputs=inputs,
                            outputs=keras.layers.Dense(1)(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(16, 3)).astype("float32"),
         rng.normal(size=(16, 1)).astype("float32"))).shuffle(
        16, seed=3, reshuffle_each_iteration=True).batch(8)
    model.fit(data, epochs=1, verbose=0)
    return model.get_weights()[0]


@pytest.mark.keras_range
def test_the_build_fix_is_needed_under_a_strategy_and_idle_without():
    # Keras builds a distributed model from the first batch, consuming
    # one shuffle of the data: a plain model's first epoch under a
    # one-device strategy is not its first epoch without one. When this
    # assertion fails, Keras has fixed its build and the mixin can go.
    one_device = tf.distribute.MirroredStrategy(["/cpu:0"])
    alone = _kernel_after_one_epoch(keras.Model, None)
    assert np.abs(_kernel_after_one_epoch(keras.Model, one_device)
                  - alone).max() > 1e-3
    np.testing.assert_array_equal(
        _kernel_after_one_epoch(BuiltFromSpec, one_device), alone)
    np.testing.assert_array_equal(
        _kernel_after_one_epoch(BuiltFromSpec, None), alone)


def test_the_fixes_are_named_for_their_bugs():
    assert issubclass(tag_keras.MultiWorkerFixes,
                      private.BuildFromSpecUnderStrategy)
    assert issubclass(tag_keras.MultiWorkerFixes,
                      private.ScalarLogsUnderMultiWorker)
    assert not issubclass(tag_keras.MultiWorkerFixes,
                          private.ArraysWithoutAutotune)
    assert issubclass(tag_keras.TaskAffinityModel,
                      private.ArraysWithoutAutotune)
