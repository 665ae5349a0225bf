"""Affinity methods are pluggable: a user's estimator, registered under a
name, measures through `TaskAffinityModel` like a built-in one; names
are checked in one place."""

import keras
import numpy as np
import pytest

import tag_keras
from tag_keras.measure import affinity as affinity_lib
from tag_keras.measure import estimators


class GramEstimator(tag_keras.AffinityEstimator):
    """Toy method: the inner products of the tasks' shared gradients."""

    def matrix(self, gradients, target):
        flat = gradients.global_flat()
        return keras.ops.matmul(flat, keras.ops.transpose(flat))


class LossDropEstimator(tag_keras.AffinityEstimator):
    """Toy method with group sources: `1 - L_j(after) / L_j(before)` for
    the tentative step, i.e. the lookahead without the learning-rate
    scaling, written against the public interface only."""

    uses_lookahead = True
    group_sources = True

    def source_rows(self, gradients, target):
        del gradients

        def row(shared_gradients):
            after = target.losses_at(self.inputs.step.values(
                shared_gradients, target))
            return 1.0 - after / target.before

        return row


@pytest.fixture
def registered():
    """Registers the toy methods for one test, then removes them."""
    before = dict(estimators._REGISTRY)
    tag_keras.register_affinity_method("gram", GramEstimator)
    tag_keras.register_affinity_method("loss_drop", LossDropEstimator)
    yield
    estimators._REGISTRY.clear()
    estimators._REGISTRY.update(before)


def _measured(method, **kwargs):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(5, activation="tanh", name="trunk")(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs,
        outputs={t: keras.layers.Dense(1, name=f"head_{t}")(h)
                 for t in "abc"},
        affinity_method=method, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss={t: "mse" for t in "abc"})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = {t: rng.normal(size=(8, 1)).astype("float32") for t in "abc"}
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model


@pytest.mark.backends
def test_a_registered_method_measures_in_fit(registered):
    assert {"gram", "loss_drop"} <= set(tag_keras.affinity_methods())
    gram = _measured("gram").affinity().to_numpy()
    cosine = _measured("cosine").affinity().to_numpy()
    # One step on one batch: the Gram matrix normalised is the cosine.
    norms = np.sqrt(np.diag(gram))
    np.testing.assert_allclose(gram / np.outer(norms, norms), cosine,
                               rtol=1e-5)


@pytest.mark.backends
def test_a_registered_method_with_group_sources(registered):
    drop = _measured("loss_drop", lookahead_step="sgd",
                     affinity_sources="tasks+all")
    lookahead = _measured("lookahead", lookahead_step="sgd",
                          scale_by_learning_rate=False,
                          affinity_sources="tasks+all")
    np.testing.assert_allclose(drop.affinity().to_numpy(),
                               lookahead.affinity().to_numpy(), rtol=1e-6)
    groups = drop.group_affinity()
    np.testing.assert_allclose(
        groups.affinity.to_numpy(),
        lookahead.group_affinity().affinity.to_numpy(), rtol=1e-6)


def test_what_a_method_does_not_declare_is_refused(registered):
    with pytest.raises(ValueError, match=r"Group sources need .*'lookahead'"
                       r".*'loss_drop'.*affinity_method='gram'"):
        _measured("gram", affinity_sources="tasks+all")
    with pytest.raises(ValueError, match=r"affinity_data.*\['lookahead'\]"
                       r".*affinity_method='loss_drop'"):
        _measured("loss_drop", affinity_data=(np.ones((2, 3)),
                                              {t: np.ones((2, 1))
                                               for t in "abc"}))


def test_unknown_names_and_bad_registrations_are_clear_errors(registered):
    with pytest.raises(ValueError, match=r"one of \['lookahead', "
                       r"'first_order', 'cosine', 'gram', 'loss_drop'\].*"
                       r"affinity_method='grma'"):
        _measured("grma")
    with pytest.raises(ValueError, match="'gram' is registered already"):
        tag_keras.register_affinity_method("gram", LossDropEstimator)
    tag_keras.register_affinity_method("gram", LossDropEstimator,
                                       replace=True)
    assert estimators.estimator_class("gram") is LossDropEstimator
    with pytest.raises(TypeError, match="subclass of"):
        tag_keras.register_affinity_method("x", object)
    with pytest.raises(ValueError, match="non-empty string"):
        tag_keras.register_affinity_method("", GramEstimator)


def test_an_estimator_without_rows_says_what_to_implement():
    with pytest.raises(NotImplementedError, match="source_rows"):
        tag_keras.AffinityEstimator(estimators.EstimatorInputs()).matrix(
            None, None)


def test_the_built_in_methods_are_registered_estimators():
    assert tag_keras.affinity_methods()[:3] == affinity_lib.AFFINITY_METHODS
    for name in affinity_lib.AFFINITY_METHODS:
        assert issubclass(estimators.estimator_class(name),
                          tag_keras.AffinityEstimator)
    assert estimators.methods_with("group_sources") == ["lookahead",
                                                       "first_order"]
    assert estimators.methods_with("held_out") == ["lookahead"]
