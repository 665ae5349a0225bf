"""The running sums in float64 on the host (Keras's JAX backend).

Keras's JAX backend keeps a float64 variable in float32 unless JAX's
process-wide x64 flag is set, which a library must not set. So on JAX the
measured step sends each step's matrix (float32, as every backend computes
it) to the host (`jax.experimental.io_callback`), and the sums are kept
here in NumPy float64: the same sums, squares, counts, skips (and, for
single sources, the last step) as `AffinityState` and `GroupAffinityState`
keep on TensorFlow, read through the same methods, so the recorder, the
epoch bookkeeping and `AffinityLogger` read either alike.

Checkpoints: each array's float64 bits are also held in an int32 weight of
this layer (`<name>_bits`, the array's shape plus a last axis of 2), so
`save_weights`, `BackupAndRestore` and `keras.saving` keep the sums
exactly: the layer writes the bits from the arrays when it is saved
(`save_own_variables`) and reads the arrays back when it is loaded
(`load_own_variables`). Between those the arrays are the truth; the
weights may lag (`get_weights()` is not a checkpoint of the sums).
"""

from __future__ import annotations

import keras
import numpy as np

from tag_keras.measure import affinity as affinity_lib


def to_bits(array):
    """An 8-byte array as int32 pairs: shape + (2,), the same bytes."""
    array = np.ascontiguousarray(array)
    return array.reshape(-1).view(np.int32).reshape(*array.shape, 2)


def from_bits(bits, dtype, shape):
    """The inverse of `to_bits`."""
    flat = np.ascontiguousarray(np.asarray(bits), np.int32).reshape(-1)
    return flat.view(dtype).reshape(shape).copy()


class HostValue:
    """One float64 (or int64) array, read with `numpy()` like a variable,
    with its bits in a weight of `layer` for checkpoints."""

    def __init__(self, layer, name, shape, fill=0.0, dtype=np.float64):
        self.value = np.full(shape, fill, dtype=dtype)
        initial = to_bits(self.value)
        self.variable = layer.add_weight(
            shape=initial.shape,
            initializer=lambda shape, dtype=None: keras.ops.convert_to_tensor(
                initial, "int32"
            ),
            dtype="int32",
            trainable=False,
            name=f"{name}_bits",
        )

    def numpy(self):
        return self.value.copy()

    def save(self):
        """Writes the array's bits into the weight."""
        self.variable.assign(to_bits(self.value))

    def load(self):
        """Reads the array back from the weight's bits."""
        self.value = from_bits(
            keras.ops.convert_to_numpy(self.variable.value),
            self.value.dtype,
            self.value.shape,
        )


class HostRunningSums(keras.layers.Layer):
    """`RunningSums` (`tag_keras.measure.state`) kept in NumPy float64.

    Args:
        rows: The number of sources.
        num_tasks: n, the targets.
        prefix: The weights' name prefix (`<prefix>_sum_bits`, ...).
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(self, rows, num_tasks, prefix, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = int(num_tasks)
        self._shape = (int(rows), self.num_tasks)
        self._prefix = prefix
        self.values: list[HostValue] = []
        self.sums = self.host_value("sum")
        self.squares = self.host_value("sum_of_squares")
        self.counts = self.host_value("count")
        self.skips = self.host_value("skip_count")
        self.built = True

    def host_value(self, name, shape=None, fill=0.0, dtype=np.float64):
        """A `HostValue` of the state (the sums' shape by default)."""
        value = HostValue(
            self,
            f"{self._prefix}_{name}",
            self._shape if shape is None else shape,
            fill,
            dtype,
        )
        self.values.append(value)
        return value

    def accumulate(self, z, source_ok, target_ok, rows=None):
        """Adds `[s, n]` values `z` to the sums of `rows` (all rows in
        order when None); returns the `[s, n]` pairs that entered.

        A pair enters when its source and target were usable and its value
        is finite; otherwise it counts as skipped.
        """
        z = np.asarray(z, np.float64)
        valid = (
            np.asarray(source_ok, bool)[:, None]
            & np.asarray(target_ok, bool)[None, :]
            & np.isfinite(z)
        )
        kept = np.where(valid, z, 0.0)
        tables = (kept, kept * kept, valid, ~valid)
        if rows is None:
            self.add(*tables)
        else:  # a row given twice adds twice, as `tf.scatter_nd` does
            where = np.asarray(rows, np.int64)
            for value, add in zip(self._tables(), tables):
                np.add.at(value.value, where, add)
        return valid

    def _tables(self):
        return self.sums, self.squares, self.counts, self.skips

    def add(self, sums, squares, counts, skips):
        """Adds running sums kept elsewhere (a JAX loop's float32 device
        sums, `AffinityMeter.fold`) into these float64 ones."""
        for value, add in zip(self._tables(), (sums, squares, counts, skips)):
            value.value += np.asarray(add, np.float64)

    def save(self):
        """Writes every array's bits into the layer's weights."""
        for value in self.values:
            value.save()

    def load(self):
        """Reads every array back from the layer's weights."""
        for value in self.values:
            value.load()

    def save_own_variables(self, store):
        self.save()
        super().save_own_variables(store)

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.load()

    def totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        return self.sums.numpy(), self.counts.numpy()

    def mean(self):
        """`[rows, n]` mean over the steps each pair entered (NaN: never)."""
        return affinity_lib.mean_of(*self.totals())

    def stderr(self):
        """`[rows, n]` standard error of the mean (NaN below two steps)."""
        return affinity_lib.stderr_of(
            self.sums.numpy(), self.squares.numpy(), self.counts.numpy()
        )


class HostAffinityState(HostRunningSums):
    """Accumulates per-step `[n, n]` affinity matrices in float64 NumPy
    arrays, with the last measured step's matrix and number.

    Args:
        num_tasks: The matrix size n.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(self, num_tasks, **kwargs):
        super().__init__(num_tasks, num_tasks, "affinity", **kwargs)
        self.last = self.host_value("last", fill=np.nan)
        self.last_step = self.host_value("last_step", (), -1, np.int64)

    def record(self, z, source_ok, target_ok, step):
        """Adds one step's `[n, n]` matrix (NumPy, on the host)."""
        valid = self.accumulate(z, source_ok, target_ok)
        self.last.value = np.where(valid, np.asarray(z, np.float64), np.nan)
        self.last_step.value = np.asarray(int(step), np.int64)

    def set_last(self, matrix, step):
        """Sets the last measured step's `[n, n]` matrix (NaN: skipped)."""
        self.last.value = np.asarray(matrix, np.float64).copy()
        self.last_step.value = np.asarray(int(step), np.int64)

    def last_measured(self):
        """`(step, [n, n] array)` of the last measured step, or None."""
        step = int(self.last_step.value)
        return None if step < 0 else (step, self.last.numpy())


class HostGroupAffinityState(HostRunningSums):
    """`GroupAffinityState` kept on the host: one row per group source.

    Args:
        num_sources: P, the group sources.
        num_tasks: n.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(self, num_sources, num_tasks, **kwargs):
        super().__init__(num_sources, num_tasks, "group_affinity", **kwargs)
        self.num_sources = int(num_sources)

    def record(self, indices, z, source_ok, target_ok):
        """Adds `[s, n]` rows `z` of the groups `indices` (NumPy)."""
        self.accumulate(z, source_ok, target_ok, rows=indices)
