"""Partial labels: examples whose label is NaN are masked, per task.

Keras's losses turn a NaN label into a NaN loss, a NaN gradient and NaN
weights. `mask_missing_labels` runs before every training and evaluation
step of a `TaskAffinityModel`: for each task with float labels, an example
whose label (any entry of it) is NaN gets label 0 and sample weight 0, and
the labelled examples get weight `batch / labelled`, so a loss reduced by
the mean over the batch (Keras's default, `sum_over_batch_size`) is the
mean over the labelled examples, exactly as Keras treats a mask. A batch
without NaN labels gives the same loss as without masking (weights of
exactly one). A task with no label in a batch has a zero loss there: it
does not train, and the affinity step skips it (`has_labels`).

The diagnostics and the transfer tools read labels as NumPy:
`labelled` and `fill_missing` are the same rule there, and
`task_examples` gathers the examples labelled for one task.
"""

import keras
import numpy as np
from keras import ops
from keras import tree

from tag_keras import _data


def mask_missing_in_batch(data):
    """A batch `(x, y, sample_weight)` with NaN labels masked."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y, sample_weight = mask_missing_labels(y, sample_weight)
    return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)


def mask_missing_labels(y, sample_weight):
    """`(y, sample_weight)` with NaN labels masked (see the module).

    Args:
        y: Labels as a dict keyed by task; anything else is returned as is.
        sample_weight: None, one tensor for every task, or a dict.

    Returns:
        `(y, sample_weight)`: dicts for the tasks with float labels
        (others unchanged).
    """
    if not isinstance(y, dict) or not any(_is_float(v) for v in y.values()):
        return y, sample_weight
    labels, weights = {}, {}
    for task, values in y.items():
        weight = (
            sample_weight.get(task)
            if isinstance(sample_weight, dict)
            else sample_weight
        )
        values = ops.convert_to_tensor(values)
        if not _is_float(values):
            labels[task], weights[task] = values, weight
            continue
        missing = ops.isnan(values)
        present = _per_example(ops.logical_not(missing))
        mask = ops.cast(present, values.dtype)
        total = ops.cast(ops.size(mask), values.dtype)
        mask = mask * ops.divide_no_nan(total, ops.sum(mask))
        labels[task] = ops.where(missing, ops.zeros_like(values), values)
        if weight is None:
            weights[task] = mask
        else:
            weight = ops.convert_to_tensor(weight)
            shape = [-1] + [1] * (len(weight.shape) - 1)
            weights[task] = weight * ops.cast(
                ops.reshape(mask, shape), weight.dtype
            )
    if isinstance(sample_weight, dict):
        weights.update(
            {t: w for t, w in sample_weight.items() if t not in weights}
        )
    return labels, weights


def _is_float(values):
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        dtype = np.asarray(values).dtype
    return keras.backend.is_float_dtype(keras.backend.standardize_dtype(dtype))


def _per_example(present):
    """`[batch]`: every entry of the example's label is present."""
    if len(present.shape) <= 1:
        return present
    return ops.all(present, axis=list(range(1, len(present.shape))))


def has_labels(y_true, sample_weight=None):
    """False when every label of a task is masked in this batch.

    A label is masked when it is NaN (float labels) or its sample weight is
    zero. Integer labels cannot be NaN.
    """
    present = ops.convert_to_tensor(True)
    y_true = ops.convert_to_tensor(y_true)
    if _is_float(y_true):
        present = ops.any(ops.logical_not(ops.isnan(y_true)))
    if sample_weight is not None:
        sample_weight = ops.convert_to_tensor(sample_weight)
        present = ops.logical_and(
            present, ops.any(ops.not_equal(sample_weight, 0))
        )
    return present


def labelled(labels):
    """`[batch]` bool: no entry of the example's label is NaN."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.floating):
        return np.ones(len(labels), bool)
    missing = np.isnan(labels.reshape(len(labels), -1)).any(axis=1)
    return ~missing


def fill_missing(labels):
    """`(filled, keep)`: NaN-labelled examples' labels set to 0, and the
    `[batch]` mask of the labelled ones (see `labelled`)."""
    labels = np.asarray(labels)
    keep = labelled(labels)
    shape = (-1,) + (1,) * (labels.ndim - 1)
    filled = np.where(keep.reshape(shape), labels, 0).astype(labels.dtype)
    return filled, keep


def task_examples(data, tasks, task, max_samples):
    """`(x, y)`: up to `max_samples` examples labelled for `task`.

    An example is labelled when no entry of its label is NaN. `y` holds
    `task`'s labels only.

    Raises:
        ValueError: if no example is labelled for `task`.
    """
    xs, ys, total = [], [], 0
    for x, y, _ in _data.batches(data, 256, tasks):
        labels = y[task]
        keep = labelled(labels)
        if not keep.any():
            continue
        xs.append(_data.slice_inputs(x, keep))
        ys.append(labels[keep])
        total += int(keep.sum())
        if total >= max_samples:
            break
    if not total:
        raise ValueError(
            f"`data` holds no example labelled for task {task!r} (labels "
            "that are NaN count as missing). Pass data with labels for it. "
            f"Received: data of type {type(data).__name__}."
        )
    x = tree.map_structure(lambda *a: np.concatenate(a)[:max_samples], *xs)
    return x, np.concatenate(ys)[:max_samples]
