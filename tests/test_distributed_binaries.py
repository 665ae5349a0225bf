"""The experiment binaries under `--distribution`, as separate processes.

Each run is its own process (device layout and TF_CONFIG are process-wide).
`mirrored` runs on two logical CPU devices, set up by the `tests.logical_cpus`
wrapper before TensorFlow starts; `multi_worker` runs as two local worker
processes on free loopback ports. The global batch and the data order are
those of the default run, so the affinity matrix must be the default run's
up to float32 summation order (two replicas add two half-batch sums).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments.lib import distribution as distribution_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
# Tiny planted run: 2000 training examples in 10 global batches of 200,
# two epochs, affinity measured on every other step.
FLAGS = ("--dataset=planted", "--tasks=c0_t0,c0_t1,c1_t0,noise_0",
         "--epochs=2", "--width=4", "--batch_size=200",
         "--affinity_every_n_steps=2")
# Float32 sums in another order: observed differences are at most 2e-6 on
# the matrix and 7e-6 on single steps (values up to 0.8).
RTOL, ATOL = 1e-4, 5e-5
# One test example of 500 may flip with such differences.
ERROR_ATOL = 1 / 500 + 1e-6
AFFINITY_FILES = ("affinity/affinity.csv", "affinity/affinity_epochs.csv",
                  "affinity/affinity_steps.csv", "history.csv",
                  "metrics.csv", "run.json")


def _start(module, *args, env=None, logical_cpus=None):
    """Starts `python -m experiments.MODULE ARGS`, optionally wrapped."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3",
               **(env or {}))
    command = [sys.executable, "-m"]
    if logical_cpus:
        env["TAG_TEST_LOGICAL_CPUS"] = str(logical_cpus)
        command += ["tests.logical_cpus"]
    command += [f"experiments.{module}", *args]
    return subprocess.Popen(command, cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def _affinity(out_dir):
    return pd.read_csv(out_dir / "affinity" / "affinity.csv",
                       index_col="source")


def _assert_same_run(out_dir, reference):
    """The affinity files and test errors of `out_dir` are the reference's."""
    pd.testing.assert_frame_equal(_affinity(out_dir), _affinity(reference),
                                  rtol=RTOL, atol=ATOL)
    steps, expected = (
        pd.read_csv(d / "affinity" / "affinity_steps.csv").sort_values(
            ["step", "source", "target"], ignore_index=True)
        for d in (out_dir, reference))
    pd.testing.assert_frame_equal(steps[["step", "epoch", "source", "target"]],
                                  expected[["step", "epoch", "source",
                                            "target"]])
    np.testing.assert_allclose(steps["affinity"], expected["affinity"],
                               rtol=RTOL, atol=ATOL)
    metrics, expected = (pd.read_csv(d / "metrics.csv")
                         for d in (out_dir, reference))
    assert list(metrics["task"]) == list(expected["task"])
    np.testing.assert_allclose(metrics["test_error"], expected["test_error"],
                               atol=ERROR_ATOL)
    assert len(pd.read_csv(out_dir / "history.csv")) == 2


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("default")
    _finish(_start("run_affinity", *FLAGS, f"--out_dir={out_dir}"))
    run = json.loads((out_dir / "run.json").read_text())
    assert run["distribution"] is None
    return out_dir


@pytest.mark.slow
def test_mirrored_run_affinity_on_two_devices_matches_the_default(
        default_run, tmp_path):
    stdout = _finish(_start("run_affinity", *FLAGS, "--distribution=mirrored",
                            f"--out_dir={tmp_path}", logical_cpus=2))
    assert "MirroredStrategy, 2 replicas" in stdout
    for name in AFFINITY_FILES:
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents*"))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["distribution"] == {"strategy": "MirroredStrategy",
                                   "replicas": 2, "chief": True}
    assert run["config"]["batch_size"] == 200  # The global batch.
    _assert_same_run(tmp_path, default_run)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_configs(workers):
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(workers)]}
    return [json.dumps({"cluster": cluster,
                        "task": {"type": "worker", "index": i}})
            for i in range(workers)]


