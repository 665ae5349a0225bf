"""tf.data's autotuning thread and the wait when an iterator is deleted.

Outside Keras and tag_keras: the array pipeline Keras builds (a gather per
batch, parallel map, prefetch), read by a CPU-busy consumer (matrix
products for `--busy_seconds` seconds per batch, as a training step), then the
iterator deleted, as `fit` does at its end. Each run prints how long the
deletion took, with tf.data's autotuning on (its default) and off (what
`TaskAffinityModel` sets for arrays; `_keras_private.without_autotune_thread`).

Usage:
  python -m experiments.benchmarks.iterator_stall --iterators=4 \
      --busy_seconds=6
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_ITERATORS = flags.DEFINE_integer("iterators", 4,
                                  "Iterators per setting.", lower_bound=1)
_BUSY = flags.DEFINE_float("busy_seconds", 6.0, "Busy seconds per batch.",
                           lower_bound=0.0)


def _pipeline(autotune):
    import numpy as np
    import tensorflow as tf

    x = np.random.default_rng(0).random((512, 64), dtype=np.float32)
    indices = tf.data.Dataset.range(1).map(
        lambda _: tf.range(512, dtype=tf.int64)).prefetch(1)
    batches = indices.flat_map(lambda i: tf.data.Dataset.from_tensor_slices(
        tf.reshape(i, [8, 64])))
    dataset = tf.data.Dataset.zip(
        (batches, tf.data.Dataset.from_tensors(tf.constant(x)).repeat()))
    dataset = dataset.map(lambda i, d: tf.gather(d, i),
                          num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = autotune
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import tensorflow as tf

    matrix = tf.random.normal((1500, 1500))

    @tf.function
    def burn(batch):
        product = matrix
        for _ in range(20):
            product = tf.matmul(product, matrix) / 1500.0
        return tf.reduce_sum(product) + tf.reduce_sum(batch)

    print(f"{_ITERATORS.value} iterators of 8 batches per setting, "
          f"{_BUSY.value:g} busy seconds per batch:")
    for autotune in (True, False):
        dataset = _pipeline(autotune)
        waits = []
        for _ in range(_ITERATORS.value):
            iterator = iter(dataset)
            for batch in iterator:
                start = time.perf_counter()
                while time.perf_counter() - start < _BUSY.value:
                    burn(batch).numpy()
            start = time.perf_counter()
            del iterator
            waits.append(time.perf_counter() - start)
        print(f"  autotune {'on ' if autotune else 'off'}: deleting the "
              "iterator took " + ", ".join(f"{w:.2f}" for w in waits)
              + " s")


if __name__ == "__main__":
    app.run(main)
