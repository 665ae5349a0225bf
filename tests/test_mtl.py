"""The training augmentations' update rules against NumPy computations."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tag_keras import mtl
from tag_keras.mtl.gradnorm import gradnorm_update
from tag_keras.mtl.pcgrad import project_conflicts
from tests import reference

TASKS = reference.TASKS
LR = 0.1


def _numpy_project(grads, orders):
    """PCGrad's projection in NumPy: row i visits `orders[i]`."""
    out = []
    for i, order in enumerate(orders):
        g = grads[i].copy()
        for j in order:
            dot = g @ grads[j]
            if dot < 0:
                g = g - dot / (grads[j] @ grads[j]) * grads[j]
        out.append(g)
    return np.array(out)


def _project(grads, orders):
    flat = tf.constant(grads, tf.float64)
    orders = [tf.constant(o, tf.int32) for o in orders]
    return project_conflicts(flat, orders).numpy()


def test_pcgrad_projects_a_known_two_task_conflict():
    grads = np.array([[1.0, 0.0], [-1.0, 1.0]])
    projected = _project(grads, [[1], [0]])
    # g1 . g2 = -1: g1 - (-1 / 2) g2 = [0.5, 0.5]; g2 - (-1 / 1) g1 = [0, 1].
    np.testing.assert_allclose(projected, [[0.5, 0.5], [0.0, 1.0]])
    # Afterwards neither projected gradient conflicts with the other task.
    assert projected[0] @ grads[1] >= -1e-12
    assert projected[1] @ grads[0] >= -1e-12


def test_pcgrad_leaves_agreeing_gradients_alone():
    grads = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0], [0.0, 1.0, 1.0]])
    orders = [[1, 2], [0, 2], [0, 1]]
    np.testing.assert_allclose(_project(grads, orders), grads)


def test_pcgrad_matches_numpy_for_every_order():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(3, 5))
    for orders in itertools.product(
        *[list(itertools.permutations([j for j in range(3) if j != i]))
          for i in range(3)]
    ):
        np.testing.assert_allclose(
            _project(grads, [list(o) for o in orders]),
            _numpy_project(grads, orders), rtol=1e-12)


def test_gradnorm_update_step_clip_and_renormalisation():
    w = np.array([1.0, 0.5, 2.0])
    norms = np.array([3.0, 0.2, 1.0])       # of the weighted losses
    losses = np.array([0.5, 1.0, 0.9])
    initial = np.array([1.0, 1.0, 1.2])
    alpha, lr = 1.5, 0.5
    # By hand.
    ratios = losses / initial
    target = norms.mean() * (ratios / ratios.mean()) ** alpha
    step = np.sign(norms - target) * norms / w
    expected = np.clip(w - lr * step, 0.1, 10.0)
    expected = expected * 3 / expected.sum()
    # Task 0 is pushed below the clip and is clipped before renormalising.
    assert w[0] - lr * step[0] < 0.1
    got = gradnorm_update(tf.constant(w), tf.constant(norms),
                          tf.constant(losses), tf.constant(initial),
                          alpha=alpha, learning_rate=lr, clip=(0.1, 10.0))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert got.numpy().sum() == pytest.approx(3.0)


