"""TaskAffinityModel on Keras's JAX backend: the guards of the private JAX
uses, shared-variable discovery, the host float64 sums, dropout masks,
and one line for what is not ported.

Run by .ci/run under KERAS_BACKEND=jax (`-m backends`); skipped under
TensorFlow, except the host sums, which need no backend.
"""

import math

import keras
import numpy as np
import pandas as pd
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


@pytest.mark.parametrize("steps", [
    100_000, pytest.param(10_000_000, marks=pytest.mark.slow)])
def test_host_sums_keep_float64_precision(steps):
    # One step of 1e8, then `steps` of 0.1 (not a binary fraction), through
    # the state's own `record`: float32 sums lose the small steps entirely,
    # float64 ones keep them within the bound of recursive summation,
    # (steps) * 2^-53 * (the sum of magnitudes).
    state = HostAffinityState(1)
    ok = np.ones(1, bool)
    state.record(np.full((1, 1), 1e8, np.float32), ok, ok, 0)
    small = np.full((1, 1), 0.1, np.float32)
    for step in range(1, steps + 1):
        state.record(small, ok, ok, step)
    expected = 1e8 + steps * float(small[0, 0])  # exact in decimal terms
    bound = steps * 2.0**-53 * expected
    assert abs(state.sums.numpy()[0, 0] - expected) <= bound
    assert bound < steps * float(small[0, 0]) * 1e-6  # far below the loss
    assert state.counts.numpy()[0, 0] == steps + 1
    float32_sum = np.float32(1e8)
    for _ in range(1000):
        float32_sum += small[0, 0]
    assert float32_sum == np.float32(1e8)  # what float32 would have kept


def test_float64_bits_round_trip_exactly():
    from tag_keras.measure import host_state
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 4)) * 10.0 ** rng.integers(-300, 300, (3, 4))
    values[0, 0], values[1, 1] = np.nan, -np.inf
    bits = host_state.to_bits(values)
    assert bits.dtype == np.int32 and bits.shape == (3, 4, 2)
    back = host_state.from_bits(bits, np.float64, (3, 4))
    assert back.tobytes() == values.tobytes()
    step = np.asarray(2**40 + 3, np.int64)
    assert host_state.from_bits(host_state.to_bits(step), np.int64, ()) \
        == step


@on_jax
@pytest.mark.parametrize("how", ["weights", "model"])
def test_the_host_sums_survive_a_checkpoint_bit_for_bit(tmp_path, how):
    x, y = _data()

    def compiled():
        model = _model(affinity_every_n_steps=1,
                       affinity_sources="tasks+all")
        model.compile(optimizer=keras.optimizers.Adam(0.01),
                      loss={t: "mse" for t in model.output})
        return model

    model = compiled()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    if how == "weights":
        model.save_weights(tmp_path / "m.weights.h5")
        loaded = compiled()
        loaded.load_weights(tmp_path / "m.weights.h5")
    else:
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
    tables = [("affinity_state", ("sums", "squares", "counts", "skips",
                                  "last", "last_step")),
              ("group_affinity_state", ("sums", "squares", "counts",
                                        "skips"))]
    for table, names in tables:
        for name in names:
            saved = getattr(getattr(model, table), name).numpy()
            assert saved.tobytes() == getattr(
                getattr(loaded, table), name).numpy().tobytes(), name
    assert model.affinity_counts().to_numpy().max() == 8  # 2 epochs x 4
    pd.testing.assert_frame_equal(loaded.group_affinity(),
                                  model.group_affinity())


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


