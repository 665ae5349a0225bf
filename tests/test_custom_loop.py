"""AffinityMeter: the same affinity from a hand-written training loop."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tag_keras
from tests import reference

TASKS = reference.TASKS


def _plain_linear_model(weights):
    inputs = keras.Input((weights["W"].shape[0],))
    hidden = keras.layers.Dense(2, use_bias=False, name="shared")(inputs)
    outputs = {t: keras.layers.Dense(1, use_bias=False, name=f"head_{t}")(
        hidden) for t in TASKS}
    model = keras.Model(inputs, outputs)
    model.get_layer("shared").set_weights([weights["W"]])
    for t in TASKS:
        model.get_layer(f"head_{t}").set_weights([weights["heads"][t]])
    return model


def _custom_loop(x, y, weights, method, steps=6, log_dir=None, **options):
    """A `tf.function` loop: MSE per task, summed update, meter inside."""
    model = _plain_linear_model(weights)
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    optimizer.build(model.trainable_variables)
    shared = model.get_layer("shared").trainable_variables
    meter = tag_keras.AffinityMeter(shared, optimizer, TASKS,
                                    affinity_method=method, **options)

    def task_losses(outputs, labels):
        return {t: keras.ops.mean(keras.ops.square(labels[t] - outputs[t]))
                for t in TASKS}

    @tf.function
    def step(xb, yb):
        with tf.GradientTape(persistent=True) as tape:
            losses = task_losses(model(xb, training=True), yb)
        variables = model.trainable_variables
        grads = {t: tape.gradient(losses[t], variables) for t in TASKS}
        shared_ids = [id(v) for v in shared]

        def losses_at(values):
            trainable = [values[shared_ids.index(id(v))]
                         if id(v) in shared_ids else v for v in variables]
            outputs, _ = model.stateless_call(
                trainable, model.non_trainable_variables, xb, training=True)
            return task_losses(outputs, yb)

        done = meter.measure(
            {t: [g for g, v in zip(grads[t], variables)
                 if id(v) in shared_ids] for t in TASKS},
            losses, losses_at)
        total = [tf.add_n([grads[t][k] for t in TASKS if grads[t][k]
                           is not None]) for k in range(len(variables))]
        with tf.control_dependencies([done]):
            optimizer.apply([tf.identity(g) for g in total], variables)

    logger = None
    if log_dir is not None:
        logger = tag_keras.AffinityLogger(log_dir, tensorboard=False)
        logger.set_model(meter)
        logger.on_train_begin()
        logger.on_epoch_begin(0)
    for k in range(steps):
        b = k % 3
        step(x[4 * b:4 * b + 4], {t: v[4 * b:4 * b + 4] for t, v in y.items()})
        if logger is not None:
            logger.on_train_batch_end(k)
    meter.end_epoch()
    if logger is not None:
        logger.on_epoch_end(0)
        logger.on_train_end()
    return meter, model


@pytest.mark.parametrize("method", ["lookahead", "first_order", "cosine"])
def test_the_meter_gives_the_models_matrix_on_the_same_batches(tmp_path,
                                                               method):
    x, y, weights = reference.data()
    fitted = reference.linear_model(weights, affinity_every_n_steps=1,
                                    affinity_method=method)
    fitted.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                   loss={t: "mse" for t in TASKS})
    fitted.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    meter, model = _custom_loop(x, y, weights, method, log_dir=tmp_path)
    np.testing.assert_allclose(meter.affinity().to_numpy(),
                               fitted.affinity().to_numpy(), rtol=1e-5,
                               atol=1e-7)
    assert (meter.affinity_counts().to_numpy() == 6).all()
    np.testing.assert_allclose(model.get_layer("shared").get_weights()[0],
                               fitted.get_layer("shared").get_weights()[0],
                               rtol=1e-6, atol=1e-7)
    written = pd.read_csv(tmp_path / "affinity.csv", index_col="source")
    np.testing.assert_allclose(written.to_numpy(),
                               meter.affinity().to_numpy())
    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    assert sorted(set(steps.step)) == list(range(6))


@pytest.mark.parametrize("method", ["lookahead", "first_order"])
def test_the_meter_gives_the_models_group_affinity(tmp_path, method):
    x, y, weights = reference.data(seed=5)
    fitted = reference.linear_model(weights, affinity_every_n_steps=1,
                                    affinity_method=method,
                                    affinity_sources="subsets")
    fitted.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                   loss={t: "mse" for t in TASKS})
    logs = tmp_path / "fit"
    fitted.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
               callbacks=[tag_keras.AffinityLogger(logs, tensorboard=False)])
    meter, _ = _custom_loop(x, y, weights, method, log_dir=tmp_path / "loop",
                            affinity_sources="subsets")
    expected = fitted.group_affinity()
    assert len(expected) == 7 * 3
    pd.testing.assert_frame_equal(meter.group_affinity(), expected,
                                  rtol=1e-5, atol=1e-7)
    for folder in (logs, tmp_path / "loop"):
        written = pd.read_csv(folder / "group_affinity.csv")
        assert list(written.columns) == ["sources", "target", "affinity",
                                         "count", "stderr"]
        pd.testing.assert_frame_equal(written, expected, rtol=1e-5,
                                      atol=1e-7)


def test_bad_arguments_are_one_line_errors():
    variable = keras.Variable(np.ones((2, 2)))
    optimizer = keras.optimizers.SGD(0.1)
    with pytest.raises(ValueError, match="at least two tasks"):
        tag_keras.AffinityMeter([variable], optimizer, ["a"])
    with pytest.raises(ValueError, match="affinity_method='x'"):
        tag_keras.AffinityMeter([variable], optimizer, ["a", "b"],
                                affinity_method="x")
    with pytest.raises(ValueError, match="shared_variables=\\[\\]"):
        tag_keras.AffinityMeter([], optimizer, ["a", "b"])


def _noisy_trunk_model(cls=keras.Model, **options):
    """Dense -> BatchNorm -> Dropout trunk, two heads; built identically
    (weights, dropout seeds) for any model class."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, name="trunk")(inputs)
    hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    hidden = keras.layers.Dropout(0.4, seed=11, name="drop")(hidden)
    outputs = {t: keras.layers.Dense(1, name=f"head_{t}")(hidden)
               for t in ("a", "b", "c")}
    return cls(inputs, outputs, **options)


