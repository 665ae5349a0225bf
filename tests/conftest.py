"""Test-wide settings (quiet TensorFlow, deterministic ops, CPU only),
traced graphs released after each test, and the shared tiny dataset
fixture."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tag_keras_entry  # noqa: E402

tag_keras_entry.pin_kernels()  # as every command does

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _release_traced_graphs():
    """Each test's traced Keras steps are released when it ends.

    TensorFlow's gradient registry keeps every traced step graph alive
    (`tag_keras._keras_private.forgetting_custom_gradients`); over a test
    process that was over a million objects, and every garbage
    collection (one per `keras.backend.clear_session()`) took seconds.
    Tests that import nothing of TensorFlow are left alone.
    """
    if "tensorflow" not in sys.modules:
        yield
        return
    from tag_keras import _keras_private

    with _keras_private.forgetting_custom_gradients():
        yield


#: The tasks of `planted_three_tasks`.
PLANTED_TASKS = ("c0_t0", "c0_t1", "c1_t0")


@pytest.fixture(scope="module")
def planted_three_tasks():
    """Three generated tasks, two of one cluster; 64 training examples."""
    from experiments import data as data_lib

    return data_lib.load_dataset(
        "planted", tasks=PLANTED_TASKS, num_train=64, num_validation=32,
        num_test=40, num_features=6)
