"""`HostAffinityState`: the running sums in float64 on the host.

Keras's JAX backend keeps a float64 variable in float32 unless JAX's
process-wide x64 flag is set, which a library must not set. So on JAX the
measured step sends each step's `[n, n]` matrix (float32, as every backend
computes it) to the host (`jax.experimental.io_callback`), and the sums are
kept here in NumPy float64: the same sums, squares, counts, skips and last
step as `AffinityState` keeps on TensorFlow, read through the same
methods, so the recorder, the epoch bookkeeping and `AffinityLogger` read
either alike.

Unlike `AffinityState` these sums are not model weights: a checkpoint of a
JAX model does not hold them (`BackupAndRestore` resumes the training, not
the measurement).
"""

import numpy as np

from tag_keras.measure import affinity as affinity_lib


class HostValue:
    """One float64 (or int64) array, read with `numpy()` like a variable."""

    def __init__(self, shape, fill=0.0, dtype=np.float64):
        self.value = np.full(shape, fill, dtype=dtype)

    def numpy(self):
        return self.value.copy()


class HostAffinityState:
    """Accumulates per-step affinity matrices in float64 NumPy arrays.

    Args:
        num_tasks: The matrix size n.
    """

    def __init__(self, num_tasks):
        self.num_tasks = int(num_tasks)
        shape = (self.num_tasks, self.num_tasks)
        self.sums, self.squares = HostValue(shape), HostValue(shape)
        self.counts, self.skips = HostValue(shape), HostValue(shape)
        self.last = HostValue(shape, np.nan)
        self.last_step = HostValue((), -1, np.int64)

    def record(self, z, source_ok, target_ok, step):
        """Adds one step's `[n, n]` matrix (NumPy, on the host).

        A pair enters the sums when its source and target were usable and
        its value is finite; otherwise it counts as skipped.
        """
        z = np.asarray(z, np.float64)
        valid = (
            np.asarray(source_ok, bool)[:, None]
            & np.asarray(target_ok, bool)[None, :]
            & np.isfinite(z)
        )
        kept = np.where(valid, z, 0.0)
        self.sums.value += kept
        self.squares.value += kept * kept
        self.counts.value += valid
        self.skips.value += ~valid
        self.last.value = np.where(valid, z, np.nan)
        self.last_step.value = np.asarray(int(step), np.int64)

    def totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        return self.sums.numpy(), self.counts.numpy()

    def mean(self):
        """`[n, n]` mean over the steps each pair entered (NaN: never)."""
        return affinity_lib.mean_of(*self.totals())

    def stderr(self):
        """`[n, n]` standard error of the mean (NaN below two steps)."""
        return affinity_lib.stderr_of(
            self.sums.numpy(), self.squares.numpy(), self.counts.numpy()
        )

    def last_measured(self):
        """`(step, [n, n] array)` of the last measured step, or None."""
        step = int(self.last_step.value)
        return None if step < 0 else (step, self.last.numpy())
