"""Trains the test model under a tf.distribute strategy (run as a process).

Usage: python -m tests.distributed_worker STRATEGY METHOD OUT_PREFIX
STRATEGY is `mirrored` (two logical CPUs), `multi_worker` (TF_CONFIG must
be set) or `single`. Writes OUT_PREFIX.npz with the affinity, counts and
weights of a TaskAffinityModel and the weights of a plain keras.Model
trained the same way under the same strategy; the TaskAffinityModel's
AffinityLogger writes to OUT_PREFIX_logs (on the chief only).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if __name__ == "__main__" and sys.argv[1] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

import keras  # noqa: E402

import tag_keras  # noqa: E402
from tag_keras import _keras_private  # noqa: E402


class PlainModel(_keras_private.MultiWorkerFixes, keras.Model):
    """A plain keras.Model, with the package's workaround for Keras 3.15's
    multi-worker fit (see `MultiWorkerFixes`)."""

TASKS = "abc"


def build(cls, **kwargs):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(6, activation="tanh", name="trunk")(inputs)
    outputs = {t: keras.layers.Dense(1, name=f"head_{t}")(h) for t in TASKS}
    return cls(inputs=inputs, outputs=outputs, **kwargs)


def dataset(shuffle=True):
    """Global batches of 8 from 16 rows.

    With `shuffle`, reshuffled every epoch (seeded): a distributed fit must
    not consume an epoch of it before training (Keras 3.15's build does;
    `MultiWorkerFixes` builds from the element spec instead).
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = {t: rng.normal(size=(16, 1)).astype("float32") for t in TASKS}
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
    )
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(16, seed=1, reshuffle_each_iteration=True)
    return data.batch(8).with_options(options)


def worker_dataset(context, shuffle=True):
    """This worker's part of each global batch of `dataset(shuffle)`."""
    per_worker = 8 // context.num_input_pipelines
    start = context.input_pipeline_id * per_worker
    return dataset(shuffle).map(lambda *batch: tf.nest.map_structure(
        lambda v: v[start:start + per_worker], batch))


def train(strategy, cls, callbacks=(), multi_worker=False, **kwargs):
    with strategy.scope():
        model = build(cls, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      loss={t: "mse" for t in TASKS})
    if multi_worker:
        data = strategy.distribute_datasets_from_function(worker_dataset)
    else:
        data = dataset()
    model.fit(data, epochs=2, verbose=0, callbacks=list(callbacks))
    return model


def main(name, method, out):
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    multi_worker = name == "multi_worker"
    plain = train(strategy, PlainModel, multi_worker=multi_worker)
    measured = train(strategy, tag_keras.TaskAffinityModel,
                     callbacks=[tag_keras.AffinityLogger(out + "_logs")],
                     multi_worker=multi_worker, affinity_every_n_steps=1,
                     affinity_method=method, affinity_sources="subsets")
    groups = measured.group_affinity()
    np.savez(
        out,
        affinity=measured.affinity().to_numpy(),
        counts=measured.affinity_counts().to_numpy(),
        groups=groups[["affinity", "count"]].to_numpy(),
        weights=np.concatenate([v.numpy().ravel() for v in measured.weights
                                if "affinity" not in v.path]),
        plain=np.concatenate([w.ravel() for w in plain.get_weights()]),
        replicas=strategy.num_replicas_in_sync,
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
