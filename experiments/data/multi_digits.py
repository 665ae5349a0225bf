"""Two overlapping handwritten digits: left and right digit as two tasks.

The MultiMNIST construction (Sener & Koltun, 2018) on scikit-learn's
bundled 8×8 digits, so it runs without the internet. Each example is a
canvas of 8 rows × `8 + shift` columns (12 by default): the left digit is
placed at column 0, the right digit at column `shift` (4), and the two
are combined by the pixel-wise maximum, so they overlap in the middle
`8 - shift` columns. Two tasks, `left` and `right`, each classify one of
the two digits (10 classes).

The 1,797 digit images are first split into train / validation / test
exactly as `experiments.data.digits` splits them (stratified, same seed),
and pairs are then drawn within each split only, so no test digit appears
in a training example. Within a split of n images every image is the left
digit of `pairs_per_image` examples; its right partner is drawn uniformly
from the other images of the same split with `seed`, so the same seed
always gives the same examples.
"""

import numpy as np

from experiments.data import base
from experiments.data import digits as digits_lib

DEFAULT_TASKS = ("left", "right")


def compose(left, right, shift):
    """Pixel-wise max of `left` at column 0 and `right` at column `shift`.

    Args:
        left: Images of shape (n, h, w, c).
        right: Images of the same shape.
        shift: Column of the right image, 1 <= shift <= w.

    Returns:
        Images of shape (n, h, w + shift, c).
    """
    n, height, width, channels = left.shape
    canvas = np.zeros((n, height, width + shift, channels), left.dtype)
    canvas[:, :, :width] = left
    canvas[:, :, shift:] = np.maximum(canvas[:, :, shift:], right)
    return canvas


def make_pairs(n, pairs_per_image, rng):
    """Left and right indices into one split of `n` images.

    Every index is a left image `pairs_per_image` times; its right partner
    is another index of the same split, drawn uniformly with `rng`.
    """
    left = np.tile(np.arange(n), pairs_per_image)
    # A partner other than the image itself: offset by 1..n-1, mod n.
    right = (left + rng.integers(1, n, size=left.shape)) % n
    return left, right


def load(*, tasks=None, seed=0, shift=4, pairs_per_image=2,
         validation_fraction=0.2, test_fraction=0.2, data_dir=None):
    """Loads the two-digit tasks as `MultiTaskData`.

    Args:
        tasks: A subset of `("left", "right")`; `None` for both.
        seed: Seed of the digit split and of the pairing.
        shift: Column where the right digit starts (1-8); 4 overlaps the two
            digits by half their width.
        pairs_per_image: Examples per image of a split (each image is the
            left digit that many times, with random right partners).
        validation_fraction: Share of each digit's images for validation.
        test_fraction: Share of each digit's images for testing.
        data_dir: Ignored (the data ships with scikit-learn).

    Returns:
        A `MultiTaskData` named `"multi_digits"`; `metadata["pairs"]` holds,
        per split, the `(left, right)` indices into that split's digits.
    """
    del data_dir  # The data is bundled.
    tasks = base.resolve_tasks(tasks, DEFAULT_TASKS, DEFAULT_TASKS)
    if not 1 <= shift <= 8:
        raise ValueError(
            f"`shift` must be between 1 and 8. Received: shift={shift}"
        )
    if pairs_per_image < 1:
        raise ValueError(
            "`pairs_per_image` must be at least 1. Received: "
            f"pairs_per_image={pairs_per_image}"
        )
    splits = digits_lib.split_images(seed, validation_fraction,
                                     test_fraction)
    rng = np.random.default_rng([seed, 1])
    datasets, pairs = {}, {}
    for split in base.SPLITS:
        images, digits = splits[split]
        left, right = make_pairs(len(images), pairs_per_image, rng)
        x = compose(images[left], images[right], shift)
        labels = {"left": digits[left], "right": digits[right]}
        datasets[split] = base.from_arrays(x, {t: labels[t] for t in tasks})
        pairs[split] = (left, right)
    return base.MultiTaskData(
        name="multi_digits",
        tasks=tasks,
        num_classes={t: 10 for t in tasks},
        input_shape=(8, 8 + shift, 1),
        description=(
            "two overlapping scikit-learn 8x8 digits (MultiMNIST-style, "
            f"right digit at column {shift}), left/right digit as "
            f"{base.describe_tasks(tasks, {t: 10 for t in tasks})}, "
            f"split seed {seed}"
        ),
        metadata={"pairs": pairs, "shift": shift},
        **datasets,
    )