def test_gradnorm_update_holds_a_task_without_an_initial_loss_at_the_mean():
    """A task whose first batch had no label has no initial loss yet (NaN,
    or 0 from a step where it was absent): it counts as training at the
    mean pace, and the other tasks' weights still update (issue 38: one
    such task froze every weight for the whole run)."""
    w = np.array([1.0, 0.5, 2.0])
    norms = np.array([3.0, 0.2, 1.0])
    losses = np.array([0.5, 1.0, 0.9])
    alpha, lr = 1.5, 0.5
    for unknown in (np.nan, 0.0):
        initial = np.array([1.0, unknown, 1.2])
        ratios = losses[[0, 2]] / initial[[0, 2]]
        relative = np.array([ratios[0] / ratios.mean(), 1.0,
                             ratios[1] / ratios.mean()])
        target = norms.mean() * relative ** alpha
        expected = np.clip(w - lr * np.sign(norms - target) * norms / w,
                           0.1, 10.0)
        expected = expected * 3 / expected.sum()
        got = gradnorm_update(tf.constant(w), tf.constant(norms),
                              tf.constant(losses), tf.constant(initial),
                              alpha=alpha, learning_rate=lr,
                              clip=(0.1, 10.0))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_gradnorm_keeps_learning_when_a_task_is_unlabelled_at_first():
    x, y, weights = reference.data(seed=0)
    y = {t: v.astype("float32") for t, v in y.items()}
    y[TASKS[0]][:4] = np.nan  # no label in the first batch
    strategy = mtl.GradNorm(alpha=1.0, learning_rate=0.05)
    model = reference.linear_model(weights, training_method=strategy)
    model.compile(optimizer=keras.optimizers.SGD(LR),
                  loss={t: "mse" for t in TASKS})
    model.fit(x[:16], {t: v[:16] for t, v in y.items()}, batch_size=4,
              epochs=1, shuffle=False, verbose=0)
    task_weight = strategy.task_weight.numpy()
    assert np.isfinite(task_weight).all()
    assert not np.allclose(task_weight, 1.0)
    # The task's initial loss is its loss on the first step it had labels.
    initial = strategy.initial_losses.numpy()
    assert np.isfinite(initial).all() and (initial > 0).all()


# ----------------------------------------------------------------------
# Inside `fit`: one or two steps of the linear model against NumPy.