def _run_workers(module, *args, out_dirs):
    """Runs one process per worker (worker i writes to out_dirs[i])."""
    processes = [
        _start(module, *args, "--distribution=multi_worker",
               f"--out_dir={out_dir}", env={"TF_CONFIG": tf_config})
        for out_dir, tf_config in zip(out_dirs, _tf_configs(len(out_dirs)),
                                      strict=True)]
    try:
        return [_finish(p) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
def test_multi_worker_run_affinity_only_the_chief_writes(default_run,
                                                         tmp_path):
    # Different --out_dir per worker only to see who wrote what; on a real
    # cluster every machine runs the same command.
    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    outputs = _run_workers("run_affinity", *FLAGS, out_dirs=[chief, other])
    assert "MultiWorkerMirroredStrategy, 2 replicas" in outputs[0]
    assert "not the chief" in outputs[1]
    assert f"Wrote {chief}/affinity/" in outputs[0]
    assert "Wrote" not in outputs[1]
    assert not other.exists()
    for name in AFFINITY_FILES:
        assert (chief / name).is_file(), name
    run = json.loads((chief / "run.json").read_text())
    assert run["distribution"] == {"strategy": "MultiWorkerMirroredStrategy",
                                   "replicas": 2, "chief": True}
    _assert_same_run(chief, default_run)


@pytest.mark.slow
def test_multi_worker_pipeline_trains_plain_group_networks(tmp_path):
    flags = ("--dataset=planted", "--tasks=c0_t0,c0_t1,c1_t0", "--epochs=1",
             "--width=4", "--batch_size=100", "--budgets=2",
             "--rg_samples=1")
    reference = tmp_path / "default"
    _finish(_start("pipeline", *flags, f"--out_dir={reference}"))
    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    _run_workers("pipeline", *flags, out_dirs=[chief, other])
    assert not other.exists()
    results, expected = (pd.read_csv(d / "results.csv")
                         for d in (chief, reference))
    assert list(results["method"]) == ["MTL", "STL", "RG", "CS", "TAG"]
    assert list(results["groups"].fillna("")) == list(
        expected["groups"].fillna(""))
    tasks = ["c0_t0", "c0_t1", "c1_t0"]
    np.testing.assert_allclose(results[tasks], expected[tasks],
                               atol=100 * ERROR_ATOL)
    timings = json.loads((chief / "pipeline.json").read_text())
    assert timings["distribution"]["replicas"] == 2


# ----------------------------------------------------------------------
# Errors and the chief's directory, without training.


def test_bad_distribution_values_are_one_line_errors(tmp_path):
    bad = _start("run_affinity", "--distribution=horovod",
                 f"--out_dir={tmp_path / 'bad'}")
    unset = _start("run_affinity", "--distribution=multi_worker",
                   f"--out_dir={tmp_path / 'unset'}",
                   env={"TF_CONFIG": ""})
    _, stderr = bad.communicate(timeout=120)
    assert bad.returncode != 0
    (error,) = [line for line in stderr.splitlines()
                if "Flags parsing error" in line]
    assert error.endswith("flag --distribution=horovod: value should be "
                          "one of <default|mirrored|multi_worker>"), error
    _, stderr = unset.communicate(timeout=120)
    assert unset.returncode == 1
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines()
              if line.startswith("run_affinity: error:")]
    assert errors == [(
        "run_affinity: error: --distribution=multi_worker: multi_worker "
        "reads the cluster from the TF_CONFIG environment variable, a JSON "
        "object with `cluster` and `task` (see docs/guides/distributed.md). "
        "Received: "
        "TF_CONFIG=(unset)")]
    assert not list(tmp_path.iterdir())


def test_make_distribution_checks_its_arguments(monkeypatch):
    assert distribution_lib.make_distribution("default") is None
    with pytest.raises(ValueError, match=r"Received: name='tpu'"):
        distribution_lib.make_distribution("tpu")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError,
                       match=r"Received: TF_CONFIG='\{not json'"):
        distribution_lib.make_distribution("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"task": {"type": "worker"}}')
    with pytest.raises(ValueError, match="cluster"):
        distribution_lib.make_distribution("multi_worker")


class _Resolver:
    def __init__(self, task_id):
        self.task_type, self.task_id = "worker", task_id

    def cluster_spec(self):
        import tensorflow as tf

        return tf.train.ClusterSpec({"worker": ["a:1", "b:2"]})


class _Strategy:
    def __init__(self, task_id):
        self.cluster_resolver = _Resolver(task_id)


def test_only_the_chief_writes_into_out_dir(tmp_path):
    out_dir = tmp_path / "out"
    with distribution_lib.output_dir(out_dir) as writable:
        assert writable == out_dir
    with distribution_lib.output_dir(out_dir, _Strategy(0)) as writable:
        assert writable == out_dir
    with distribution_lib.output_dir(out_dir, _Strategy(1)) as writable:
        assert pathlib.Path(writable) != out_dir
        (pathlib.Path(writable) / "results.csv").write_text("x")
        # A nested call (the pipeline's cosine/ run) keeps the layout.
        inner = os.path.join(writable, "cosine")
        with distribution_lib.output_dir(inner, _Strategy(1)) as nested:
            assert nested == inner
            os.makedirs(nested)
        assert os.path.isdir(inner)
    assert not pathlib.Path(writable).exists()
    assert not out_dir.exists()
