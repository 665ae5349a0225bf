"""`AffinityState`: the running sums of measured affinities, as weights."""

import keras
import numpy as np
import tensorflow as tf

from tag_keras.measure import affinity as affinity_lib


class AffinityState(keras.layers.Layer):
    """Accumulates per-step affinity matrices; a layer of the model.

    Holds, as non-trainable float64 weights (saved with the model, restored
    by `keras.callbacks.BackupAndRestore`), for every (source, target)
    pair: the sum of the measured values, the sum of their squares, how
    many steps entered them, how many measured steps skipped them, the
    last measured step's matrix (NaN where skipped) and that step's number
    (-1 before any).

    Args:
        num_tasks: The matrix size.
        **kwargs: Layer arguments such as `name`.
    """

    def __init__(self, num_tasks, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = int(num_tasks)
        n = self.num_tasks

        def weight(name, shape=(n, n), fill=0.0, dtype="float64"):
            return self.add_weight(
                shape=shape, initializer=keras.initializers.Constant(fill),
                dtype=dtype, trainable=False,
                aggregation="only_first_replica", name=name)

        self.sums = weight("affinity_sum")
        self.squares = weight("affinity_sum_of_squares")
        self.counts = weight("affinity_count")
        self.skips = weight("affinity_skip_count")
        self.last = weight("affinity_last", fill=np.nan)
        self.last_step = weight("affinity_last_step", shape=(), fill=-1,
                                dtype="int64")
        self.built = True

    def record(self, z, source_ok, target_ok, step):
        """Adds one step's `[n, n]` matrix; returns a tensor to wait on.

        Pairs whose source or target is not usable, or whose value is not
        finite, are counted as skipped and left out of the sums.
        """
        z = tf.cast(z, "float64")
        valid = affinity_lib.valid_pairs(z, source_ok, target_ok)
        kept = tf.where(valid, z, tf.zeros_like(z))
        as_count = tf.cast(valid, "float64")
        self.sums.assign_add(kept)
        self.squares.assign_add(kept * kept)
        self.counts.assign_add(as_count)
        self.skips.assign_add(1.0 - as_count)
        nan = tf.fill(tf.shape(z), tf.constant(np.nan, "float64"))
        self.last.assign(tf.where(valid, z, nan))
        self.last_step.assign(tf.cast(step, "int64"))
        with tf.control_dependencies([v.value for v in self.weights]):
            return tf.identity(valid[0, 0])

    def totals(self):
        """`(sums, counts)` arrays: a snapshot to take differences of."""
        return self.sums.numpy(), self.counts.numpy()

    def mean(self):
        """`[n, n]` mean over the steps each pair entered (NaN: never)."""
        return affinity_lib.mean_of(*self.totals())

    def stderr(self):
        """`[n, n]` standard error of the mean: std (ddof=1) / sqrt(count).

        NaN where fewer than two steps entered a pair.
        """
        return affinity_lib.stderr_of(self.sums.numpy(),
                                      self.squares.numpy(),
                                      self.counts.numpy())

    def last_measured(self):
        """`(step, [n, n] array)` of the last measured step, or None."""
        step = int(self.last_step.numpy())
        return None if step < 0 else (step, self.last.numpy())

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks}
