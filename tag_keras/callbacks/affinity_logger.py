"""AffinityLogger: the affinity matrices as CSV files and TensorBoard events.

Files (row = source task, column = target task):

* `affinity.csv`: the training-level mean matrix, first column `source`,
  replaced atomically at every epoch end and at the end of training.
* `affinity_stderr.csv`: the standard error of each mean (standard
  deviation, ddof = 1, of the per-step values over the square root of
  their count; NaN below two steps), same layout, at every epoch end.
* `group_affinity.csv`, when the model measures group sources
  (`affinity_sources`, `affinity_random_subsets`):
  `sources,target,affinity,count,stderr` for every measured source,
  single tasks and groups (names joined by `|`), replaced atomically at
  every epoch end; what `tag-select --group_affinity` reads.
* `affinity_epochs.csv`: `epoch,source,target,affinity`, one row per pair
  measured in the epoch (pairs never measured in an epoch are left out).
* `affinity_steps.csv`: `step,epoch,source,target,affinity` for every
  measured step (skipped pairs left out); `write_steps=False` turns it
  off. With `steps_per_execution > 1` only the last measured step of
  each execution is visible to callbacks.
* `affinity.png` at the end of training: the matrix (diverging colours
  centred at 0, values written for up to 12 tasks) beside its view
  centred per target column, which is what the grouping compares;
  `figure=False` turns it off.
* TensorBoard events: scalars `affinity/<source>-><target>` per epoch and
  a heatmap image `affinity/matrix`.
"""

import math
import os
import urllib.parse
import warnings

import keras
import numpy as np

from tag_keras import _distribute
from tag_keras import _files
from tag_keras import _lock
from tag_keras import _tensorflow as tensorflow
from tag_keras import figures
from tag_keras._errors import InputError
from tag_keras._tensorflow import tf
from tag_keras.measure.readout import AffinityReadout

_STEPS = "affinity_steps.csv"
_EPOCHS = "affinity_epochs.csv"
_MATRIX = "affinity.csv"
_STDERR = "affinity_stderr.csv"
_GROUPS = "group_affinity.csv"
_FIGURE = "affinity.png"


