"""Group networks trained as Ray tasks (issue 37) on a real local Ray
runtime: the same networks and the same decision as in one process, a
killed worker retried, tf.data rebuilt in the worker, the cache the one
source of truth."""

import os

import numpy as np
import pytest

from tests import train_module

ray = pytest.importorskip("ray")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def runtime():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": _ROOT}})
    yield
    ray.shutdown()


def _trainer(directory, executor, data=None, seeds=(0, 1), **kwargs):
    from tag_keras import train

    return train.GroupTrainer(
        train_module.build, data or train_module.data(), seeds=list(seeds),
        fit_kwargs={"epochs": 2},
        directory=None if directory is None else str(directory), log=None,
        executor=executor, **kwargs)


def _outcomes(trainer, groups):
    return [trainer.network(g, s).outcomes[split][t][i]
            for g in groups for s in trainer.seeds for t in g
            for split in ("validation", "test") for i in (0, 1)]


def _assert_same(one, other, groups):
    for a, b in zip(_outcomes(one, groups), _outcomes(other, groups),
                    strict=True):
        np.testing.assert_array_equal(a, b)


_CANDIDATES = {2: [((("a", "b"), ("c",)), {"a": 0, "b": 0, "c": 1})],
               3: [((("a",), ("b",), ("c",)), {"a": 0, "b": 1, "c": 2})]}


@pytest.mark.slow
def test_ray_trains_the_networks_and_decision_of_one_process(
        runtime, tmp_path):
    """Two networks at a time (1 CPU, one thread each) and in this process
    (all threads): bitwise the same networks, the same decision, with the
    sequential rule's looks submitting only the undecided budgets."""
    from tag_keras import train
    from tag_keras.train import executors

    class Recorded(executors.RayExecutor):
        calls = []

        def run(self, recipe, jobs, done):
            self.calls.append([(group, seed) for group, seed, *_ in jobs])
            return super().run(recipe, jobs, done)

    decisions, trainers = [], []
    for name, executor in (("here", None), ("two", Recorded())):
        trainer = _trainer(tmp_path / name, executor)
        decisions.append(train.decide(trainer, _CANDIDATES, max_seeds=3,
                                      metric="loss"))
        trainers.append(trainer)
    groups = [("a", "b", "c"), ("a", "b"), ("c",), ("a",), ("b",)]
    for other in trainers[1:]:
        _assert_same(trainers[0], other, groups)
    for other in decisions[1:]:
        assert other.answer == decisions[0].answer
        assert other.seeds == decisions[0].seeds
        for a, b in zip(decisions[0].budgets, other.budgets, strict=True):
            assert a.to_dict() == b.to_dict()
    # One submission per look: first every group at the 2 first seeds,
    # then only the new seeds of the all-task network and of the budgets
    # still undecided at that look.
    first, *later = Recorded.calls
    assert sorted(first) == sorted((g, s) for g in groups for s in (0, 1))
    assert 1 <= len(later) <= len(decisions[1].looks) - 1
    seen = 2
    for call in later:
        look = max(s for _, s in call) + 1
        open_budgets = [o for o in decisions[1].budgets if o.seeds >= look]
        allowed = {("a", "b", "c")} | {g for o in open_budgets
                                       for g in o.groups}
        assert {g for g, _ in call} <= allowed
        assert {s for _, s in call} == set(range(seen, look))
        seen = look
    # The cache is the source of truth: a rerun trains nothing.
    lines = []
    again = _trainer(tmp_path / "two", None)
    again._log = lines.append
    train.decide(again, _CANDIDATES, max_seeds=3, metric="loss")
    assert lines == []
    assert not list((tmp_path / "two" / "networks").glob(".*"))


@pytest.mark.slow
def test_a_killed_worker_is_retried_with_the_same_network(
        runtime, tmp_path, monkeypatch):
    from tag_keras.train import executors

    marker = tmp_path / "killed"
    monkeypatch.setenv(executors.KILL_FIRST_ATTEMPT, str(marker))
    trainer = _trainer(tmp_path / "out", executors.RayExecutor(
        max_retries=2))
    trainer.train([("a",)])
    assert marker.exists()  # one worker died on its first attempt
    monkeypatch.delenv(executors.KILL_FIRST_ATTEMPT)
    here = _trainer(None, None)
    _assert_same(here, trainer, [("a",)])
    files = sorted(os.listdir(tmp_path / "out" / "networks"))
    assert len(files) == 2 and all(f.endswith(".npz") for f in files)


