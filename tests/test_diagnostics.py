"""tag_keras.diagnostics against NumPy on models small enough to do by hand."""

import glob
import itertools

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tag_keras import diagnostics
from tag_keras.callbacks import TrajectoryLogger


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _data(n=40, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = {"a": (rng.random(n) < _sigmoid(x[:, 0]))[:, None].astype("float32"),
         "b": rng.integers(0, 3, size=n)}
    return x, y


def _heads_model(activation=None):
    """Logistic head `a` and 3-class softmax head `b`, both on x directly."""
    inputs = keras.Input((3,))
    outputs = {
        "a": keras.layers.Dense(1, use_bias=False, activation=activation,
                                name="a")(inputs),
        "b": keras.layers.Dense(3, use_bias=False, name="b")(inputs),
    }
    model = keras.Model(inputs, outputs)
    keras.utils.set_random_seed(1)
    for variable in model.trainable_variables:
        variable.assign(np.random.default_rng(2).normal(
            size=variable.shape).astype("float32"))
    model.compile("sgd", loss={
        "a": keras.losses.BinaryCrossentropy(
            from_logits=activation is None),
        "b": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    return model


def _kernel(model, name):
    return model.get_layer(name).kernel.numpy().astype(np.float64)


# --------------------------------------------------------------- Fisher


@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_fisher_trace_of_a_logistic_head_is_p_one_minus_p_x_squared(
        activation):
    model = _heads_model(activation)
    x, y = _data()
    p = _sigmoid(x @ _kernel(model, "a"))[:, 0]
    expected = np.mean(p * (1 - p) * np.sum(x.astype(np.float64) ** 2, 1))
    value = diagnostics.fisher_trace(model, (x, y), "a", batch_size=16)
    assert value == pytest.approx(expected, rel=1e-4)


def test_fisher_trace_of_a_softmax_head_sums_over_classes():
    model = _heads_model()
    x, y = _data()
    p = _softmax(x @ _kernel(model, "b"))
    # Gradient of -log p_c wrt W is x (p - e_c)^T.
    squares = np.sum(x.astype(np.float64) ** 2, 1)
    expected = np.mean([
        sum(p[i, c] * squares[i] * np.sum((p[i] - np.eye(3)[c]) ** 2)
            for c in range(3)) for i in range(len(x))])
    value = diagnostics.fisher_trace(model, (x, y), "b", batch_size=7)
    assert value == pytest.approx(expected, rel=1e-4)
    # One-hot labels with categorical cross-entropy give the same trace.
    one_hot = dict(y, b=np.eye(3, dtype="float32")[y["b"]])
    model.compile("sgd", loss={
        "a": keras.losses.BinaryCrossentropy(from_logits=True),
        "b": keras.losses.CategoricalCrossentropy(from_logits=True)})
    value = diagnostics.fisher_trace(model, (x, one_hot), "b")
    assert value == pytest.approx(expected, rel=1e-4)


def test_fisher_trace_by_sampling_approaches_the_exact_value():
    model = _heads_model()
    x, y = _data()
    exact = diagnostics.fisher_trace(model, (x, y), "b")
    sampled = diagnostics.fisher_trace(model, (x, y), "b", samples=400,
                                       seed=3)
    assert sampled == pytest.approx(exact, rel=0.05)
    again = diagnostics.fisher_trace(model, (x, y), "b", samples=400, seed=3)
    assert again == sampled


def test_fisher_trace_of_a_squared_error_head_needs_samples():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, {"r": keras.layers.Dense(
        1, use_bias=False)(inputs)})
    model.compile("sgd", loss={"r": "mse"})
    x, _ = _data()
    y = {"r": np.zeros((len(x), 1), "float32")}
    with pytest.raises(ValueError, match="samples="):
        diagnostics.fisher_trace(model, (x, y), "r")
    # ŷ ~ N(f(x), 1/2): E‖-2(ŷ - f) x‖² = 4 · 1/2 · ‖x‖².
    expected = np.mean(2 * np.sum(x.astype(np.float64) ** 2, 1))
    value = diagnostics.fisher_trace(model, (x, y), "r", samples=500)
    assert value == pytest.approx(expected, rel=0.05)


# ------------------------------------------------------------ coherence


def test_gradient_coherence_is_the_trace_of_the_gradient_covariance():
    model = _heads_model()
    x, y = _data()
    p = _sigmoid(x @ _kernel(model, "a"))[:, 0]
    grads = (p - y["a"][:, 0])[:, None] * x.astype(np.float64)
    expected = np.mean(np.sum((grads - grads.mean(0)) ** 2, 1))
    value = diagnostics.gradient_coherence(model, (x, y), "a", batch_size=16)
    assert value == pytest.approx(expected, rel=1e-4)
    # `max_samples` truncates S_k.
    short = diagnostics.gradient_coherence(model, (x, y), "a",
                                           max_samples=10)
    grads = grads[:10]
    assert short == pytest.approx(
        np.mean(np.sum((grads - grads.mean(0)) ** 2, 1)), rel=1e-4)


def test_examples_with_nan_labels_are_not_in_the_task_set():
    model = _heads_model()
    x, y = _data()
    y_nan = dict(y, a=y["a"].copy())
    y_nan["a"][::2] = np.nan
    value = diagnostics.gradient_coherence(model, (x, y_nan), "a")
    keep = slice(1, None, 2)
    assert value == pytest.approx(diagnostics.gradient_coherence(
        model, (x[keep], {"a": y["a"][keep], "b": y["b"][keep]}), "a"),
        rel=1e-5)


# ------------------------------------------------------------ sharpness


def test_sharpness_ascent_finds_the_best_vertex_of_the_box():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(
        1, use_bias=False, name="a")(inputs)})
    model.get_layer("a").kernel.assign([[0.8], [-1.5]])
    model.compile("sgd", loss={"a": keras.losses.BinaryCrossentropy(
        from_logits=True)})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2)).astype("float32")
    y = {"a": (rng.random(32) < 0.5)[:, None].astype("float32")}
    rho = 0.2
    w = np.array([0.8, -1.5])

    def loss(weights, xb, yb):
        p = _sigmoid(xb.astype(np.float64) @ weights)
        t = yb[:, 0]
        return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))

    expected = []
    for start in (0, 16):
        xb, yb = x[start:start + 16], y["a"][start:start + 16]
        best = max(loss(w + rho * np.abs(w) * np.array(s), xb, yb)
                   for s in itertools.product((-1, 1), repeat=2))
        expected.append(best - loss(w, xb, yb))
    value = diagnostics.sharpness(model, (x, y), "a", rho=rho,
                                  batch_size=16, steps=20)
    assert value == pytest.approx(np.mean(expected), rel=1e-3)
    assert value > 0


