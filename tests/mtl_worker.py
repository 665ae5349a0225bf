"""Trains the test model with each tag_keras.mtl strategy (run as a process).

Usage: python -m tests.mtl_worker STRATEGY OUT
STRATEGY is `mirrored` (two logical CPUs) or `single`; both see the same
global batches. Writes OUT.npz with, per training strategy, the model's
weights followed by the strategy's own.
"""

import sys

import numpy as np
import tensorflow as tf

if __name__ == "__main__" and sys.argv[1] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import tag_keras  # noqa: E402
from tag_keras import mtl  # noqa: E402
from tests import distributed_worker as common  # noqa: E402

STRATEGIES = {
    "uw": lambda: mtl.UncertaintyWeights(),
    "gradnorm": lambda: mtl.GradNorm(learning_rate=0.05),
    "pcgrad": lambda: mtl.PCGrad(mtl.UncertaintyWeights(), seed=1),
    "itmtl": lambda: mtl.ITMTL(["all", "pcgrad", "a", ("b", "c")]),
    "itmtl_first_order": lambda: mtl.ITMTL(["all", "pcgrad", "a"],
                                           affinity_method="first_order"),
    "mgda": lambda: mtl.MGDA(),
    "mgda_ub": lambda: mtl.MGDA(upper_bound=True),
}


def main(name, out):
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.get_strategy()
    results = {}
    for key, make in STRATEGIES.items():
        with strategy.scope():
            model = common.build(tag_keras.TaskAffinityModel,
                                 training_method=make(),
                                 affinity_every_n_steps=2)
            model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                          loss={t: "mse" for t in common.TASKS})
        model.fit(common.dataset(), epochs=3, verbose=0)
        values = model.get_weights() + [
            keras.ops.convert_to_numpy(v)
            for v in model.training_method.weights]
        results[key] = np.concatenate(
            [np.ravel(v).astype(np.float64) for v in values])
    np.savez(out, replicas=strategy.num_replicas_in_sync, **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
