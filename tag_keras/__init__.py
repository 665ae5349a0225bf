"""tag_keras: which tasks should be trained together?

Measures inter-task affinity (TAG) inside an ordinary Keras `model.fit`, turns
the affinities into task groupings for a budget of networks, and ships the
usual multi-task baselines and training methods.

Folders, in the order data flows through them:

* `tasks/`: the task core: task names, per-task losses, shared variables,
  NaN masking and `TaskGradients`, used by every package below.
* `measure/`: the Keras side. `TaskAffinityModel`, its train steps
  (TensorFlow: `step.py`; JAX: `jax_step.py`), the estimators and the
  accumulated state; `AffinityMeter` and `ForwardPass` for custom loops
  (JAX: `jax_meter.py`).
* `callbacks/`: the Keras callbacks, one file each: `AffinityLogger` (the
  matrices as CSV, TensorBoard), `TrajectoryLogger`, `CandidateLogger`.
* `select/`: NumPy side, never imports TensorFlow. `select_groups`, HOA,
  the solvers, the groups document and `tag-select`.
* `mtl/`: training methods (`training_method=`), one per file.
* `diagnostics/`: optimisation-trajectory measures.
* `transfer/`: covariance similarity and SVD task weights.

The selector needs only NumPy and SciPy and is imported eagerly; the Keras
names are imported on first use, so `tag-select` starts quickly, and
TensorFlow itself is imported only when used (`_tensorflow.py`): on JAX
the measurement runs without it.
"""

import importlib

__version__ = "0.4.0.dev0"

from tag_keras._errors import InputError
from tag_keras._lock import DirectoryInUseError
from tag_keras.select import Grouping
from tag_keras.select import Selection
from tag_keras.select import choose_groups
from tag_keras.select import select_groups
from tag_keras.select import select_groups_from_group_affinity
from tag_keras.select import select_groups_from_performance

# Public name -> module that defines it (imported lazily).
_LAZY = {
    "AFFINITY_METHODS": ("tag_keras.measure.affinity", "AFFINITY_METHODS"),
    "AffinityEstimator": ("tag_keras.measure.estimators", "AffinityEstimator"),
    "AffinityLogger": ("tag_keras.callbacks", "AffinityLogger"),
    "TrajectoryLogger": ("tag_keras.callbacks", "TrajectoryLogger"),
    "CandidateLogger": ("tag_keras.callbacks", "CandidateLogger"),
    "AffinityMeter": ("tag_keras.measure.custom_loop", "AffinityMeter"),
    "ForwardPass": ("tag_keras.measure.forward", "ForwardPass"),
    "affinity_methods": ("tag_keras.measure.estimators", "affinity_methods"),
    "register_affinity_method": (
        "tag_keras.measure.estimators",
        "register_affinity_method",
    ),
    # Public home of the Keras multi-worker fixes (they override
    # private trainer hooks, so they live with the other Keras internals).
    "MultiWorkerFixes": ("tag_keras._keras_private", "MultiWorkerFixes"),
    "TaskAffinityModel": ("tag_keras.measure.model", "TaskAffinityModel"),
    "TaskGradients": ("tag_keras.tasks", "TaskGradients"),
}

__all__ = [
    "AFFINITY_METHODS",
    "AffinityEstimator",
    "AffinityLogger",
    "AffinityMeter",
    "CandidateLogger",
    "DirectoryInUseError",
    "ForwardPass",
    "Grouping",
    "InputError",
    "MultiWorkerFixes",
    "Selection",
    "TaskAffinityModel",
    "TaskGradients",
    "TrajectoryLogger",
    "affinity_methods",
    "choose_groups",
    "register_affinity_method",
    "select_groups",
    "select_groups_from_group_affinity",
    "select_groups_from_performance",
]


# Subpackages that need TensorFlow, imported on first use.
_LAZY_MODULES = ("diagnostics", "mtl", "tasks", "transfer")


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"tag_keras.{name}")
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tag_keras' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