# ------------------------------------------------------------- conflict


def _shared_model():
    inputs = keras.Input((3,))
    h = keras.layers.Dense(2, use_bias=False, name="trunk")(inputs)
    model = keras.Model(inputs, {
        "a": keras.layers.Dense(1, use_bias=False, name="a")(h),
        "b": keras.layers.Dense(1, use_bias=False, name="b")(h)})
    rng = np.random.default_rng(5)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile("sgd", loss={"a": loss, "b": loss},
                  loss_weights={"a": 3.0, "b": 1.0})
    return model


def test_gradient_conflict_against_numpy():
    model = _shared_model()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3)).astype("float32")
    y = {t: (rng.random(30) < 0.5)[:, None].astype("float32") for t in "ab"}
    y["b"][:5] = np.nan                       # missing labels
    trunk = _kernel(model, "trunk")
    rows = {"a": [], "b": []}
    for start in range(0, 30, 8):
        part = slice(start, start + 8)
        grads = {}
        for task in "ab":
            labels = y[task][part, 0]
            keep = ~np.isnan(labels)
            xb = x[part][keep].astype(np.float64)
            v = _kernel(model, task)[:, 0]
            p = _sigmoid(xb @ trunk @ v)
            grads[task] = (xb.T @ ((p - labels[keep])[:, None] * v[None])
                           ).ravel() / keep.sum()
        total = grads["a"] + grads["b"]
        mean_norm = np.mean([np.linalg.norm(g) for g in grads.values()])
        for task in "ab":
            g = grads[task]
            rows[task].append((g @ total / np.linalg.norm(g)
                               / np.linalg.norm(total),
                               np.linalg.norm(g) / mean_norm))
    frame = diagnostics.gradient_conflict(model, (x, y), batch_size=8)
    assert list(frame.index) == ["a", "b"]
    for task in "ab":
        cosines, ratios = np.array(rows[task]).T
        assert frame.loc[task, "cosine_to_total"] == pytest.approx(
            cosines.mean(), rel=1e-4)
        assert frame.loc[task, "conflict_rate"] == np.mean(cosines < 0)
        assert frame.loc[task, "norm_ratio"] == pytest.approx(
            ratios.mean(), rel=1e-4)
        assert frame.loc[task, "batches"] == 4
    one = diagnostics.gradient_conflict(model, (x, y), tasks=["b"],
                                        max_batches=2, batch_size=8)
    assert list(one.index) == ["b"] and one.loc["b", "batches"] == 2


