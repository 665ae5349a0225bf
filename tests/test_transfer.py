"""tag_keras.transfer against NumPy: covariance similarity, SVD weights."""

import keras
import numpy as np
import pytest
from scipy import stats

from tag_keras import transfer


def _reference_score(x_a, x_b, energy):
    """Eq. 6 written directly from eigendecompositions of XᵀX."""
    factors = []
    for x in (x_a, x_b):
        values, vectors = np.linalg.eigh(x.T @ x)
        order = np.argsort(values)[::-1]
        values, vectors = np.clip(values[order], 0, None), vectors[:, order]
        share = np.cumsum(values) / values.sum()
        rank = int(np.argmax(share >= energy - 1e-12)) + 1
        factors.append(vectors[:, :rank] * np.sqrt(values[:rank]))
    f_a, f_b = factors
    return np.linalg.norm(f_a.T @ f_b) / (np.linalg.norm(f_a)
                                          * np.linalg.norm(f_b))


def test_covariance_similarity_matches_eq_6():
    rng = np.random.default_rng(0)
    x_a = rng.normal(size=(50, 6)) @ np.diag([5, 4, 3, 1, 0.5, 0.1])
    x_b = rng.normal(size=(30, 6)) @ rng.normal(size=(6, 6))
    for energy in (0.5, 0.9, 0.99, 1.0):
        assert transfer.covariance_similarity(x_a, x_b, energy) == (
            pytest.approx(_reference_score(x_a, x_b, energy), rel=1e-9))


def test_the_rank_holds_the_requested_energy():
    # Eigenvalues of XᵀX: 16, 4, 1 (sum 21). 16/21 = 0.76; 20/21 = 0.95.
    x = np.diag([4.0, 2.0, 1.0])
    assert transfer.covariance.factor(x, 0.7).shape == (3, 1)
    assert transfer.covariance.factor(x, 0.9).shape == (3, 2)
    assert transfer.covariance.factor(x, 0.96).shape == (3, 3)
    # The same data twice scores ‖D_r‖_F / tr(D_r).
    assert transfer.covariance_similarity(x, x, 0.9) == pytest.approx(
        np.hypot(16, 4) / 20)
    assert transfer.covariance_similarity(x, x, 0.7) == pytest.approx(1.0)


def test_covariance_similarity_invariances():
    rng = np.random.default_rng(1)
    x_a, x_b = rng.normal(size=(40, 5)), rng.normal(size=(25, 5)) * 3
    score = transfer.covariance_similarity(x_a, x_b)
    rotation = stats.ortho_group.rvs(5, random_state=2)
    assert transfer.covariance_similarity(
        x_a @ rotation, x_b @ rotation) == pytest.approx(score)
    rows = stats.ortho_group.rvs(40, random_state=3)
    assert transfer.covariance_similarity(rows @ x_a, 7 * x_b) == (
        pytest.approx(score))
    # Orthogonal subspaces score 0, one subspace scores more than noise.
    a = np.zeros((10, 4))
    a[:, :2] = rng.normal(size=(10, 2))
    b = np.zeros((10, 4))
    b[:, 2:] = rng.normal(size=(10, 2))
    assert transfer.covariance_similarity(a, b) == pytest.approx(0.0)


def test_covariance_similarity_errors():
    x = np.ones((4, 3))
    for call, message in [
        (lambda: transfer.covariance_similarity(x, np.ones((4, 2))),
         "same number of columns"),
        (lambda: transfer.covariance_similarity(x, x, energy=0),
         "Received: energy=0"),
        (lambda: transfer.covariance_similarity(x, x, energy=1.5),
         "Received: energy=1.5"),
        (lambda: transfer.covariance_similarity(np.ones(3), x),
         "Received: x_a with shape \\(3,\\)"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_task_covariance_similarity_uses_each_tasks_labelled_examples():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype("float32")
    y = {"a": rng.integers(0, 2, size=60).astype("float32"),
         "b": rng.integers(0, 2, size=60).astype("float32")}
    y["a"][30:] = np.nan             # a: the first 30 rows only
    y["b"][:30] = np.nan             # b: the last 30
    inputs = keras.Input((4,))
    h = keras.layers.Dense(3, name="trunk")(inputs)
    model = keras.Model(inputs, {"a": keras.layers.Dense(1)(h),
                                 "b": keras.layers.Dense(1)(h)})
    frame = transfer.task_covariance_similarity(model, (x, y))
    assert list(frame.index) == ["a", "b"]
    assert frame.loc["a", "b"] == pytest.approx(
        transfer.covariance_similarity(x[:30], x[30:]), rel=1e-6)
    assert frame.loc["a", "b"] == pytest.approx(frame.loc["b", "a"])
    embedded = transfer.task_covariance_similarity(model, (x, y),
                                                   layer="trunk")
    z = np.asarray(model.get_layer("trunk")(x))
    assert embedded.loc["a", "b"] == pytest.approx(
        transfer.covariance_similarity(z[:30], z[30:]), rel=1e-5)
    with pytest.raises(ValueError, match="Received: layer='nope'"):
        transfer.task_covariance_similarity(model, (x, y), layer="nope")


# ------------------------------------------------------------ SVD weights


def test_svd_task_weights_follow_algorithm_2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    labels = {"a": rng.normal(size=40), "b": rng.integers(0, 2, size=40),
              "c": rng.integers(0, 3, size=40)}
    thetas = [x.T @ labels["a"][:, None],
              x.T @ (2 * labels["b"] - 1)[:, None],
              x.T @ np.eye(3)[labels["c"]]]
    u, _, _ = np.linalg.svd(np.concatenate(thetas, axis=1))
    for rank in (1, 2, 3):
        basis = u[:, :rank]
        weights = transfer.svd_task_weights(x, labels, rank)
        expected = [np.linalg.norm(t.T @ basis) for t in thetas]
        np.testing.assert_allclose(list(weights.values()), expected)
        assert list(weights) == ["a", "b", "c"]


def test_svd_weights_shrink_a_noise_task_and_skip_missing_labels():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 10))
    direction = rng.normal(size=10)
    labels = {f"t{k}": (x @ (direction + 0.1 * rng.normal(size=10)) > 0)
              .astype(float) for k in range(3)}
    labels["noise"] = (rng.random(400) < 0.5).astype(float)
    weights = transfer.svd_task_weights(x, labels, rank=1)
    assert weights["noise"] < 0.3 * min(weights[f"t{k}"] for k in range(3))
    partial = dict(labels, noise=labels["noise"].copy())
    partial["noise"][:200] = np.nan
    thetas = [x.T @ (2 * labels[f"t{k}"] - 1) for k in range(3)]
    thetas.append(x[200:].T @ (2 * labels["noise"][200:] - 1))
    u, _, _ = np.linalg.svd(np.stack(thetas, axis=1))
    kept = transfer.svd_task_weights(x, partial, rank=1)
    np.testing.assert_allclose(list(kept.values()),
                               np.abs(np.stack(thetas) @ u[:, 0]))


