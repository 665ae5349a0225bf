"""Group training for any model and the validated split decision."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests import train_module

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)


# ---------------------------------------------------------------- statistics

def _loop_statistic(d):
    totals = []
    for s in range(d.shape[0]):
        total = 0.0
        for t in range(d.shape[1]):
            values = [v for v in d[s, t] if not np.isnan(v)]
            if values:
                total += sum(values) / len(values)
        totals.append(total)
    return sum(totals) / len(totals)


def test_paired_bootstrap_matches_a_loop_over_the_same_draws():
    from tag_keras.train import statistics

    rng = np.random.default_rng(3)
    d = rng.normal(size=(3, 2, 11))
    d[1, 0, [2, 5]] = np.nan  # Unlabelled examples.
    estimate, low, high = statistics.paired_bootstrap(
        d, resamples=300, level=0.9, seed=7)
    assert estimate == pytest.approx(_loop_statistic(d))
    seed_draws, example_draws = statistics.bootstrap_draws(3, 11, 300, 7)
    by_hand = [_loop_statistic(d[seeds][:, :, examples])
               for seeds, examples in zip(seed_draws, example_draws)]
    assert (low, high) == pytest.approx(
        tuple(np.quantile(by_hand, [0.05, 0.95])))
    # More candidates widen the interval (Bonferroni).
    _, wide_low, wide_high = statistics.paired_bootstrap(
        d, resamples=300, level=0.9, comparisons=4, seed=7)
    assert wide_low <= low and wide_high >= high
    assert (wide_low, wide_high) == pytest.approx(
        tuple(np.quantile(by_hand, [0.1 / 8, 1 - 0.1 / 8])))


def test_paired_bootstrap_leaves_out_tasks_without_values():
    from tag_keras.train import statistics

    d = np.array([[[1.0, 3.0], [np.nan, np.nan]]])
    assert statistics.paired_bootstrap(d, resamples=50)[0] == 2.0
    assert np.isnan(statistics.paired_statistic(np.full((1, 2, 3), np.nan)))


def test_random_groupings_are_every_partition_when_few():
    from tag_keras.train import random_groupings

    tasks = ("a", "b", "c", "d")
    for k in (1, 2, 3, 4):
        partitions, exact = random_groupings.random_partitions(
            tasks, k, 100, seed=0)
        by_hand = set()
        for labels in itertools.product(range(k), repeat=len(tasks)):
            if len(set(labels)) == k:
                by_hand.add(frozenset(
                    frozenset(t for t, g in zip(tasks, labels) if g == i)
                    for i in range(k)))
        assert exact
        assert {frozenset(map(frozenset, p)) for p in partitions} == by_hand
        assert len(partitions) == len(by_hand)
        # The expectation of any value is the plain mean over them all.
        sizes = [max(len(g) for g in p) for p in partitions]
        mean, se = random_groupings.expectation(sizes, exact)
        assert mean == pytest.approx(np.mean(
            [max(len(g) for g in p) for p in by_hand]))
        assert se == 0.0
    sampled, exact = random_groupings.random_partitions(tasks, 2, 3, seed=1)
    assert not exact and len(sampled) == 3
    assert random_groupings.expectation([1.0, 2.0, 3.0], False)[1] == (
        pytest.approx(np.std([1, 2, 3], ddof=1) / np.sqrt(3)))


# ----------------------------------------------------------------- selection

def _set_partitions(items, k):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in _set_partitions(rest, k):
        for i in range(len(p)):
            yield p[:i] + [[first] + p[i]] + p[i + 1:]
        if len(p) < k:
            yield [[first]] + p


def _brute_top(z, tasks, k, top):
    from tag_keras.select import grouping as grouping_lib

    n = len(tasks)

    def best_group(block):
        best = (-np.inf, None)
        others = [t for t in range(n) if t not in block]
        for h in range(n - len(block) + 1):
            for helpers in itertools.combinations(others, h):
                group = tuple(sorted(block + list(helpers)))
                if len(group) < 2:
                    continue
                value = sum(grouping_lib.task_score(z, a, group)
                            for a in block)
                if value > best[0] + 1e-12:
                    best = (value, group)
        return best

    rows = []
    for partition in _set_partitions(list(range(n)), k):
        valued = [best_group(b) for b in partition]
        rows.append((sum(v for v, _ in valued), [g for _, g in valued]))
    rows.sort(key=lambda r: -r[0])
    found = {}
    for _, groups in rows:
        g = grouping_lib.build_grouping(
            tasks, groups, lambda t, gr: grouping_lib.task_score(z, t, gr),
            optimal=True, upper_bound=0.0, num_groups=k, method="x")
        found.setdefault(g.groups, g)
        if len(found) == top:
            break
    return list(found)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_select_groups_top_matches_brute_force(n):
    from tag_keras import select_groups

    rng = np.random.default_rng(n)
    tasks = [f"t{i}" for i in range(n)]
    for _ in range(2):
        z = pd.DataFrame(rng.normal(size=(n, n)), index=tasks, columns=tasks)
        for k in (1, 2, 3):
            got = select_groups(z, k, top=6)
            assert [g.groups for g in got] == _brute_top(
                z.to_numpy(), tasks, k, 6)
            assert got[0] == select_groups(z, k)


def test_select_groups_top_rejects_bad_values():
    from tag_keras import select_groups

    z = pd.DataFrame(np.eye(3), index=list("abc"), columns=list("abc"))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="top"):
            select_groups(z, 2, top=bad)
    with pytest.raises(ValueError, match="max_exact_tasks"):
        select_groups(z, 2, top=2, max_exact_tasks=2)


# ------------------------------------------------------------------ training

@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from tag_keras import train

    directory = tmp_path_factory.mktemp("networks")
    return train.GroupTrainer(
        train_module.build, train_module.data(), seeds=[0, 1],
        fit_kwargs={"epochs": 2}, batch_size=16, directory=str(directory),
        log=None)


def test_networks_keep_per_example_results_with_nan_for_missing_labels(
        trainer):
    network = trainer.network(("b", "a", "c"), 0)
    assert network.tasks == ("a", "b", "c")
    for split in ("validation", "test"):
        for task in network.tasks:
            losses, errors = network.outcomes[split][task]
            assert losses.shape == errors.shape == (24,)
            missing = np.isnan(train_module.data()[split][1][task])
            np.testing.assert_array_equal(np.isnan(losses), missing)
            assert set(np.unique(errors[~missing])) <= {0.0, 1.0}
    # The stored file reads back equal.
    from tag_keras.train import networks

    path = os.path.join(trainer.directory,
                        networks.group_key(network.tasks, 0) + ".npz")
    again = networks.load_network(path)
    assert again.tasks == network.tasks and again.seed == 0
    np.testing.assert_array_equal(again.outcomes["test"]["c"][0],
                                  network.outcomes["test"]["c"][0])


def test_per_example_losses_match_keras_evaluate(trainer):
    import keras

    keras.utils.set_random_seed(0)
    model = train_module.build(["a", "b"])
    x, y = train_module.data()["validation"]
    network = trainer.add_model(model, seed=5)
    logs = model.evaluate(x, {t: y[t] for t in ("a", "b")}, verbose=0,
                          return_dict=True)
    for task in ("a", "b"):
        assert network.mean("validation", task) == pytest.approx(
            logs[f"{task}_loss"], rel=1e-5)


def test_decision_keeps_together_when_the_groups_are_copies(trainer):
    from tag_keras import train

    every = trainer.network(("a", "b", "c"), 0)
    for seed in (0, 1):
        whole = trainer.network(("a", "b", "c"), seed)
        for group in (("a", "b"), ("c",)):
            trainer.add(train.Network(group, seed, 0.0, 1, {
                split: {t: whole.outcomes[split][t] for t in group}
                for split in whole.outcomes}))
    decision = train.decide(
        trainer, {2: [((("a", "b"), ("c",)), {"a": 0, "b": 0, "c": 1})]},
        resamples=200)
    (option,) = decision.budgets
    assert option.decision == train.KEEP_TOGETHER
    assert option.difference == option.low == option.high == 0.0
    assert decision.best.num_groups == 1
    assert every.tasks == ("a", "b", "c")


def test_decision_says_split_only_when_the_interval_is_below_zero(trainer):
    from tag_keras import train

    whole = trainer.network(("a", "b", "c"), 0)
    # Groups whose losses are the all-task network's minus 0.1 everywhere.
    for seed in (0, 1):
        base = trainer.network(("a", "b", "c"), seed)
        for group in (("a",), ("b", "c")):
            trainer.add(train.Network(group, seed, 0.0, 1, {
                split: {t: (base.outcomes[split][t][0] - 0.1,
                            base.outcomes[split][t][1])
                        for t in group} for split in base.outcomes}))
    decision = train.decide(
        trainer, {2: [((("a",), ("b", "c")), {"a": 0, "b": 1, "c": 1})]},
        resamples=200)
    (option,) = decision.budgets
    assert option.decision == train.SPLIT
    assert option.difference == pytest.approx(-0.3)
    assert option.high == pytest.approx(-0.3)
    assert decision.best.groups == (("a",), ("b", "c"))
    assert option.test_difference == pytest.approx(-0.3)
    assert whole.seed == 0


def test_the_deciding_metric_can_be_the_error(trainer):
    from tag_keras import train

    # Lower losses everywhere, but every labelled example wrong: the loss
    # says split, the error keep together.
    for seed in (0, 1):
        base = trainer.network(("a", "b", "c"), seed)
        for group in (("a", "c"), ("b",)):
            trainer.add(train.Network(group, seed, 0.0, 1, {
                split: {t: (base.outcomes[split][t][0] - 0.1,
                            np.where(np.isnan(base.outcomes[split][t][1]),
                                     np.nan, 1.0))
                        for t in group} for split in base.outcomes}))
    candidates = {2: [((("a", "c"), ("b",)), {"a": 0, "c": 0, "b": 1})]}
    by_loss = train.decide(trainer, candidates, resamples=200)
    by_error = train.decide(trainer, candidates, resamples=200,
                            metric="error")
    assert by_loss.budgets[0].decision == train.SPLIT
    assert by_loss.budgets[0].metric == "loss"
    (option,) = by_error.budgets
    assert option.metric == "error" and option.decision == train.KEEP_TOGETHER
    assert option.difference > 0 and option.low > 0
    assert option.difference == pytest.approx(option.error_difference)
    assert "validation error vs all tasks" in train.format_table(by_error)
    with pytest.raises(ValueError, match="`metric` must be one of"):
        train.decide(trainer, candidates, metric="accuracy")


def test_decision_files_read_back(trainer, tmp_path):
    from tag_keras import train

    decision = train.decide(
        trainer, {2: [((("a", "b"), ("c",)), {"a": 0, "b": 0, "c": 1})]},
        random={2: train.random_partitions(trainer.tasks, 2, 10, seed=0)},
        resamples=200)
    paths = train.write_decision(str(tmp_path), decision, trainer)
    document = json.loads(open(paths["decision.json"]).read())
    (entry,) = document["budgets"]
    assert entry["num_groups"] == 2
    assert entry["groups"] == [["a", "b"], ["c"]]
    assert entry["decision"] in ("split", "keep together")
    assert entry["metric"] == "loss"
    assert entry["low"] <= entry["difference"] <= entry["high"]
    assert document["random"]["2"]["exact"] is True
    assert document["random"]["2"]["partitions"] == 3
    results = pd.read_csv(paths["results.csv"], keep_default_na=False,
                          na_values=[""])
    assert set(results.split) == {"validation", "test"}
    row = results[(results.group == "a|b|c") & (results.seed == 0)
                  & (results.task == "c") & (results.split == "test")]
    assert int(row.examples.iloc[0]) == 21  # 3 of 24 unlabelled.
    assert os.path.getsize(paths["decision.png"]) > 1000
    assert "| (a, b) (c) | 2 |" in train.format_table(decision)


def test_bad_trainer_arguments_are_one_line_errors():
    from tag_keras import train

    data = train_module.data()
    with pytest.raises(ValueError, match="'train' and 'validation'"):
        train.GroupTrainer(train_module.build, {"train": data["train"]})
    with pytest.raises(TypeError, match="must be a dict"):
        train.GroupTrainer(train_module.build, data["train"])
    with pytest.raises(ValueError, match="validation_data"):
        train.GroupTrainer(train_module.build, data,
                           fit_kwargs={"validation_data": data["test"]})
    with pytest.raises(ValueError, match="seeds"):
        train.GroupTrainer(train_module.build, data, seeds=[1, 1])
    trainer = train.GroupTrainer(train_module.build, data, log=None)
    with pytest.raises(ValueError, match="Received: group"):
        trainer.network(("a", "zzz"), 0)


def test_the_cache_survives_a_kill_between_networks(tmp_path):
    env = dict(os.environ, KILL_AFTER="3", PYTHONPATH=_ROOT)
    script = os.path.join(_HERE, "train_module.py")
    groups = ["a,b", "c", "a,b,c"]
    killed = subprocess.run(
        [sys.executable, script, str(tmp_path), *groups], env=env,
        capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert killed.stdout.count("seed") == 3
    assert len(os.listdir(tmp_path / "networks")) == 3
    env["KILL_AFTER"] = "0"
    rerun = subprocess.run(
        [sys.executable, script, str(tmp_path), *groups], env=env,
        capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    lines = [line for line in rerun.stdout.splitlines() if "seed" in line]
    assert len(lines) == 3 and lines[0].startswith("[1/3] (c) seed 1")
    assert len(os.listdir(tmp_path / "networks")) == 6


def test_groups_train_under_a_mirrored_strategy(tmp_path):
    script = (
        "from tests import logical_cpus\n"
        "logical_cpus.split_cpu(2)\n"
        "import numpy as np, tensorflow as tf\n"
        "from tag_keras import train\n"
        "from tests import train_module\n"
        "strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])\n"
        "trainer = train.GroupTrainer(train_module.build, "
        "train_module.data(), fit_kwargs={'epochs': 1}, batch_size=8, "
        "distribution=strategy, log=print)\n"
        "network = trainer.network(('a', 'b'), 0)\n"
        "assert strategy.num_replicas_in_sync == 2\n"
        "assert np.isfinite(network.mean('validation', 'a'))\n"
        "print('replicas', strategy.num_replicas_in_sync)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=_ROOT,
                          env=dict(os.environ, PYTHONPATH=_ROOT),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replicas 2" in done.stdout


def test_tf_data_and_py_dataset_splits_train_and_line_up():
    import keras
    import tensorflow as tf

    from tag_keras import train

    arrays = train_module.data()

    class Batches(keras.utils.PyDataset):
        def __init__(self, x, y, size):
            super().__init__()
            self.x, self.y, self.size = x, y, size

        @property
        def num_batches(self):
            return -(-len(self.x) // self.size)

        def __getitem__(self, index):
            part = slice(index * self.size, (index + 1) * self.size)
            return self.x[part], {t: v[part] for t, v in self.y.items()}

    datasets = {s: tf.data.Dataset.from_tensor_slices(arrays[s]).batch(8)
                for s in arrays}
    py = {s: Batches(*arrays[s], 8) for s in arrays}
    for data in (datasets, py):
        trainer = train.GroupTrainer(train_module.build, data,
                                     fit_kwargs={"epochs": 1}, log=None)
        network = trainer.network(("a", "c"), 0)
        losses, _ = network.outcomes["validation"]["c"]
        # Examples in order, the unlabelled ones NaN: they line up with
        # the arrays' labels whatever the input type.
        np.testing.assert_array_equal(
            np.isnan(losses), np.isnan(arrays["validation"][1]["c"]))
        assert np.isfinite(network.mean("test", "a"))
