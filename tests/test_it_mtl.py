"""IT-MTL: the chosen candidate and its score against NumPy, and its errors."""

import keras
import numpy as np
import pandas as pd
import pytest

import tag_keras
from tag_keras import mtl
from tag_keras.mtl import it_mtl
from tag_keras.callbacks import CandidateLogger
from tests import reference

TASKS = reference.TASKS
LR, MOMENTUM, STEPS, BATCH = 0.1, 0.9, 3, 4
CANDIDATES = ["all", "each", ("a", "b")]


def _numpy_candidates(g):
    return {"all": g["a"] + g["b"] + g["c"], "a": g["a"], "b": g["b"],
            "c": g["c"], "a+b": g["a"] + g["b"]}


def _numpy_run(x, y, weights, first_order, heads_first=False):
    """IT-MTL by hand: per step the scores, the choice; the final weights."""
    opt = reference.NumpyOptimizer("sgd", LR, momentum=MOMENTUM)
    w = {"W": weights["W"].astype(np.float64),
         "heads": {t: v.astype(np.float64)
                   for t, v in weights["heads"].items()}}
    scores, choices = [], []
    for step in range(STEPS):
        sl = slice(step * BATCH, (step + 1) * BATCH)
        xb = x[sl].astype(np.float64)
        yb = {t: v[sl].astype(np.float64) for t, v in y.items()}
        losses, g_shared, g_heads = reference.losses_and_grads(xb, yb, w)
        candidates = _numpy_candidates(g_shared)
        if first_order:
            log_product = sum(g_shared[t] / losses[t] for t in TASKS)
            z = [float(np.sum(c * log_product)) for c in candidates.values()]
        else:
            heads, before = w["heads"], losses
            if heads_first:
                heads = {t: opt.copy().update(t, w["heads"][t], g_heads[t])
                         for t in TASKS}
                before, _, _ = reference.losses_and_grads(
                    xb, yb, {"W": w["W"], "heads": heads})
            z = []
            for c in candidates.values():
                shared = opt.copy().update("W", w["W"], c)
                after, _, _ = reference.losses_and_grads(
                    xb, yb, {"W": shared, "heads": heads})
                z.append(sum(1 - after[t] / before[t] for t in TASKS))
        best = int(np.argmax(z))
        scores.append(z)
        choices.append(best)
        w["W"] = opt.update("W", w["W"], list(candidates.values())[best])
        for t in TASKS:
            w["heads"][t] = opt.update(t, w["heads"][t], g_heads[t])
        opt.iterations += 1
    return np.array(scores), choices, w


class _Scores(keras.callbacks.Callback):
    def __init__(self, strategy):
        super().__init__()
        self.strategy, self.scores, self.choices = strategy, [], []

    def on_train_batch_end(self, batch, logs=None):
        self.scores.append(self.strategy.last_scores.numpy())
        self.choices.append(int(self.strategy.last_choice.numpy()))


def _fit(strategy, every=0, callbacks=(), seed=0, epochs=1):
    x, y, weights = reference.data(seed=seed)
    kwargs = {} if strategy is None else {"training_method": strategy}
    model = reference.linear_model(weights, affinity_every_n_steps=every,
                                   **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=MOMENTUM),
                  loss={t: "mse" for t in TASKS})
    n = STEPS * BATCH
    model.fit(x[:n], {t: v[:n] for t, v in y.items()}, batch_size=BATCH,
              epochs=epochs, shuffle=False, verbose=0,
              callbacks=list(callbacks))
    return model, x, y, weights