@pytest.mark.parametrize("method", ["lookahead", "first_order"])
def test_forward_pass_gives_the_models_matrix_with_dropout_and_batchnorm(
        method):
    # The lookahead replays the step's own dropout masks and BatchNorm state
    # (`AffinityMeter.forward`), so a custom loop measures exactly what
    # `TaskAffinityModel` measures inside `fit` on the same batches.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(24, 6)).astype("float32")
    y = {"a": x[:, :1] + 0.1 * x[:, 1:2], "b": x[:, :1] - x[:, 2:3],
         "c": x[:, 3:4] * 2.0}
    fitted = _noisy_trunk_model(tag_keras.TaskAffinityModel,
                                affinity_every_n_steps=1,
                                affinity_method=method)
    fitted.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                   loss={t: "mse" for t in y})
    fitted.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)

    model = _noisy_trunk_model()
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    optimizer.build(model.trainable_variables)
    shared = [v for v in model.trainable_variables
              if v.path.startswith(("trunk", "norm"))]
    meter = tag_keras.AffinityMeter(shared, optimizer, list(y),
                                    affinity_method=method)

    def task_losses(outputs, labels):
        return {t: keras.ops.mean(keras.ops.square(labels[t] - outputs[t]))
                for t in labels}

    @tf.function
    def step(xb, yb):
        variables = model.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            forward = meter.forward(model, xb)
            losses = task_losses(forward.outputs, yb)
        grads = {t: tape.gradient(losses[t], variables) for t in losses}
        ids = [id(v) for v in shared]
        done = meter.measure(
            {t: [g for g, v in zip(grads[t], variables) if id(v) in ids]
             for t in losses}, losses,
            forward.losses_at(lambda outputs: task_losses(outputs, yb)))
        total = [tf.add_n([grads[t][k] for t in losses
                           if grads[t][k] is not None])
                 for k in range(len(variables))]
        with tf.control_dependencies([done]):
            optimizer.apply([tf.identity(g) for g in total], variables)

    for _ in range(2):
        for start in range(0, 24, 8):
            step(x[start:start + 8],
                 {t: v[start:start + 8] for t, v in y.items()})
    np.testing.assert_allclose(meter.affinity().to_numpy(),
                               fitted.affinity().to_numpy(), rtol=1e-4,
                               atol=1e-6)
    for got, want in zip(model.get_weights(), fitted.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_forward_pass_refuses_variables_of_another_model():
    model, other = _noisy_trunk_model(), _noisy_trunk_model()
    with pytest.raises(ValueError, match="not trainable variables of"):
        tag_keras.ForwardPass(model, np.zeros((2, 6), "float32"),
                              other.get_layer("trunk").trainable_variables)
