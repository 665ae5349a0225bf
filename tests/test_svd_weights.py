"""SVDTaskWeights inside fit, against NumPy on a linear model."""

import keras
import numpy as np
import pytest

import tag_keras
from tag_keras import mtl
from tag_keras import transfer


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {"a": (x[:, 0] > 0).astype("float32"),
         "b": (x[:, 0] + 0.2 * x[:, 1] > 0).astype("float32"),
         "noise": (rng.random(n) < 0.5).astype("float32")}
    return x, y


def _model(method):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(3, name="trunk")(inputs)
    outputs = {t: keras.layers.Dense(1, name=t)(h)
               for t in ("a", "b", "noise")}
    model = tag_keras.TaskAffinityModel(inputs, outputs,
                                        training_method=method)
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.1),
                  loss={t: loss for t in outputs})
    return model


class _Record(keras.callbacks.Callback):
    def __init__(self, x):
        super().__init__()
        self.x, self.rows = x, []

    def on_epoch_begin(self, epoch, logs=None):
        method = self.model.training_method
        features = np.asarray(self.model.get_layer("trunk")(self.x))
        self.rows.append((method.task_weights(), features))


def test_weights_in_fit_are_algorithm_2_on_the_representation(tmp_path):
    x, y = _data()
    method = mtl.SVDTaskWeights(rank=1, data=(x, y), every_n_epochs=2)
    model = _model(method)
    record = _Record(x)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[record])
    for epoch in (0, 2):           # recomputed at epochs 0 and 2
        weights, features = record.rows[epoch]
        alphas = transfer.svd_task_weights(features, y, 1)
        expected = np.array(list(alphas.values()))
        np.testing.assert_allclose(list(weights.values()),
                                   expected / expected.mean(), rtol=1e-4)
    # Kept between recomputations.
    assert record.rows[1][0] == record.rows[0][0]
    assert record.rows[0][0]["noise"] < min(record.rows[0][0]["a"],
                                            record.rows[0][0]["b"])
    # Each task's loss is multiplied by its weight.
    losses = {t: keras.ops.convert_to_tensor(1.5) for t in ("a", "b",
                                                           "noise")}
    weighted = method.weight_losses(losses)
    for task, weight in method.task_weights().items():
        assert float(weighted[task]) == pytest.approx(1.5 * weight)
    # Saved and loaded with the model (the weights, not the data).
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.training_method, mtl.SVDTaskWeights)
    assert loaded.training_method.task_weights() == pytest.approx(
        method.task_weights())
    assert loaded.training_method.rank == 1
    assert loaded.training_method.every_n_epochs == 2


def test_bad_settings_are_refused():
    x, y = _data()
    with pytest.raises(ValueError, match="Received: rank=0"):
        mtl.SVDTaskWeights(rank=0)
    with pytest.raises(ValueError, match="Received: every_n_epochs=0"):
        mtl.SVDTaskWeights(every_n_epochs=0)
    with pytest.raises(ValueError, match="Received: rank=4"):
        _model(mtl.SVDTaskWeights(rank=4, data=(x, y)))
    model = _model(mtl.SVDTaskWeights(rank=1, data=(x, y), representation_layer="nope"))
    with pytest.raises(ValueError, match="Received: layer='nope'"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
