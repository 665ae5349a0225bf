"""AffinityLogger: the affinity matrices as CSV files and TensorBoard events."""

import csv
import io
import os
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from tag_keras import _distribute

_STEPS = "affinity_steps.csv"
_EPOCHS = "affinity_epochs.csv"
_MATRIX = "affinity.csv"


class AffinityLogger(keras.callbacks.Callback):
    """Writes a `TaskAffinityModel`'s affinities to `log_dir` during `fit`.

    Files (row = source task, column = target task):

    * `affinity.csv`: the training-level mean matrix, first column `source`,
      replaced atomically at every epoch end and at the end of training.
    * `affinity_epochs.csv`: `epoch,source,target,affinity`, one row per pair
      measured in the epoch (pairs never measured in an epoch are left out).
    * `affinity_steps.csv`: `step,epoch,source,target,affinity` for every
      measured step (skipped pairs left out); `write_steps=False` turns it
      off. With `steps_per_execution > 1` only the last measured step of
      each execution is visible to callbacks.
    * TensorBoard events: scalars `affinity/<source>-><target>` per epoch and
      a heatmap image `affinity/matrix`.

    Rows are flushed as they are written. When training resumes (e.g. with
    `keras.callbacks.BackupAndRestore`) at epoch e, rows of epochs >= e,
    and step rows after the last step the restored model had measured, are
    dropped before new rows are appended, so every epoch and every (step,
    source, target) appears once; a fresh run from epoch 0 starts the files
    anew. Under a multi-worker strategy only the chief writes. Files get
    the permissions the umask gives (as `open` does).

    `affinity` holds the whole run's matrix as last written: the model's
    `fit_affinity`, read at each epoch end, so a later rollback of the
    model's weights, such as `EarlyStopping(restore_best_weights=True)`,
    does not change it whatever the order of the callbacks.

    Args:
        log_dir: Directory for the files (created if missing).
        write_steps: Whether to write `affinity_steps.csv`.
        tensorboard: Whether to write TensorBoard events.

    Example:

    ```python
    model.fit(x, y, epochs=10,
              callbacks=[tag_keras.AffinityLogger("runs/demo")])
    pd.read_csv("runs/demo/affinity.csv", index_col="source")
    ```
    """

    def __init__(self, log_dir, write_steps=True, tensorboard=True):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                "`log_dir` must be a non-empty directory path. Received: "
                f"log_dir={log_dir!r}."
            )
        self.log_dir = os.fspath(log_dir)
        self.write_steps = write_steps
        self.tensorboard = tensorboard
        self._files = None
        self._writer = None
        self._last_step = None
        self._epoch = None
        self._active = False
        self.affinity = None

    # ------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "affinity_totals"):
            raise TypeError(
                "AffinityLogger needs a tag_keras.TaskAffinityModel. "
                f"Received: a model of type {type(self.model).__name__}."
            )
        self._active = _distribute.is_chief(self.model.distribute_strategy)
        self._files = None
        self._last_step = None
        self.affinity = None
        if self._active and self.write_steps and (
            self.model.steps_per_execution > 1
        ):
            warnings.warn(
                "AffinityLogger: with steps_per_execution="
                f"{self.model.steps_per_execution} only the last measured "
                "step of each execution is written to affinity_steps.csv.",
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._active and self._files is None:
            # Read here, after every `on_train_begin` (BackupAndRestore
            # restores the model there): a restored run's last measured
            # step was written by the run that measured it.
            last = self.model.last_step_affinity()
            self._last_step = None if last is None else last[0]
            os.makedirs(self.log_dir, exist_ok=True)
            self._files = {_EPOCHS: self._open(_EPOCHS, epoch)}
            if self.write_steps:
                self._files[_STEPS] = self._open(_STEPS, epoch,
                                                 self._last_step)

    def on_train_batch_end(self, batch, logs=None):
        if not (self._active and self.write_steps and self._files):
            return
        last = self.model.last_step_affinity()
        if last is None or last[0] == self._last_step:
            return
        self._last_step, frame = last
        self._write_rows(_STEPS, [self._last_step, self._epoch], frame)

    def on_epoch_end(self, epoch, logs=None):
        if not (self._active and self._files):
            return
        frame = self.model.epoch_affinity
        if frame is not None:
            self._write_rows(_EPOCHS, [epoch], frame)
            self._write_tensorboard(epoch, frame)
        self.affinity = self.model.fit_affinity
        if self.affinity is not None:
            self._write_matrix(self.affinity)

    def on_train_end(self, logs=None):
        if self._active and self._files and self.affinity is not None:
            self._write_matrix(self.affinity)
        for handle in (self._files or {}).values():
            handle.close()
        self._files = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------

    def _open(self, name, epoch, last_step=None):
        """Opens `name` for appending, keeping only rows already measured.

        Kept: rows of epochs before `epoch` and, for the step file, of
        steps up to `last_step` (None: none).
        """
        path = os.path.join(self.log_dir, name)
        header = (["step", "epoch"] if name == _STEPS else ["epoch"]) + [
            "source", "target", "affinity"
        ]
        kept = []
        if os.path.exists(path):
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))
            column = header.index("epoch")
            kept = [r for r in rows[1:] if r and int(r[column]) < epoch]
            if name == _STEPS:
                kept = [r for r in rows[1:] if r and last_step is not None
                        and int(r[0]) <= last_step]
        text = io.StringIO()
        csv.writer(text).writerows([header, *kept])
        _replace(path, text.getvalue())
        return open(path, "a", newline="")

    def _write_rows(self, name, prefix, frame):
        handle = self._files[name]
        writer = csv.writer(handle)
        for source in frame.index:
            for target in frame.columns:
                value = frame.loc[source, target]
                if np.isfinite(value):
                    writer.writerow(
                        [*prefix, source, target, repr(float(value))]
                    )
        handle.flush()

    def _write_matrix(self, frame):
        _replace(
            os.path.join(self.log_dir, _MATRIX),
            frame.to_csv(index_label="source"),
        )

    def _write_tensorboard(self, epoch, frame):
        if not self.tensorboard:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=epoch):
            for source in frame.index:
                for target in frame.columns:
                    value = frame.loc[source, target]
                    if np.isfinite(value):
                        tf.summary.scalar(f"affinity/{source}->{target}",
                                          value)
            tf.summary.image("affinity/matrix", _heatmap(frame)[None])
        self._writer.flush()


def _replace(path, text):
    """Writes `text` to `path` atomically (temp file + rename)."""
    directory = os.path.dirname(path) or "."
    handle, temp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(handle, "w", newline="") as out:
        out.write(text)
    # mkstemp creates the file 0600; give it what `open` would (the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)


def _heatmap(frame):
    """An RGB uint8 image of the matrix (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = len(frame)
    figure, axes = plt.subplots(figsize=(1.0 + 0.6 * n, 1.0 + 0.6 * n))
    values = frame.to_numpy(dtype=float)
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
    axes.set_xticks(range(n), frame.columns, rotation=90)
    axes.set_yticks(range(n), frame.index)
    axes.set_xlabel("target")
    axes.set_ylabel("source")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return tf.io.decode_png(buffer.getvalue(), channels=3)
