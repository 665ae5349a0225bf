"""TensorFlow, imported when first used.

Every module of the package reads TensorFlow as `from tag_keras._tensorflow
import tf`. The name is a stand-in that imports TensorFlow the first time
one of its attributes is read, so the modules that Keras's JAX backend
runs (`TaskAffinityModel`, `AffinityLogger`, the selector) import without
TensorFlow installed, and the TensorFlow-only features say what is missing
when they are used.

`is_loaded()` tells whether TensorFlow is already imported; code that only
needs to recognise TensorFlow objects (is this a `tf.data.Dataset`?) asks
it first, since such an object cannot exist before TensorFlow is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING
from typing import Any

from tag_keras._errors import InputError


class _LazyTensorFlow(types.ModuleType):
    """Imports `tensorflow` on the first attribute read."""

    def __init__(self):
        super().__init__("tensorflow")
        self._module: Any = None

    def _load(self):
        if self._module is None:
            try:
                self._module = importlib.import_module("tensorflow")
            except ImportError as error:
                raise InputError(
                    "This part of tag_keras needs TensorFlow, which is not "
                    "installed (the measured step on Keras's JAX backend, "
                    "AffinityLogger and the selector do not). Install it "
                    "with `pip install tensorflow`, or see the feature x "
                    "backend table in docs/guides/backends.md. Received: "
                    f"{error}"
                ) from error
        return self._module

    def __getattr__(self, name):
        if name.startswith("__") and sys.modules.get("tensorflow") is None:
            # Probes such as `inspect`'s (`__wrapped__`) must not import
            # TensorFlow; once imported, `tf.__version__` reads through.
            raise AttributeError(name)
        return getattr(self._load(), name)


def is_installed() -> bool:
    """Whether TensorFlow can be imported (without importing it)."""
    if is_loaded():
        return True
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def is_loaded() -> bool:
    """Whether TensorFlow has been imported in this process."""
    return sys.modules.get("tensorflow") is not None


if TYPE_CHECKING:
    import tensorflow as tf
else:
    tf = _LazyTensorFlow()

__all__ = ["is_installed", "is_loaded", "tf"]
