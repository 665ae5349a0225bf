"""`EpochAffinity`: the per-epoch matrix, set before user callbacks run."""

import warnings

import keras


class EpochAffinity(keras.callbacks.Callback):
    """Ends each epoch of the model's `AffinityRecorder` before other
    callbacks run, so `epoch_affinity` and `fit_affinity` are set for them.

    `TaskAffinityModel.fit` puts it first, so every other callback sees
    them. `fit_affinity` is the mean over every step measured so far, read
    at the end of the last epoch: it keeps the whole run's matrix when a
    later callback rolls the weights (and the affinity state with them)
    back, as `EarlyStopping(restore_best_weights=True)` does.

    Also tells the model's training method that an epoch begins or ends,
    and warns once per `fit` when pairs were skipped.
    """

    def __init__(self):
        super().__init__()
        self._warned = False

    @classmethod
    def first_in(cls, callbacks, model):
        """`callbacks` (a list or a `CallbackList`) with a new one first.

        Callbacks that record what was measured (their class sets
        `records_measurements = True`, as `AffinityLogger` does) come
        right after it, before every other callback, whatever order they
        were given in: a backup (`BackupAndRestore`) taken in the same
        hook then never records a step or an epoch whose rows were not
        written yet, so a process killed between the two hooks loses no
        row.
        """
        tracker = cls()
        listed = (
            callbacks.callbacks
            if isinstance(callbacks, keras.callbacks.CallbackList)
            else list(callbacks or [])
        )
        recorders = [
            c for c in listed if getattr(c, "records_measurements", False)
        ]
        ordered = [
            tracker,
            *recorders,
            *(c for c in listed if c not in recorders),
        ]
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks.callbacks[:] = ordered
            tracker.set_model(model)
            return callbacks
        return ordered

    def on_train_begin(self, logs=None):
        if self.model.training_method is not None:
            self.model.training_method.attach(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        model = self.model
        if model.training_method is not None:
            model.training_method.on_epoch_begin()
        if model.has_task_names:
            model.affinity_recorder.begin_epoch()

    def on_epoch_end(self, epoch, logs=None):
        model = self.model
        if model.training_method is not None:
            model.training_method.on_epoch_end()
        if not model.has_task_names:
            return
        model.affinity_recorder.end_epoch()
        self._warn_skips_once()

    def on_train_end(self, logs=None):
        self._warn_skips_once()

    def _warn_skips_once(self):
        if self._warned or not self.model.has_task_names:
            return
        skipped = self.model.affinity_recorder.state.skips.numpy()
        rate = _learning_rate(self.model)
        if skipped.sum() > 0 and rate == 0:
            self._warned = True
            warnings.warn(
                "Affinity: the learning rate is 0, so every lookahead step "
                "leaves the shared weights where they are and affinity, "
                "which is divided by the rate (scale_by_learning_rate), is "
                "undefined: every pair was skipped. Measure while the rate "
                "is positive.",
                stacklevel=2,
            )
        elif skipped.sum() > 0:
            self._warned = True
            warnings.warn(
                f"Affinity: {int((skipped > 0).sum())} (source, target) "
                f"pairs were skipped on some measured steps "
                f"({int(skipped.sum())} skips in all) because a task had no "
                "labels in the batch or a zero or non-finite loss. Skipped "
                "pairs do not enter the averages; see "
                "`model.affinity_skipped()` and `affinity_counts()`.",
                stacklevel=2,
            )


def _learning_rate(model):
    """The optimizer's current learning rate as a float (None if none)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    try:
        return float(optimizer.learning_rate.numpy())
    except (AttributeError, TypeError, ValueError):
        return None