# ------------------------------------------------- nothing is written


def test_no_measure_writes_weights_statistics_or_optimizer_state():
    inputs = keras.Input((3,))
    h = keras.layers.Dense(8, name="trunk")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Dropout(0.5)(h)
    h = keras.layers.ReLU()(h)
    model = keras.Model(inputs, {
        "a": keras.layers.Dense(1, name="a")(h),
        "b": keras.layers.Dense(3, name="b")(h)})
    model.compile(keras.optimizers.Adam(1e-2), loss={
        "a": keras.losses.BinaryCrossentropy(from_logits=True),
        "b": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    before = [v.numpy().copy() for v in model.variables]
    optimizer = [v.numpy().copy() for v in model.optimizer.variables]
    for task in "ab":
        diagnostics.sharpness(model, (x, y), task, batch_size=16, steps=3)
        diagnostics.fisher_trace(model, (x, y), task)
        diagnostics.gradient_coherence(model, (x, y), task)
    diagnostics.gradient_conflict(model, (x, y))
    logger = TrajectoryLogger("unused", (x, y), (x, y))
    logger.set_model(model)
    logger.measure()
    for old, new in zip(before, model.variables):
        np.testing.assert_array_equal(old, new.numpy())
    for old, new in zip(optimizer, model.optimizer.variables):
        np.testing.assert_array_equal(old, new.numpy())


# --------------------------------------------------------------- errors


def test_bad_inputs_get_one_line_errors():
    model = _heads_model()
    x, y = _data()
    cases = [
        (lambda: diagnostics.sharpness(model, (x, y), "c"),
         "Received: task='c'"),
        (lambda: diagnostics.sharpness(model, (x, y), "a", rho=0),
         "Received: rho=0"),
        (lambda: diagnostics.sharpness(model, (x[:0], {
            "a": y["a"][:0], "b": y["b"][:0]}), "a"), "no examples"),
        (lambda: diagnostics.fisher_trace(model, (x, y), "a", samples=0),
         "Received: samples=0"),
        (lambda: diagnostics.gradient_coherence(model, [x], "a"),
         "Received: data of type list"),
        (lambda: diagnostics.gradient_conflict(model, (x, y)),
         "share weights"),
        (lambda: TrajectoryLogger("d", (x, y), (x, y),
                                              measures=("speed",)),
         "Received: measures=\\('speed',\\)"),
        (lambda: TrajectoryLogger("d", (x, y), (x, y),
                                              every_n_epochs=0),
         "Received: every_n_epochs=0"),
    ]
    all_nan = dict(y, a=np.full_like(y["a"], np.nan))
    cases.append((lambda: diagnostics.gradient_coherence(
        model, (x, all_nan), "a"), "no example labelled for task 'a'"))
    for call, message in cases:
        with pytest.raises((ValueError, TypeError), match=message) as info:
            call()
        assert "\n" not in str(info.value)
    inputs = keras.Input((3,))
    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    plain.compile("sgd", loss="mse")
    with pytest.raises(TypeError, match="outputs are a dict"):
        diagnostics.sharpness(plain, (x, y["a"]), "a")
    uncompiled = keras.Model(inputs, {"a": keras.layers.Dense(1)(inputs)})
    with pytest.raises(ValueError, match="compiled model"):
        diagnostics.sharpness(uncompiled, (x, y), "a")


# ------------------------------------------------- generalization gap


def _trajectory(losses, errors, task="t"):
    rows = []
    for epoch, (loss, error) in enumerate(zip(losses, errors)):
        rows += [(epoch, task, "loss", loss), (epoch, task, "error", error)]
    return pd.DataFrame(rows, columns=["epoch", "task", "measure", "value"])


def test_generalization_gap_bins_geometrically_and_sets_the_windows():
    # Losses from 16 to 1 in 4 bins: edges 16, 8, 4, 2, 1.
    a = _trajectory([16, 6, 3, 1.5, 1], [0.5, 0.4, 0.3, 0.2, 0.1])
    b = _trajectory([12, 5, 2.5], [0.6, 0.5, 0.45])
    gap = diagnostics.generalization_gap(a, b, "t", bins=4, early=(2, 2),
                                         end=1)
    np.testing.assert_allclose(gap["loss_high"], [16, 8, 4, 2])
    np.testing.assert_allclose(gap["loss_low"], [8, 4, 2, 1])
    assert list(gap["count_a"]) == [1, 1, 1, 2]
    assert list(gap["count_b"]) == [1, 1, 1, 0]
    assert gap.loc[4, "metric_a"] == pytest.approx(0.15)
    np.testing.assert_allclose(gap["gap"][:3], [-0.1, -0.1, -0.15])
    assert np.isnan(gap.loc[4, "gap"])
    # b stops at the higher loss (2.5, bin 3): the end window is there.
    assert list(gap["window"]) == ["", "early", "end", ""]
    with pytest.raises(ValueError, match="Received: bins=1"):
        diagnostics.generalization_gap(a, b, "t", bins=1)
    with pytest.raises(ValueError, match="no 'loss' values for task 'u'"):
        diagnostics.generalization_gap(a, b, "u")


def test_summarize_follows_the_papers_footnote():
    rows = []
    for epoch in range(30):
        rows += [(epoch, "t", "val_error", 0.5 - epoch * 0.01),
                 (epoch, "t", "error", float(epoch)),
                 (epoch, "t", "sharpness", float(epoch)),
                 (epoch, "t", "fisher", float(epoch % 7))]
    frame = pd.DataFrame(rows, columns=["epoch", "task", "measure", "value"])
    summary = diagnostics.summarize(frame, "t")
    assert summary["generalization"] == pytest.approx(np.mean(range(20, 30)))
    assert summary["sharpness"] == pytest.approx(np.mean(range(10, 30)))
    values = sorted([e % 7 for e in range(30)], reverse=True)[:20]
    assert summary["fisher"] == pytest.approx(np.mean(values))


# --------------------------------------------------------------- logger


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y, size):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    @property
    def num_batches(self):
        return int(np.ceil(len(self.x) / self.size))

    def __getitem__(self, index):
        part = slice(index * self.size, (index + 1) * self.size)
        return self.x[part], {t: v[part] for t, v in self.y.items()}


def test_trajectory_logger_writes_rows_events_and_resumes(tmp_path):
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh", name="trunk")(inputs)
    model = keras.Model(inputs, {
        "a": keras.layers.Dense(1, name="a")(h),
        "b": keras.layers.Dense(3, name="b")(h),
        "m": keras.layers.Dense(2, name="m")(h)})  # Multi-label.
    model.compile("sgd", loss={
        "a": keras.losses.BinaryCrossentropy(from_logits=True),
        "b": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "m": keras.losses.BinaryCrossentropy(from_logits=True)})
    x, y = _data()
    y["m"] = (np.random.default_rng(9).random((len(x), 2)) < 0.5).astype(
        "float32")
    test = tf.data.Dataset.from_tensor_slices((x[:20], {
        t: v[:20] for t, v in y.items()})).batch(8)
    logger = TrajectoryLogger(
        tmp_path, _Batches(x, y, 16), test, every_n_epochs=2,
        validation_data=(x[20:], {t: v[20:] for t, v in y.items()}),
        sharpness_steps=2)
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[logger])
    frame = pd.read_csv(tmp_path / "trajectory.csv")
    assert sorted(frame["epoch"].unique()) == [1, 3]
    measures = set(frame["measure"])
    assert {"loss", "test_loss", "val_loss", "error", "train_error",
            "val_error", "conflict", "conflict_rate", "norm_ratio",
            "sharpness", "fisher", "coherence"} <= measures
    assert len(frame) == len(frame.drop_duplicates(["epoch", "task",
                                                    "measure"]))
    last = frame[frame["epoch"] == 3].set_index(["task", "measure"])["value"]
    assert last["a", "fisher"] == pytest.approx(
        diagnostics.fisher_trace(model, (x, y), "a"), rel=1e-5)
    assert last["b", "coherence"] == pytest.approx(
        diagnostics.gradient_coherence(model, (x, y), "b"), rel=1e-5)
    errors = (model.predict(x[:20], verbose=0)["b"].argmax(1)
              != y["b"][:20]).mean()
    assert last["b", "error"] == pytest.approx(errors)
    wrong = (model.predict(x[:20], verbose=0)["m"] > 0) != (y["m"][:20] > 0.5)
    assert last["m", "error"] == pytest.approx(wrong.mean())
    # Resumed at epoch 2: rows of epoch 3 are rewritten, not duplicated.
    model.fit(x, y, epochs=4, initial_epoch=2, batch_size=8, verbose=0,
              callbacks=[logger])
    again = pd.read_csv(tmp_path / "trajectory.csv")
    assert sorted(again["epoch"].unique()) == [1, 3]
    assert len(again) == len(frame)
    tags = set()
    for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"fisher/a", "conflict/b", "error/b"} <= tags
    gap = diagnostics.generalization_gap(tmp_path, again, "b", bins=4)
    assert gap["count_a"].sum() == 2
    assert np.allclose(gap["gap"][gap["count_a"] > 0], 0.0)


