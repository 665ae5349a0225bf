"""Runs a module as `__main__` on several logical CPU devices (tests only).

Usage: TAG_TEST_LOGICAL_CPUS=2 python -m tests.logical_cpus MODULE [ARGS]

Splits the first physical CPU into `TAG_TEST_LOGICAL_CPUS` logical devices
before TensorFlow initialises, then runs `python -m MODULE ARGS` in this
process, so a binary's `--distribution=mirrored` gets several replicas on a
machine without GPUs. The device layout is process-wide and can only be set
before the first TensorFlow operation, hence a wrapper process rather than
a flag of the binaries.
"""

import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

VARIABLE = "TAG_TEST_LOGICAL_CPUS"


def split_cpu(count):
    """Makes `count` logical devices of the first physical CPU."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count)


if __name__ == "__main__":
    split_cpu(int(os.environ.get(VARIABLE, "2")))
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
