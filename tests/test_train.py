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

def test_paired_statistic_leaves_out_tasks_without_values():
    from tag_keras.train import statistics

    d = np.array([[[1.0, 3.0], [np.nan, np.nan]]])
    assert statistics.paired_statistic(d) == 2.0
    assert np.isnan(statistics.paired_statistic(np.full((1, 2, 3), np.nan)))


def test_planned_looks():
    from tag_keras import train

    assert train.planned_looks(3, 8) == (3, 5, 8)
    assert train.planned_looks(2, 8) == (2, 3, 5, 8)
    assert train.planned_looks(3, 3) == (3,)
    assert train.planned_looks(3, None) == (3,)
    assert train.planned_looks(5, 6) == (5, 6)


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


def _copies(trainer, groups, seeds, loss_shift=0.0, error=None,
            jitter=1e-4):
    """Stores networks of `groups` whose results are the all-task
    network's (losses shifted by `loss_shift` plus a little noise of SD
    `jitter`, so that the differences vary: a difference that never
    varies decides nothing; errors replaced by `error(errors)`)."""
    from tag_keras import train

    rng = np.random.default_rng(0)
    for seed in seeds:
        whole = trainer.network(("a", "b", "c"), seed)
        for group in groups:
            trainer.add(train.Network(group, seed, 0.0, 1, {
                split: {t: (whole.outcomes[split][t][0] + loss_shift
                            + rng.normal(0, jitter, whole.outcomes[split][
                                t][0].shape),
                            whole.outcomes[split][t][1] if error is None
                            else error(whole.outcomes[split][t][1]))
                        for t in group} for split in whole.outcomes}))


_TWO = {2: [((("a", "b"), ("c",)), {"a": 0, "b": 0, "c": 1})]}


def test_decision_keeps_together_when_the_groups_are_copies(trainer):
    from tag_keras import train

    _copies(trainer, (("a", "b"), ("c",)), (0, 1))
    decision = train.decide(trainer, _TWO, metric="loss")
    (option,) = decision.budgets
    assert option.decision == train.KEEP_TOGETHER
    assert option.answer_detail == "within the margin"
    assert option.difference == pytest.approx(0.0, abs=1e-3)
    assert option.high - option.low < 0.01
    assert option.seeds == 2
    assert decision.answer == train.KEEP_TOGETHER
    assert decision.best.num_groups == 1
    assert decision.best.decision == train.KEEP_TOGETHER
    # The default margin: 2% of the all-task summed validation loss.
    whole = [trainer.network(("a", "b", "c"), s) for s in (0, 1)]
    total = np.mean([sum(w.mean("validation", t) for t in "abc")
                     for w in whole])
    assert option.margin == pytest.approx(0.02 * total)


def test_decision_says_split_when_shown_better_by_the_margin(trainer):
    from tag_keras import train

    # Groups whose losses are the all-task network's minus 0.1 everywhere.
    _copies(trainer, (("a",), ("b", "c")), (0, 1), loss_shift=-0.1)
    candidates = {2: [((("a",), ("b", "c")), {"a": 0, "b": 1, "c": 1})]}
    decision = train.decide(trainer, candidates, metric="loss", margin=0.2)
    (option,) = decision.budgets
    assert option.decision == train.SPLIT
    assert option.difference == pytest.approx(-0.3, abs=1e-3)
    assert option.high < 0 and option.low <= -0.2
    assert option.standard_error < 1e-3  # Only the jitter.
    assert decision.answer == train.SPLIT
    assert decision.best.groups == (("a",), ("b", "c"))
    assert option.test_difference == pytest.approx(-0.3, abs=1e-3)
    # A gain shown, but smaller than the margin: keep together.
    small = train.decide(trainer, candidates, metric="loss", margin=0.5)
    assert small.budgets[0].decision == train.KEEP_TOGETHER
    assert small.budgets[0].answer_detail == "within the margin"


