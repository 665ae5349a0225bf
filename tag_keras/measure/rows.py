"""A matrix built one row at a time in the graph, whatever its row count.

Each affinity row is a lookahead: a tentative optimizer step and, for the
lookahead method, a forward pass of the whole model (every task head). An
unrolled Python loop over n sources would trace n such passes, so tracing
time and graph memory would grow with n² (each pass holds n heads). A
`tf.while_loop` traces the row once and runs it n times, one in flight, so
tracing grows with n and the extra memory is that of one lookahead. On
Keras's JAX backend `jax.lax.map` does the same for XLA (against the
unrolled rows it replaced: the same step time, the first fit at 40 tasks
2.5x faster and 40% less peak memory; experiments/benchmarks/results/
backends/README.md).

The loop is kept a functional `While` op (`_keras_private.keep_loop_whole`)
rather than lowered into the step's graph: a lowered loop makes the
executor track loop frames for every op of the step, which cost a 50-task
MLP about a fifth of its measured step.

A replica's while loop cannot hold the cross-replica synchronisation each
lookahead makes, so under `tf.distribute` with several replicas the rows
are unrolled instead, each waiting for the one before.
"""

import keras

from tag_keras import _distribute
from tag_keras import _keras_private
from tag_keras._tensorflow import tf


def one_at_a_time(count, row):
    """`[count, ...]` float32: `row(i)` for `i` in `range(count)`, stacked.

    Args:
        count: The number of rows (a Python int, at least 1).
        row: `i -> tensor`; `i` is a scalar int32 tensor in the loop, or a
            Python int when the rows are unrolled.
    """
    if count < 1:
        raise ValueError(
            f"one_at_a_time needs a row. Received: count={count}."
        )
    if keras.backend.backend() == "jax":
        # `lax.map`: the row is traced and compiled once, run n times.
        import jax

        return jax.lax.map(
            lambda i: keras.ops.cast(row(i), "float32"),
            keras.ops.arange(count, dtype="int32"),
        )
    if _distribute.num_replicas() > 1 or tf.executing_eagerly():
        rows, after = [], []
        for i in range(count):
            with tf.control_dependencies(after):
                rows.append(tf.cast(row(i), tf.float32))
            after = [rows[-1]]
        return tf.stack(rows)

    def body(i, rows):
        return i + 1, rows.write(i, tf.cast(row(i), tf.float32))

    last, rows = tf.while_loop(
        lambda i, _: i < count,
        body,
        [tf.constant(0), tf.TensorArray(tf.float32, size=count)],
        parallel_iterations=1,
    )
    _keras_private.keep_loop_whole(last)
    return rows.stack()
