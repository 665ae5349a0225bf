"""CandidateLogger: how often each IT-MTL candidate won, per epoch."""

from __future__ import annotations

import os

import keras

from tag_keras import _distribute
from tag_keras import _files
from tag_keras.mtl.it_mtl import ITMTL


class CandidateLogger(keras.callbacks.Callback):
    """Writes how often each IT-MTL candidate won, one CSV row per epoch.

    Columns: `epoch`, `steps`, then one per candidate label. Only the chief
    worker writes. Rows are flushed as they are written.

    Args:
        path: The CSV file.
        append: Keep existing rows (for resumed training) instead of
            starting a new file.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False):
        super().__init__()
        self.path = os.fspath(path)
        self.append = append
        self._file = None

    def _method(self):
        method = getattr(self.model, "training_method", None)
        if not isinstance(method, ITMTL):
            # A misconfigured model, not an argument of the wrong type.
            raise ValueError(  # noqa: TRY004
                "CandidateLogger needs a TaskAffinityModel trained with "
                "training_method=tag_keras.mtl.ITMTL(...). Received: a "
                f"model with training_method={type(method).__name__}."
            )
        return method

    def on_train_begin(self, logs=None):
        labels = self._method().candidate_labels
        self._file = None
        if _distribute.is_chief(self.model.distribute_strategy):
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._file = _files.RowFile(
                self.path,
                ["epoch", "steps", *labels],
                keep=(lambda row: True) if self.append else None,
            )

    def on_epoch_end(self, epoch, logs=None):
        counts = self._method().epoch_counts
        if self._file is None or counts is None:
            return
        self._file.write([[epoch, sum(counts.values()), *counts.values()]])

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