@pytest.mark.slow
def test_tf_data_is_rebuilt_in_the_worker(runtime, tmp_path):
    from tag_keras.train import executors

    data = train_module.streamed()
    executor = executors.RayExecutor()
    without = _trainer(tmp_path / "refused", executor, data=data)
    with pytest.raises(ValueError, match="cannot be sent to Ray workers"):
        without.train([("a", "b")])
    ray_trainer = _trainer(tmp_path / "ray", executor, data=data,
                           data_function=train_module.streamed)
    ray_trainer.train([("a", "b")])
    _assert_same(_trainer(None, None, data=data), ray_trainer, [("a", "b")])


def test_bad_settings_are_one_line():
    from tag_keras.train import executors

    with pytest.raises(ValueError, match="`workers` must be at least 1"):
        executors.RayExecutor(workers=0)
    with pytest.raises(ValueError, match="not both"):
        executors.RayExecutor(workers=2, address="auto")
    with pytest.raises(ValueError, match="`cpus_per_network` must be"):
        executors.RayExecutor(cpus_per_network=0)


def _tag_train(out_dir, *args, wait=True):
    import json
    import subprocess
    import sys

    groups = out_dir.parent / "groups.json"
    groups.write_text(json.dumps({"tasks": ["a", "b", "c"], "results": [
        {"num_groups": 2, "groups": [["a", "b"], ["c"]],
         "serve": {"a": 0, "b": 0, "c": 1}}]}))
    command = [sys.executable, "-m", "tag_keras.train.cli",
               "--model=tests.train_module:build",
               "--data=tests/train_module.py:data", f"--groups={groups}",
               f"--out_dir={out_dir}", "--epochs=2", "--seeds=0,1,2",
               "--max_seeds=3", "--metric=loss", *args]
    from tests import cli_runner

    options = dict(cwd=_ROOT, text=True, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE,
                   env=dict(os.environ, PYTHONPATH=_ROOT),
                   preexec_fn=cli_runner.as_from_a_terminal)
    if wait:
        return subprocess.run(command, timeout=900, **options)
    return subprocess.Popen(command, **options)


def _settled(directory, quiet=5.0, limit=180.0):
    """The files of `directory` once no file has appeared for `quiet`
    seconds (at most `limit` seconds)."""
    import time

    start = last_change = time.monotonic()
    files = set(os.listdir(directory))
    while time.monotonic() - last_change < quiet:
        if time.monotonic() - start > limit:
            break
        time.sleep(0.5)
        now = set(os.listdir(directory))
        if now != files:
            files, last_change = now, time.monotonic()
    return files


def _interrupt_after_first_network(out_dir, sig, *args):
    """Runs tag-train, sends `sig` once its first network is done."""
    process = _tag_train(out_dir, *args, wait=False)
    for line in process.stdout:
        if line.startswith("[1/"):
            process.send_signal(sig)
            break
    out, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.mark.slow
def test_tag_train_with_two_workers_writes_what_one_worker_writes(tmp_path):
    """`--workers=1` and `--workers=2` write the same decision.json and
    results.csv; the two-worker run is first stopped by Ctrl-C (one line,
    exit 130), then its driver killed, and each rerun trains only what
    is missing, the cache never holding a partial network."""
    import json
    import signal

    one = _tag_train(tmp_path / "one", "--workers=1")
    assert one.returncode == 0, one.stderr[-3000:]
    two = tmp_path / "two"
    code, err = _interrupt_after_first_network(two, signal.SIGINT,
                                               "--workers=2")
    if code == 0:
        pytest.skip("the run ended before the signal (a loaded machine)")
    assert code == 130 and err.strip().splitlines()[-1] == (
        "tag-train: interrupted")
    after_ctrl_c = set(os.listdir(two / "networks"))
    assert after_ctrl_c and all(f.endswith(".npz") for f in after_ctrl_c)
    code, _ = _interrupt_after_first_network(two, signal.SIGKILL,
                                             "--workers=2")
    assert code == -signal.SIGKILL
    # The killed driver's Ray workers are orphans that may still finish
    # (and write, whole) the networks they were training.
    after_kill = _settled(two / "networks")
    assert after_ctrl_c <= after_kill
    assert all(f.endswith(".npz") for f in after_kill)
    done = _tag_train(two, "--workers=2")
    assert done.returncode == 0, done.stderr[-3000:]
    trained = [line for line in done.stdout.splitlines()
               if line.startswith("[")]
    total = len(os.listdir(two / "networks"))
    assert len(trained) == total - len(after_kill)
    import pandas as pd

    assert (json.loads((tmp_path / "one" / "decision.json").read_text())
            == json.loads((two / "decision.json").read_text()))
    pd.testing.assert_frame_equal(  # all but the wall time of each fit
        pd.read_csv(tmp_path / "one" / "results.csv").drop(
            columns="seconds"),
        pd.read_csv(two / "results.csv").drop(columns="seconds"))
