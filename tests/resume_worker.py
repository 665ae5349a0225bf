"""Trains with BackupAndRestore and AffinityLogger, possibly killed mid-fit.

Usage: python -m tests.resume_worker STRATEGY OUT_DIR [KILL_AT_EPOCH]
STRATEGY is `multi_worker` (TF_CONFIG must be set) or `single` (the same
global batches on one device). Worker 1 of a multi-worker cluster kills
itself with SIGKILL at the start of epoch KILL_AT_EPOCH when it is given.
Backups go to OUT_DIR/backup_<task index>, the logger writes OUT_DIR/logs
(chief only), and a finished run saves OUT_DIR/result_<task index>.npz.
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

import tag_keras  # noqa: E402
from tests import distributed_worker as common  # noqa: E402

STRATEGY, OUT = sys.argv[1:3]
KILL_AT = int(sys.argv[3]) if len(sys.argv) > 3 else None
EPOCHS = 4


class KillWorkerOne(keras.callbacks.Callback):
    def __init__(self, index):
        super().__init__()
        self.index = index

    def on_epoch_begin(self, epoch, logs=None):
        if self.index == 1 and epoch == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    index = 0
    if STRATEGY == "multi_worker":
        index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = common.build(tag_keras.TaskAffinityModel,
                             affinity_every_n_steps=1)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      loss={t: "mse" for t in common.TASKS})
    if STRATEGY == "multi_worker":
        # In order: a restarted worker's dataset would start its shuffle
        # afresh, unlike the uninterrupted single-device run.
        data = strategy.distribute_datasets_from_function(
            lambda context: common.worker_dataset(context, shuffle=False))
    else:
        data = common.dataset(shuffle=False)
    callbacks = [
        # Keras 3's BackupAndRestore is not multi-worker aware: workers
        # sharing one directory would write the same file. Each worker keeps
        # its own, as on separate machines.
        keras.callbacks.BackupAndRestore(
            os.path.join(OUT, f"backup_{index}")),
        tag_keras.AffinityLogger(os.path.join(OUT, "logs")),
        KillWorkerOne(index),
    ]
    model.fit(data, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    np.savez(os.path.join(OUT, f"result_{index}.npz"),
             affinity=model.affinity().to_numpy(),
             counts=model.affinity_counts().to_numpy())


main()