class AffinityLogger(keras.callbacks.Callback):
    """Writes a `TaskAffinityModel`'s affinities to `log_dir` during `fit`.

    The files are listed in the module docstring.

    Rows are flushed as they are written. When training resumes (e.g. with
    `keras.callbacks.BackupAndRestore`) at epoch e, rows of epochs >= e,
    and step rows after the last step the restored model had measured, are
    dropped before new rows are appended, so every epoch and every (step,
    source, target) appears once; a fresh run from epoch 0 starts the files
    anew. Rows are written before any other callback's hook of the same
    step or epoch runs (`TaskAffinityModel.fit` puts the logger first), so
    a backup can never record a step whose rows are not written, whatever
    the order of the callbacks. Under a multi-worker strategy only the
    chief writes. Files get the permissions the umask gives (as `open`
    does).

    One run owns a `log_dir`: the logger takes a lock file
    (`.tag_keras.lock`, the owner's pid and host) at the start of `fit`
    and removes it at the end. A second run on the same directory fails
    at once with a one-line `DirectoryInUseError` naming the directory
    and the owner, before anything is written; a lock whose process is
    gone is taken over with a warning.

    `affinity` holds the whole run's matrix as last written: the model's
    `fit_affinity`, read at each epoch end, so a later rollback of the
    model's weights, such as `EarlyStopping(restore_best_weights=True)`,
    does not change it whatever the order of the callbacks.

    Args:
        log_dir: Directory for the files (created if missing).
        write_steps: Whether to write `affinity_steps.csv`.
        tensorboard: Whether to write TensorBoard events (they need
            TensorFlow). None (the default): when TensorFlow is installed;
            without it, a warning says the events are not written. True
            without TensorFlow raises `InputError`.
        figure: Whether to write `affinity.png` at the end of training.

    Example:

    ```python
    model.fit(x, y, epochs=10,
              callbacks=[tag_keras.AffinityLogger("runs/demo")])
    tag_keras.select.read_affinity("runs/demo/affinity.csv")
    ```
    """

    #: Placed before other callbacks by `TaskAffinityModel.fit`.
    records_measurements = True

    def __init__(
        self,
        log_dir: str | os.PathLike,
        write_steps: bool = True,
        tensorboard: bool | None = None,
        figure: bool = True,
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                "`log_dir` must be a non-empty directory path. Received: "
                f"log_dir={log_dir!r}."
            )
        self.log_dir = os.fspath(log_dir)
        self.write_steps = write_steps
        self.tensorboard = _tensorboard(tensorboard)
        self.figure = figure
        self._files = None
        self._events = _Events(self.log_dir) if self.tensorboard else None
        self._last_step = None
        self._epoch = None
        self._active = False
        self._lock = None
        self._seen = None
        self.affinity = None

    # ------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        if not isinstance(self.model, AffinityReadout):
            raise TypeError(
                "AffinityLogger needs a tag_keras.TaskAffinityModel or "
                "AffinityMeter. Received: a model of type "
                f"{type(self.model).__name__}."
            )
        self._active = _distribute.is_chief(_strategy(self.model))
        if self._active:
            self._lock = _lock.acquire(self.log_dir)
        self._files = None
        self._last_step = None
        self.affinity = None
        executions = getattr(self.model, "steps_per_execution", 1)
        if self._active and self.write_steps and executions > 1:
            warnings.warn(
                f"AffinityLogger: with steps_per_execution={executions} only "
                "the last measured step of each execution is written to "
                "affinity_steps.csv.",
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._active and self._files is None:
            # Read here, after every `on_train_begin` (BackupAndRestore
            # restores the model there): a restored run's last measured
            # step was written by the run that measured it.
            last = (
                self.model.last_step_affinity()
                if self.model.has_task_names
                else None
            )
            self._last_step = None if last is None else last[0]
            self._seen = None
            os.makedirs(self.log_dir, exist_ok=True)
            self._files = _Rows(self.log_dir)
            self._files.open(_EPOCHS, epoch)
            if self.write_steps:
                self._files.open(_STEPS, epoch, self._last_step)

    def on_train_batch_end(self, batch, logs=None):
        if not (
            self._active
            and self.write_steps
            and self._files
            and self.model.has_task_names
        ):
            return
        # Read the state only after a measured step, when the owner counts
        # them on the host (TaskAffinityModel's fit does); else each batch.
        measured = self.model.affinity_recorder.measured_steps
        if measured is not None and measured == self._seen:
            return
        self._seen = measured
        last = self.model.last_step_affinity()
        if last is None or last[0] == self._last_step:
            return
        self._last_step, frame = last
        self._files.write(_STEPS, [self._last_step, self._epoch], frame)

    def on_epoch_end(self, epoch, logs=None):
        if not (self._active and self._files):
            return
        frame = self.model.epoch_affinity
        if frame is not None:
            self._files.write(_EPOCHS, [epoch], frame)
            if self._events is not None:
                self._events.write(epoch, frame)
        self.affinity = self.model.fit_affinity
        if self.affinity is not None:
            _write_matrix(self.log_dir, self.affinity)
            _write_matrix(self.log_dir, self.model.affinity_stderr(), _STDERR)
            if self.model.group_sources is not None:
                _files.replace_atomically(
                    os.path.join(self.log_dir, _GROUPS),
                    self.model.group_affinity().to_csv(index=False),
                )

    def on_train_end(self, logs=None):
        # `affinity.csv` was written with this matrix at the last epoch end.
        if (
            self._active
            and self._files
            and self.affinity is not None
            and (self.figure)
        ):
            figures.write_affinity_png(
                self.affinity, os.path.join(self.log_dir, _FIGURE)
            )
        if self._files is not None:
            self._files.close()
        self._files = None
        if self._events is not None:
            self._events.close()
        if self._lock is not None:
            _lock.release(self._lock)
            self._lock = None


class _Rows:
    """The two row files of a log directory, opened for one run."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.handles = {}

    def open(self, name, epoch, last_step=None):
        """`name` as a `RowFile`, keeping only rows already measured.

        Kept: rows of epochs before `epoch` and, for the step file, of
        steps up to `last_step` (None: none).
        """
        if name == _STEPS:
            header = ["step", "epoch", "source", "target", "affinity"]

            def keep(row):
                return int(row[0]) <= last_step and math.isfinite(
                    float(row[4])
                )

            fresh = last_step is None
        else:
            header = ["epoch", "source", "target", "affinity"]

            def keep(row):
                return int(row[0]) < epoch and math.isfinite(float(row[3]))

            fresh = epoch == 0
        # A fresh run starts the file anew without reading what was there.
        self.handles[name] = _files.RowFile(
            os.path.join(self.log_dir, name), header, None if fresh else keep
        )

    def write(self, name, prefix, frame):
        """One row per finite (source, target) value of `frame`."""
        self.handles[name].write(
            [*prefix, source, target, repr(float(frame.loc[source, target]))]
            for source in frame.index
            for target in frame.columns
            if np.isfinite(frame.loc[source, target])
        )

    def close(self):
        for handle in self.handles.values():
            handle.close()
        self.handles = {}


def _write_matrix(log_dir, frame, name=_MATRIX):
    _files.replace_atomically(
        os.path.join(log_dir, name), frame.to_csv(index_label="source")
    )


def _strategy(owner):
    """The owner's `tf.distribute` strategy (a custom loop's: the current
    one); None on other backends (one process writes)."""
    if keras.backend.backend() != "tensorflow":
        return None
    strategy = getattr(owner, "distribute_strategy", None)
    return strategy if strategy is not None else tf.distribute.get_strategy()


def _tensorboard(requested):
    """Whether to write TensorBoard events: `requested`, checked against
    TensorFlow being installed."""
    if requested is not None and not isinstance(requested, bool):
        raise TypeError(
            "`tensorboard` must be True, False or None (when TensorFlow is "
            f"installed). Received: tensorboard={requested!r}."
        )
    if tensorflow.is_installed():
        return requested is not False
    if requested:
        raise InputError(
            "AffinityLogger(tensorboard=True) writes TensorBoard events "
            "with TensorFlow's summary writer, and TensorFlow is not "
            "installed. Install it (`pip install tensorflow`) or pass "
            "tensorboard=False (the CSV files and the figure need no "
            "TensorFlow). Received: tensorboard=True"
        )
    if requested is None:
        warnings.warn(
            "AffinityLogger writes no TensorBoard events: they need "
            "TensorFlow, which is not installed (the CSV files and the "
            "figure are written). Pass tensorboard=False to silence this.",
            stacklevel=3,
        )
    return False


def _tag(name):
    """A task name for a TensorBoard tag: `/`, `-`, `>` and `%` (and
    anything else unsafe) percent-encoded, so that `source->target` splits
    one way only."""
    return urllib.parse.quote(str(name), safe="._~ ")


class _Events:
    """TensorBoard events of the per-epoch matrices, the writer made lazily."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self._writer = None

    def write(self, epoch, frame):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=epoch):
            for source in frame.index:
                for target in frame.columns:
                    value = frame.loc[source, target]
                    if np.isfinite(value):
                        tf.summary.scalar(
                            f"affinity/{_tag(source)}->{_tag(target)}", value
                        )
            image = tf.io.decode_png(
                figures.affinity_png_bytes(frame), channels=3
            )
            tf.summary.image("affinity/matrix", image[None])
        self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
