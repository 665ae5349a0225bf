"""Wall-time callbacks: per epoch (with its step count) and per step."""

import time

import keras
import numpy as np


class EpochTimer(keras.callbacks.Callback):
    """Keeps each epoch's wall time (`seconds`) and step count (`steps`)."""

    def __init__(self):
        super().__init__()
        self.seconds, self.steps = [], []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class StepTimer(keras.callbacks.Callback):
    """Keeps the wall time of each training step (`train_function` call)."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    def median_ms(self):
        """Median step time in ms, the first (tracing) steps left out."""
        steady = self.seconds[5:] if len(self.seconds) > 10 else self.seconds
        return 1000 * float(np.median(steady))


class EpochProgress(EpochTimer):
    """Prints one line per epoch: losses, seconds per epoch, the ETA.

    The ETA is for this network: the mean epoch time so far times the
    epochs left before `epochs` (early stopping may end sooner).

    Args:
        epochs: The largest number of epochs of the fit.
        label: Printed first (e.g. the network's tasks).
        log: Where the line goes (default `print`).
    """

    def __init__(self, epochs, label="", log=print):
        super().__init__()
        self.epochs, self.label, self.log = epochs, label, log

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        logs = logs or {}
        totals = [k for k in ("loss", "val_loss") if k in logs]
        tasks = [k for k in logs if k.endswith("_loss") and k not in totals]
        losses = ", ".join(f"{k} {logs[k]:.4g}" for k in totals + tasks)
        mean = float(np.mean(self.seconds))
        left = max(self.epochs - epoch - 1, 0)
        prefix = f"{self.label} " if self.label else ""
        self.log(f"    {prefix}epoch {epoch + 1}/{self.epochs}: {losses}; "
                 f"{self.seconds[-1]:.1f} s/epoch, ETA {mean * left:.0f} s")
