"""The data `tag-train` and `GroupTrainer` take: train, validation, test.

    {"train": split, "validation": split, "test": split (optional),
     "early_stopping": split (optional)}

Each split is `(x, y)` arrays with `y` a dict of task -> labels (NaN for
a missing label), a batched `tf.data.Dataset` of such pairs, or a
`keras.utils.PyDataset`. A network trained on a group of tasks sees only
its tasks' labels; NaN labels are masked as `TaskAffinityModel` masks
them (`tag_keras.tasks.labels`), so a plain `keras.Model` trains on
partial labels too. Validation and test splits are read in order, so
every network's per-example results line up.

The validation split decides, so nothing in training reads it: early
stopping (any callback monitoring a `val_` quantity) reads the
`"early_stopping"` split when the data has one, or else a slice of the
training arrays carved once with a fixed seed (`monitored_split`).
"""

import keras
import numpy as np
from keras import tree

from tag_keras import _data
from tag_keras._tensorflow import tf
from tag_keras.tasks import labels as labels_lib

#: The splits a data dict may hold; the first two are required.
SPLITS = ("train", "validation", "test", "early_stopping")
#: The share of the training arrays carved for early stopping when the
#: data has no "early_stopping" split.
CARVED_SHARE = 0.1
#: The seed of that carving (the same slice for every network).
CARVING_SEED = 20260


def check_splits(data, name="data"):
    """Returns the splits of `data` present, or raises a one-line error.

    Raises:
        TypeError: `data` is not a dict, or a split is of the wrong type.
        ValueError: `"train"` or `"validation"` is missing, or a key is
            not a split.
    """
    if not isinstance(data, dict):
        raise TypeError(
            f"`{name}` must be a dict with 'train', 'validation' and "
            "optionally 'test', each (x, y) with y a dict of task -> "
            f"labels, or a tf.data.Dataset of such pairs. Received: {name} "
            f"of type {type(data).__name__}"
        )
    unknown = sorted(set(data) - set(SPLITS))
    missing = [s for s in SPLITS[:2] if s not in data]
    if missing or unknown:
        raise ValueError(
            f"`{name}` must have the keys 'train' and 'validation' (and "
            "optionally 'test' and 'early_stopping'); the validation split "
            "decides. Received: "
            f"keys {sorted(data, key=str)}"
        )
    for split in data:
        _data.check_data(data[split], name=f"{name}['{split}']")
        if isinstance(data[split], (tuple, list)) and not isinstance(
            data[split][1], dict
        ):
            raise TypeError(
                f"`{name}['{split}']` must hold labels as a dict of task "
                "-> labels. Received: labels of type "
                f"{type(data[split][1]).__name__}"
            )
    return [s for s in SPLITS if s in data]


def check_labels(data, tasks):
    """Checks the array splits' labels of `tasks` before any training, and
    raises a one-line `ValueError` naming the split and task: every label
    array as long as the inputs, one label per example (shape `(n,)` or
    `(n, 1)`, or `(n, k)` for a multi-label head), a validation split of
    at least 2 examples, and at least one labelled validation example per
    task (the decision sums every task's validation metric). Datasets are
    checked by the dry run instead."""
    for name, split in data.items():
        if not isinstance(split, (tuple, list)):
            continue
        size = len(tree.flatten(split[0])[0])
        if name == "validation" and size < 2:
            raise ValueError(
                "The 'validation' split decides and needs at least 2 "
                f"examples (the example variance). Received: {size}"
            )
        for task in tasks:
            if task not in split[1]:
                continue
            labels = np.asarray(split[1][task])
            if labels.ndim == 0 or len(labels) != size:
                raise ValueError(
                    f"Split '{name}', task {task!r}: {size} inputs but "
                    f"labels of shape {labels.shape}; give one label per "
                    "example."
                )
            if (
                name == "validation"
                and labels.dtype.kind == "f"
                and (np.isnan(labels.reshape(size, -1)).all(axis=1).all())
            ):
                raise ValueError(
                    f"Task {task!r} has no labelled example in the "
                    "'validation' split (every label is NaN): the decision"
                    " could not judge it. Label some, or leave the task "
                    "out of the groups."
                )


def label_tasks(split):
    """The task names a split holds labels for, in their order."""
    if isinstance(split, tf.data.Dataset):
        spec = split.element_spec
        labels = spec[1] if isinstance(spec, tuple) else None
    elif isinstance(split, keras.utils.PyDataset):
        labels = split[0][1]
    else:
        labels = split[1]
    if not isinstance(labels, dict):
        raise TypeError(
            "Labels must be a dict of task -> labels. Received: labels of "
            f"type {type(labels).__name__}"
        )
    return [str(t) for t in labels]


