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
import pandas as pd
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
    # Group sources too (the unrolled loop under a strategy).
    np.testing.assert_allclose(result["groups"], single["groups"],
                               rtol=1e-3, atol=1e-5)
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_training_strategies_use_the_global_batch(tmp_path):
    """UW, GradNorm, PCGrad, IT-MTL and MGDA train the same on two
    replicas."""
    names = ("single", "mirrored")
    # Both processes at once: each spends most of its time tracing, on one
    # core.
    processes = [subprocess.Popen(
        [sys.executable, "-m", "tests.mtl_worker", name, str(tmp_path / name)],
        cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for name in names]
    for process in processes:
        _finish(process)
    runs = {name: np.load(tmp_path / f"{name}.npz") for name in names}
    assert int(runs["mirrored"]["replicas"]) == 2
    for key in ("uw", "gradnorm", "pcgrad", "itmtl", "itmtl_first_order",
                "mgda", "mgda_ub"):
        np.testing.assert_allclose(runs["mirrored"][key], runs["single"][key],
                                   rtol=1e-4, atol=1e-5, err_msg=key)


def _resume_worker(strategy, out, kill_at=None, env=None):
    args = [strategy, str(out)] + ([] if kill_at is None else [str(kill_at)])
    return subprocess.Popen(
        [sys.executable, "-m", "tests.resume_worker", *args],
        cwd=_ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _cluster_env():
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    return [{"TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})}
        for i in range(2)]


@pytest.mark.slow
def test_a_killed_worker_resumes_without_losing_or_duplicating_rows(
    tmp_path
):
    reference = tmp_path / "single"
    reference_run = _resume_worker("single", reference)  # Beside the cluster.
    out = tmp_path / "cluster"
    # Worker 1 is killed (SIGKILL) as epoch 2 starts, after the backup of
    # epoch 1; the chief then waits for it forever, so the test stops it
    # too, as a cluster manager restarting the job would.
    workers = [_resume_worker("multi_worker", out, kill_at=2, env=env)
               for env in _cluster_env()]
    workers[1].communicate(timeout=600)
    assert workers[1].returncode == -9
    workers[0].kill()
    workers[0].communicate(timeout=60)
    interrupted = pd.read_csv(out / "logs" / "affinity_epochs.csv")
    assert set(interrupted.epoch) == {0, 1}
    # Both workers restart (on new ports) and resume from the backup.
    workers = [_resume_worker("multi_worker", out, env=env)
               for env in _cluster_env()]
    for worker in [*workers, reference_run]:
        _finish(worker)
    epochs = pd.read_csv(out / "logs" / "affinity_epochs.csv")
    assert epochs.groupby("epoch").size().to_dict() == dict.fromkeys(
        range(4), 9)
    steps = pd.read_csv(out / "logs" / "affinity_steps.csv")
    assert sorted(set(steps.step)) == list(range(8))
    assert steps.groupby("step").size().eq(9).all()
    single = pd.read_csv(reference / "logs" / "affinity_steps.csv")
    np.testing.assert_allclose(
        steps.sort_values(["step", "source", "target"]).affinity,
        single.sort_values(["step", "source", "target"]).affinity,
        rtol=1e-3, atol=1e-5)
    result, expected = (np.load(out / "result_0.npz"),
                        np.load(reference / "result_0.npz"))
    np.testing.assert_array_equal(result["counts"], expected["counts"])
    np.testing.assert_allclose(result["affinity"], expected["affinity"],
                               rtol=1e-3, atol=1e-5)
    matrix = pd.read_csv(out / "logs" / "affinity.csv", index_col="source")
    np.testing.assert_allclose(matrix.to_numpy(), result["affinity"],
                               rtol=1e-6)


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
