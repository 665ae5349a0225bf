"""Held-out batches for validation affinity, cycled forever.

`cycle` makes a `tf.data` iterator that TensorFlow's traced step advances;
`numpy_cycle` a Python iterator of NumPy batches that Keras's JAX backend
reads on the host before each measured step.
"""

from collections.abc import Mapping

from tag_keras import _keras_private
from tag_keras import _tensorflow as tensorflow
from tag_keras._tensorflow import tf


def cycle(data, batch_size):
    """An endless iterator of `(x, y, sample_weight)` batches of `data`.

    Args:
        data: A batched `tf.data.Dataset`, a `keras.utils.PyDataset`, a
            generator function's output, or an `(x, y)` / `(x, y, weights)`
            tuple of arrays (batched here with `batch_size`).
        batch_size: Batch size for arrays.

    Returns:
        A `tf.data` iterator, created eagerly so that a traced train step
        advances it on every call.
    """
    if isinstance(data, tf.data.Dataset):
        dataset = data
    else:
        x, y, sample_weight = _split(data)
        dataset = _keras_private.dataset_from_arrays(
            x, y, sample_weight, batch_size
        )
    return iter(dataset.repeat())


def numpy_cycle(data, batch_size):
    """An endless iterator of NumPy `(x, y, sample_weight)` batches of
    `data` (the same forms as `cycle`), in the same order as `cycle`."""
    if tensorflow.is_loaded() and isinstance(data, tf.data.Dataset):
        return map(_plain, data.repeat().as_numpy_iterator())
    one_pass = _keras_private.numpy_batches(*_split(data), batch_size)

    def forever():
        while True:
            batches = 0
            for batch in one_pass():
                batches += 1
                yield _plain(batch)
            if not batches:
                raise ValueError(
                    "`affinity_data` gave no batches on a new pass (a "
                    "generator is read once): pass arrays, a "
                    "keras.utils.PyDataset or an endless generator."
                )

    return forever()


def _plain(structure):
    """`structure` with plain dicts, lists and tuples (the model keeps
    `affinity_data` in Keras's tracked containers, which JAX cannot read
    as arguments)."""
    if isinstance(structure, Mapping):
        return {k: _plain(v) for k, v in structure.items()}
    if isinstance(structure, tuple):
        return tuple(_plain(v) for v in structure)
    if isinstance(structure, list):
        return [_plain(v) for v in structure]
    return structure


def _split(data):
    if isinstance(data, tuple) and len(data) in (2, 3):
        return (*data, None)[:3]
    return data, None, None
