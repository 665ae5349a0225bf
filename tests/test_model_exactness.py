"""The measured affinity equals a hand computation, step by step."""

import keras
import numpy as np
import pytest

from tests import reference
from tests.reference import data as _data
from tests.reference import linear_model as _linear_model

pytestmark = pytest.mark.keras_range

TASKS = reference.TASKS


class _StepRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.matrices = {}

    def on_train_batch_end(self, batch, logs=None):
        last = self.model.last_step_affinity()
        if last is not None:
            self.matrices[last[0]] = last[1].to_numpy()


def _fit_recorded(model, optimizer, x, y):
    """Two epochs of batch 4; returns the model and its step matrices."""
    model.compile(optimizer=optimizer, loss={t: "mse" for t in TASKS})
    recorder = _StepRecorder()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[recorder])
    return model, recorder


OPTIMIZERS = {
    "sgd": (lambda: keras.optimizers.SGD(0.1),
            lambda: reference.NumpyOptimizer("sgd", 0.1)),
    "momentum": (lambda: keras.optimizers.SGD(0.05, momentum=0.9),
                 lambda: reference.NumpyOptimizer("sgd", 0.05, momentum=0.9)),
    "nesterov": (
        lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        lambda: reference.NumpyOptimizer(
            "sgd", 0.05, momentum=0.9, nesterov=True),
    ),
    "adam": (
        lambda: keras.optimizers.Adam(0.05),
        lambda: reference.NumpyOptimizer(
            "adam", 0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
    ),
    "adamw": (
        lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1),
        lambda: reference.NumpyOptimizer(
            "adam", 0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
            weight_decay=0.1),
    ),
    "rmsprop": (
        lambda: keras.optimizers.RMSprop(0.01),
        lambda: reference.NumpyOptimizer(
            "rmsprop", 0.01, rho=0.9, epsilon=1e-7),
    ),
    "schedule": (
        lambda: keras.optimizers.SGD(
            keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5),
            momentum=0.9),
        lambda: reference.NumpyOptimizer(
            "sgd", lambda step: 0.1 * 0.5**step, momentum=0.9),
    ),
}


@pytest.mark.backends
@pytest.mark.parametrize(
    "name, scale",
    [("sgd", False), ("momentum", True), ("nesterov", False),
     ("adam", True), ("adamw", False), ("rmsprop", True),
     ("schedule", True)],
)
def test_lookahead_matches_numpy_over_consecutive_steps(name, scale):
    x, y, weights = _data()
    make_keras, make_numpy = OPTIMIZERS[name]
    model, recorder = _fit_recorded(
        _linear_model(weights, affinity_every_n_steps=1,
                      scale_by_learning_rate=scale), make_keras(), x, y)

    expected, final = reference.train_and_measure(
        x, y, weights, make_numpy(), batch_size=4, steps=6,
        scale_by_learning_rate=scale,
    )
    assert sorted(recorder.matrices) == list(range(6))
    for step, matrix in expected.items():
        np.testing.assert_allclose(
            recorder.matrices[step], matrix, rtol=2e-3, atol=2e-5,
            err_msg=f"step {step}",
        )
    np.testing.assert_allclose(
        model.affinity().to_numpy(),
        np.mean(list(expected.values()), axis=0), rtol=2e-3, atol=2e-5,
    )
    np.testing.assert_allclose(
        model.get_layer("shared").get_weights()[0], final["W"],
        rtol=1e-4, atol=1e-5,
    )
    # Orientation: row = source, column = target.
    assert list(model.affinity().index) == list(TASKS)
    assert model.affinity().index.name == "source"


