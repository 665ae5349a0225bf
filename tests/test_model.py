"""TaskAffinityModel: invariants, shared weights, partial labels, errors."""

import warnings

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tag_keras


def _trunk_model(model_cls=tag_keras.TaskAffinityModel, dropout=0.0,
                 **kwargs):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(6, activation="relu", name="trunk")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    if dropout:
        h = keras.layers.Dropout(dropout, name="drop")(h)
    pair = keras.layers.Dense(4, activation="tanh", name="pair")(h)
    outputs = {
        "a": keras.layers.Dense(1, name="head_a")(pair),
        "b": keras.layers.Dense(1, name="head_b")(pair),
        "c": keras.layers.Dense(1, name="head_c")(h),
    }
    return model_cls(inputs=inputs, outputs=outputs, **kwargs)


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = {t: rng.normal(size=(n, 1)).astype("float32") for t in "abc"}
    return x, y


def _fit(model, x, y, optimizer=None, epochs=2, **fit_kwargs):
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(0.05, momentum=0.9),
        loss={t: "mse" for t in "abc"},
        loss_weights={"a": 1.0, "b": 0.5, "c": 2.0},
    )
    model.fit(x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0,
              **fit_kwargs)
    return model


def _state(model):
    variables = [v for v in model.variables if "affinity" not in v.path]
    optimizer = [v.numpy() for v in model.optimizer.variables]
    return [v.numpy() for v in variables], optimizer


@pytest.fixture(scope="module")
def plain_adam():
    """The plain Keras model's state after `_fit` with Adam and dropout
    (trained once for every measuring variant)."""
    x, y = _data()
    return _state(_fit(_trunk_model(keras.Model, dropout=0.3), x, y,
                       optimizer=keras.optimizers.Adam(0.01)))


_TF_ONLY = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                              reason="group sources: TensorFlow only")


@pytest.mark.backends
@pytest.mark.parametrize("method, options", [
    ("lookahead", {}), ("first_order", {}), ("cosine", {}),
    pytest.param("lookahead", {"lookahead_step": "increment",
                               "affinity_sources": "subsets"},
                 marks=_TF_ONLY),
    pytest.param("lookahead", {"lookahead_step": "sgd",
                               "affinity_sources": "tasks+all",
                               "affinity_random_subsets": 2},
                 marks=_TF_ONLY),
    pytest.param("first_order", {"lookahead_step": "increment",
                                 "affinity_sources": 2}, marks=_TF_ONLY),
])
@pytest.mark.keras_range
def test_measuring_never_changes_training(method, options, plain_adam):
    x, y = _data()
    plain_vars, plain_opt = plain_adam
    measured = _fit(
        _trunk_model(dropout=0.3, affinity_every_n_steps=1,
                     affinity_method=method, **options),
        x, y, optimizer=keras.optimizers.Adam(0.01),
    )
    measured_vars, measured_opt = _state(measured)
    assert len(plain_vars) == len(measured_vars)
    # Weights, BatchNorm statistics, dropout seed state and optimizer slots
    # agree up to the summation order of the per-task gradients.
    for a, b in zip(plain_vars, measured_vars):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(plain_opt, measured_opt):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    assert np.isfinite(measured.affinity().to_numpy()).all()


@pytest.mark.backends
def test_measurement_off_is_a_plain_keras_step():
    x, y = _data()
    plain = _fit(_trunk_model(keras.Model), x, y)
    off = _fit(_trunk_model(affinity_every_n_steps=0), x, y)
    for a, b in zip(_state(plain)[0], _state(off)[0]):
        np.testing.assert_array_equal(a, b)
    assert off.affinity_counts().to_numpy().sum() == 0
    assert off.affinity().isna().all().all()


