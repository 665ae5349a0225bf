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