def test_the_deciding_metric_can_be_the_error(trainer):
    from tag_keras import train

    # Lower losses everywhere, but every labelled example wrong: the loss
    # says split, the error keep together, and the two disagree.
    _copies(trainer, (("a", "c"), ("b",)), (0, 1), loss_shift=-0.1,
            error=lambda e: np.where(np.isnan(e), np.nan, 1.0))
    candidates = {2: [((("a", "c"), ("b",)), {"a": 0, "c": 0, "b": 1})]}
    by_loss = train.decide(trainer, candidates, metric="loss", margin=0.01)
    by_error = train.decide(trainer, candidates, metric="error")
    # Every head is a classifier: auto decides on the error.
    by_auto = train.decide(trainer, candidates)
    assert by_loss.budgets[0].decision == train.SPLIT
    assert by_loss.budgets[0].metric == "loss"
    (option,) = by_error.budgets
    # Two seeds: the seed variance has 1 df, so the error's bound may not
    # clear the margin; it never says split.
    assert option.metric == "error" and option.decision != train.SPLIT
    assert option.difference > 0.5
    assert option.difference == pytest.approx(option.error_difference)
    assert option.other_metric == "loss" and option.other_high < 0
    assert option.disagreement == (option.low > 0)
    assert by_auto.metric == "error"
    assert by_auto.budgets[0].difference == option.difference
    table = train.format_table(by_error)
    assert "validation error vs all tasks" in table
    assert ("opposite directions" in table) == option.disagreement
    with pytest.raises(ValueError, match="`metric` must be one of"):
        train.decide(trainer, candidates, metric="accuracy")


def test_auto_decides_on_the_loss_with_a_regression_head(tmp_path):
    from tag_keras import train

    data = train_module.data()
    for split in data.values():  # Task c becomes a regression target.
        split[1]["c"] = np.where(np.isnan(split[1]["c"]), np.nan,
                                 split[0][:, 2]).astype("float32")
    trainer = train.GroupTrainer(
        train_module.build_with_regression, data, seeds=[0, 1],
        fit_kwargs={"epochs": 1}, batch_size=16, log=None)
    decision = train.decide(trainer, _TWO, margin=1.0)
    assert decision.metric == "loss"
    assert decision.budgets[0].other_metric == "error"


def test_seeds_are_added_only_to_undecided_budgets(tmp_path):
    from tag_keras import train

    # Budget 2 is a copy of the all-task network (keep together at the
    # first look); budget 3's losses differ by noise around zero
    # (undecided): only the all-task network and budget 3's groups get
    # the added seeds.
    trainer = train.GroupTrainer(
        train_module.build, train_module.data(), seeds=[0, 1],
        fit_kwargs={"epochs": 1}, batch_size=16, log=None)
    rng = np.random.default_rng(0)
    three = (("a",), ("b",), ("c",))

    def copies(seeds):
        for seed in seeds:
            whole = trainer.network(("a", "b", "c"), seed)
            for group in (("a", "b"), ("c",)):  # copies, a little noise
                trainer.add(train.Network(group, seed, 0.0, 1, {
                    split: {t: (whole.outcomes[split][t][0]
                                + rng.normal(0, 1e-4, 24),
                                whole.outcomes[split][t][1])
                            for t in group} for split in whole.outcomes}))
            for group in three[:2]:  # ("c",) is budget 2's copy.
                trainer.add(train.Network(group, seed, 0.0, 1, {
                    split: {t: (whole.outcomes[split][t][0]
                                + rng.normal(0, 1.0, 24),
                                whole.outcomes[split][t][1])
                            for t in group} for split in whole.outcomes}))

    copies(range(5))
    requested = []
    original = trainer.train

    def train_recorded(groups, seeds=None):
        requested.append(([tuple(g) for g in groups], list(seeds)))
        return original(groups, seeds)

    trainer.train = train_recorded
    decision = train.decide(
        trainer, {**_TWO, 3: [(three, {"a": 0, "b": 1, "c": 2})]},
        metric="loss", margin=0.05, max_seeds=5)
    by_budget = {o.num_groups: o for o in decision.budgets}
    assert by_budget[2].decision == train.KEEP_TOGETHER
    assert by_budget[2].seeds == 2
    assert by_budget[3].decision == train.UNDECIDED
    assert by_budget[3].seeds == 5
    assert by_budget[3].seeds_needed is None or by_budget[3].seeds_needed > 5
    assert decision.looks == (2, 3, 5)
    assert decision.seeds == (0, 1, 2, 3, 4)
    # Tests sharing alpha: 2 candidates x 3 looks.
    assert by_budget[3].comparisons == 6
    assert decision.answer == train.UNDECIDED
    assert decision.best.num_groups == 1
    assert decision.best.decision == train.UNDECIDED
    # After the first look only the all-task network and budget 3's
    # groups were asked for, at 3 and then 5 seeds.
    assert [seeds for _, seeds in requested] == [[0, 1], [0, 1, 2],
                                                 [0, 1, 2, 3, 4]]
    for groups, _ in requested[1:]:
        assert set(groups) == {("a", "b", "c"), *three}


