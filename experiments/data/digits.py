"""Handwritten digits as a multi-task problem: attributes of the digit.

The data is scikit-learn's bundled copy of the UCI optical recognition of
handwritten digits test set (`sklearn.datasets.load_digits`): 1,797 grey
8×8 images of the digits 0-9 written by 43 people, about 180 per digit. It
ships inside scikit-learn, so it works without the internet. Pixels (0-16)
are scaled to [0, 1]; inputs have shape (8, 8, 1).

Tasks are binary attributes of the written digit, each a set of digits it
is true for. They are chosen so that the answer to "which tasks help each
other?" is not trivial: some attributes describe the shape (a network
learns them from the same strokes), others are arithmetic and cut across
shapes, and several overlap strongly with one another.

Shape attributes (default):

* `has_closed_loop`: 0, 6, 8, 9 (the digit encloses an area).
* `has_upper_loop`: 0, 8, 9 (a loop in the top half).
* `has_lower_loop`: 0, 6, 8 (a loop in the bottom half).
  The three loop tasks share most positives: expect them to group.
* `has_vertical_stroke`: 1, 4, 7 (a long straight down stroke, no curves
  in the usual writing): nearly the complement of the loop tasks.
* `has_horizontal_bar`: 2, 4, 5, 7 (a straight horizontal bar: the base
  of 2, the cross bar of 4, the tops of 5 and 7).

Arithmetic attributes (default):

* `is_even`: 0, 2, 4, 6, 8.
* `is_prime`: 2, 3, 5, 7.
* `is_multiple_of_3`: 0, 3, 6, 9.
* `greater_than_4`: 5, 6, 7, 8, 9.
  These are unrelated to how a digit looks, so a network can only learn
  them by recognising every digit; they neither share nor oppose the shape
  tasks' features in any simple way.

Also available through `tasks=` (not default): one-vs-rest tasks `is_0`
... `is_9` and the ten-way `digit` task (10 classes).

Split: stratified by digit, 60/20/20 by default, shuffled by `seed`, so the
same seed always gives the same split and every split has all digits.
"""

import numpy as np

from experiments.data import base

# Attribute -> the digits it is true for. Order = default task order.
ATTRIBUTES = {
    "is_even": (0, 2, 4, 6, 8),
    "is_prime": (2, 3, 5, 7),
    "is_multiple_of_3": (0, 3, 6, 9),
    "greater_than_4": (5, 6, 7, 8, 9),
    "has_closed_loop": (0, 6, 8, 9),
    "has_upper_loop": (0, 8, 9),
    "has_lower_loop": (0, 6, 8),
    "has_vertical_stroke": (1, 4, 7),
    "has_horizontal_bar": (2, 4, 5, 7),
}
ONE_VS_REST = {f"is_{d}": (d,) for d in range(10)}
DEFAULT_TASKS = tuple(ATTRIBUTES)
ALL_TASKS = DEFAULT_TASKS + tuple(ONE_VS_REST) + ("digit",)


def load_images():
    """All 1,797 images as float32 (n, 8, 8, 1) in [0, 1], and the digits."""
    from sklearn import datasets

    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    return images, digits.target.astype(np.int32)


def task_labels(digits, tasks):
    """`{task: int32 labels}` for an array of digit classes."""
    labels = {}
    for task in tasks:
        if task == "digit":
            labels[task] = digits.astype(np.int32)
        else:
            positives = {**ATTRIBUTES, **ONE_VS_REST}[task]
            labels[task] = np.isin(digits, positives).astype(np.int32)
    return labels


def split_images(seed, validation_fraction, test_fraction):
    """`{split: (images, digits)}`, stratified by digit and seeded."""
    images, digits = load_images()
    indices = base.stratified_split(
        digits, seed, validation_fraction, test_fraction
    )
    return {s: (images[i], digits[i]) for s, i in indices.items()}


def load(*, tasks=None, seed=0, validation_fraction=0.2, test_fraction=0.2,
         data_dir=None):
    """Loads the digit-attribute tasks as `MultiTaskData`.

    Args:
        tasks: Task names (see the module docstring); `None` for the nine
            attribute tasks.
        seed: Seed of the stratified split.
        validation_fraction: Share of each digit's images for validation.
        test_fraction: Share of each digit's images for testing.
        data_dir: Ignored (the data ships with scikit-learn); accepted so
            that every loader takes the same arguments.

    Returns:
        A `MultiTaskData` named `"digits"`.
    """
    del data_dir  # The data is bundled.
    tasks = base.resolve_tasks(tasks, ALL_TASKS, DEFAULT_TASKS)
    splits = split_images(seed, validation_fraction, test_fraction)
    return attribute_data(
        "digits", splits, tasks, (8, 8, 1),
        "scikit-learn 8x8 handwritten digits (1,797 images), "
        f"{{tasks}} about the digit, stratified split seed {seed}")


def attribute_data(name, splits, tasks, input_shape, description):
    """`MultiTaskData` of the digit attributes `tasks` over `splits`
    (`{split: (images, digits)}`); `{tasks}` in `description` becomes the
    tasks' summary."""
    datasets = {
        s: base.from_arrays(x, task_labels(y, tasks))
        for s, (x, y) in splits.items()
    }
    num_classes = {t: 10 if t == "digit" else 2 for t in tasks}
    return base.MultiTaskData(
        name=name,
        tasks=tasks,
        num_classes=num_classes,
        input_shape=input_shape,
        description=description.format(
            tasks=base.describe_tasks(tasks, num_classes)),
        metadata={"positives": {
            t: list({**ATTRIBUTES, **ONE_VS_REST}.get(t, range(10)))
            for t in tasks
        }},
        **datasets,
    )
