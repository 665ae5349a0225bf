"""Small helpers for running inside (or outside) `tf.distribute`.

A leaf module: measurement, the training methods and the callbacks use it.
The model mixin that fixes Keras's trainer under a strategy is
`tag_keras._keras_private.MultiWorkerFixes` (it overrides private hooks).
"""

import keras
from keras import ops

from tag_keras._tensorflow import tf


def _in_tensorflow():
    """Whether `tf.distribute` can be in use (the TensorFlow backend)."""
    return keras.backend.backend() == "tensorflow"


def replica_sum(value):
    """Sums `value` over the replicas of the current step (identity on one).

    Keras divides each replica's loss by the number of replicas, so the sum
    of per-replica losses or gradients is the global-batch value.
    """
    if not _in_tensorflow():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas():
    """Replicas of the current step (1 outside `tf.distribute`)."""
    if not _in_tensorflow():
        return 1
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_any(flag):
    """True when `flag` holds on any replica."""
    return replica_sum(ops.cast(flag, "float32")) > 0


def replica_all(flag):
    """True when `flag` holds on every replica."""
    return replica_sum(ops.cast(ops.logical_not(flag), "float32")) == 0


def in_cross_replica_context(fn):
    """Runs `fn()` once, in cross-replica context, from any context.

    Assigning to mirrored variables from a replica needs an aggregation;
    copies of identical values are made once for all replicas instead.
    """
    if not _in_tensorflow():
        return fn()
    context = tf.distribute.get_replica_context()
    if context is None or not tf.distribute.has_strategy():
        return fn()
    return context.merge_call(lambda strategy: fn())


def is_chief(strategy):
    """Whether this worker writes the files (single machine: always)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0
