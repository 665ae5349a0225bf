"""Batches and per-task example sets from the data a user passes.

`data` may be arrays `(x, y)` or `(x, y, sample_weight)`, a batched
`tf.data.Dataset` or a `keras.utils.PyDataset`, as for `model.fit`. Labels
become a dict keyed by task. Nothing here is traced: the diagnostics, the
transfer tools and SVD task weights read at most a few thousand examples,
as NumPy arrays. A leaf module (TensorFlow, Keras and NumPy only).
"""

import keras
import numpy as np
from keras import tree

from tag_keras._tensorflow import tf


def batches(data, batch_size, tasks, max_batches=None):
    """Yields `(x, y, sample_weight)` batches as NumPy, `y` keyed by task.

    Arrays are cut into `batch_size` slices in order; a dataset keeps its
    own batches.
    """
    for count, batch in enumerate(_raw_batches(data, batch_size)):
        if max_batches is not None and count >= max_batches:
            return
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        x = tree.map_structure(np.asarray, x)
        yield x, labels_by_task(y, tasks), _numpy_or_none(sample_weight)


def first_batch(data):
    """`(x, y)` of the first batch (`y` as given), NumPy.

    Raises:
        ValueError: if `data` holds no examples.
    """
    check_data(data)
    batch = next(iter(_raw_batches(data, 32)), None)
    if batch is None or not len(tree.flatten(batch)[0]):
        raise ValueError(
            "`data` holds no examples. Received: empty data "
            f"of type {type(data).__name__}."
        )
    x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
    return tree.map_structure(np.asarray, x), y


def examples(data, tasks, max_samples):
    """`(x, y)`: the first `max_samples` examples, `y` a dict by task.

    Labels keep their NaN (missing) entries.
    """
    xs, ys, total = [], {t: [] for t in tasks}, 0
    for x, y, _ in batches(data, 256, tasks):
        xs.append(x)
        for task in tasks:
            ys[task].append(y[task])
        total += len(tree.flatten(x)[0])
        if total >= max_samples:
            break
    if not total:
        raise ValueError(
            "`data` holds no examples. Received: empty data "
            f"of type {type(data).__name__}."
        )
    x = tree.map_structure(lambda *a: np.concatenate(a)[:max_samples], *xs)
    return x, {t: np.concatenate(v)[:max_samples] for t, v in ys.items()}


def map_batches(function, x, batch_size=256):
    """`function` applied to `x` in slices of `batch_size` rows; the
    results as one NumPy array."""
    size = len(tree.flatten(x)[0])
    return np.concatenate(
        [
            np.asarray(
                function(slice_inputs(x, slice(start, start + batch_size)))
            )
            for start in range(0, size, batch_size)
        ]
    )


def slice_inputs(x, part):
    """`x` (any structure of arrays) cut to the rows `part`."""
    return tree.map_structure(lambda a: a[part], x)


def slices(x, y, batch_size):
    """Yields `(x, y)` slices of `batch_size` examples (the last shorter)."""
    size = len(y)
    for start in range(0, size, batch_size):
        part = slice(start, start + batch_size)
        yield slice_inputs(x, part), y[part]


def labels_by_task(y, tasks):
    """Labels as a dict keyed by task (a list follows sorted task names)."""
    if isinstance(y, dict):
        unknown = sorted(set(y) - set(tasks))
        if unknown:
            raise ValueError(
                f"The labels name tasks the model does not have: {unknown}. "
                f"The model's tasks: {list(tasks)}."
            )
        return {t: np.asarray(v) for t, v in y.items()}
    if isinstance(y, (list, tuple)):
        if len(y) != len(tasks):
            raise ValueError(
                f"Labels given as a list need one entry per task "
                f"{sorted(tasks)}. Received: {len(y)} entries."
            )
        return {t: np.asarray(v) for t, v in zip(sorted(tasks), y)}
    if len(tasks) == 1:
        return {tasks[0]: np.asarray(y)}
    raise ValueError(
        f"Labels must be a dict keyed by task for a model with tasks "
        f"{list(tasks)}. Received: labels of type {type(y).__name__}."
    )


def check_data(data, name="data"):
    """Raises unless `data` is arrays, a `tf.data.Dataset` or a PyDataset."""
    if isinstance(data, (tf.data.Dataset, keras.utils.PyDataset)):
        return
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return
    raise TypeError(
        f"`{name}` must be `(x, y)` or `(x, y, sample_weight)` arrays, a "
        "batched tf.data.Dataset or a keras.utils.PyDataset. Received: "
        f"{name} of type {type(data).__name__}."
    )


def _raw_batches(data, batch_size):
    check_data(data)
    if isinstance(data, tf.data.Dataset):
        yield from data.as_numpy_iterator()
    elif isinstance(data, keras.utils.PyDataset):
        for index in range(data.num_batches):
            yield data[index]
    else:
        x, y = data[0], data[1]
        weight = data[2] if len(data) == 3 else None
        size = len(tree.flatten(x)[0])
        for start in range(0, size, batch_size):
            part = slice(start, start + batch_size)
            cut = [
                slice_inputs(tree.map_structure(np.asarray, v), part)
                for v in (x, y, weight)
                if v is not None
            ]
            yield tuple(cut)


def _numpy_or_none(value):
    return None if value is None else tree.map_structure(np.asarray, value)