def _jax_loop(meter, model, optimizer, x, y, steps, fold_every):
    """A custom JAX loop on the reference linear model: one `jax.grad`
    per task, the functional meter, the summed update; folds every
    `fold_every` steps. Returns the final trainable values."""
    import jax

    from tests.reference import TASKS

    model.compile(loss={t: "mse" for t in TASKS})  # builds nothing else
    optimizer.build(model.trainable_variables)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    optimizer_values = [v.value for v in optimizer.variables]
    shared = [k for k, v in enumerate(model.trainable_variables)
              if any(v is s for s in meter.shared_variables)]

    def losses(values, xb, yb):
        outputs, _ = model.stateless_call(values, non_trainable, xb)
        return {t: keras.ops.mean((outputs[t] - yb[t]) ** 2) for t in TASKS}

    @jax.jit
    def step(trainable, optimizer_values, state, xb, yb):
        grads = {t: jax.grad(lambda v, t=t: losses(v, xb, yb)[t])(trainable)
                 for t in TASKS}

        def losses_at(shared_values):
            values = list(trainable)
            for k, value in zip(shared, shared_values):
                values[k] = value
            return losses(values, xb, yb)

        state = meter.measure(
            state, {t: [g[k] for k in shared] for t, g in grads.items()},
            losses(trainable, xb, yb), losses_at,
            trainable_values=trainable, optimizer_values=optimizer_values)
        update = [sum(g[k] for g in grads.values())
                  for k in range(len(trainable))]
        trainable, optimizer_values = optimizer.stateless_apply(
            optimizer_values, update, trainable)
        return trainable, optimizer_values, state

    state = meter.init()
    for s in range(steps):
        b = s % 3
        xb, yb = x[b * 4:(b + 1) * 4], {t: v[b * 4:(b + 1) * 4]
                                        for t, v in y.items()}
        trainable, optimizer_values, state = step(
            trainable, optimizer_values, state, xb, yb)
        if (s + 1) % fold_every == 0:
            state = meter.fold(state)
    return trainable


@on_jax
@pytest.mark.parametrize("step_kind", ["optimizer", "sgd", "increment"])
@pytest.mark.parametrize("fold_every", [1, 6])
def test_the_functional_meter_matches_numpy(step_kind, fold_every):
    from tests import reference
    from tests.reference import TASKS

    x, y, weights = reference.data(seed=8)
    model = reference.linear_model(weights)
    optimizer = keras.optimizers.Adam(0.05)
    meter = tag_keras.AffinityMeter(
        model.get_layer("shared").trainable_variables, optimizer, TASKS,
        lookahead_step=step_kind, affinity_sources="tasks+all")
    assert isinstance(meter, tag_keras.AffinityMeter)
    trainable = _jax_loop(meter, model, optimizer, x, y, steps=6,
                          fold_every=fold_every)
    expected, final = reference.train_and_measure(
        x, y, weights, reference.NumpyOptimizer(
            "adam", 0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
        batch_size=4, steps=6, scale_by_learning_rate=True,
        step_kind=step_kind)
    per_step = np.stack(list(expected.values()))
    np.testing.assert_allclose(meter.affinity().to_numpy(),
                               per_step.mean(axis=0), rtol=3e-3, atol=3e-5)
    np.testing.assert_allclose(
        meter.affinity_stderr().to_numpy(),
        per_step.std(axis=0, ddof=1) / np.sqrt(6), rtol=5e-3, atol=3e-5)
    assert (meter.affinity_counts().to_numpy() == 6).all()
    step, last = meter.last_step_affinity()
    assert step == 5
    np.testing.assert_allclose(last.to_numpy(), expected[5], rtol=3e-3,
                               atol=3e-5)
    # The all-task group: its row against NumPy, six steps counted.
    groups, _ = reference.train_and_measure(
        x, y, weights, reference.NumpyOptimizer(
            "adam", 0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
        batch_size=4, steps=6, scale_by_learning_rate=True,
        step_kind=step_kind, sources=[TASKS])
    frame = meter.group_affinity().query("sources == 'a|b|c'")
    np.testing.assert_allclose(frame.affinity.to_numpy(),
                               np.mean(list(groups.values()), axis=0)[0],
                               rtol=3e-3, atol=3e-5)
    assert (frame["count"] == 6).all()
    # The loop's own training is what NumPy's is.
    np.testing.assert_allclose(np.asarray(trainable[0]), final["W"],
                               rtol=1e-4, atol=1e-5)


@on_jax
def test_the_functional_meter_refuses_what_it_does_not_measure():
    from tests import reference
    from tests.reference import TASKS

    _, _, weights = reference.data()
    model = reference.linear_model(weights)
    shared = model.get_layer("shared").trainable_variables
    with pytest.raises(tag_keras.InputError,
                       match=r"JAX backend.*affinity_random_subsets=2"):
        tag_keras.AffinityMeter(shared, keras.optimizers.SGD(0.1), TASKS,
                                affinity_random_subsets=2)
    meter = tag_keras.AffinityMeter(shared, keras.optimizers.SGD(0.1), TASKS)
    with pytest.raises(ValueError, match="must be built"):
        meter.measure(meter.init(), {t: [] for t in TASKS},
                      {t: 1.0 for t in TASKS}, None, trainable_values=[],
                      optimizer_values=[])