def test_svd_task_weights_errors():
    x = np.ones((4, 3))
    y = {"a": np.array([0, 1, 0, 1]), "b": np.array([1, 0, 1, 1])}
    for call, message in [
        (lambda: transfer.svd_task_weights(x, y, 0), "Received: rank=0"),
        (lambda: transfer.svd_task_weights(x, y, 3), "Received: rank=3"),
        (lambda: transfer.svd_task_weights(x, {"a": np.ones(3)}, 1),
         "Received: 3 rows"),
        (lambda: transfer.svd_task_weights(
            x, {"a": np.full(4, np.nan), "b": y["b"]}, 1),
         "Task 'a' has no labelled example"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


# -------------------------------------------------------------- alignment


def _aligned_model(with_alignment=True, d=4):
    inputs = {f"x_{t}": keras.Input((d,), name=f"x_{t}") for t in "ab"}
    shared = keras.layers.Dense(3, name="shared")
    outputs = {}
    for task in "ab":
        x = inputs[f"x_{task}"]
        if with_alignment:
            x = transfer.CovarianceAlignment(name=f"align_{task}")(x)
        outputs[task] = keras.layers.Dense(1, name=task)(shared(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="binary_crossentropy")
    return model


def _two_inputs(n=64, d=4):
    rng = np.random.default_rng(0)
    x = {f"x_{t}": rng.normal(size=(n, d)).astype("float32") for t in "ab"}
    y = {"a": (x["x_a"][:, 0] > 0).astype("float32"),
         "b": (x["x_b"][:, 1] > 0).astype("float32")}
    return x, y


def test_alignment_starts_as_the_identity(tmp_path):
    x, _ = _two_inputs()
    aligned, plain = _aligned_model(), _aligned_model(False)
    for name in ("shared", "a", "b"):
        plain.get_layer(name).set_weights(
            aligned.get_layer(name).get_weights())
    np.testing.assert_array_equal(
        aligned.get_layer("align_a").kernel.numpy(), np.eye(4))
    for task in "ab":
        np.testing.assert_allclose(aligned.predict(x, verbose=0)[task],
                                   plain.predict(x, verbose=0)[task])
    path = tmp_path / "aligned.keras"
    aligned.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("align_b"),
                      transfer.CovarianceAlignment)


def test_alignment_schedule_alternates_what_trains():
    x, y = _two_inputs()
    model = _aligned_model()
    before = {layer.name: [v.numpy().copy() for v in layer.weights]
              for layer in model.layers if layer.weights}
    moved = []

    class Moved(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            changed = set()
            for layer in self.model.layers:
                if layer.name in before and any(
                        not np.array_equal(v.numpy(), old) for v, old in
                        zip(layer.weights, before[layer.name])):
                    changed.add(layer.name)
                    before[layer.name] = [v.numpy().copy()
                                          for v in layer.weights]
            moved.append(changed)

    schedule = transfer.AlignmentSchedule(["align_a", "align_b"],
                                          ["shared"], period=3,
                                          align_epochs=1)
    model.fit(x, y, epochs=5, batch_size=16, verbose=0,
              callbacks=[schedule, Moved()])
    assert schedule.phases == ["align", "shared", "shared", "align",
                               "shared"]
    assert moved[0] == {"align_a", "align_b", "a", "b"}
    assert moved[1] == moved[2] == {"shared", "a", "b"}
    assert moved[3] == {"align_a", "align_b", "a", "b"}
    assert all(model.get_layer(n).trainable for n in ("shared", "align_a"))
    with pytest.raises(ValueError, match="Received: period=2, "
                       "align_epochs=3"):
        transfer.AlignmentSchedule([], [], period=2, align_epochs=3)