def test_decision_files_read_back(trainer, tmp_path):
    from tag_keras import train

    decision = train.decide(
        trainer, _TWO, metric="loss",
        random={2: train.random_partitions(trainer.tasks, 2, 10, seed=0)})
    paths = train.write_decision(str(tmp_path), decision, trainer)
    document = json.loads(open(paths["decision.json"]).read())
    (entry,) = document["budgets"]
    assert entry["num_groups"] == 2
    assert entry["groups"] == [["a", "b"], ["c"]]
    assert entry["decision"] in ("split", "keep together", "undecided")
    assert document["answer"] == document["best"]["decision"]
    assert entry["metric"] == "loss"
    assert entry["low"] <= entry["difference"] <= entry["high"]
    for key in ("margin", "seeds", "seeds_needed", "validation_factor",
                "answer_detail", "standard_error", "df"):
        assert key in entry
    assert entry["seeds"] == 2 and entry["margin"] > 0
    assert document["random"]["2"]["exact"] is True
    assert document["random"]["2"]["partitions"] == 3
    results = pd.read_csv(paths["results.csv"], keep_default_na=False,
                          na_values=[""])
    assert set(results.split) == {"validation", "test"}
    row = results[(results.group == "a|b|c") & (results.seed == 0)
                  & (results.task == "c") & (results.split == "test")]
    assert int(row.examples.iloc[0]) == 21  # 3 of 24 unlabelled.
    frame = pd.read_csv(paths["decision.csv"])
    budget = frame[frame.option == "groups"].iloc[0]
    assert budget.decision == entry["decision"]
    assert budget.seeds == 2
    assert budget.margin == pytest.approx(entry["margin"])
    assert os.path.getsize(paths["decision.png"]) > 1000
    table = train.format_table(decision)
    assert "| (a, b) (c) | 2 |" in table
    # The error column is a sum over tasks, and says so (issue 35).
    assert "summed test error (% points, 3 tasks) mean ± SE" in table
    assert train.read_decision(str(tmp_path)) == document


def test_results_rows_do_not_depend_on_the_training_order(trainer):
    """Parallel workers finish networks in any order; results.csv must
    not change with it."""
    from tag_keras.train import decision_files

    trainer.train([("a", "b"), ("c",)])
    stored = trainer.stored()
    frames = [decision_files.results_frame(trainer, order)
              for order in (stored, stored[::-1])]
    pd.testing.assert_frame_equal(*frames)
    assert frames[0].group.str.count("[|]").is_monotonic_decreasing


def test_outputs_are_one_set_or_refused_when_torn(tmp_path, trainer,
                                                  monkeypatch):
    from tag_keras import train
    from tag_keras.train import decision_files

    decision = train.decide(trainer, _TWO, metric="loss")
    train.write_decision(str(tmp_path), decision, trainer)
    assert train.read_decision(str(tmp_path))["answer"] == decision.answer
    # A later run killed after decision.json, before the figure: the old
    # marker is gone, so the mixed set is refused.
    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(decision_files, "plot_decision", killed)
    with pytest.raises(KeyboardInterrupt):
        train.write_decision(str(tmp_path), decision, trainer)
    with pytest.raises(ValueError, match="no complete set of decision"):
        train.read_decision(str(tmp_path))
    monkeypatch.undo()
    train.write_decision(str(tmp_path), decision, trainer)
    with open(tmp_path / "decision.csv", "a") as handle:
        handle.write("tampered\n")
    with pytest.raises(ValueError, match="does not match"):
        train.read_decision(str(tmp_path))


