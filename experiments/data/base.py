"""The one interface every multi-task dataset of the experiments returns."""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

SPLITS = ("train", "validation", "test")


class DatasetUnavailableError(RuntimeError):
    """The data is not on this machine and cannot be downloaded."""


@dataclasses.dataclass(frozen=True, eq=False)
class MultiTaskData:
    """A multi-task dataset: three unbatched splits and what the tasks are.

    Every element of `train`, `validation` and `test` is `(x, labels)`:
    `x` is a float32 tensor of shape `input_shape` and `labels` a dict
    `{task: int32 scalar class id}` with one entry per task in `tasks`
    (binary tasks use 0/1). The splits are unbatched and unshuffled; use
    `batches` to batch them. Task names are the model's output names.

    Args:
        name: The registry name, e.g. `"digits"`.
        tasks: Task names, in order.
        num_classes: Number of classes per task.
        input_shape: Shape of one input, without the batch dimension.
        train: Training split.
        validation: Validation split (early stopping, held-out affinity).
        test: Test split (reported errors).
        description: One line for READMEs and result files.
        metadata: Anything else a loader knows, e.g. the planted clusters of
            `"planted"` under `"clusters"`.

    Example:

    >>> from experiments import data
    >>> digits = data.load_dataset("digits", tasks=["is_even", "is_prime"])
    >>> digits.sizes()
    {'train': 1079, 'validation': 359, 'test': 359}
    >>> x, y = next(iter(digits.batches("train", 32)))
    >>> x.shape, sorted(y)
    (TensorShape([32, 8, 8, 1]), ['is_even', 'is_prime'])
    """

    name: str
    tasks: tuple[str, ...]
    num_classes: dict[str, int]
    input_shape: tuple[int, ...]
    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    description: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.tasks:
            raise ValueError(
                f"`tasks` must name at least one task. Received: "
                f"tasks={self.tasks!r}"
            )
        if set(self.num_classes) != set(self.tasks):
            raise ValueError(
                "`num_classes` must have one entry per task "
                f"{list(self.tasks)}. Received: "
                f"num_classes={self.num_classes!r}"
            )

    def __reduce__(self):
        """Pickled as how to load it again (`experiments.data.reload`), so
        that it can be sent to other processes (Ray workers): its splits
        are tf.data pipelines, which cannot be pickled."""
        source = getattr(self, "_source", None)
        if source is None:
            raise TypeError(
                f"MultiTaskData {self.name!r} was not made by "
                "experiments.data.load_dataset, so another process cannot "
                "load it again; it cannot be pickled.")
        from experiments import data as data_lib

        return data_lib.reload, (source, self.tasks)

    def split(self, split):
        """Returns the split called `split` (`"train"`, `"validation"`...)."""
        if split not in SPLITS:
            raise ValueError(
                f"`split` must be one of {list(SPLITS)}. Received: "
                f"split={split!r}"
            )
        return getattr(self, split)

    def sizes(self):
        """Returns `{split: number of examples}`; -1 where it is unknown."""
        return {s: int(self.split(s).cardinality()) for s in SPLITS}

    def batches(self, split, batch_size, *, shuffle=False, seed=None,
                shuffle_buffer=10_000, drop_remainder=False):
        """Returns `split` batched and prefetched, optionally shuffled.

        Args:
            split: `"train"`, `"validation"` or `"test"`.
            batch_size: Examples per batch.
            shuffle: Shuffle, reshuffling every epoch.
            seed: Shuffle seed; the same seed gives the same order.
            shuffle_buffer: Shuffle buffer size, capped at the split's size
                (a full shuffle for the small datasets; for CelebA the
                buffer holds 64×64×3 float images, 48 KB each).
            drop_remainder: Drop the last, smaller batch.
        """
        if batch_size < 1:
            raise ValueError(
                f"`batch_size` must be at least 1. Received: "
                f"batch_size={batch_size}"
            )
        dataset = self.split(split)
        if shuffle:
            size = int(dataset.cardinality())
            buffer = min(shuffle_buffer, size) if size > 0 else shuffle_buffer
            dataset = dataset.shuffle(buffer, seed=seed,
                                      reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def select_tasks(self, tasks):
        """Returns the same data with only `tasks` (e.g. one task group)."""
        tasks = resolve_tasks(tasks, self.tasks, self.tasks)

        def keep(x, labels):
            return x, {task: labels[task] for task in tasks}

        return with_source(dataclasses.replace(
            self,
            tasks=tasks,
            num_classes={t: self.num_classes[t] for t in tasks},
            train=self.train.map(keep),
            validation=self.validation.map(keep),
            test=self.test.map(keep),
            metadata=self._selected_metadata(tasks),
        ), getattr(self, "_source", None))

    def _selected_metadata(self, tasks):
        metadata = dict(self.metadata)
        if "clusters" in metadata:
            metadata["clusters"] = {
                t: metadata["clusters"][t] for t in tasks
            }
        return metadata


def with_source(data, source):
    """`data`, remembering `load_dataset`'s arguments that made it (kept
    out of its fields, so its repr, which model fingerprints read, is
    unchanged); returns `data`."""
    if source is not None:
        object.__setattr__(data, "_source", dict(source))
    return data


def resolve_tasks(tasks, available, default):
    """Validates a task selection and returns it as a tuple.

    Args:
        tasks: `None` for `default`, or a sequence of task names (a comma
            separated string is accepted too, as from a list flag).
        available: Every task name the dataset offers.
        default: The default task set.

    Raises:
        ValueError: If a name is unknown, repeated, or nothing is selected.
    """
    if tasks is None:
        return tuple(default)
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise ValueError(
            f"`tasks` must be names from {list(available)}; unknown: "
            f"{unknown}. Received: tasks={list(tasks)}"
        )
    if not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(
            "`tasks` must name at least one task, each once. Received: "
            f"tasks={list(tasks)}"
        )
    return tasks


def from_arrays(x, labels):
    """An unbatched dataset of `(x, {task: label})` from NumPy arrays."""
    labels = {t: np.asarray(y, dtype=np.int32) for t, y in labels.items()}
    return tf.data.Dataset.from_tensor_slices(
        (np.asarray(x, dtype=np.float32), labels)
    )


def check_fractions(validation_fraction, test_fraction):
    """Raises ValueError unless both fractions leave data for training."""
    for name, value in (("validation_fraction", validation_fraction),
                        ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(
                f"`{name}` must be in (0, 1). Received: {name}={value}"
            )
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "`validation_fraction + test_fraction` must be below 1. "
            f"Received: validation_fraction={validation_fraction}, "
            f"test_fraction={test_fraction}"
        )


def stratified_split(classes, seed, validation_fraction, test_fraction):
    """Indices of a stratified train/validation/test split of `classes`.

    Each class is shuffled with `np.random.default_rng(seed)` and cut in the
    given proportions, so every split has the class balance of the whole
    and the same seed always gives the same split. Indices are sorted.

    Returns:
        A dict `{split: int64 index array}`.
    """
    check_fractions(validation_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    parts = {s: [] for s in SPLITS}
    for value in np.unique(classes):
        members = rng.permutation(np.flatnonzero(classes == value))
        n_val = round(validation_fraction * len(members))
        n_test = round(test_fraction * len(members))
        parts["test"].append(members[:n_test])
        parts["validation"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def describe_tasks(tasks: Sequence[str], num_classes: Mapping[str, int]):
    """`"9 tasks (binary)"` or `"2 tasks (10 classes each)"` etc."""
    counts = sorted({num_classes[t] for t in tasks})
    if counts == [2]:
        kind = "binary"
    elif len(counts) == 1:
        kind = f"{counts[0]} classes each"
    else:
        kind = f"{counts[0]}-{counts[-1]} classes"
    return f"{len(tasks)} task{'s' if len(tasks) != 1 else ''} ({kind})"