@pytest.mark.backends
@pytest.mark.parametrize("step_kind", ["sgd", "increment"])
@pytest.mark.parametrize("method", ["lookahead", "first_order"])
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_lookahead_step_kinds_match_numpy(step_kind, method, name):
    x, y, weights = _data(seed=1)
    make_keras, make_numpy = OPTIMIZERS[name]
    model, recorder = _fit_recorded(
        _linear_model(weights, affinity_every_n_steps=1,
                      affinity_method=method, lookahead_step=step_kind),
        make_keras(), x, y)
    expected, final = reference.train_and_measure(
        x, y, weights, make_numpy(), batch_size=4, steps=6,
        scale_by_learning_rate=True, step_kind=step_kind, method=method)
    assert sorted(recorder.matrices) == list(range(6))
    for step, matrix in expected.items():
        np.testing.assert_allclose(
            recorder.matrices[step], matrix, rtol=3e-3, atol=3e-5,
            err_msg=f"step {step}")
    # The kinds differ from the optimizer's step once there is momentum.
    optimizer_step, _ = reference.train_and_measure(
        x, y, weights, make_numpy(), batch_size=4, steps=6,
        scale_by_learning_rate=True, method=method)
    assert not np.allclose(optimizer_step[5], expected[5], rtol=1e-2)
    # Measuring never changes training, whatever the step.
    np.testing.assert_allclose(model.get_layer("shared").get_weights()[0],
                               final["W"], rtol=1e-4, atol=1e-5)


@pytest.mark.backends
@pytest.mark.backends
@pytest.mark.parametrize("method", ["lookahead"])  # the one held-out method
def test_held_out_affinity_matches_numpy(method):
    # The targets' losses on `affinity_data` (10 examples in batches of 4,
    # 4 and 2, cycled), the sources' steps from the training batch.
    x, y, weights = _data(seed=5)
    xv, yv, _ = _data(seed=6, n=10)
    make_keras, make_numpy = OPTIMIZERS["adam"]
    model, recorder = _fit_recorded(
        _linear_model(weights, affinity_every_n_steps=1,
                      affinity_method=method, affinity_data=(xv, yv),
                      affinity_batch_size=4), make_keras(), x, y)
    expected, final = reference.train_and_measure(
        x, y, weights, make_numpy(), batch_size=4, steps=6,
        scale_by_learning_rate=True, method=method,
        held_out=(xv, yv, 4))
    assert sorted(recorder.matrices) == list(range(6))
    for step, matrix in expected.items():
        np.testing.assert_allclose(recorder.matrices[step], matrix,
                                   rtol=3e-3, atol=3e-5,
                                   err_msg=f"step {step}")
    # Measuring on held-out data never changes training.
    np.testing.assert_allclose(model.get_layer("shared").get_weights()[0],
                               final["W"], rtol=1e-4, atol=1e-5)


def test_an_unknown_lookahead_step_is_refused():
    _, _, weights = _data()
    with pytest.raises(ValueError, match="lookahead_step='adam'"):
        _linear_model(weights, lookahead_step="adam")


@pytest.mark.backends
def test_measuring_every_third_step_counts_only_those_steps():
    x, y, weights = _data()
    model = _linear_model(weights, affinity_every_n_steps=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss={t: "mse" for t in TASKS})
    recorder = _StepRecorder()
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
              callbacks=[recorder])
    expected, _ = reference.train_and_measure(
        x, y, weights, reference.NumpyOptimizer("sgd", 0.1, momentum=0.9),
        batch_size=4, steps=9, scale_by_learning_rate=True, every=3,
    )
    assert sorted(recorder.matrices) == [0, 3, 6]
    assert (model.affinity_counts().to_numpy() == 3).all()
    np.testing.assert_allclose(
        model.affinity().to_numpy(),
        np.mean(list(expected.values()), axis=0), rtol=2e-3, atol=2e-5,
    )


def _fit_one_batch(model, x, y, weights):
    """Fits one SGD step on 4 samples; returns NumPy losses and gradients."""
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss={t: "mse" for t in TASKS})
    y = {t: v[:4] for t, v in y.items()}
    model.fit(x[:4], y, batch_size=4, epochs=1, verbose=0)
    losses, g_shared, _ = reference.losses_and_grads(
        x[:4].astype(np.float64), y,
        {"W": weights["W"].astype(np.float64),
         "heads": {t: v.astype(np.float64)
                   for t, v in weights["heads"].items()}},
    )
    return losses, g_shared


