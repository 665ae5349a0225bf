"""Which `tf.distribute` strategy every network trains under, and who writes.

`make_distribution` turns a `--distribution` value into a strategy (None
for none). Under several workers every process runs the same code in
lockstep and only the chief keeps its files: `output_dir` gives the other
workers a scratch directory, as Keras's own callbacks do.
`distributed_model_class` makes any model class fit under a strategy as
it fits without one. Library code: the binaries read flags and pass
values in.
"""

import contextlib
import functools
import json
import os
import shutil
import tempfile


# --distribution values: no strategy, one machine's devices, several machines.
DISTRIBUTIONS = ("default", "mirrored", "multi_worker")


def make_distribution(name):
    """The `tf.distribute` strategy called `name`; None for `"default"`.

    * `"default"`: no strategy (TensorFlow's default device placement).
    * `"mirrored"`: `MirroredStrategy` over every local GPU, or over every
      logical CPU device when there is no GPU (one CPU unless the process
      configured more).
    * `"multi_worker"`: `MultiWorkerMirroredStrategy`, with the cluster and
      this worker's place in it read from the `TF_CONFIG` environment
      variable. Create it before any other TensorFlow operation runs.

    Raises:
        ValueError: If `name` is not one of `DISTRIBUTIONS`, or for
            `"multi_worker"` if `TF_CONFIG` is unset or not a JSON object
            with a `cluster` (one line).
    """
    if name not in DISTRIBUTIONS:
        raise ValueError(f"`name` must be one of {list(DISTRIBUTIONS)}. "
                         f"Received: name={name!r}")
    if name == "default":
        return None
    import tensorflow as tf

    if name == "mirrored":
        devices = (tf.config.list_logical_devices("GPU")
                   or tf.config.list_logical_devices("CPU"))
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raw = os.environ.get("TF_CONFIG", "")
    try:
        cluster = json.loads(raw).get("cluster") if raw.strip() else None
    except (ValueError, AttributeError):
        cluster = None
    if not cluster:
        shown = repr(" ".join(raw.split())[:200]) if raw else "(unset)"
        raise ValueError(
            "multi_worker reads the cluster from the TF_CONFIG environment "
            "variable, a JSON object with `cluster` and `task` (see "
            f"docs/guides/distributed.md). Received: TF_CONFIG={shown}")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(distribution):
    """Whether this process keeps its files (always, without a strategy)."""
    if distribution is None:
        return True
    from tag_keras import _distribute

    return _distribute.is_chief(distribution)


# Scratch directories of non-chief workers, while they are in use.
_SCRATCH_DIRS = []


@contextlib.contextmanager
def output_dir(out_dir, distribution=None):
    """Yields the directory this process writes into.

    `out_dir` on the chief (and without a strategy). Under a multi-worker
    strategy every worker runs the same code in lockstep; the others write
    into a new temporary directory that is removed on exit, as Keras's
    callbacks do, so only the chief's files exist and `out_dir` is not
    even created on the other workers. A directory inside such a scratch
    directory (a nested call, e.g. the pipeline's `cosine/` run) is used
    as it is, so the layout below it is the chief's.
    """
    if is_chief(distribution) or _in_scratch(out_dir):
        yield out_dir
        return
    scratch = tempfile.mkdtemp(prefix="tag_keras_worker_")
    _SCRATCH_DIRS.append(scratch)
    try:
        yield scratch
    finally:
        _SCRATCH_DIRS.remove(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def _in_scratch(path):
    path = os.path.realpath(path)
    return any(
        os.path.commonpath([path, os.path.realpath(s)]) == os.path.realpath(s)
        for s in _SCRATCH_DIRS)


@functools.cache
def distributed_model_class(model_cls):
    """`model_cls`, made to fit under any strategy as it fits without one.

    Adds `tag_keras.MultiWorkerFixes` (already a base of
    `TaskAffinityModel`): under a strategy, the model is built from the
    dataset's shapes without consuming a shuffle (every epoch sees the
    batches of the single-device run), and a plain `keras.Model` can fit
    under `MultiWorkerMirroredStrategy` at all.
    """
    import tag_keras

    if issubclass(model_cls, tag_keras.MultiWorkerFixes):
        return model_cls

    class Distributed(tag_keras.MultiWorkerFixes, model_cls):
        pass

    Distributed.__name__ = Distributed.__qualname__ = model_cls.__name__
    return Distributed


def distribution_info(distribution):
    """`{"strategy": name, "replicas": n, "chief": bool}`; None for none."""
    if distribution is None:
        return None
    import tensorflow as tf

    name = type(distribution).__name__
    if isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"  # Its class is an alias.
    return {"strategy": name,
            "replicas": distribution.num_replicas_in_sync,
            "chief": is_chief(distribution)}


def describe_distribution(distribution):
    """`""`, or `"; MirroredStrategy, 2 replicas"` and the like."""
    info = distribution_info(distribution)
    if info is None:
        return ""
    replicas = info["replicas"]
    return (f"; {info['strategy']}, {replicas} "
            f"replica{'s' if replicas != 1 else ''}"
            + ("" if info["chief"] else " (not the chief: writes no file)"))