def test_non_finite_losses_stop_with_the_network_named(tmp_path):
    from tag_keras import train

    data = train_module.data()
    x, y = data["train"]
    x = x.copy()
    x[5, 0] = np.inf
    data["train"] = (x, y)
    trainer = train.GroupTrainer(train_module.build, data, seeds=[0, 1],
                                 fit_kwargs={"epochs": 1},
                                 directory=str(tmp_path), log=None)
    with pytest.raises(train.NonFiniteLossError,
                       match=r"\(a, b, c\) seed 0 ended training with loss"):
        train.decide(trainer, _TWO)
    # Nothing was stored: a rerun on fixed data trains it again.
    assert not list((tmp_path / "networks").glob("*.npz"))


def test_decide_refuses_bad_settings(trainer):
    from tag_keras import train

    with pytest.raises(ValueError, match="`margin` must be a positive"):
        train.decide(trainer, _TWO, margin=0.0)
    with pytest.raises(ValueError, match="`max_seeds` must be at least"):
        train.decide(trainer, _TWO, max_seeds=1)
    one = train.GroupTrainer(train_module.build, train_module.data(),
                             seeds=[0], log=None)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        train.decide(one, _TWO)


class _Recording:
    """A model function whose models record what `fit` was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, tasks):
        import keras

        model = train_module.build(tasks)
        calls = self.calls
        original = model.fit

        def fit(x, validation_data=None, **kwargs):
            calls.append((x, validation_data))
            return original(x, validation_data=validation_data, **kwargs)

        model.fit = fit
        assert isinstance(model, keras.Model)
        return model


def _rows(dataset):
    return np.concatenate([batch[0] for batch in dataset.as_numpy_iterator()])


def test_early_stopping_never_reads_the_validation_split():
    import keras

    from tag_keras import train

    data = train_module.data()
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    build = _Recording()
    trainer = train.GroupTrainer(build, data, seeds=[0],
                                 fit_kwargs={"epochs": 2,
                                             "callbacks": [stop]},
                                 batch_size=16, log=None)
    trainer.network(("a", "b"), 0)
    (fitted, monitored), = build.calls
    seen, held = _rows(fitted), _rows(monitored)
    validation = data["validation"][0]
    for rows in (seen, held):
        assert not (rows[:, None, :] == validation[None]).all(-1).any()
    # The carved slice: 10% of the training examples, not trained on.
    assert len(held) == 5 and len(seen) == 43
    assert not (seen[:, None, :] == held[None]).all(-1).any()
    assert "5 of the 48 training examples" in trainer.early_stopping
    # An 'early_stopping' split is used as it is; training keeps all.
    given = dict(data, early_stopping=data["test"])
    build = _Recording()
    trainer = train.GroupTrainer(build, given, seeds=[0],
                                 fit_kwargs={"epochs": 1,
                                             "callbacks": [stop]},
                                 batch_size=16, log=None)
    trainer.network(("a",), 0)
    (fitted, monitored), = build.calls
    np.testing.assert_array_equal(np.sort(_rows(monitored), axis=0),
                                  np.sort(data["test"][0], axis=0))
    assert len(_rows(fitted)) == 48
    # No callback watches validation: fit gets no validation data.
    build = _Recording()
    trainer = train.GroupTrainer(build, data, seeds=[0],
                                 fit_kwargs={"epochs": 1}, log=None)
    trainer.network(("a",), 0)
    assert build.calls[0][1] is None and trainer.early_stopping is None


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


@pytest.mark.slow
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