@pytest.mark.backends
def test_first_order_is_the_inner_product_for_sgd():
    x, y, weights = _data(seed=3)
    model = _linear_model(
        weights, affinity_every_n_steps=1, affinity_method="first_order",
        scale_by_learning_rate=False,
    )
    losses, g_shared = _fit_one_batch(model, x, y, weights)
    expected = np.array([
        [0.1 * np.sum(g_shared[i] * g_shared[j]) / losses[j] for j in TASKS]
        for i in TASKS
    ])
    np.testing.assert_allclose(model.affinity().to_numpy(), expected,
                               rtol=1e-3, atol=1e-6)


@pytest.mark.backends
def test_cosine_is_the_gradient_cosine():
    x, y, weights = _data(seed=4)
    model = _linear_model(weights, affinity_every_n_steps=1,
                          affinity_method="cosine")
    _, g_shared = _fit_one_batch(model, x, y, weights)
    flat = np.stack([g_shared[t].ravel() for t in TASKS])
    norms = np.linalg.norm(flat, axis=1)
    expected = flat @ flat.T / np.outer(norms, norms)
    np.testing.assert_allclose(model.affinity().to_numpy(), expected,
                               rtol=1e-4, atol=1e-6)


GROUPS = [("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]


def _group_rows(frame, groups):
    """`[groups, n]` means and `[groups, n]` counts from `group_affinity()`."""
    frame = frame.set_index(["sources", "target"])
    labels = ["|".join(g) for g in groups]
    mean = np.array([[frame.loc[(g, t), "affinity"] for t in TASKS]
                     for g in labels])
    stderr = np.array([[frame.loc[(g, t), "stderr"] for t in TASKS]
                       for g in labels])
    counts = np.array([[frame.loc[(g, t), "count"] for t in TASKS]
                       for g in labels])
    return mean, stderr, counts


@pytest.mark.backends
@pytest.mark.parametrize("step_kind", ["optimizer", "sgd", "increment"])
@pytest.mark.parametrize("method", ["lookahead", "first_order"])
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_group_sources_match_numpy(step_kind, method, name):
    x, y, weights = _data(seed=2)
    make_keras, make_numpy = OPTIMIZERS[name]
    model, _ = _fit_recorded(
        _linear_model(weights, affinity_every_n_steps=1,
                      affinity_method=method, lookahead_step=step_kind,
                      affinity_sources="subsets"), make_keras(), x, y)
    expected, final = reference.train_and_measure(
        x, y, weights, make_numpy(), batch_size=4, steps=6,
        scale_by_learning_rate=True, step_kind=step_kind, method=method,
        sources=GROUPS)
    per_step = np.stack(list(expected.values()))  # [steps, groups, n]
    mean, stderr, counts = _group_rows(model.group_affinity(), GROUPS)
    np.testing.assert_allclose(mean, per_step.mean(axis=0), rtol=3e-3,
                               atol=3e-5)
    np.testing.assert_allclose(
        stderr, per_step.std(axis=0, ddof=1) / np.sqrt(6), rtol=5e-3,
        atol=3e-5)
    assert (counts == 6).all()
    # The single-task rows are the affinity matrix itself.
    singles = model.group_affinity().query("sources in @TASKS")
    np.testing.assert_allclose(
        singles.pivot(index="sources", columns="target",
                      values="affinity").loc[list(TASKS), list(TASKS)],
        model.affinity().to_numpy())
    # Measuring the groups never changes training.
    np.testing.assert_allclose(model.get_layer("shared").get_weights()[0],
                               final["W"], rtol=1e-4, atol=1e-5)


@pytest.mark.backends
def test_tasks_plus_all_and_k_measure_their_groups_only():
    x, y, weights = _data(seed=3)
    make_keras, make_numpy = OPTIMIZERS["momentum"]
    for sources, groups in (("tasks+all", [("a", "b", "c")]),
                            (2, GROUPS[:3])):
        model, _ = _fit_recorded(
            _linear_model(weights, affinity_every_n_steps=2,
                          affinity_sources=sources), make_keras(), x, y)
        expected, _ = reference.train_and_measure(
            x, y, weights, make_numpy(), batch_size=4, steps=6, every=2,
            scale_by_learning_rate=True, sources=groups)
        frame = model.group_affinity()
        assert set(frame["sources"]) == set(TASKS) | {"|".join(g)
                                                      for g in groups}
        mean, _, counts = _group_rows(frame, groups)
        np.testing.assert_allclose(
            mean, np.mean(list(expected.values()), axis=0), rtol=3e-3,
            atol=3e-5)
        assert (counts == 3).all()


@pytest.mark.backends
def test_random_subsets_are_seeded_and_match_numpy():
    x, y, weights = _data(seed=4)
    make_keras, make_numpy = OPTIMIZERS["adam"]
    model, _ = _fit_recorded(
        _linear_model(weights, affinity_every_n_steps=1,
                      affinity_random_subsets=2, affinity_seed=7),
        make_keras(), x, y)
    sources = model.group_sources
    masks = sources.masks
    drawn = {step: [tuple(t for t, m in zip(TASKS, masks[k]) if m)
                    for k in sources.drawn(step)]
             for step in range(6)}
    assert all(len(set(g)) == 2 for g in drawn.values())
    assert len({tuple(g) for g in drawn.values()}) > 1  # Draws vary.
    expected, _ = reference.train_and_measure(
        x, y, weights, make_numpy(), batch_size=4, steps=6,
        scale_by_learning_rate=True, sources=drawn.get)
    frame = model.group_affinity().set_index(["sources", "target"])
    for group in GROUPS:
        label = "|".join(group)
        values = [expected[s][drawn[s].index(group)] for s in drawn
                  if group in drawn[s]]
        if not values:
            assert label not in frame.index.get_level_values(0)
            continue
        for j, target in enumerate(TASKS):
            assert frame.loc[(label, target), "count"] == len(values)
            np.testing.assert_allclose(
                frame.loc[(label, target), "affinity"],
                np.mean([v[j] for v in values]), rtol=3e-3, atol=3e-5)
    # The same seed draws the same groups; another seed others.
    again = _linear_model(weights, affinity_random_subsets=2,
                          affinity_seed=7).group_sources
    other = _linear_model(weights, affinity_random_subsets=2,
                          affinity_seed=8).group_sources
    assert all((again.drawn(s) == sources.drawn(s)).all() for s in range(6))
    assert any((other.drawn(s) != sources.drawn(s)).any() for s in range(6))


@pytest.mark.parametrize("kwargs, message", [
    ({"affinity_sources": "pairs"}, "affinity_sources='pairs'"),
    ({"affinity_sources": 0}, "affinity_sources=0"),
    ({"affinity_sources": True}, "affinity_sources=True"),
    ({"affinity_random_subsets": 0}, "affinity_random_subsets=0"),
    ({"affinity_random_subsets": -2}, "affinity_random_subsets=-2"),
    ({"affinity_random_subsets": 5}, "affinity_random_subsets=5 is more"),
    ({"affinity_sources": "subsets", "max_subset_tasks": 2},
     "max_subset_tasks=2 tasks"),
    ({"affinity_sources": 3, "max_subset_tasks": 2}, "affinity_sources=3"),
    ({"affinity_sources": "tasks+all", "affinity_method": "cosine"},
     "affinity_method='cosine'"),
])
def test_bad_group_sources_are_refused(kwargs, message):
    _, _, weights = _data()
    with pytest.raises(ValueError, match=message):
        _linear_model(weights, **kwargs)
