"""Held-out batches for validation affinity, cycled forever."""

from tag_keras import _keras_private
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


def _split(data):
    if isinstance(data, tuple) and len(data) in (2, 3):
        return (*data, None)[:3]
    return data, None, None