def test_measures_under_mirrored_strategy_equal_the_plain_models():
    import json
    import os
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), TF_CPP_MIN_LOG_LEVEL="3",
               TAG_TEST_LOGICAL_CPUS="2")
    done = subprocess.run(
        [sys.executable, "-m", "tests.logical_cpus",
         "tests.diagnostics_worker"], cwd=repo, env=env, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    for name, value in result["plain"].items():
        np.testing.assert_allclose(result["distributed"][name], value,
                                   rtol=1e-5, err_msg=name)


# ------------------------------------------------------------ landscapes


def _linear_shared(seed=0):
    inputs = keras.Input((3,))
    h = keras.layers.Dense(2, use_bias=False, name="trunk")(inputs)
    model = keras.Model(inputs, {
        "a": keras.layers.Dense(1, use_bias=False, name="a")(h),
        "b": keras.layers.Dense(1, use_bias=False, name="b")(h)})
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    model.compile(keras.optimizers.SGD(0.05), loss={"a": "mse", "b": "mse"})
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = {t: rng.normal(size=(16, 1)).astype("float32") for t in "ab"}
    return model, x, y


def test_loss_along_updates_against_numpy():
    model, x, y = _linear_shared()
    w = _kernel(model, "trunk")
    heads = {t: _kernel(model, t) for t in "ab"}
    x64 = x.astype(np.float64)

    def loss(weights, task):
        return np.mean((x64 @ weights @ heads[task] - y[task]) ** 2)

    grads = {t: 2 * x64.T @ (x64 @ w @ heads[t] - y[t]) @ heads[t].T / 16
             for t in "ab"}
    grads["total"] = grads["a"] + grads["b"]
    frame = diagnostics.loss_along_updates(model, (x, y), extent=3.0,
                                           points=4)
    assert len(frame) == 3 * 4 * 2
    for source, gradient in grads.items():
        for step in (0.0, 1.0, 3.0):
            for target in "ab":
                row = frame[(frame["source"] == source)
                            & (frame["step"] == step)
                            & (frame["target"] == target)]
                assert float(row["loss"].iloc[0]) == pytest.approx(
                    loss(w - step * 0.05 * gradient, target), rel=1e-4)
    before = [v.numpy().copy() for v in model.variables]
    diagnostics.loss_surface(model, (x, y), points=3)
    for old, new in zip(before, model.variables):
        np.testing.assert_array_equal(old, new.numpy())


def test_loss_surface_moves_each_filter_by_its_norm():
    from tag_keras.diagnostics import landscape

    weights = np.arange(1, 7, dtype="float32").reshape(3, 2)
    direction = landscape._filter_normalised(weights,
                                             np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(direction, axis=0),
                               np.linalg.norm(weights, axis=0), rtol=1e-6)
    assert not landscape._filter_normalised(
        np.ones(3), np.random.default_rng(0)).any()
    model, x, y = _linear_shared()
    frame = diagnostics.loss_surface(model, (x, y), span=0.1, points=3,
                                     seed=4)
    assert sorted(frame["a"].unique()) == pytest.approx([-0.1, 0.0, 0.1])
    rng = np.random.default_rng(4)
    theta = [v.numpy() for v in model.trainable_variables]
    d1, d2 = ([landscape._filter_normalised(t, rng) for t in theta]
              for _ in range(2))
    moved = [t + 0.1 * a - 0.1 * b for t, a, b in zip(theta, d1, d2)]
    names = [v.path.split("/")[0] for v in model.trainable_variables]
    kernels = dict(zip(names, moved))
    expected = np.mean((x @ kernels["trunk"] @ kernels["a"] - y["a"]) ** 2)
    row = frame[np.isclose(frame["a"], 0.1) & np.isclose(frame["b"], -0.1)
                & (frame["task"] == "a")]
    assert float(row["loss"].iloc[0]) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="Received: span=0"):
        diagnostics.loss_surface(model, (x, y), span=0)


