"""What a cached network was made from: data, model code, fit settings.

Each network `GroupTrainer` stores carries these fingerprints (short
SHA-1 digests), and a cached network is reused only when every one of
them matches the run's, so changing the data, editing the model's module
or changing the fit settings retrains instead of silently reusing a
stale network; no settings file has to survive for the check to hold.

* `data`: each split's shapes and dtypes and a hash of its contents
  (arrays: every byte; a `tf.data.Dataset`: its element spec and the
  first `SAMPLE_BATCHES` batches).
* `model`: the source file of the module that defines `build` (or the
  function's own code when it has no file), and the settings a closure
  captures; for a saved model added as it is, its file's bytes.
* `architecture`: per group, the built model's config and compile
  config (built in a fresh Keras session, so layer names do not depend
  on what was built before).
* `fit`: the batch size and the `fit` keyword arguments, callbacks by
  class and their plain settings (numbers, strings, booleans).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any

import numpy as np

#: Batches of a `tf.data.Dataset` hashed into its fingerprint.
SAMPLE_BATCHES = 4


def _digest(*chunks):
    hasher = hashlib.sha1()
    for chunk in chunks:
        hasher.update(
            chunk if isinstance(chunk, bytes) else str(chunk).encode("utf-8")
        )
    return hasher.hexdigest()[:16]


def _array_digest(hasher, value):
    array = np.ascontiguousarray(np.asarray(value))
    hasher.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype.kind == "O":
        hasher.update(repr(array.tolist()).encode("utf-8"))
    else:
        hasher.update(array.tobytes())


def _nested(hasher, value):
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            hasher.update(f"<{key}>".encode())
            _nested(hasher, value[key])
    elif isinstance(value, (tuple, list)):
        hasher.update(f"[{len(value)}]".encode())
        for item in value:
            _nested(hasher, item)
    else:
        _array_digest(hasher, value)


def split_digest(split) -> str:
    """The fingerprint of one split: `(x, y)` arrays or a dataset."""
    hasher = hashlib.sha1()
    if hasattr(split, "element_spec"):
        hasher.update(repr(split.element_spec).encode("utf-8"))
        for batch in split.take(SAMPLE_BATCHES).as_numpy_iterator():
            _nested(hasher, batch)
    else:
        _nested(hasher, split)
    return hasher.hexdigest()[:16]


def data_digest(data) -> str:
    """The fingerprint of a data dict (every split)."""
    return _digest(
        *(f"{name}:{split_digest(data[name])};" for name in sorted(data))
    )


def model_digest(build) -> str:
    """The fingerprint of the model function's code: its module's source
    file, or the function's own source or bytecode without one."""
    function = inspect.unwrap(build)
    try:
        path = inspect.getsourcefile(function)
        if path:
            with open(path, "rb") as handle:
                return _digest(
                    getattr(function, "__qualname__", ""), handle.read()
                )
    except (OSError, TypeError):
        pass
    code = getattr(function, "__code__", None)
    if code is not None:
        return _digest(
            function.__qualname__, code.co_code, repr(code.co_consts)
        )
    return _digest(repr(type(function)))


def build_digest(build) -> str:
    """`model_digest`, plus what a closure captures that prints the same
    in every process (a protocol's settings: numbers, strings,
    dataclasses), so a builder made by a factory changes with them."""
    function = inspect.unwrap(build)
    captured = []
    for cell in getattr(function, "__closure__", None) or ():
        try:
            text = repr(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
        if " at 0x" not in text and len(text) < 10000:
            captured.append(text)
    return _digest(model_digest(build), *captured)


def architecture_digest(model) -> str:
    """The fingerprint of a built, compiled model: its config (layers,
    their settings) and its compile config (losses, optimizer)."""

    def text(value):
        return json.dumps(value, sort_keys=True, default=repr)

    try:
        compiled = model.get_compile_config()
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        compiled = None
    try:
        config = model.get_config()
    except (NotImplementedError, TypeError, ValueError):
        config = type(model).__qualname__  # a subclass without a config
    return _digest(text(config), text(compiled))


def _plain(value):
    return isinstance(value, (int, float, str, bool)) or value is None


def fit_digest(fit_kwargs, batch_size) -> str:
    """The fingerprint of the fit settings (callbacks by class and their
    plain attributes)."""
    settings: dict[str, Any] = {"batch_size": int(batch_size)}
    for key, value in sorted(fit_kwargs.items()):
        if key == "callbacks":
            settings[key] = [
                [
                    type(c).__name__,
                    {
                        k: v
                        for k, v in sorted(vars(c).items())
                        if _plain(v)
                        and not k.startswith("_")
                        and k
                        not in ("wait", "stopped_epoch", "best_epoch", "best")
                    },
                ]
                for c in (value or [])
            ]
        elif _plain(value):
            settings[key] = value
        else:
            settings[key] = repr(type(value))
    return _digest(json.dumps(settings, sort_keys=True, default=str))


def file_digest(path) -> str:
    """The fingerprint of a file's bytes."""
    hasher = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()[:16]


def changed(stored, wanted) -> list:
    """The names of the parts whose fingerprints differ (a part missing
    from `stored`, as in networks written before fingerprints, differs)."""
    return [
        name for name in wanted if (stored or {}).get(name) != wanted[name]
    ]
