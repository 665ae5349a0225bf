"""The experiment datasets: one interface, real data, deterministic splits."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets

from experiments import data
from experiments.data import base
from experiments.data import celeba
from experiments.data import digits
from experiments.data import multi_digits

# Small enough for fast tests; every loader takes these options.
_SMALL = {
    "digits": {},
    "multi_digits": {"pairs_per_image": 1},
    "planted": {"num_train": 40, "num_validation": 12, "num_test": 12},
    "mnist": {},
    "multi_mnist": {"pairs_per_image": 1},
}


def _arrays(dataset):
    """All of an unbatched split as (x, {task: labels}) NumPy arrays."""
    x, labels = next(iter(dataset.batch(100_000)))
    return x.numpy(), {t: y.numpy() for t, y in labels.items()}


def _load(name, **kwargs):
    return data.load_dataset(name, **{**_SMALL[name], **kwargs})


def test_registry_names_and_unknown_name():
    assert data.DATASETS == ("celeba", "digits", "multi_digits", "planted",
                             "mnist", "multi_mnist")
    with pytest.raises(ValueError, match=r"Received: name='mnist2'"):
        data.load_dataset("mnist2")


@pytest.mark.parametrize("name", ["digits", "multi_digits", "planted"])
def test_common_contract(name):
    d = _load(name)
    assert d.name == name and d.description and "\n" not in d.description
    assert set(d.num_classes) == set(d.tasks)
    sizes = d.sizes()
    assert min(sizes.values()) > 0
    for split in base.SPLITS:
        x_spec, y_spec = d.split(split).element_spec
        assert x_spec.dtype == tf.float32
        assert tuple(x_spec.shape) == d.input_shape
        assert list(y_spec) == list(d.tasks)
        assert all(s.dtype == tf.int32 and s.shape == () for s in
                   y_spec.values())
        x, labels = _arrays(d.split(split))
        assert len(x) == sizes[split]
        for task, y in labels.items():
            assert 0 <= y.min() and y.max() < d.num_classes[task]


@pytest.mark.parametrize("name", ["digits", "multi_digits", "planted"])
def test_same_seed_same_splits_other_seed_differs(name):
    first, again, other = (_arrays(_load(name, seed=s).test)
                           for s in (0, 0, 1))
    np.testing.assert_array_equal(first[0], again[0])
    for task in first[1]:
        np.testing.assert_array_equal(first[1][task], again[1][task])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("name", ["digits", "multi_digits", "planted"])
def test_unknown_task_names_the_argument_and_valid_tasks(name):
    default = _load(name).tasks
    with pytest.raises(ValueError) as info:
        _load(name, tasks=[default[0], "no_such_task"])
    message = str(info.value)
    assert "`tasks`" in message and default[-1] in message
    assert message.endswith(f"Received: tasks={[default[0], 'no_such_task']}")


def test_task_subset_by_name_list_or_comma_string():
    d = data.load_dataset("digits", tasks=["is_prime", "has_closed_loop"])
    assert d.tasks == ("is_prime", "has_closed_loop")
    assert list(d.train.element_spec[1]) == ["is_prime", "has_closed_loop"]
    assert data.load_dataset("digits", tasks="is_even, digit").tasks == (
        "is_even", "digit")
    with pytest.raises(ValueError, match="each once"):
        data.load_dataset("digits", tasks=["is_even", "is_even"])


def test_select_tasks_keeps_examples_and_planted_clusters():
    d = _load("planted")
    sub = d.select_tasks(["c1_t0", "noise_0"])
    assert sub.tasks == ("c1_t0", "noise_0")
    assert sub.metadata["clusters"] == {"c1_t0": 1, "noise_0": None}
    assert sub.sizes() == d.sizes()
    _, full = _arrays(d.train)
    _, part = _arrays(sub.train)
    np.testing.assert_array_equal(part["c1_t0"], full["c1_t0"])


def test_batches_shuffle_is_seeded_and_batch_size_checked():
    d = _load("planted")
    first = [x.numpy() for x, _ in d.batches("train", 16, shuffle=True,
                                            seed=3)]
    again = [x.numpy() for x, _ in d.batches("train", 16, shuffle=True,
                                            seed=3)]
    plain = [x.numpy() for x, _ in d.batches("train", 16)]
    assert [len(b) for b in first] == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate(first),
                                  np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(plain))
    unshuffled = d.batches("train", 16, shuffle=True, shuffle_buffer=1)
    np.testing.assert_array_equal(
        np.concatenate([x for x, _ in unshuffled]), np.concatenate(plain))
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        d.batches("train", 0)
    with pytest.raises(ValueError, match="Received: split='dev'"):
        d.split("dev")


def test_multitaskdata_checks_num_classes():
    with pytest.raises(ValueError, match="Received: num_classes="):
        base.MultiTaskData("x", ("a", "b"), {"a": 2}, (1,), None, None, None,
                           "")


def test_digits_real_images_and_attribute_labels():
    d = data.load_dataset("digits", tasks=list(digits.ALL_TASKS))
    assert d.tasks[:9] == digits.DEFAULT_TASKS
    assert d.num_classes["digit"] == 10 and d.num_classes["is_even"] == 2
    assert sum(d.sizes().values()) == 1797
    x, labels = _arrays(d.train)
    assert x.shape[1:] == (8, 8, 1) and x.min() == 0 and x.max() == 1
    # Each image is one of scikit-learn's, scaled by 1/16, with its digit.
    bundled = sk_datasets.load_digits()
    match = np.flatnonzero(
        (bundled.images == x[0, ..., 0] * 16).all(axis=(1, 2)))
    assert labels["digit"][0] in bundled.target[match]
    # Attributes written out by hand for two digits.
    expected = {
        8: {"is_even": 1, "is_prime": 0, "is_multiple_of_3": 0,
            "greater_than_4": 1, "has_closed_loop": 1, "has_upper_loop": 1,
            "has_lower_loop": 1, "has_vertical_stroke": 0,
            "has_horizontal_bar": 0, "is_8": 1, "is_3": 0},
        7: {"is_even": 0, "is_prime": 1, "is_multiple_of_3": 0,
            "greater_than_4": 1, "has_closed_loop": 0, "has_upper_loop": 0,
            "has_lower_loop": 0, "has_vertical_stroke": 1,
            "has_horizontal_bar": 1, "is_7": 1, "is_8": 0},
    }
    for digit, attributes in expected.items():
        rows = labels["digit"] == digit
        for task, value in attributes.items():
            assert (labels[task][rows] == value).all(), (digit, task)


def test_stratified_split_is_disjoint_complete_and_balanced():
    classes = np.repeat(np.arange(4), 50)
    parts = base.stratified_split(classes, 0, 0.2, 0.2)
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined) == list(range(200))
    for split, expected in (("train", 30), ("validation", 10), ("test", 10)):
        np.testing.assert_array_equal(
            np.bincount(classes[parts[split]]), [expected] * 4)
    with pytest.raises(ValueError, match="Received: validation_fraction"):
        base.stratified_split(classes, 0, 0.6, 0.4)


def test_compose_places_digits_and_takes_the_max():
    left = np.zeros((1, 2, 3, 1))
    right = np.zeros((1, 2, 3, 1))
    left[0, :, :, 0] = [[1, 0.2, 0.5], [0, 0, 0]]
    right[0, :, :, 0] = [[0.3, 0.4, 0], [0, 0, 1]]
    canvas = multi_digits.compose(left, right, shift=2)
    np.testing.assert_allclose(canvas[0, :, :, 0],
                               [[1, 0.2, 0.5, 0.4, 0], [0, 0, 0, 0, 1]])


def test_multi_digits_pairs_come_from_the_same_split():
    d = data.load_dataset("multi_digits", seed=2, pairs_per_image=2)
    assert d.tasks == ("left", "right") and d.input_shape == (8, 12, 1)
    assert d.num_classes == {"left": 10, "right": 10}
    splits = digits.split_images(2, 0.2, 0.2)
    for split in base.SPLITS:
        images, classes = splits[split]
        left, right = d.metadata["pairs"][split]
        assert len(left) == 2 * len(images) and (left != right).all()
        x, labels = _arrays(d.split(split))
        np.testing.assert_array_equal(labels["left"], classes[left])
        np.testing.assert_array_equal(labels["right"], classes[right])
        np.testing.assert_array_equal(
            x, multi_digits.compose(images[left], images[right], 4))
    # The bundled images are all distinct, so pairs drawn within the test
    # split contain no training image.
    train_images = {im.tobytes() for im in splits["train"][0]}
    left, right = d.metadata["pairs"]["test"]
    test_images = splits["test"][0]
    assert not any(test_images[i].tobytes() in train_images
                   for i in np.concatenate([left, right]))


def test_planted_clusters_are_the_known_answer():
    d = data.load_dataset("planted", num_train=1500, num_validation=10,
                          num_test=500, seed=4)
    assert d.tasks == ("c0_t0", "c0_t1", "c0_t2", "c1_t0", "c1_t1",
                       "c1_t2", "noise_0")
    clusters = d.metadata["clusters"]
    assert data.planted_groups(clusters) == [
        ("c0_t0", "c0_t1", "c0_t2"), ("c1_t0", "c1_t1", "c1_t2")]
    assert clusters["noise_0"] is None
    _, y = _arrays(d.test)

    def agreement(a, b):
        return np.mean(y[a] == y[b])

    assert agreement("c0_t0", "c0_t1") > 0.75
    assert agreement("c1_t1", "c1_t2") > 0.75
    assert abs(agreement("c0_t0", "c1_t0") - 0.5) < 0.1
    assert abs(agreement("c0_t0", "noise_0") - 0.5) < 0.1
    # Cluster tasks are linear in x; the noise task is not learnable.
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = _arrays(d.train)
    x_test, _ = _arrays(d.test)
    for task, low, high in (("c0_t2", 0.85, 1), ("noise_0", 0.4, 0.6)):
        fit = LogisticRegression().fit(x_train, y_train[task])
        assert low < fit.score(x_test, y[task]) < high, task


def test_planted_subset_and_task_independent_generation():
    full = _load("planted", num_noise_tasks=2)
    assert full.tasks[-2:] == ("noise_0", "noise_1")
    sub = _load("planted", num_noise_tasks=2, tasks=["noise_1", "c0_t1"])
    assert sub.metadata["clusters"] == {"noise_1": None, "c0_t1": 0}
    _, y_full = _arrays(full.validation)
    _, y_sub = _arrays(sub.validation)
    np.testing.assert_array_equal(y_sub["noise_1"], y_full["noise_1"])


@pytest.mark.parametrize("kwargs, received", [
    ({"num_clusters": 5, "num_features": 4}, "num_clusters=5"),
    ({"tasks_per_cluster": 0}, "tasks_per_cluster=0"),
    ({"label_noise": 0.7}, "label_noise=0.7"),
    ({"num_clusters": 0, "num_noise_tasks": 0}, "num_clusters=0"),
])
def test_planted_rejects_bad_parameters(kwargs, received):
    with pytest.raises(ValueError, match=f"Received: {received}"):
        _load("planted", **kwargs)


# CelebA: tensorflow-datasets' mock data (random images and attributes of
# the real feature spec), never a download.


def test_celeba_under_mock_data_default_tasks():
    with tfds.testing.mock_data(num_examples=6):
        d = data.load_dataset("celeba")
    assert d.tasks == celeba.DEFAULT_TASKS and len(d.tasks) == 9
    assert d.tasks[0] == "5_o_Clock_Shadow" and d.tasks[-1] == "Wearing_Hat"
    assert d.input_shape == (64, 64, 3)
    assert d.sizes() == {"train": 6, "validation": 6, "test": 6}
    x, labels = _arrays(d.test)
    assert x.shape == (6, 64, 64, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.5
    assert list(labels) == list(celeba.DEFAULT_TASKS)
    for y in labels.values():
        assert y.dtype == np.int32 and set(np.unique(y)) <= {0, 1}


def test_celeba_labels_are_the_attributes_and_images_resized():
    with tfds.testing.mock_data(num_examples=3):
        raw = tfds.load("celeb_a", split="validation")
        d = data.load_dataset("celeba", tasks=["Male", "Smiling"],
                              image_size=16)
        assert d.tasks == ("Male", "Smiling")
        assert d.validation.element_spec[0].shape == (16, 16, 3)
        x, labels = _arrays(d.validation)
        for i, example in enumerate(raw.take(3)):
            for task in d.tasks:
                assert labels[task][i] == int(example["attributes"][task])
            image = tf.image.convert_image_dtype(example["image"],
                                                 tf.float32)
            np.testing.assert_allclose(
                x[i], tf.image.resize(image, (16, 16)), atol=1e-6)


def test_celeba_unknown_attribute():
    with pytest.raises(ValueError, match=r"Received: tasks=\['Smiling', "
                                         r"'Sunglasses'\]"):
        data.load_dataset("celeba", tasks=["Smiling", "Sunglasses"])


def test_celeba_absent_without_download_raises_a_clear_error(tmp_path):
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.load_dataset("celeba", data_dir=str(tmp_path), download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "--data_dir" in message
    assert "download=False" in message
    assert isinstance(info.value.__cause__, AssertionError)


def test_celeba_failed_download_raises_a_clear_error(tmp_path, monkeypatch):
    calls = []

    def offline_load(name, *, split, data_dir, download):
        calls.append(download)
        if download:
            raise ConnectionError("Name or service not known")
        raise AssertionError(f"Dataset {name}: could not find data")

    monkeypatch.setattr(tfds, "load", offline_load)
    with pytest.raises(data.DatasetUnavailableError,
                       match="download failed: ConnectionError") as info:
        data.load_dataset("celeba", data_dir=str(tmp_path))
    assert calls == [False, True]
    assert "internet" in str(info.value)


def test_celeba_builder_can_start_a_download():
    # Preparing a tfds dataset first reads the builder's checksums file
    # through importlib_resources, which tensorflow-datasets 4.9.10 does
    # not declare: without it every download fails with ModuleNotFoundError
    # before reaching the network (requirements.txt pins it).
    builder_cls = tfds.builder_cls("celeb_a")
    assert builder_cls.code_path
    assert builder_cls._checksums_path


def test_a_loaded_dataset_pickles_as_how_to_load_it_again():
    """Ray workers receive a dataset (a model function's closure holds
    one) as `load_dataset`'s arguments; the copy is the same data, with
    the same tasks, and its repr (read by model fingerprints) is kept."""
    import pickle

    loaded = data.load_dataset("planted", seed=3, num_train=40)
    subset = loaded.select_tasks(loaded.tasks[:2])
    for original in (loaded, subset):
        copy = pickle.loads(pickle.dumps(original))
        assert copy.tasks == original.tasks
        assert repr(copy) == repr(original)
        for split in ("train", "test"):
            for (x, y), (cx, cy) in zip(original.split(split).take(5),
                                        copy.split(split).take(5)):
                np.testing.assert_array_equal(x, cx)
                assert {t: int(v) for t, v in y.items()} == {
                    t: int(v) for t, v in cy.items()}
    hand_made = base.MultiTaskData(
        "mine", ("a",), {"a": 2}, (1,), loaded.train, loaded.validation,
        loaded.test, "hand made")
    with pytest.raises(TypeError, match="not made by .*load_dataset"):
        pickle.dumps(hand_made)