def monitors_validation(callbacks):
    """Whether any callback watches a validation quantity (`val_...`)."""
    return any(
        str(getattr(c, "monitor", "")).startswith("val_")
        for c in callbacks or ()
    )


def monitored_split(data, callbacks):
    """`(train, monitored, description)`: what `fit` trains on, what it
    validates on (None: nothing), and where that comes from (None).

    Never the validation split, which the decision is made on: the data's
    `"early_stopping"` split, else (only when a callback monitors a
    validation quantity) `CARVED_SHARE` of the training arrays, carved
    with `CARVING_SEED` and left out of training.

    Raises:
        ValueError: A callback monitors validation, the data has no
            "early_stopping" split and its training split is not arrays.
    """
    if "early_stopping" in data:
        return (
            data["train"],
            data["early_stopping"],
            "the data's 'early_stopping' split",
        )
    if not monitors_validation(callbacks):
        return data["train"], None, None
    train = data["train"]
    if not isinstance(train, (tuple, list)):
        # A usable split of another kind, not an argument of a wrong type.
        raise ValueError(  # noqa: TRY004
            "Early stopping must not read the validation split, which "
            "decides; with a training split that is not (x, y) arrays, "
            "give the data an 'early_stopping' split to stop on. Received: "
            f"a training split of type {type(train).__name__} and no "
            "'early_stopping' split"
        )
    x, y = train[0], train[1]
    size = len(tree.flatten(x)[0])
    carved = max(1, round(CARVED_SHARE * size))
    if size - carved < 1:
        raise ValueError(
            "Too few training examples to carve an early-stopping slice; "
            "give the data an 'early_stopping' split. Received: "
            f"{size} training examples"
        )
    order = np.random.default_rng(CARVING_SEED).permutation(size)
    held, kept = np.sort(order[:carved]), np.sort(order[carved:])

    def take(rows):
        return (
            _data.slice_inputs(tree.map_structure(np.asarray, x), rows),
            {t: np.asarray(v)[rows] for t, v in y.items()},
        )

    return (
        take(kept),
        take(held),
        (
            f"{carved} of the {size} training examples, carved once "
            f"(seed {CARVING_SEED}) and not trained on"
        ),
    )


def fit_data(split, tasks, *, batch_size=32, seed=0, shuffle=True):
    """What `model.fit` takes for a group: its tasks' labels, NaN masked.

    Arrays become a `tf.data.Dataset` batched by `batch_size` (shuffled
    with `seed` every epoch when `shuffle`); a dataset keeps its batches.
    """
    tasks = list(tasks)
    if isinstance(split, keras.utils.PyDataset):
        return _GroupPyDataset(split, tasks)
    if isinstance(split, tf.data.Dataset):
        return split.map(lambda *batch: _group_batch(batch, tasks))
    x, y = split[0], {t: split[1][t] for t in tasks}
    size = len(tree.flatten(x)[0])
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(
            size, seed=seed, reshuffle_each_iteration=True
        )
    return dataset.batch(batch_size).map(
        lambda *batch: _group_batch(batch, tasks)
    )


def evaluation_batches(split, tasks, batch_size=256):
    """Yields `(x, y)` NumPy batches in order, `y` keyed by all `tasks`."""
    for x, y, _ in _data.batches(split, batch_size, list(tasks)):
        yield x, y


def _group_batch(batch, tasks):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(tuple(batch))
    y = {t: y[t] for t in tasks}
    if isinstance(sample_weight, dict):
        sample_weight = {
            t: sample_weight[t] for t in tasks if t in sample_weight
        }
    return labels_lib.mask_missing_in_batch((x, y, sample_weight))


class _GroupPyDataset(keras.utils.PyDataset):
    """A PyDataset's batches with the group's labels only, NaN masked."""

    def __init__(self, source, tasks):
        super().__init__()
        self._source, self._tasks = source, tasks

    @property
    def num_batches(self):
        return self._source.num_batches

    def __getitem__(self, index):
        x, y, sample_weight = labels_lib.mask_missing_in_batch(
            self._source[index]
        )
        y = {t: np.asarray(y[t]) for t in self._tasks}
        if isinstance(sample_weight, dict):
            sample_weight = {
                t: np.asarray(sample_weight[t])
                for t in self._tasks
                if t in sample_weight
            }
        return x, y, sample_weight
