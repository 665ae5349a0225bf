"""AffinityLogger: the files and events read back."""

import glob
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tag_keras


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh", name="trunk")(inputs)
    outputs = {t: keras.layers.Dense(1, name=f"head_{t}")(h) for t in "ab"}
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs=outputs, affinity_every_n_steps=1
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss={"a": "mse", "b": "mse"})
    return model


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3)).astype("float32")
    return x, {t: rng.normal(size=(10, 1)).astype("float32") for t in "ab"}


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.steps = {}, {}

    def on_train_batch_end(self, batch, logs=None):
        step, frame = self.model.last_step_affinity()
        self.steps[step] = frame

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch] = self.model.epoch_affinity


def _events(log_dir):
    scalars, images = {}, []
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.tag == "affinity/matrix":
                    images.append(tensor)
                else:
                    scalars[(value.tag, event.step)] = float(tensor)
    return scalars, images


def test_files_and_events_hold_the_model_values(tmp_path):
    x, y = _data()
    model, record = _model(), _Record()
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
              callbacks=[record, tag_keras.AffinityLogger(tmp_path)])

    matrix = pd.read_csv(tmp_path / "affinity.csv", index_col="source")
    pd.testing.assert_frame_equal(matrix, model.affinity(), check_names=False,
                                  rtol=1e-12)

    epochs = pd.read_csv(tmp_path / "affinity_epochs.csv")
    assert list(epochs.columns) == ["epoch", "source", "target", "affinity"]
    assert len(epochs) == 3 * 4
    for row in epochs.itertuples():
        expected = record.epochs[row.epoch].loc[row.source, row.target]
        assert row.affinity == pytest.approx(expected, rel=1e-12)

    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    assert list(steps.columns) == ["step", "epoch", "source", "target",
                                   "affinity"]
    assert sorted(set(steps.step)) == list(range(9))
    assert (steps.groupby("step").epoch.first().to_numpy()
            == np.repeat([0, 1, 2], 3)).all()
    for row in steps.itertuples():
        expected = record.steps[row.step].loc[row.source, row.target]
        assert row.affinity == pytest.approx(expected, rel=1e-12)

    scalars, images = _events(str(tmp_path))
    for epoch, frame in record.epochs.items():
        assert scalars[("affinity/a->b", epoch)] == pytest.approx(
            frame.loc["a", "b"], rel=1e-6)
    assert len(images) == 3
    png = images[0][2]  # [width, height, encoded image]
    assert tf.io.decode_png(png).shape[-1] == 3


def test_resuming_keeps_every_epoch_and_step_once(tmp_path):
    x, y = _data()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        _model().fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
                     callbacks=[backup, tag_keras.AffinityLogger(tmp_path),
                                Interrupt()])
    resumed = _model()
    resumed.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
                callbacks=[backup, tag_keras.AffinityLogger(tmp_path)])
    epochs = pd.read_csv(tmp_path / "affinity_epochs.csv")
    assert epochs.groupby("epoch").size().to_dict() == {0: 4, 1: 4, 2: 4,
                                                        3: 4}
    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    assert sorted(set(steps.step)) == list(range(12))
    assert steps.groupby("step").size().eq(4).all()
    matrix = pd.read_csv(tmp_path / "affinity.csv", index_col="source")
    np.testing.assert_allclose(matrix.to_numpy(),
                               resumed.affinity().to_numpy())


def test_steps_file_can_be_switched_off(tmp_path):
    x, y = _data()
    _model().fit(x, y, batch_size=4, epochs=1, verbose=0,
                 callbacks=[tag_keras.AffinityLogger(tmp_path,
                                                     write_steps=False)])
    assert not (tmp_path / "affinity_steps.csv").exists()
    assert (tmp_path / "affinity_epochs.csv").exists()


def test_bad_log_dir_is_a_clear_error():
    with pytest.raises(ValueError, match="log_dir=''"):
        tag_keras.AffinityLogger("")