@pytest.mark.backends
def test_unmeasured_steps_are_plain_steps():
    # Measuring only at step 0 of a one-step fit: identical to plain Keras
    # except through that step; with every=1000 and steps after the first
    # the plain branch runs.
    x, y = _data()
    plain = _fit(_trunk_model(keras.Model), x, y, epochs=1)
    rare = _fit(_trunk_model(affinity_every_n_steps=1000), x, y, epochs=1)
    for a, b in zip(_state(plain)[0], _state(rare)[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert (rare.affinity_counts().to_numpy() == 1).all()


@pytest.mark.backends
def test_shared_weights_are_inferred():
    x, y = _data()
    model = _fit(_trunk_model(affinity_every_n_steps=1), x, y, epochs=1)
    shared = {v.path for v in model.shared_variables}
    # trunk and bn feed all three tasks, pair feeds a and b: all shared;
    # heads are task-specific.
    assert shared == {
        "trunk/kernel", "trunk/bias", "bn/gamma", "bn/beta",
        "pair/kernel", "pair/bias",
    }


@pytest.mark.backends
def test_shared_layers_restrict_the_lookahead():
    x, y = _data()
    model = _trunk_model(affinity_every_n_steps=1, shared_layers=["trunk"])
    _fit(model, x, y, epochs=1)
    assert {v.path for v in model.shared_variables} == {
        "trunk/kernel", "trunk/bias"
    }
    assert np.isfinite(model.affinity().to_numpy()).all()


@pytest.mark.backends
def test_unknown_shared_layer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"shared_layers=\['trunk', 'nope'\]"):
        _trunk_model(shared_layers=["trunk", "nope"])


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"affinity_method": "exact"}, ValueError,
         "affinity_method='exact'"),
        ({"affinity_every_n_steps": -1}, ValueError,
         "affinity_every_n_steps=-1"),
        ({"affinity_every_n_steps": 2.5}, TypeError,
         "affinity_every_n_steps=2.5"),
        ({"shared_layers": "trunk"}, TypeError, "shared_layers='trunk'"),
        ({"affinity_method": "cosine", "affinity_data": (np.ones(2),)},
         ValueError, "affinity_method='cosine'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        _trunk_model(**kwargs)


def test_outputs_must_be_a_dict():
    inputs = keras.Input((3,))
    with pytest.raises(TypeError, match="dict keyed by task name"):
        tag_keras.TaskAffinityModel(
            inputs=inputs, outputs=[keras.layers.Dense(1)(inputs)]
        )


def test_subclassed_model_returning_a_dict():
    class TwoTasks(tag_keras.TaskAffinityModel):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.trunk = keras.layers.Dense(4, activation="tanh")
            self.head_a = keras.layers.Dense(1)
            self.head_b = keras.layers.Dense(1)

        def call(self, x):
            h = self.trunk(x)
            return {"a": self.head_a(h), "b": self.head_b(h)}

    x, y = _data()
    model = TwoTasks(affinity_every_n_steps=1)
    model.compile(optimizer="sgd", loss={"a": "mse", "b": "mse"})
    model.fit(x, {"a": y["a"], "b": y["b"]}, batch_size=4, epochs=1,
              verbose=0)
    assert model.task_names == ("a", "b")
    assert (model.affinity_counts().to_numpy() == 3).all()


def test_masked_and_zero_and_nan_losses_are_skipped_and_counted():
    x, y = _data(n=8)
    # Batch 0: task b has all-zero sample weights (no labels).
    # Batch 1: task c's labels are NaN, and its loss ignores NaN labels
    # (returns 0 when nothing is labelled).
    y["c"][4:] = np.nan

    def nan_aware_mse(y_true, y_pred):
        present = ~tf.math.is_nan(y_true)
        err = tf.where(present, y_true - y_pred, tf.zeros_like(y_pred))
        return tf.reduce_mean(tf.square(err), axis=-1)

    weights = {t: np.ones(8, "float32") for t in "abc"}
    weights["b"][:4] = 0.0
    model = _trunk_model(affinity_every_n_steps=1)
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss={"a": "mse", "b": "mse", "c": nan_aware_mse})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, sample_weight=weights, batch_size=4, epochs=1,
                  shuffle=False, verbose=0)
    counts = model.affinity_counts()
    skipped = model.affinity_skipped()
    # Step 0 skips every pair involving b; step 1 every pair involving c.
    expected_counts = pd.DataFrame(
        [[2, 1, 1], [1, 1, 0], [1, 0, 1]], index=list("abc"),
        columns=list("abc"),
    )
    np.testing.assert_array_equal(counts.to_numpy(), expected_counts)
    np.testing.assert_array_equal(skipped.to_numpy(), 2 - expected_counts)
    affinity = model.affinity()
    assert np.isnan(affinity.loc["b", "c"])  # never measured together
    assert np.isfinite(affinity.loc["a", "b"])
    assert np.isfinite(affinity.loc["c", "c"])
    messages = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(messages) == 1