def _train(strategy, steps, optimizer=None, every=0, seed=0):
    x, y, weights = reference.data(seed=seed)
    model = reference.linear_model(weights, training_method=strategy,
                                   affinity_every_n_steps=every)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(LR),
                  loss={t: "mse" for t in TASKS})
    batch = 4
    model.fit(x[:batch * steps], {t: v[:batch * steps] for t, v in y.items()},
              batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return model, x, y, weights


def _batches(x, y, steps, batch=4):
    for s in range(steps):
        sl = slice(s * batch, (s + 1) * batch)
        yield (x[sl].astype(np.float64),
               {t: v[sl].astype(np.float64) for t, v in y.items()})


def _as64(weights):
    return {"W": weights["W"].astype(np.float64),
            "heads": {t: v.astype(np.float64)
                      for t, v in weights["heads"].items()}}


def _assert_model_weights(model, weights):
    np.testing.assert_allclose(model.get_layer("shared").get_weights()[0],
                               weights["W"], rtol=1e-4, atol=1e-6)
    for t in TASKS:
        np.testing.assert_allclose(
            model.get_layer(f"head_{t}").get_weights()[0],
            weights["heads"][t], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("every", [0, 1])
def test_uncertainty_weights_scale_losses_and_learn_log_sigma(every):
    steps = 2
    strategy = mtl.UncertaintyWeights(initial_value=0.3, clip=(0.01, 10.0))
    model, x, y, weights = _train(strategy, steps, every=every)
    w = _as64(weights)
    s = np.full(3, 0.3)
    for xb, yb in _batches(x, y, steps):
        losses, g_shared, g_heads = reference.losses_and_grads(xb, yb, w)
        scale = np.exp(-2 * s)
        ds = np.array([1 - 2 * losses[t] * scale[k]
                       for k, t in enumerate(TASKS)])
        w["W"] = w["W"] - LR * sum(scale[k] * g_shared[t]
                                   for k, t in enumerate(TASKS))
        for k, t in enumerate(TASKS):
            w["heads"][t] = w["heads"][t] - LR * scale[k] * g_heads[t]
        s = np.clip(s - LR * ds, 0.01, 10.0)
    _assert_model_weights(model, w)
    np.testing.assert_allclose(ops.convert_to_numpy(strategy.log_sigma), s,
                               rtol=1e-4)
    weights_now = strategy.task_weights()
    assert list(weights_now) == list(TASKS)
    np.testing.assert_allclose(list(weights_now.values()), np.exp(-2 * s),
                               rtol=1e-4)


def test_uncertainty_weights_are_clipped_after_each_update():
    # A large step throws s out of [0.01, 10] on both sides.
    strategy = mtl.UncertaintyWeights(initial_value=0.02, clip=(0.01, 10.0))
    _, x, y, weights = _train(strategy, 1,
                              optimizer=keras.optimizers.SGD(5.0))
    (xb, yb), = _batches(x, y, 1)
    losses, _, _ = reference.losses_and_grads(xb, yb, _as64(weights))
    raw = np.array([0.02 - 5.0 * (1 - 2 * losses[t] * np.exp(-0.04))
                    for t in TASKS])
    assert raw.min() < 0.01 and raw.max() > 10.0
    np.testing.assert_allclose(ops.convert_to_numpy(strategy.log_sigma),
                               np.clip(raw, 0.01, 10.0), rtol=1e-5)


@pytest.mark.parametrize("every", [0, 1])
def test_pcgrad_update_in_fit_matches_numpy(every):
    steps = 2
    model, x, y, weights = _train(mtl.PCGrad(shuffle=False), steps,
                                  every=every)
    w = _as64(weights)
    for xb, yb in _batches(x, y, steps):
        _, g_shared, g_heads = reference.losses_and_grads(xb, yb, w)
        flat = np.array([g_shared[t].ravel() for t in TASKS])
        orders = [[j for j in range(3) if j != i] for i in range(3)]
        projected = _numpy_project(flat, orders)
        w["W"] = w["W"] - LR * projected.sum(0).reshape(w["W"].shape)
        for t in TASKS:
            w["heads"][t] = w["heads"][t] - LR * g_heads[t]
    _assert_model_weights(model, w)


def test_pcgrad_shuffled_update_is_one_of_the_orders():
    model, x, y, weights = _train(mtl.PCGrad(seed=3), 1)
    w = _as64(weights)
    (xb, yb), = _batches(x, y, 1)
    _, g_shared, _ = reference.losses_and_grads(xb, yb, w)
    flat = np.array([g_shared[t].ravel() for t in TASKS])
    candidates = []
    for orders in itertools.product(
        *[list(itertools.permutations([j for j in range(3) if j != i]))
          for i in range(3)]
    ):
        total = _numpy_project(flat, orders).sum(0)
        candidates.append(w["W"] - LR * total.reshape(w["W"].shape))
    got = model.get_layer("shared").get_weights()[0]
    assert min(np.abs(got - c).max() for c in candidates) < 1e-5


def test_pcgrad_with_uncertainty_weights_projects_weighted_gradients():
    strategy = mtl.PCGrad(mtl.UncertaintyWeights(initial_value=0.4),
                          shuffle=False)
    model, x, y, weights = _train(strategy, 1)
    w = _as64(weights)
    (xb, yb), = _batches(x, y, 1)
    _, g_shared, _ = reference.losses_and_grads(xb, yb, w)
    scale = np.exp(-0.8)
    flat = np.array([scale * g_shared[t].ravel() for t in TASKS])
    orders = [[j for j in range(3) if j != i] for i in range(3)]
    total = _numpy_project(flat, orders).sum(0)
    np.testing.assert_allclose(
        model.get_layer("shared").get_weights()[0],
        w["W"] - LR * total.reshape(w["W"].shape), rtol=1e-4, atol=1e-6)
    assert ops.convert_to_numpy(strategy.loss_weighting.log_sigma)[0] != 0.4


def test_gradnorm_in_fit_matches_numpy_over_two_steps():
    steps, alpha, rate = 2, 1.0, 0.05
    strategy = mtl.GradNorm(alpha=alpha, learning_rate=rate)
    model, x, y, weights = _train(strategy, steps)
    w = _as64(weights)
    task_w = np.ones(3)
    initial = None
    for xb, yb in _batches(x, y, steps):
        losses, g_shared, g_heads = reference.losses_and_grads(xb, yb, w)
        loss = np.array([losses[t] for t in TASKS])
        initial = loss if initial is None else initial
        norms = np.array([task_w[k] * np.linalg.norm(g_shared[t])
                          for k, t in enumerate(TASKS)])
        new_w = gradnorm_update(
            tf.constant(task_w), tf.constant(norms), tf.constant(loss),
            tf.constant(initial), alpha=alpha, learning_rate=rate,
            clip=(0.1, 10.0)).numpy()
        w["W"] = w["W"] - LR * sum(task_w[k] * g_shared[t]
                                   for k, t in enumerate(TASKS))
        for k, t in enumerate(TASKS):
            w["heads"][t] = w["heads"][t] - LR * task_w[k] * g_heads[t]
        task_w = new_w
    _assert_model_weights(model, w)
    np.testing.assert_allclose(strategy.task_weight.numpy(), task_w,
                               rtol=1e-4)
    assert not np.allclose(task_w, 1.0)
    # The weights are model state: saved and restored with it.
    paths = [v.path for v in model.non_trainable_variables]
    assert any(p.endswith("task_weight") for p in paths)


@pytest.mark.parametrize("make", [
    mtl.UncertaintyWeights, mtl.GradNorm, mtl.PCGrad, mtl.MGDA,
    lambda: mtl.PCGrad(mtl.UncertaintyWeights()),
])
def test_each_strategy_trains_while_measuring_affinity(make):
    model, *_ = _train(make(), 3, every=1)
    affinity = model.affinity()
    assert np.isfinite(affinity.to_numpy()).all()
    assert model.affinity_counts().to_numpy().min() == 3


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="initial_value"):
        mtl.UncertaintyWeights(initial_value=0.0)
    with pytest.raises(ValueError, match="clip"):
        mtl.UncertaintyWeights(clip=(1.0, 0.5))
    with pytest.raises(ValueError, match="alpha"):
        mtl.GradNorm(alpha=-1)
    with pytest.raises(ValueError, match="learning_rate"):
        mtl.GradNorm(learning_rate=0)
    with pytest.raises(ValueError, match="clip"):
        mtl.GradNorm(clip=(0.0, 1.0))
    with pytest.raises(TypeError, match="loss_weighting"):
        mtl.PCGrad(loss_weighting="uw")


def test_gradnorm_kernel_names_a_shared_layer():
    model, *_ = _train(mtl.GradNorm(kernel="shared"), 1)
    with pytest.raises(ValueError, match="head_a"):
        _train(mtl.GradNorm(kernel="head_a"), 1)


@pytest.mark.parametrize("make", [
    lambda: mtl.UncertaintyWeights(initial_value=0.2),
    lambda: mtl.GradNorm(alpha=0.5, kernel="shared"),
    lambda: mtl.PCGrad(mtl.UncertaintyWeights(), seed=4),
    lambda: mtl.ITMTL(["all", ("a", "b")], affinity_method="first_order",
                      loss_weighting=mtl.GradNorm()),
    lambda: mtl.MGDA(iterations=50),
    lambda: mtl.MGDA(upper_bound=True),
])
def test_strategy_is_saved_and_loaded_with_the_model(make, tmp_path):
    import warnings

    model, x, y, _ = _train(make(), 2, optimizer=keras.optimizers.SGD(
        LR, momentum=0.9))
    path = tmp_path / "model.keras"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # e.g. optimizer state skipped
        loaded = keras.models.load_model(path)
    assert type(loaded.training_method) is type(model.training_method)
    config = model.training_method.get_config()
    loaded_config = loaded.training_method.get_config()
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None), loaded_config.pop(key, None)
    assert loaded_config == config
    for a, b in zip(model.training_method.weights,
                    loaded.training_method.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(a),
                                      ops.convert_to_numpy(b))
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(ops.convert_to_numpy(a),
                                      ops.convert_to_numpy(b))
    loaded.fit(x[:4], {t: v[:4] for t, v in y.items()}, batch_size=4,
               verbose=0)


