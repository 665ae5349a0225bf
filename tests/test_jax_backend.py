"""TaskAffinityModel on Keras's JAX backend: the guards of the private JAX
uses, shared-variable discovery, the host float64 sums, dropout masks,
and one line for what is not ported.

Run by .ci/run under KERAS_BACKEND=jax (`-m backends`); skipped under
TensorFlow, except the host sums, which need no backend.
"""

import math

import keras
import numpy as np
import pytest

import tag_keras
from tag_keras.measure.host_state import HostAffinityState

pytestmark = pytest.mark.backends

on_jax = pytest.mark.skipif(keras.backend.backend() != "jax",
                            reason="needs KERAS_BACKEND=jax")


def _model(**kwargs):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    trunk = keras.layers.Dense(4, activation="tanh", name="trunk")(inputs)
    outputs = {
        "a": keras.layers.Dense(1, name="head_a")(trunk),
        "b": keras.layers.Dense(1, name="head_b")(trunk),
        "alone": keras.layers.Dense(1, name="head_alone")(inputs),
    }
    return tag_keras.TaskAffinityModel(inputs=inputs, outputs=outputs,
                                       **kwargs)


def _data(n=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    return x, {t: rng.normal(size=(n, 1)).astype("float32")
               for t in ("a", "b", "alone")}


def test_host_sums_keep_float64_precision():
    # 10^5 steps of 0.1 (not a binary fraction) and one of 1e8: float32
    # sums lose the small steps entirely, float64 ones keep them.
    state = HostAffinityState(1)
    ok = np.ones(1, bool)
    state.record(np.full((1, 1), 1e8, np.float32), ok, ok, 0)
    small = np.float32(0.1)
    for step in range(1, 100_001):
        state.record(np.full((1, 1), small), ok, ok, step)
    expected = math.fsum([1e8] + [float(small)] * 100_000)  # 1e8 + 1e4
    # Within a hundredth of the exact sum; float32 would be 1e4 short.
    assert state.sums.numpy()[0, 0] == pytest.approx(expected, abs=1e-2)
    assert state.counts.numpy()[0, 0] == 100_001
    float32_sum = np.float32(1e8)
    for _ in range(1000):
        float32_sum += small
    assert float32_sum == np.float32(1e8)  # what float32 would have kept


def test_host_state_skips_unusable_pairs():
    state = HostAffinityState(2)
    z = np.array([[1.0, np.inf], [2.0, 3.0]], np.float32)
    state.record(z, np.array([True, True]), np.array([True, False]), 4)
    np.testing.assert_array_equal(state.counts.numpy(), [[1, 0], [1, 0]])
    np.testing.assert_array_equal(state.skips.numpy(), [[0, 1], [0, 1]])
    step, last = state.last_measured()
    assert step == 4 and np.isnan(last[:, 1]).all()


@on_jax
def test_used_inputs_follows_the_traced_program():
    from tag_keras import _keras_jax_private

    def loss(values):
        a, b, c = values
        return (a * 2.0).sum() + keras.ops.stop_gradient(b).sum() * 0.0

    used = _keras_jax_private.used_inputs(
        loss, [np.ones(2, "float32"), np.ones(2, "float32"),
               np.ones(2, "float32")])
    # `b` is read (a zero gradient, not an absent one); `c` is not.
    assert used == [True, True, False]


@on_jax
def test_a_head_that_bypasses_the_trunk_is_not_shared():
    model = _model(affinity_every_n_steps=1)
    model.compile(optimizer="sgd", loss={t: "mse" for t in model.output})
    x, y = _data()
    with pytest.warns(UserWarning, match=r"\['alone'\]"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert {v.path for v in model.shared_variables} == {
        "trunk/kernel", "trunk/bias"}
    affinity = model.affinity()
    assert affinity.loc["alone"].isna().all()
    assert np.isfinite(affinity.loc[["a", "b"], ["a", "b"]].to_numpy()).all()


@on_jax
def test_shared_layers_override_on_jax():
    model = _model(affinity_every_n_steps=1, shared_layers=["trunk"])
    model.compile(optimizer="sgd", loss={t: "mse" for t in model.output})
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert {v.path for v in model.shared_variables} == {
        "trunk/kernel", "trunk/bias"}


@on_jax
def test_dropout_masks_are_reused_in_the_lookahead():
    # With a learning rate of 0 the lookahead does not move the weights:
    # Z is exactly 0 only if the lookahead forward draws the same dropout
    # masks as the step's own forward.
    keras.utils.set_random_seed(5)
    inputs = keras.Input((3,))
    trunk = keras.layers.Dropout(0.5)(
        keras.layers.Dense(8, name="trunk")(inputs))
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, affinity_every_n_steps=1,
        scale_by_learning_rate=False,
        outputs={t: keras.layers.Dense(1)(trunk) for t in "ab"})
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss={t: "mse" for t in "ab"})
    x, y = _data()
    model.fit(x, {t: y[t] for t in "ab"}, batch_size=8, epochs=1,
              verbose=0)
    np.testing.assert_array_equal(model.affinity().to_numpy(), 0.0)


@on_jax
@pytest.mark.parametrize("kwargs, message", [
    ({"training_method": "pcgrad"}, "training_method="),
    ({"affinity_sources": "subsets"}, "group sources"),
])
def test_what_is_not_ported_is_one_line(kwargs, message):
    if "training_method" in kwargs:
        kwargs = {"training_method": tag_keras.mtl.PCGrad()}
    model = _model(affinity_every_n_steps=1, **kwargs)
    with pytest.raises(tag_keras.InputError,
                       match=rf"JAX backend.*{message}") as error:
        model.compile(optimizer="sgd",
                      loss={t: "mse" for t in model.output})
    assert "\n" not in str(error.value)


@on_jax
def test_group_training_is_one_line_on_jax():
    from tag_keras import train

    x = np.zeros((4, 3), "float32")
    splits = {"train": (x, {"a": np.zeros(4)}),
              "validation": (x, {"a": np.zeros(4)})}
    with pytest.raises(tag_keras.InputError,
                       match=r"^GroupTrainer \(tag-train\) runs on Keras's "
                       r"'tensorflow' backend, and this Keras runs on "
                       r"'jax'"):
        train.GroupTrainer(lambda tasks: None, splits)


@on_jax
def test_the_tensorflow_only_tools_are_one_line_on_jax():
    x, y = _data()
    model = _model()
    model.compile(optimizer="sgd", loss={t: "mse" for t in model.output})
    attempts = {
        "AffinityMeter": lambda: tag_keras.AffinityMeter(
            [], keras.optimizers.SGD(), ["a", "b"]),
        "TrajectoryLogger": lambda: tag_keras.TrajectoryLogger(
            "unused", (x, y), (x, y)),
        "diagnostics": lambda: tag_keras.diagnostics.gradient_conflict(
            model, (x, y)),
    }
    for what, attempt in attempts.items():
        with pytest.raises(tag_keras.InputError,
                           match=r"runs on Keras's 'tensorflow' backend, "
                           r"and this Keras runs on 'jax'") as error:
            attempt()
        assert "\n" not in str(error.value), what
