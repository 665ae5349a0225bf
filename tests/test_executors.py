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
