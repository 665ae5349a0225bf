"""`tag_keras._tensorflow`: TensorFlow imported on first use, and a clear
error where it is missing."""

import os
import pathlib
import subprocess
import sys

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=300, env=dict(os.environ, PYTHONPATH=str(_ROOT)))


def test_tensorflow_is_imported_on_the_first_attribute_read():
    done = _run(
        "import sys\n"
        "import tag_keras\n"
        "from tag_keras._tensorflow import tf, is_loaded, is_installed\n"
        "assert not is_loaded() and is_installed()\n"
        "assert not hasattr(tf, '__wrapped__')  # probes import nothing\n"
        "assert not is_loaded()\n"
        "import tensorflow\n"
        "assert tf.constant is tensorflow.constant and is_loaded()\n"
        "assert tf.__version__ == tensorflow.__version__\n"
        "print('ok')\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_without_tensorflow_its_use_is_one_clear_error():
    done = _run(
        "import sys\n"
        "sys.modules['tensorflow'] = None\n"
        "import tag_keras\n"
        "from tag_keras._tensorflow import tf, is_installed\n"
        "assert not is_installed()\n"
        "try:\n"
        "    tf.constant\n"
        "except tag_keras.InputError as error:\n"
        "    print(error)\n")
    assert done.returncode == 0, done.stderr[-3000:]
    message = done.stdout.strip()
    assert "\n" not in message
    assert "needs TensorFlow, which is not installed" in message
    assert "pip install tensorflow" in message