def test_non_finite_loss_does_not_poison_the_averages():
    x, y = _data(n=8)

    def sometimes_infinite(y_true, y_pred):
        # Infinite on the second batch only (its first label is > 1e3).
        loss = tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)
        return tf.where(tf.reduce_max(y_true) > 1e3, np.inf, loss)

    y["a"][4] = 1e4
    model = _trunk_model(affinity_every_n_steps=1)
    # The infinite loss comes on the last step, so only that step's
    # measurement sees it (the real update after it is what Keras does).
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss={"a": sometimes_infinite, "b": "mse", "c": "mse"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    counts = model.affinity_counts()
    assert counts.loc["a", "a"] == 1 and counts.loc["b", "c"] == 2
    assert counts.loc["a", "b"] == 1 and counts.loc["b", "a"] == 1
    assert model.affinity_skipped().loc["c", "a"] == 1
    assert np.isfinite(model.affinity().to_numpy()).all()
    step, last = model.last_step_affinity()
    assert step == 1
    assert last.loc["a"].isna().all() and last.loc[:, "a"].isna().all()
    assert np.isfinite(last.loc[["b", "c"], ["b", "c"]].to_numpy()).all()


def test_epoch_affinity_is_visible_to_callbacks():
    seen = {}

    class Grab(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = self.model.epoch_affinity.copy()

    x, y = _data()
    model = _fit(_trunk_model(affinity_every_n_steps=1), x, y, epochs=3,
                 callbacks=[Grab()])
    assert sorted(seen) == [0, 1, 2]
    mean_of_epochs = sum(f.to_numpy() for f in seen.values()) / 3
    np.testing.assert_allclose(mean_of_epochs, model.affinity().to_numpy(),
                               rtol=1e-6)
    assert not np.allclose(seen[0].to_numpy(), seen[2].to_numpy())


@pytest.mark.backends
def test_affinity_survives_backup_and_restore(tmp_path):
    x, y = _data()

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = _trunk_model(affinity_every_n_steps=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(first, x, y, epochs=4, callbacks=[backup, Interrupt()])
    counts_after_two = first.affinity_counts().to_numpy().copy()
    assert (counts_after_two == 6).all()

    resumed = _trunk_model(affinity_every_n_steps=1)
    _fit(resumed, x, y, epochs=4, callbacks=[backup])
    assert (resumed.affinity_counts().to_numpy() == 12).all()

    straight = _fit(_trunk_model(affinity_every_n_steps=1), x, y, epochs=4)
    np.testing.assert_allclose(resumed.affinity().to_numpy(),
                               straight.affinity().to_numpy(), rtol=1e-3,
                               atol=1e-5)


@pytest.mark.backends
def test_validation_affinity_uses_the_held_out_data():
    x, y = _data()
    xv, yv = _data(seed=5)
    train_only = _fit(_trunk_model(affinity_every_n_steps=1), x, y, epochs=1)
    held_out = _fit(
        _trunk_model(affinity_every_n_steps=1, affinity_data=(xv, yv),
                     affinity_batch_size=4),
        x, y, epochs=1,
    )
    a = train_only.affinity().to_numpy()
    b = held_out.affinity().to_numpy()
    assert np.isfinite(b).all()
    assert not np.allclose(a, b)
    # Same training either way.
    for u, v in zip(_state(train_only)[0], _state(held_out)[0]):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


@pytest.mark.backends
def test_missing_labels_in_the_held_out_data_are_masked():
    # Task b's labels are NaN for half the held-out examples: they are
    # masked, as in training batches, so b stays a target on every step
    # (unmasked, its held-out loss would be NaN and b skipped).
    x, y = _data()
    xv, yv = _data(seed=5)
    yv["b"][::2] = np.nan
    model = _fit(
        _trunk_model(affinity_every_n_steps=1, affinity_data=(xv, yv),
                     affinity_batch_size=4), x, y, epochs=1)
    assert np.isfinite(model.affinity().to_numpy()).all()
    assert (model.affinity_counts().to_numpy() == 3).all()
    assert (model.affinity_skipped().to_numpy() == 0).all()


def test_loss_scale_optimizer_measures_the_unscaled_step():
    x, y = _data()
    plain = _fit(_trunk_model(affinity_every_n_steps=1), x, y,
                 optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    scaled = _fit(
        _trunk_model(affinity_every_n_steps=1), x, y,
        optimizer=keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.05, momentum=0.9)),
    )
    np.testing.assert_allclose(scaled.affinity().to_numpy(),
                               plain.affinity().to_numpy(), rtol=1e-4,
                               atol=1e-6)


def test_saved_model_keeps_its_settings_and_affinity(tmp_path):
    x, y = _data()
    model = _fit(_trunk_model(affinity_every_n_steps=2,
                              affinity_method="first_order",
                              shared_layers=["trunk", "bn"],
                              affinity_sources="tasks+all",
                              affinity_random_subsets=1, affinity_seed=3),
                 x, y)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, tag_keras.TaskAffinityModel)
    assert loaded.affinity_every_n_steps == 2
    assert loaded.affinity_method == "first_order"
    assert loaded.shared_layers == ["trunk", "bn"]
    pd.testing.assert_frame_equal(loaded.affinity(), model.affinity())
    assert (loaded.affinity_sources, loaded.affinity_random_subsets,
            loaded.affinity_seed) == ("tasks+all", 1, 3)
    pd.testing.assert_frame_equal(loaded.group_affinity(),
                                  model.group_affinity())
    counts = model.affinity_counts().to_numpy()
    loaded.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    # 3 more steps from iteration 6: steps 6 and 8 are measured.
    np.testing.assert_array_equal(loaded.affinity_counts().to_numpy(),
                                  counts + 2)


@pytest.mark.parametrize("every", [0, 1])
def test_nan_labels_are_masked_and_training_stays_finite(every):
    x, y = _data(n=12)
    # Batch 0: c half labelled; batch 1: c has no label; batch 2: a has one.
    y["c"][[0, 1, 4, 5, 6, 7]] = np.nan
    y["a"][[8, 9, 10]] = np.nan
    model = _fit(_trunk_model(affinity_every_n_steps=every), x, y, epochs=3,
                 optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    assert all(np.isfinite(w).all() for w in _state(model)[0])
    # The same fit with the masked labels zero-filled and weighted by hand:
    # NaN examples weigh 0, the others batch / labelled, per batch.
    filled, weights = {}, {}
    for t in "abc":
        present = ~np.isnan(y[t][:, 0])
        weight = np.zeros(12, "float32")
        for start in range(0, 12, 4):
            batch = present[start:start + 4]
            if batch.any():
                weight[start:start + 4] = batch * 4.0 / batch.sum()
        filled[t], weights[t] = np.nan_to_num(y[t]), weight
    by_hand = _fit(_trunk_model(affinity_every_n_steps=every), x, filled,
                   epochs=3, sample_weight=weights,
                   optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    for a, b in zip(_state(model)[0], _state(by_hand)[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    history = model.evaluate(x, y, batch_size=4, return_dict=True,
                             verbose=0)
    assert np.isfinite(list(history.values())).all()
    if every:
        counts = model.affinity_counts()
        # c has no label in batch 1 of each epoch: skipped there only.
        assert counts.loc["c", "c"] == 6 and counts.loc["a", "b"] == 9
        assert np.isfinite(model.affinity().to_numpy()).all()


@pytest.mark.backends
def test_a_task_that_bypasses_the_shared_weights_is_marked_not_zero():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, name="trunk")(inputs)
    outputs = {"a": keras.layers.Dense(1)(h), "b": keras.layers.Dense(1)(h),
               "alone": keras.layers.Dense(1)(inputs)}
    model = tag_keras.TaskAffinityModel(inputs=inputs, outputs=outputs,
                                        affinity_every_n_steps=1)
    model.compile(optimizer="sgd", loss={t: "mse" for t in outputs})
    x, y = _data()
    y["alone"] = y.pop("c")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    messages = [str(w.message) for w in caught
                if "bypass" in str(w.message)]
    assert len(messages) == 1 and "['alone']" in messages[0]
    affinity = model.affinity()
    assert affinity.loc["alone"].isna().all()
    assert affinity["alone"].isna().all()
    assert np.isfinite(affinity.loc[["a", "b"], ["a", "b"]].to_numpy()).all()


def test_a_recompiled_model_measures_with_its_new_optimizer():
    x, y = _data()
    model = _fit(_trunk_model(affinity_every_n_steps=1), x, y)
    # The same weights and state in a model that only ever knew Adam.
    fresh = _trunk_model(affinity_every_n_steps=1)
    fresh.set_weights(model.get_weights())
    for m in (model, fresh):
        _fit(m, x, y, optimizer=keras.optimizers.Adam(0.01), epochs=1)
    meter = model._train_step.parts.meter()
    assert meter.estimator.lookahead.optimizer is model.optimizer
    (step, matrix), (fresh_step, expected) = (
        model.last_step_affinity(), fresh.last_step_affinity())
    assert step == fresh_step
    np.testing.assert_allclose(matrix.to_numpy(), expected.to_numpy(),
                               rtol=1e-5)


def test_the_settings_keywords_are_one_spelling():
    import inspect

    from tag_keras.measure import settings as settings_lib

    keywords = set(settings_lib.KEYWORDS)
    for constructor in (tag_keras.TaskAffinityModel.__init__,
                        tag_keras.AffinityMeter.__init__):
        assert keywords <= set(inspect.signature(constructor).parameters)
    assert set(settings_lib.KEYWORDS.values()) == {
        f.name for f in settings_lib.dataclasses.fields(
            settings_lib.AffinitySettings)}
    settings = settings_lib.AffinitySettings.from_keywords(
        affinity_method="first_order", affinity_sources=2, affinity_seed=4)
    assert (settings.method, settings.sources, settings.seed) == (
        "first_order", 2, 4)
    assert settings_lib.AffinitySettings.from_keywords(
        **settings.to_config()) == settings
    with pytest.raises(TypeError, match=r"Unknown affinity settings "
                       r"\['affinity_methd'\]"):
        settings_lib.AffinitySettings.from_keywords(affinity_methd="x")
