"""Small helpers for running inside (or outside) `tf.distribute`."""

import tensorflow as tf


def replica_sum(value):
    """Sums `value` over the replicas of the current step (identity on one).

    Keras divides each replica's loss by the number of replicas, so the sum
    of per-replica losses or gradients is the global-batch value.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas():
    """Replicas of the current step (1 outside `tf.distribute`)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_any(flag):
    """True when `flag` holds on any replica."""
    return replica_sum(tf.cast(flag, "float32")) > 0


def replica_all(flag):
    """True when `flag` holds on every replica."""
    return replica_sum(tf.cast(tf.logical_not(flag), "float32")) == 0


def in_cross_replica_context(fn):
    """Runs `fn()` once, in cross-replica context, from any context.

    Assigning to mirrored variables from a replica needs an aggregation;
    copies of identical values are made once for all replicas instead.
    """
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


class MultiWorkerFixes:
    """Model mixin: Keras 3.15's TensorFlow trainer under any strategy.

    Under a `tf.distribute` strategy Keras 3.15 builds the model before
    `fit` from the first batch of the training data, which (1) advances a
    reshuffling dataset by one epoch, so that epoch k of a distributed run
    sees the order of epoch k + 1 of the same run on one device, and (2)
    under `MultiWorkerMirroredStrategy` fails outright: it averages that
    batch over replicas with one `strategy.reduce` over the whole (x, y)
    structure, which the collective strategy rejects ("Attempt to convert a
    value (PerReplica...)"). Only shapes and dtypes matter for the build:
    this mixin builds from the dataset's `element_spec` (one replica's,
    for an already distributed dataset) and reads no data. During `fit`,
    Keras 3.15 also reduces each multi-worker step's scalar logs with
    `strategy.reduce("MEAN", value, axis=0)`, which needs an axis: each log
    gets a leading axis of length one, so that reduction is the mean over
    replicas, a scalar again.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator, data_batch)
        data_batch = _element_spec(iterator)
        if data_batch is None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(_first_replica,
                                                   next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def _make_function(self, step_function):
        if not _is_multi_worker(self.distribute_strategy):
            return super()._make_function(step_function)

        def with_axis(data):
            logs = step_function(data)
            return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), logs)

        return super()._make_function(with_axis)


def _is_multi_worker(strategy):
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and strategy.extended._in_multi_worker_mode()


def _element_spec(iterator):
    """One replica's element spec of the training data, or None.

    A `tf.data.Dataset`'s spec is the global batch's; an already
    distributed dataset's holds one spec per local replica (all alike).
    """
    adapter = getattr(iterator, "data_adapter", None)
    if adapter is None:
        return None
    spec = getattr(adapter.get_tf_dataset(), "element_spec", None)
    if spec is None:
        return None
    return tf.nest.map_structure(_first_replica_spec, spec)


def _first_replica_spec(spec):
    replicas = getattr(spec, "_value_specs", None)  # PerReplicaSpec
    return spec if replicas is None else replicas[0]


def _first_replica(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value