def test_the_former_strategy_keyword_is_refused_and_old_configs_load():
    _, _, weights = reference.data()
    with pytest.raises(TypeError, match="renamed `training_method=`"):
        reference.linear_model(weights, strategy=mtl.PCGrad())
    model = reference.linear_model(weights, training_method=mtl.PCGrad())
    config = model.get_config()
    config["strategy"] = config.pop("training_method")  # a 0.1 config
    loaded = type(model).from_config(config)
    assert isinstance(loaded.training_method, mtl.PCGrad)
    assert not hasattr(mtl, "TrainingStrategy")


def test_model_rejects_a_training_method_that_is_not_one():
    _, _, weights = reference.data()
    with pytest.raises(TypeError, match="training_method"):
        reference.linear_model(weights, training_method="pcgrad")


# ----------------------------------------------------------------------
# MGDA


def _min_norm_numpy(gram):
    """The min-norm weights by SciPy's SLSQP on the simplex."""
    from scipy import optimize

    n = len(gram)
    result = optimize.minimize(
        lambda a: a @ gram @ a, np.full(n, 1.0 / n), jac=lambda a: 2 * gram @ a,
        bounds=[(0, 1)] * n, method="SLSQP", options={"ftol": 1e-14},
        constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1}])
    return result.x


def test_min_norm_weights_two_tasks_closed_form():
    from tag_keras.mtl.mgda import min_norm_weights

    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    alpha = min_norm_weights(g @ g.T).numpy()
    # min over b of ‖b g1 + (1 - b) g2‖²: b = (g2·g2 - g1·g2) / ‖g1 - g2‖²
    beta = (2.0 + 1.0) / 5.0
    np.testing.assert_allclose(alpha, [beta, 1 - beta], rtol=1e-6)
    # Agreeing gradients with one inside the other's cone: a vertex.
    g = np.array([[1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(min_norm_weights(g @ g.T).numpy(), [1, 0])


@pytest.mark.parametrize("n", [3, 4, 6])
def test_min_norm_weights_match_a_qp_solver(n):
    from tag_keras.mtl.mgda import min_norm_weights

    rng = np.random.default_rng(n)
    for _ in range(3):
        g = rng.normal(size=(n, 5)) + 0.3
        gram = g @ g.T
        alpha = min_norm_weights(gram, iterations=2000,
                                 tolerance=1e-9).numpy().astype(np.float64)
        assert alpha.min() >= -1e-7
        assert alpha.sum() == pytest.approx(1.0, abs=1e-5)
        expected = _min_norm_numpy(gram)
        assert alpha @ gram @ alpha == pytest.approx(
            expected @ gram @ expected, rel=1e-3, abs=1e-6)
        # KKT, up to Frank-Wolfe's slow tail: no vertex lies much lower
        # along Gα than the point.
        product = gram @ alpha
        assert product.min() >= alpha @ product - 5e-3 * abs(
            alpha @ product) - 1e-6


def test_mgda_update_in_fit_matches_numpy():
    steps = 2
    model, x, y, weights = _train(mtl.MGDA(iterations=2000, tolerance=1e-9),
                                  steps)
    w = _as64(weights)
    for xb, yb in _batches(x, y, steps):
        _, g_shared, g_heads = reference.losses_and_grads(xb, yb, w)
        flat = np.array([g_shared[t].ravel() for t in TASKS])
        alpha = _min_norm_numpy(flat @ flat.T)
        update = 3 * alpha @ flat
        w["W"] = w["W"] - LR * update.reshape(w["W"].shape)
        for t in TASKS:
            w["heads"][t] = w["heads"][t] - LR * g_heads[t]
    got = model.get_layer("shared").get_weights()[0]
    np.testing.assert_allclose(got, w["W"], rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="Received: iterations=0"):
        mtl.MGDA(iterations=0)


def test_mgda_ub_weights_come_from_the_representation_gradients():
    steps = 2
    model, x, y, weights = _train(
        mtl.MGDA(upper_bound=True, iterations=2000, tolerance=1e-9), steps)
    w = _as64(weights)
    for xb, yb in _batches(x, y, steps):
        _, g_shared, g_heads = reference.losses_and_grads(xb, yb, w)
        hidden = xb @ w["W"]
        # ∇_hidden of each task's mean squared error, flattened.
        rep = np.array([(2.0 * (hidden @ w["heads"][t] - yb[t]) / len(xb)
                         @ w["heads"][t].T).ravel() for t in TASKS])
        alpha = _min_norm_numpy(rep @ rep.T)
        flat = np.array([g_shared[t].ravel() for t in TASKS])
        w["W"] = w["W"] - LR * (3 * alpha @ flat).reshape(w["W"].shape)
        for t in TASKS:
            w["heads"][t] = w["heads"][t] - LR * g_heads[t]
    got = model.get_layer("shared").get_weights()[0]
    np.testing.assert_allclose(got, w["W"], rtol=1e-3, atol=1e-5)
    # The representation can be named; an unknown name is refused.
    _train(mtl.MGDA(upper_bound=True, representation_layer="shared"), 1)
    with pytest.raises(ValueError, match="Received: layer='nope'"):
        _train(mtl.MGDA(upper_bound=True, representation_layer="nope"), 1)


def test_configs_saved_before_version_0_2_still_load():
    from tag_keras.measure import sources

    config = mtl.ITMTL().get_config()
    del config["affinity_method"]
    it = mtl.ITMTL.from_config({**config, "first_order": True})
    assert it.affinity_method == "first_order" and it.first_order
    config = mtl.SVDTaskWeights(representation_layer="z").get_config()
    config["layer"] = config.pop("representation_layer")
    assert mtl.SVDTaskWeights.from_config(
        config).representation_layer == "z"
    state = sources.GroupAffinityState.from_config(
        {"num_groups": 3, "num_tasks": 2, "name": "old"})
    assert state.num_sources == 3 and state.sums.shape == (3, 2)
    with pytest.raises(ValueError, match="affinity_method"):
        mtl.ITMTL(affinity_method="cosine")


@pytest.mark.parametrize("scale", [1e19, 1e-20])
def test_pcgrad_and_mgda_do_not_depend_on_the_gradients_scale(scale):
    """Their projections and weights are scale-free, so gradients around
    1e19 (whose squares overflow float32) or 1e-20 (whose squares
    underflow) must give the same answer as gradients of norm 1 (issue
    38: NaN, or no projection and an arbitrary vertex, before)."""
    from tag_keras.mtl.mgda import gradient_weights

    rng = np.random.default_rng(3)
    flat = rng.normal(size=(3, 6)).astype("float32")
    flat[1] = -flat[0] + 0.1 * flat[1]  # two tasks in conflict
    orders = [tf.constant([1, 2]), tf.constant([2, 0]), tf.constant([0, 1])]
    projected = project_conflicts(tf.constant(flat), orders).numpy()
    scaled = project_conflicts(tf.constant(flat * scale), orders).numpy()
    assert np.isfinite(scaled).all()
    np.testing.assert_allclose(scaled / scale, projected, rtol=1e-5,
                               atol=1e-6)
    alpha = gradient_weights(tf.constant(flat)).numpy()
    scaled_alpha = gradient_weights(tf.constant(flat * scale)).numpy()
    np.testing.assert_allclose(scaled_alpha, alpha, atol=1e-5)


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(LR)),
    lambda: keras.optimizers.SGD(LR, loss_scale_factor=1024.0),
])
def test_gradnorm_does_not_depend_on_the_loss_scale(optimizer):
    """GradNorm balances the gradients of the losses themselves: a
    loss-scaled optimizer must not change its weights (issue 38: after 2
    steps plain SGD gave [0.99, 1.31, 0.70] and the loss-scaled ones hit
    the clip bounds)."""
    plain = mtl.GradNorm(alpha=1.0, learning_rate=0.05)
    _train(plain, 2)
    scaled = mtl.GradNorm(alpha=1.0, learning_rate=0.05)
    _train(scaled, 2, optimizer=optimizer())
    np.testing.assert_allclose(scaled.task_weight.numpy(),
                               plain.task_weight.numpy(), rtol=1e-4)
