"""AffinityLogger: the files and events read back."""

import glob
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tag_keras


def _model(every=1):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh", name="trunk")(inputs)
    outputs = {t: keras.layers.Dense(1, name=f"head_{t}")(h) for t in "ab"}
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs=outputs, affinity_every_n_steps=every
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


class _Interrupt(keras.callbacks.Callback):
    """Raises at the start of epoch 2, or after its second batch."""

    def __init__(self, where):
        super().__init__()
        self.where, self.epoch = where, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if epoch == 2 and self.where == "epoch boundary":
            raise RuntimeError("interrupted")

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2 and batch == 1 and self.where == "mid-epoch":
            raise RuntimeError("interrupted")


@pytest.mark.backends
@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("where", ["epoch boundary", "mid-epoch"])
def test_resuming_keeps_every_epoch_and_step_once(tmp_path, every, where):
    x, y = _data()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError):
        _model(every).fit(
            x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
            callbacks=[backup, tag_keras.AffinityLogger(tmp_path),
                       _Interrupt(where)])
    resumed = _model(every)
    resumed.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
                callbacks=[backup, tag_keras.AffinityLogger(tmp_path)])
    epochs = pd.read_csv(tmp_path / "affinity_epochs.csv")
    assert epochs.groupby("epoch").size().to_dict() == {0: 4, 1: 4, 2: 4,
                                                        3: 4}
    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    # 3 steps per epoch, 4 epochs: every (step, source, target) once.
    assert sorted(set(steps.step)) == list(range(0, 12, every))
    assert not steps.duplicated(["step", "source", "target"]).any()
    assert steps.groupby("step").size().eq(4).all()
    # Each step under the epoch it belongs to.
    assert (steps.epoch == steps.step // 3).all()
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


def test_tensorboard_events_follow_whether_tensorflow_is_installed(
        monkeypatch, tmp_path):
    from tag_keras import _tensorflow
    assert tag_keras.AffinityLogger(tmp_path).tensorboard  # installed here
    assert not tag_keras.AffinityLogger(tmp_path, tensorboard=False
                                        ).tensorboard
    with pytest.raises(TypeError, match=r"tensorboard='yes'"):
        tag_keras.AffinityLogger(tmp_path, tensorboard="yes")
    monkeypatch.setattr(_tensorflow, "is_installed", lambda: False)
    with pytest.warns(UserWarning, match="writes no TensorBoard events"):
        assert not tag_keras.AffinityLogger(tmp_path).tensorboard
    with pytest.raises(tag_keras.InputError,
                       match=r"TensorFlow is not installed.*tensorboard=True"):
        tag_keras.AffinityLogger(tmp_path, tensorboard=True)


def test_files_respect_the_umask_and_the_figure_is_drawn(tmp_path):
    from matplotlib import image

    x, y = _data()
    old = os.umask(0o022)
    try:
        _model().fit(x, y, batch_size=4, epochs=1, verbose=0,
                     callbacks=[tag_keras.AffinityLogger(tmp_path)])
    finally:
        os.umask(old)
    for name in ("affinity.csv", "affinity_epochs.csv", "affinity_steps.csv",
                 "affinity.png"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o644, name
    pixels = image.imread(tmp_path / "affinity.png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.05  # Not blank.


def test_the_logger_keeps_the_whole_run_under_early_stopping(tmp_path):
    x, y = _data()
    model = _model()
    # Early stopping with the best weights restored rolls the affinity
    # state back with them; the logger (in either order) keeps the run's.
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0,
                                         restore_best_weights=True)
    record = _Record()
    logger = tag_keras.AffinityLogger(tmp_path)
    model.compile(optimizer=keras.optimizers.SGD(2.0),  # Diverges.
                  loss={"a": "mse", "b": "mse"})
    model.fit(x, y, batch_size=4, epochs=4, verbose=0,
              callbacks=[stop, record, logger])
    written = pd.read_csv(tmp_path / "affinity.csv", index_col="source")
    assert model.fit_affinity is not None
    np.testing.assert_allclose(written.to_numpy(),
                               model.fit_affinity.to_numpy())
    np.testing.assert_allclose(logger.affinity.to_numpy(),
                               model.fit_affinity.to_numpy())
    counts = pd.read_csv(tmp_path / "affinity_steps.csv").step.nunique()
    assert counts == len(record.steps)


def test_standard_errors_match_numpy_on_the_per_step_values(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0,
              callbacks=[tag_keras.AffinityLogger(tmp_path)])
    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    written = pd.read_csv(tmp_path / "affinity_stderr.csv",
                          index_col="source")
    for (source, target), rows in steps.groupby(["source", "target"]):
        values = rows["affinity"].to_numpy()
        expected = values.std(ddof=1) / np.sqrt(len(values))
        assert len(values) == 9
        np.testing.assert_allclose(
            model.affinity_stderr().loc[source, target], expected,
            rtol=1e-6)
        np.testing.assert_allclose(written.loc[source, target], expected,
                                   rtol=1e-6)


def test_the_centred_view_is_what_selection_compares():
    from tag_keras import figures

    frame = pd.DataFrame([[9.0, 1.0, 2.0], [3.0, 9.0, 4.0], [5.0, 7.0, 9.0]],
                         index=list("abc"), columns=list("abc"))
    centred = figures.column_centred(frame)
    assert np.isnan(np.diag(centred.to_numpy())).all()
    # Column a: sources b (3) and c (5) around their mean 4.
    assert centred.loc["b", "a"] == -1.0 and centred.loc["c", "a"] == 1.0
    # Adding a constant to a column changes nothing.
    shifted = frame.copy()
    shifted["b"] += 100.0
    pd.testing.assert_frame_equal(figures.column_centred(shifted), centred)


@pytest.mark.backends
def test_steps_per_execution_measures_every_step_and_says_what_it_writes(
        tmp_path):
    x, y = _data()
    x, y = np.concatenate([x, x]), {t: np.concatenate([v, v])
                                    for t, v in y.items()}
    one = _model(every=2)
    one.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    several = _model(every=2)
    several.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                    loss={"a": "mse", "b": "mse"}, steps_per_execution=3)
    with pytest.warns(UserWarning, match="only the last measured step"):
        several.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                    callbacks=[tag_keras.AffinityLogger(tmp_path)])
    # 5 steps, measured at 0, 2 and 4, in executions {0, 1, 2} and {3, 4}.
    np.testing.assert_array_equal(several.affinity_counts().to_numpy(), 3)
    np.testing.assert_allclose(several.affinity().to_numpy(),
                               one.affinity().to_numpy(), rtol=1e-5)
    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    assert sorted(set(steps.step)) == [2, 4]