def test_one_pass_evaluation_against_numpy_with_nan_labels():
    from tag_keras.tasks import view as view_lib
    from tag_keras.tasks import evaluation

    model = _heads_model()
    x, y = _data()
    y = dict(y, a=y["a"].copy())
    y["a"][::3] = np.nan
    view = view_lib.TaskView(model, (x, y))
    got = evaluation.losses_and_errors(view, ["a", "b"], x, y, batch_size=7)
    keep = ~np.isnan(y["a"][:, 0])
    logits = x.astype(np.float64) @ _kernel(model, "a")
    p = _sigmoid(logits[keep, 0])
    labels = y["a"][keep, 0]
    loss_a = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    error_a = np.mean((p > 0.5) != (labels > 0.5))
    probabilities = _softmax(x.astype(np.float64) @ _kernel(model, "b"))
    loss_b = -np.mean(np.log(probabilities[np.arange(len(x)), y["b"]]))
    error_b = np.mean(probabilities.argmax(1) != y["b"])
    assert got["a"] == pytest.approx((loss_a, error_a), rel=1e-5)
    assert got["b"] == pytest.approx((loss_b, error_b), rel=1e-5)


def _multi_label(activation, seed):
    """A 4-unit multi-label head on x (BCE, logits or sigmoid), random
    kernel and multi-hot labels: `(model, x, labels)`."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, {"m": keras.layers.Dense(
        4, use_bias=False, activation=activation, name="m")(inputs)})
    model.get_layer("m").kernel.assign(np.random.default_rng(seed).normal(
        size=(3, 4)).astype("float32"))
    model.compile("sgd", loss={"m": keras.losses.BinaryCrossentropy(
        from_logits=activation is None)})
    x, _ = _data()
    labels = (np.random.default_rng(seed + 1).random((len(x), 4))
              < 0.5).astype("float32")
    return model, x, labels


@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_multi_label_error_is_the_share_of_wrong_unit_decisions(activation):
    from tag_keras.tasks import view as view_lib
    from tag_keras.tasks import evaluation

    model, x, labels = _multi_label(activation, 7)
    labels[::4] = np.nan  # Unlabelled examples are left out.
    view = view_lib.TaskView(model, (x, {"m": labels}))
    assert view.heads.is_multi_label("m")
    loss, error = evaluation.losses_and_errors(view, ["m"], x,
                                               {"m": labels},
                                               batch_size=5)["m"]
    keep = ~np.isnan(labels[:, 0])
    p = _sigmoid(x[keep].astype(np.float64) @ _kernel(model, "m"))
    truth = labels[keep]
    expected_loss = -np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p))
    assert loss == pytest.approx(expected_loss, rel=1e-4)
    assert error == pytest.approx(np.mean((p > 0.5) != (truth > 0.5)))
    assert 0 < error < 1


@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_fisher_trace_of_a_multi_label_head_sums_bernoulli_variances(
        activation):
    """Loss (1/w) Σ_u BCE_u, logits x W: E‖∇‖² = Σ_u p_u(1−p_u)‖x‖² / w²."""
    model, x, labels = _multi_label(activation, 5)
    y = {"m": labels}
    p = _sigmoid(x.astype(np.float64) @ _kernel(model, "m"))
    expected = np.mean(np.sum(p * (1 - p), axis=1)
                       * np.sum(x.astype(np.float64) ** 2, axis=1)) / 16
    exact = diagnostics.fisher_trace(model, (x, y), "m", batch_size=16)
    assert exact == pytest.approx(expected, rel=1e-3)
    sampled = diagnostics.fisher_trace(model, (x, y), "m", samples=400)
    assert sampled == pytest.approx(expected, rel=0.05)