def _assert_weights(model, w):
    np.testing.assert_allclose(model.get_layer("shared").get_weights()[0],
                               w["W"], rtol=1e-4, atol=1e-6)
    for t in TASKS:
        np.testing.assert_allclose(
            model.get_layer(f"head_{t}").get_weights()[0], w["heads"][t],
            rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("every", [0, 2])
def test_choice_and_scores_match_numpy(first_order, every):
    strategy = mtl.ITMTL(CANDIDATES, affinity_method=(
        "first_order" if first_order else "lookahead"))
    recorder = _Scores(strategy)
    model, x, y, weights = _fit(strategy, every=every, callbacks=[recorder])
    scores, choices, w = _numpy_run(x, y, weights, first_order)
    assert strategy.candidate_labels == ["all", "a", "b", "c", "a+b"]
    np.testing.assert_allclose(np.array(recorder.scores), scores, rtol=1e-4,
                               atol=1e-6)
    assert recorder.choices == choices
    # The data make the choice change from step to step, with margins far
    # above rounding.
    assert len(set(choices)) > 1
    top_two = np.sort(scores, axis=1)[:, -2:]
    assert (top_two[:, 1] - top_two[:, 0]).min() > 1e-3
    _assert_weights(model, w)
    expected = {label: choices.count(k)
                for k, label in enumerate(strategy.candidate_labels)}
    assert strategy.counts() == expected


def test_heads_first_scores_with_the_moved_heads_as_numpy():
    strategy = mtl.ITMTL(CANDIDATES, update_heads_first=True)
    recorder = _Scores(strategy)
    model, x, y, weights = _fit(strategy, callbacks=[recorder])
    scores, choices, w = _numpy_run(x, y, weights, False, heads_first=True)
    np.testing.assert_allclose(np.array(recorder.scores), scores, rtol=1e-4,
                               atol=1e-6)
    assert recorder.choices == choices
    _assert_weights(model, w)
    plain, _, _ = _numpy_run(x, y, weights, False)
    assert not np.allclose(plain, scores, rtol=1e-3)
    assert strategy.get_config()["update_heads_first"] is True


def test_a_single_all_task_candidate_trains_as_plain_mtl():
    plain, *_ = _fit(None)
    method = mtl.ITMTL(["all"])
    single, *_ = _fit(method)
    own = {id(v) for v in method.weights}
    single_weights = [v for v in single.weights if id(v) not in own]
    assert len(single_weights) == len(plain.weights)
    for a, b in zip(plain.weights, single_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                                   atol=1e-7)


def test_default_candidates():
    labels = [label for label, _ in it_mtl._resolve(None, ("left", "right"))]
    assert labels == ["left", "right", "all"]
    labels = [label for label, _ in it_mtl._resolve(None, ("a", "b", "c"))]
    assert labels == ["all", "pcgrad"]


def test_leave_one_out_and_subset_candidates():
    tasks = ("a", "b", "c")
    resolved = it_mtl._resolve(["leave_one_out", "all"], tasks)
    assert resolved == [("b+c", ("b", "c")), ("a+c", ("a", "c")),
                        ("a+b", ("a", "b")), ("all", tasks)]
    labels = [label for label, _ in it_mtl._resolve(["subsets"], tasks)]
    assert labels == ["a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"]
    with pytest.raises(ValueError, match="at most 6 tasks. Received: 7"):
        it_mtl._resolve(["subsets"], tuple("abcdefg"))
    method = mtl.ITMTL(["leave_one_out", "all"])
    _fit(method, epochs=1)
    assert sum(method.counts().values()) == STEPS
    assert list(method.counts()) == ["b+c", "a+c", "a+b", "all"]


def test_candidate_logger_writes_each_epochs_wins(tmp_path):
    strategy = mtl.ITMTL(["all", "pcgrad", "a"])
    path = tmp_path / "logs" / "candidates.csv"
    _fit(strategy, epochs=2, callbacks=[CandidateLogger(path)])
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["epoch", "steps", "all", "pcgrad", "a"]
    assert list(frame["epoch"]) == [0, 1]
    assert list(frame["steps"]) == [STEPS, STEPS]
    assert (frame[["all", "pcgrad", "a"]].sum(axis=1) == STEPS).all()
    assert frame[["all", "pcgrad", "a"]].sum().to_dict() == strategy.counts()
    assert frame.iloc[-1][["all", "pcgrad", "a"]].to_dict() == (
        strategy.epoch_counts)


def test_uncertainty_weighted_pcgrad_candidates_train():
    strategy = mtl.ITMTL(["all", "pcgrad"],
                         loss_weighting=mtl.UncertaintyWeights())
    model, *_ = _fit(strategy, every=1)
    assert sum(strategy.counts().values()) == STEPS
    assert np.isfinite(model.affinity().to_numpy()).all()
    log_sigma = keras.ops.convert_to_numpy(strategy.loss_weighting.log_sigma)
    assert not np.allclose(log_sigma, 0.01)


def test_bad_configurations_are_clear_errors():
    _, _, weights = reference.data()
    with pytest.raises(ValueError, match="at least one candidate"):
        mtl.ITMTL(candidates=[])
    with pytest.raises(TypeError, match="candidate"):
        mtl.ITMTL(candidates=[3])
    with pytest.raises(ValueError, match=r"unknown tasks \['z'\]"):
        reference.linear_model(
            weights, training_method=mtl.ITMTL(["all", ("a", "z")]))
    with pytest.raises(ValueError, match="repeat"):
        reference.linear_model(
            weights, training_method=mtl.ITMTL(["a", ("a",)]))
    with pytest.raises(TypeError, match="loss_weighting"):
        mtl.ITMTL(loss_weighting="uw")
    model = reference.linear_model(weights)
    model.compile(optimizer="sgd", loss={t: "mse" for t in TASKS})
    x, y, _ = reference.data()
    with pytest.raises(ValueError, match="CandidateLogger"):
        model.fit(x, y, verbose=0,
                  callbacks=[CandidateLogger("/nonexistent/c.csv")])


def test_is_exported():
    assert tag_keras.mtl.ITMTL is mtl.ITMTL
