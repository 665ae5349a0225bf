"""TrajectoryLogger: the trajectory measures of every task during `fit`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from tag_keras import _data
from tag_keras import _distribute
from tag_keras import _files
from tag_keras import _keras_private
from tag_keras._tensorflow import tf
from tag_keras.diagnostics.conflict import _check_positive
from tag_keras.diagnostics.trajectory import MEASURES
from tag_keras.diagnostics.trajectory import TrajectoryMeasures

_FILE = "trajectory.csv"


class TrajectoryLogger(keras.callbacks.Callback):
    """Writes each task's optimisation-trajectory measures during `fit`.

    Every `every_n_epochs` epochs (at the end of epochs n, 2n, …, counted
    from one) it writes, for each task, one row per value to
    `trajectory.csv` (`epoch,task,measure,value`, flushed per row) and a
    TensorBoard scalar `<measure>/<task>`. The `measures` groups write:

    * `"loss"`: `loss` (training loss on the task's labelled examples
      among the first `max_samples` training examples) and `test_loss`
      (the same on the test data); with `validation_data`, `val_loss`.
    * `"error"`: `error` (test error), `train_error`, and `val_error` with
      `validation_data`; classification and multi-label heads only (the
      share of wrong unit decisions for the latter; see
      `tag_keras.diagnostics.fisher_trace` for how they are recognised).
    * `"conflict"`: `conflict` (mean cosine to the uniform multi-task
      gradient), `conflict_rate` and `norm_ratio`
      (`gradient_conflict`), for models with two or more tasks.
    * `"sharpness"`, `"fisher"`, `"coherence"`: `sharpness`,
      `fisher_trace` (exact for classifiers and multi-label heads, else
      `fisher_samples` draws)
      and `gradient_coherence` on the training examples.

    Losses are the compiled per-task losses without `loss_weights`, in
    inference mode; nothing is written to the model. Rows are flushed as
    they are written; a run resumed at epoch e drops the rows of epochs
    >= e before appending (as `AffinityLogger`). Under a multi-worker
    strategy only the chief measures and writes.

    Args:
        log_dir: Directory for `trajectory.csv` and the events.
        train_data: Training data (arrays `(x, y)`, a batched dataset or a
            PyDataset); its first `max_samples` labelled examples per task
            are read once, at the first measurement.
        test_data: Test data, read the same way.
        every_n_epochs: Measure every this many epochs.
        measures: Which of `MEASURES` to write.
        tasks: The tasks to measure (default: all; conflict's multi-task
            gradient always sums every task).
        validation_data: Optional validation data (for `val_loss`,
            `val_error`: the paper picks checkpoints by validation).
        max_samples: Examples per task read from each data set (2048 in
            the paper).
        rho: `sharpness`'s radius.
        sharpness_steps: `sharpness`'s ascent steps.
        sharpness_batch_size: `sharpness`'s batch size.
        fisher_batch_size: `fisher_trace`'s batch size.
        fisher_samples: `fisher_trace`'s number of samples.
        coherence_batch_size: `gradient_coherence` batch size.
        tensorboard: Whether to write TensorBoard events.

    Example:

    ```python
    logger = tag_keras.callbacks.TrajectoryLogger(
        "runs/mtl", (x_train, y_train), (x_test, y_test))
    model.fit(x_train, y_train, epochs=20, callbacks=[logger])
    pd.read_csv("runs/mtl/trajectory.csv")
    ```
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        train_data: Any,
        test_data: Any,
        every_n_epochs: int = 1,
        measures: Sequence[str] = MEASURES,
        *,
        tasks: Sequence[str] | None = None,
        validation_data: Any = None,
        max_samples: int = 2048,
        rho: float = 1e-3,
        sharpness_steps: int = 20,
        sharpness_batch_size: int = 128,
        fisher_batch_size: int = 16,
        fisher_samples: int | None = 8,
        coherence_batch_size: int = 16,
        tensorboard: bool = True,
    ):
        _keras_private.check_backend(what="TrajectoryLogger")
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                "`log_dir` must be a non-empty directory path. "
                f"Received: log_dir={log_dir!r}."
            )
        _data.check_data(train_data, "train_data")
        _data.check_data(test_data, "test_data")
        if validation_data is not None:
            _data.check_data(validation_data, "validation_data")
        _check_positive("every_n_epochs", every_n_epochs)
        _check_positive("max_samples", max_samples)
        measures = (
            (measures,) if isinstance(measures, str) else tuple(measures)
        )
        unknown = [m for m in measures if m not in MEASURES]
        if unknown or not measures:
            raise ValueError(
                f"`measures` must name one or more of {MEASURES}. Received: "
                f"measures={measures!r}."
            )
        self.log_dir = os.fspath(log_dir)
        self.every_n_epochs = every_n_epochs
        self.measures = measures
        self.tasks = None if tasks is None else list(tasks)
        self._data = {
            "train": train_data,
            "test": test_data,
            "val": validation_data,
        }
        self.max_samples = max_samples
        self._settings = {
            "rho": float(rho),
            "sharpness_steps": sharpness_steps,
            "sharpness_batch_size": sharpness_batch_size,
            "fisher_batch_size": fisher_batch_size,
            "fisher_samples": fisher_samples,
            "coherence_batch_size": coherence_batch_size,
        }
        self.tensorboard = tensorboard
        self._trajectory: TrajectoryMeasures | None = None
        self._file = self._writer = None
        self._active = False

    def on_train_begin(self, logs=None):
        self._active = _distribute.is_chief(self.model.distribute_strategy)
        self._file = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._active and self._file is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._file = _files.RowFile(
                os.path.join(self.log_dir, _FILE),
                ["epoch", "task", "measure", "value"],
                lambda row: int(row[0]) < epoch,
            )

    def on_epoch_end(self, epoch, logs=None):
        if not self._active or (epoch + 1) % self.every_n_epochs:
            return
        if self._file is None:
            self.on_epoch_begin(epoch)
        values = self.measure()
        self._file.write(
            [epoch, task, name, repr(value)]
            for (task, name), value in values.items()
        )
        if self.tensorboard:
            self._write_events(epoch, values)

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def measure(self) -> dict[tuple[str, str], float]:
        """`{(task, measure): value}` at the model's current weights."""
        if self._trajectory is None:
            self._trajectory = TrajectoryMeasures(
                self.model,
                self._data,
                self.measures,
                self.tasks,
                self.max_samples,
                **self._settings,
            )
        return self._trajectory.measure()

    def _write_events(self, epoch, values):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=epoch):
            for (task, name), value in values.items():
                tf.summary.scalar(f"{name}/{task}", np.float32(value))
        self._writer.flush()
