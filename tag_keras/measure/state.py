"""`AffinityState`: the running sums of measured affinities, as weights."""

import keras
import numpy as np

from tag_keras._tensorflow import tf
from tag_keras.measure import affinity as affinity_lib


class RunningSums(keras.layers.Layer):
    """The one running-sum accumulator of measured affinities.

    Holds, as non-trainable float64 weights of shape `[rows, n]` (saved
    with the model, restored by `keras.callbacks.BackupAndRestore`), for
    every (source, target) pair: the sum of the measured values, the sum
    of their squares, how many steps entered them and how many measured
    steps skipped them. `AffinityState` (a source per task) and
    `GroupAffinityState` (a source per group) are its two uses.

    Args:
        rows: The number of sources.
        num_tasks: n, the targets.
        prefix: The weights' name prefix (`<prefix>_sum`, ...).
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(self, rows, num_tasks, prefix, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = int(num_tasks)
        self._shape = (int(rows), self.num_tasks)
        self.sums = self.state_weight(f"{prefix}_sum")
        self.squares = self.state_weight(f"{prefix}_sum_of_squares")
        self.counts = self.state_weight(f"{prefix}_count")
        self.skips = self.state_weight(f"{prefix}_skip_count")

    def state_weight(self, name, shape=None, fill=0.0, dtype="float64"):
        """A non-trainable weight of the state (first replica's value)."""
        return self.add_weight(
            shape=self._shape if shape is None else shape,
            initializer=keras.initializers.Constant(fill),
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
            name=name,
        )

    def accumulate(self, z, source_ok, target_ok, rows=None):
        """Adds `[s, n]` values `z` to the sums of `rows` (all rows in
        order when None); returns the `[s, n]` pairs that entered.

        Pairs whose source or target is not usable, or whose value is not
        finite, are counted as skipped and left out of the sums.
        """
        z = tf.cast(z, "float64")
        valid = affinity_lib.valid_pairs(z, source_ok, target_ok)
        kept = tf.where(valid, z, tf.zeros_like(z))
        as_count = tf.cast(valid, "float64")
        if rows is None:

            def place(values):
                return values
        else:
            where = tf.cast(rows, tf.int64)[:, tf.newaxis]
            shape = tf.constant(self._shape, tf.int64)

            def place(values):
                return tf.scatter_nd(where, values, shape)

        self.sums.assign_add(place(kept))
        self.squares.assign_add(place(kept * kept))
        self.counts.assign_add(place(as_count))
        self.skips.assign_add(place(1.0 - as_count))
        return valid

    def done(self, valid):
        """A tensor to wait on: after every weight's update."""
        with tf.control_dependencies([v.value for v in self.weights]):
            return tf.identity(valid[0, 0])

    def totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        return self.sums.numpy(), self.counts.numpy()

    def mean(self):
        """`[rows, n]` mean over the steps each pair entered (NaN: never)."""
        return affinity_lib.mean_of(*self.totals())

    def stderr(self):
        """`[rows, n]` standard error of the mean: std (ddof=1) /
        sqrt(count). NaN where fewer than two steps entered a pair.
        """
        return affinity_lib.stderr_of(
            self.sums.numpy(), self.squares.numpy(), self.counts.numpy()
        )


class AffinityState(RunningSums):
    """Accumulates per-step affinity matrices; a layer of the model.

    The `RunningSums` of the `[n, n]` matrix, with the last measured
    step's matrix (NaN where skipped) and that step's number (-1 before
    any).

    Args:
        num_tasks: The matrix size.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(self, num_tasks, **kwargs):
        super().__init__(num_tasks, num_tasks, "affinity", **kwargs)
        self.last = self.state_weight("affinity_last", fill=np.nan)
        self.last_step = self.state_weight(
            "affinity_last_step", shape=(), fill=-1, dtype="int64"
        )
        self.built = True

    def record(self, z, source_ok, target_ok, step):
        """Adds one step's `[n, n]` matrix; returns a tensor to wait on."""
        z = tf.cast(z, "float64")
        valid = self.accumulate(z, source_ok, target_ok)
        nan = tf.fill(tf.shape(z), tf.constant(np.nan, "float64"))
        self.last.assign(tf.where(valid, z, nan))
        self.last_step.assign(tf.cast(step, "int64"))
        return self.done(valid)

    def last_measured(self):
        """`(step, [n, n] array)` of the last measured step, or None."""
        step = int(self.last_step.numpy())
        return None if step < 0 else (step, self.last.numpy())

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks}
