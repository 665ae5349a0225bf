"""TaskAffinityModel under tf.distribute: the same affinity as one device.

Each configuration runs in its own process (device layout and TF_CONFIG are
process-wide). The global batch is the same in every run, so the affinity of
a distributed run must equal the single-device one, and training must equal
a plain keras.Model under the same strategy.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(strategy, method, out, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.distributed_worker", strategy, method,
         str(out)],
        cwd=_ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(process):
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _check_against_single(result, single):
    np.testing.assert_allclose(result["affinity"], single["affinity"],
                               rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(result["counts"], single["counts"])
    # Training equals a plain keras.Model under the same strategy.
    np.testing.assert_allclose(result["weights"], result["plain"],
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "single.npz"
    _finish(_run("single", "lookahead", out))
    return np.load(out)


def test_mirrored_strategy_measures_the_global_batch(single, tmp_path):
    out = tmp_path / "mirrored.npz"
    _finish(_run("mirrored", "lookahead", out))
    result = np.load(out)
    assert int(result["replicas"]) == 2
    _check_against_single(result, single)


def test_multi_worker_strategy_gives_one_matrix_on_every_worker(
    single, tmp_path
):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = []
    for index in range(2):
        tf_config = {"cluster": cluster,
                     "task": {"type": "worker", "index": index}}
        processes.append(_run(
            "multi_worker", "lookahead", tmp_path / f"worker{index}.npz",
            env={"TF_CONFIG": json.dumps(tf_config)},
        ))
    for process in processes:
        _finish(process)
    results = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    assert int(results[0]["replicas"]) == 2
    np.testing.assert_array_equal(results[0]["affinity"],
                                  results[1]["affinity"])
    for result in results:
        _check_against_single(result, single)
    # Only the chief (worker 0 when the cluster has no "chief") writes files.
    chief_matrix = tmp_path / "worker0.npz_logs" / "affinity.csv"
    assert chief_matrix.exists()
    assert not (tmp_path / "worker1.npz_logs").exists()


def test_a_single_machine_is_always_the_chief():
    from tag_keras import _distribute

    class Resolver:
        def __init__(self, task_type, task_id, cluster):
            self.task_type, self.task_id = task_type, task_id
            self._cluster = cluster

        def cluster_spec(self):
            import tensorflow as tf

            return tf.train.ClusterSpec(self._cluster)

    class Strategy:
        def __init__(self, resolver):
            self.cluster_resolver = resolver

    workers = {"worker": ["a:1", "b:2"]}
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    assert _distribute.is_chief(Strategy(None))
    assert _distribute.is_chief(Strategy(Resolver("worker", 0, workers)))
    assert not _distribute.is_chief(Strategy(Resolver("worker", 1, workers)))
    assert _distribute.is_chief(Strategy(Resolver("chief", 0, with_chief)))
    assert not _distribute.is_chief(
        Strategy(Resolver("worker", 0, with_chief)))
