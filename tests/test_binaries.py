"""The experiment binaries: tiny runs of their functions, and their flags.

Real tiny networks on the generated planted tasks (a few dozen examples,
one or two epochs, width 4); the files each binary writes are read back.
One binary per behaviour runs as a subprocess to check argument handling.
"""

import concurrent.futures
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments import data as data_lib
from experiments.lib import groups as groups_lib
from experiments.lib import hoa
from experiments.lib import measure as measure_lib
from experiments.lib import pipeline
from experiments.lib import results as results_lib
from experiments.lib import training
from tag_keras import InputError
from tag_keras import select as select_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
TASKS = ("c0_t0", "c0_t1", "c1_t0", "noise_0")


@pytest.fixture(scope="module")
def tiny_data():
    return data_lib.load_dataset(
        "planted", tasks=TASKS, num_train=96, num_validation=32,
        num_test=40, num_features=6)


@pytest.fixture(scope="module")
def config():
    return training.TrainConfig(epochs=2, batch_size=16, learning_rate=0.05,
                                patience=1, lr_halving_epochs=1, width=4,
                                affinity_every_n_steps=2)


# ----------------------------------------------------------------------
# training: pure parts.


def test_default_config_per_dataset_and_overrides():
    assert training.default_config("celeba") == training.TrainConfig(
        epochs=100, batch_size=256, learning_rate=5e-4, patience=10,
        lr_halving_epochs=15, width=64)
    config = training.default_config("digits", epochs=3, width=None)
    assert config.epochs == 3
    assert config.width == training.DEFAULT_CONFIGS["digits"].width
    with pytest.raises(ValueError, match="dataset"):
        training.default_config("mnist2")
    with pytest.raises(ValueError, match="epochs"):
        training.TrainConfig(epochs=0, batch_size=1, learning_rate=0.1)


def test_learning_rate_is_halved_every_n_epochs():
    config = training.TrainConfig(epochs=9, batch_size=1, learning_rate=0.8,
                                  lr_halving_epochs=3)
    rates = [config.learning_rate_at(e) for e in range(7)]
    np.testing.assert_allclose(rates, [.8, .8, .8, .4, .4, .4, .2])


@pytest.mark.parametrize("num_groups", [1, 2, 3, 4])
def test_random_partitions(num_groups):
    partitions = training.random_partitions(TASKS, num_groups, 5, seed=1)
    # Four tasks: 1, 7, 6 and 1 partitions into 1-4 groups; at most 5 are
    # all enumerated (RG's exact expectation), more are sampled.
    count = {1: 1, 2: 7, 3: 6, 4: 1}[num_groups]
    assert training.partition_count(4, num_groups) == count
    assert len(partitions) == min(count, 5)
    if count <= 5:
        assert len(set(partitions)) == count
        assert partitions == training.all_partitions(TASKS, num_groups)
    for partition in partitions:
        assert len(partition) == num_groups
        assert all(partition)
        members = [t for g in partition for t in g]
        assert sorted(members) == sorted(TASKS)
    assert partitions == training.random_partitions(TASKS, num_groups, 5, 1)


def test_all_partitions_are_the_stirling_count_and_distinct():
    tasks = tuple("abcdef")
    for k in range(1, 7):
        partitions = training.all_partitions(tasks, k)
        assert len(partitions) == training.partition_count(6, k)
        assert len({frozenset(map(frozenset, p)) for p in partitions}) == len(
            partitions)
        assert all(sorted(t for g in p for t in g) == list(tasks)
                   for p in partitions)
    assert training.partition_count(9, 2) == 255
    exact = training.random_partitions(tasks, 5, 20, seed=0)
    assert len(exact) == 15                  # S(6, 5) = 15 <= 20: all


def test_random_partitions_rejects_too_many_groups():
    with pytest.raises(ValueError, match="num_groups"):
        training.random_partitions(TASKS, 5, 1, seed=0)


def test_results_table_round_trips_through_csv(tmp_path):
    results = [
        results_lib.MethodResult("MTL", 1, {"a": 0.1, "b": 0.2},
                                 groups=(("a", "b"),)),
        results_lib.MethodResult("TAG", 2, {"a": 0.05, "b": 0.25},
                                 groups=(("a",), ("a", "b")),
                                 search_seconds=3.21),
        results_lib.MethodResult("RG", 2, {"a": 0.3, "b": 0.1}, samples=2),
    ]
    results_lib.write_results(results, ["a", "b"], tmp_path, title="T")
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame["method"]) == ["MTL", "TAG", "RG"]
    np.testing.assert_allclose(frame["total"], [30.0, 30.0, 40.0])
    np.testing.assert_allclose(frame["a"], [10.0, 5.0, 30.0])
    assert frame["groups"][1] == "a | a+b"
    assert frame["search_seconds"][1] == 3.21
    assert np.isnan(frame["search_seconds"][0])
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert lines[0] == "T"
    assert lines[2].startswith("| Method | Groups | a | b | Total |")
    assert lines[4] == "| MTL | 1 | 10.00 | 20.00 | 30.00 |  |"
    assert lines[5] == "| TAG | 2 | 5.00 | 25.00 | 30.00 | 3.2 s |"
    assert lines[6].startswith("| RG (mean of 2) | 2 |")
    assert lines[-1] == ("![Total test error per method and budget]"
                         "(results.png)")
    from matplotlib import image

    pixels = image.imread(tmp_path / "results.png")
    assert pixels.shape[:2] == (400, 650)
    assert pixels[..., :3].std() > 0.05  # Not blank.


def test_load_data_errors_are_one_line():
    with pytest.raises(InputError, match="unknown") as error:
        training.load_data("digits", tasks=["is_even", "nope"])
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------------
# Training real tiny networks.


def test_group_networks_train_in_the_library_engine(tiny_data, config):
    lines = []
    engine = training.seeded_trainer(tiny_data, config, log=lines.append)
    assert engine.seeds == [config.seed]
    served = training.served_errors(
        engine, [("c0_t0", "c0_t1"), ("c1_t0", "c0_t0"), ("noise_0",)],
        {"c0_t0": 0, "c0_t1": 0, "c1_t0": 1, "noise_0": 2})
    assert len(engine.stored()) == 3
    progress = [ln for ln in lines if ln.startswith("[")]
    assert [ln[:5] for ln in progress] == ["[1/3]", "[2/3]", "[3/3]"]
    pair = engine.network(("c0_t1", "c0_t0"), config.seed)
    # The library's per-example error: a share of the 40 test examples.
    assert served["c0_t0"] == pair.mean("test", "c0_t0", "error")
    for error in served.values():
        assert 0 <= error <= 1
        assert error * 40 == pytest.approx(round(error * 40), abs=1e-4)
    assert training.training_seconds(engine, [("c0_t0", "c0_t1")]) == (
        pair.seconds)
    training.served_errors(engine, [("c0_t1", "c0_t0")], {"c0_t1": 0})
    assert len(engine.stored()) == 3  # Nothing trained again.


def test_one_network_is_evaluated_as_the_library_does(tiny_data, config):
    result, model = training.train_network(tiny_data, config)
    test = model.evaluate(tiny_data.batches("test", 64), return_dict=True,
                          verbose=0)
    for task in TASKS:  # Every test example labelled: 1 - accuracy.
        assert result.test_error[task] == pytest.approx(
            1 - test[f"{task}_accuracy"], abs=1e-6)
    network = training.evaluated_network(model, tiny_data, TASKS, 0, 64)
    assert result.validation_loss == {
        t: network.mean("validation", t) for t in TASKS}


def test_run_affinity_writes_its_files(tiny_data, config, tmp_path):
    result, affinity = measure_lib.measure(tiny_data, config, tmp_path)
    for name in ("affinity/affinity.csv", "affinity/affinity_epochs.csv",
                 "affinity/affinity_steps.csv", "history.csv",
                 "metrics.csv", "run.json"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents*"))
    written = pd.read_csv(tmp_path / "affinity" / "affinity.csv",
                          index_col="source")
    assert list(written.index) == list(TASKS)
    # The whole run's mean, not the best epoch's restored accumulators.
    np.testing.assert_allclose(written.to_numpy(), affinity.to_numpy(),
                               rtol=1e-6)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["task"]) == list(TASKS)
    np.testing.assert_allclose(metrics["test_error"],
                               [result.test_error[t] for t in TASKS])
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["affinity_method"] == "lookahead"
    assert run["epochs"] == result.epochs
    assert len(pd.read_csv(tmp_path / "history.csv")) == result.epochs


def test_make_strategy():
    assert measure_lib.make_training_method("mtl") is None
    with pytest.raises(ValueError, match="training_method"):
        measure_lib.make_training_method("sgd")


@pytest.mark.parametrize("augmentation", ["uw", "gradnorm", "pcgrad"])
def test_all_task_baselines_with_an_augmentation(tiny_data, config,
                                                 augmentation):
    result = pipeline.train_augmented(tiny_data, config, augmentation)
    assert set(result.test_error) == set(TASKS)
    assert all(0 <= e <= 1 for e in result.test_error.values())


def test_train_groups_serves_each_task_from_its_group(tiny_data, config):
    document = select_lib.GroupsDocument.from_dict({
        "tasks": list(TASKS), "results": [
            {"num_groups": 2, "groups": [["c0_t0", "c0_t1", "noise_0"],
                                         ["c1_t0", "noise_0"]],
             "serve": {"c0_t0": 0, "c0_t1": 0, "c1_t0": 1, "noise_0": 1}},
            {"num_groups": 1, "groups": [list(TASKS)],
             "serve": dict.fromkeys(TASKS, 0)},
        ]})
    engine = training.seeded_trainer(tiny_data, config, log=None)
    results = groups_lib.train_groups(engine, document, budgets=[2],
                                      search_seconds={2: 1.5})
    assert len(engine.stored()) == 2
    (result,) = results
    assert result.num_groups == 2 and result.search_seconds == 1.5
    second = engine.network(("c1_t0", "noise_0"), config.seed)
    assert result.errors["noise_0"] == second.mean("test", "noise_0", "error")
    first = engine.network(("c0_t0", "c0_t1", "noise_0"), config.seed)
    assert result.errors["c0_t0"] == first.mean("test", "c0_t0", "error")
    with pytest.raises(select_lib.InputError, match=r"\[3\]"):
        groups_lib.train_groups(engine, document, budgets=[3])


def test_read_groups_rejects_bad_documents(tmp_path):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({"results": [
        {"num_groups": 2, "groups": [["a"], ["b"]], "serve": {"a": 1}}]}))
    with pytest.raises(select_lib.InputError, match="does not hold"):
        select_lib.read_groups(path)
    path.write_text("{")
    with pytest.raises(select_lib.InputError, match="Cannot read"):
        select_lib.read_groups(path)


def test_hoa_trains_singles_and_pairs_and_selects(tiny_data, config,
                                                  tmp_path):
    data = tiny_data.select_tasks(TASKS[:3])
    engine = training.seeded_trainer(data, config, log=None)
    document = hoa.run(engine, tmp_path, [1, 2])
    assert len(engine.stored()) == 6  # 3 singles + 3 pairs.
    performance = pd.read_csv(tmp_path / "performance.csv")
    assert len(performance) == 3 + 2 * 3
    assert set(performance["group"]) == {
        "c0_t0", "c0_t1", "c1_t0", "c0_t0|c0_t1", "c0_t0|c1_t0",
        "c0_t1|c1_t0"}
    row = performance[(performance["group"] == "c0_t0|c1_t0")
                      & (performance["task"] == "c1_t0")]
    assert row["value"].item() == pytest.approx(engine.network(
        ("c0_t0", "c1_t0"), config.seed).mean("validation", "c1_t0"))
    written = json.loads((tmp_path / "groups.json").read_text())
    assert [r["num_groups"] for r in written["results"]] == [1, 2]
    assert written["mode"] == "performance"
    assert set(document["search_seconds"]) == {1, 2}
    assert document["search_seconds"][1] >= training.training_seconds(
        engine, [(t,) for t in data.tasks])


@pytest.mark.slow
def test_pipeline_writes_one_table(tiny_data, tmp_path):
    config = training.TrainConfig(epochs=1, batch_size=32,
                                  learning_rate=0.05, width=4,
                                  affinity_every_n_steps=1)
    data = tiny_data.select_tasks(TASKS[:3])
    lines = []
    frame = pipeline.run_pipeline(data, config, tmp_path, budgets=(2, 5),
                                  rg_samples=1, optimal=True,
                                  log=lines.append, num_seeds=2,
                                  max_seeds=2)
    for name in ("affinity/affinity.csv", "groups.json", "results.csv",
                 "results.md", "cosine/affinity/affinity.csv",
                 "cosine/groups.json", "pipeline.json"):
        assert (tmp_path / name).is_file(), name
    results = pd.read_csv(tmp_path / "results.csv")
    pd.testing.assert_frame_equal(results.fillna(""), frame.fillna(""),
                                  check_dtype=False)
    assert list(zip(results["method"], results["num_groups"],
                    strict=True)) == [
        ("MTL", 1), ("STL", 3), ("RG", 2), ("CS", 2), ("TAG", 2),
        ("Optimal", 2)]
    # Every subset was trained at the first seed: the oracle is at least
    # as good as that seed's all-task network (served from the same
    # networks).
    networks = pd.read_csv(tmp_path / "networks.csv")
    first_mtl = networks[(networks.group == "|".join(data.tasks))
                         & (networks.seed == 0) & (networks.split == "test")]
    totals = dict(zip(results["method"], results["total"], strict=True))
    assert totals["Optimal"] <= 100 * first_mtl.error.sum() + 1e-6
    assert (tmp_path / "optimal" / "performance.csv").is_file()
    np.testing.assert_allclose(results["total"],
                               results[list(data.tasks)].sum(axis=1),
                               atol=1e-3)
    groups = json.loads((tmp_path / "groups.json").read_text())
    assert [r["num_groups"] for r in groups["results"]] == [2]
    tag_row = results[results["method"] == "TAG"].iloc[0]
    assert tag_row["groups"] == " | ".join(
        "+".join(g) for g in groups["results"][0]["groups"])
    assert tag_row["search_seconds"] > 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert tag_row["search_seconds"] >= round(run["seconds"], 2)
    # The oracle's search: all seven networks (the TAG run's among them)
    # and its selection.
    optimal_row = results[results["method"] == "Optimal"].iloc[0]
    assert optimal_row["search_seconds"] > run["seconds"]
    # MTL: the mean over both seeds of the all-task networks trained for
    # the decision (the TAG run early-stopped on validation: not one).
    mtl = networks[(networks.group == "|".join(data.tasks))
                   & (networks.split == "test")]
    np.testing.assert_allclose(
        results.loc[0, list(data.tasks)],
        100 * mtl.groupby("task").error.mean()[list(data.tasks)].to_numpy(),
        atol=1e-3)
    # Title, blank, header, rule, six rows, blank, the figure.
    assert len((tmp_path / "results.md").read_text().splitlines()) == (
        2 + 2 + 6 + 2)
    assert (tmp_path / "results.png").is_file()
    assert any(line.startswith("[stage 1/") for line in lines)
    timings = json.loads((tmp_path / "pipeline.json").read_text())
    # Each distinct group once per seed: all 7 subsets of 3 tasks at the
    # first seed (the oracle), none twice.
    assert timings["networks_trained"] == len(
        networks.groupby(["group", "seed"]))
    trained = [line for line in lines
               if re.match(r"\[\d+/\d+\] \(.*\) seed 0: ", line)]
    assert len(trained) == 7
    decision = json.loads((tmp_path / "decision.json").read_text())
    assert [b["num_groups"] for b in decision["budgets"]] == [2]
    assert tag_row["decision"].startswith(decision["budgets"][0]["decision"])
    assert decision["budgets"][0]["seeds"] == 2


# ----------------------------------------------------------------------
# Binaries as processes: argument handling.


def _run(module, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_stray_arguments_and_missing_groups_are_usage_errors(tmp_path):
    # The processes at once (each mostly imports TensorFlow).
    with concurrent.futures.ThreadPoolExecutor() as pool:
        stray, missing, process, pipeline_unused, it_mtl_unused = pool.map(
            lambda args: _run(*args), [
                ("train_groups", f"--out_dir={tmp_path}", "extra"),
                ("train_groups", f"--out_dir={tmp_path}"),
                ("hoa", "--budgets=2,x", f"--out_dir={tmp_path}"),
                ("pipeline", "--hoa_value=test_error",
                 "--training_method=uw", f"--out_dir={tmp_path}"),
                ("it_mtl", "--distribution=mirrored",
                 f"--out_dir={tmp_path}")])
    # A binary defines only the flags it uses (it imports no other
    # binary), so another binary's flag is unknown, not silently ignored.
    assert pipeline_unused.returncode != 0
    assert "Unknown command line flag 'hoa_value'" in pipeline_unused.stderr
    assert it_mtl_unused.returncode != 0
    assert "Unknown command line flag 'distribution'" in (
        it_mtl_unused.stderr)
    assert stray.returncode != 0
    assert "Unexpected arguments: ['extra']" in stray.stderr
    assert missing.returncode != 0
    assert "--groups is required" in missing.stderr
    assert process.returncode == 1
    assert "hoa: error: --budgets must be integers >= 1. Received: 2,x" in (
        process.stderr)
    assert not list(tmp_path.iterdir())


def test_bad_tasks_and_out_dir_fail_before_writing(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with concurrent.futures.ThreadPoolExecutor() as pool:
        one_task, file_out, hoa_one = pool.map(lambda args: _run(*args), [
            ("pipeline", "--tasks=is_even", f"--out_dir={tmp_path / 'p'}"),
            ("run_affinity", f"--out_dir={a_file}"),
            ("hoa", "--tasks=is_even", f"--out_dir={tmp_path / 'h'}")])
    for process, program in ((one_task, "pipeline"), (hoa_one, "hoa")):
        assert process.returncode == 1
        assert "Traceback" not in process.stderr
        assert (f"{program}: error: " in process.stderr
                and "needs at least two tasks" in process.stderr)
    assert file_out.returncode == 1
    assert "Traceback" not in file_out.stderr
    assert "--out_dir must be a directory" in file_out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_absent_celeba_is_one_line_and_non_zero(tmp_path):
    process = _run("run_affinity", "--dataset=celeba",
                   f"--data_dir={tmp_path}", "--nodownload",
                   f"--out_dir={tmp_path / 'out'}")
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    errors = [ln for ln in process.stderr.splitlines()
              if ln.startswith("run_affinity: error:")]
    assert len(errors) == 1 and "CelebA" in errors[0]
    assert not (tmp_path / "out").exists()


def test_train_groups_binary_end_to_end(tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"tasks": ["c0_t0", "c0_t1"], "results": [
        {"num_groups": 1, "groups": [["c0_t0", "c0_t1"]],
         "serve": {"c0_t0": 0, "c0_t1": 0}}]}))
    process = _run("train_groups", "--dataset=planted", f"--groups={groups}",
                   "--epochs=1", "--width=4", f"--out_dir={tmp_path}",
                   "--method=Mine")
    assert process.returncode == 0, process.stderr
    results = pd.read_csv(tmp_path / "results.csv")
    assert list(results.columns[:4]) == ["method", "num_groups", "samples",
                                         "groups"]
    assert list(results["method"]) == ["Mine"]
    # The library's GroupTrainer: one line per network.
    assert re.search(r"\[1/1\] \(c0_t0, c0_t1\) seed 0: 1 epochs in "
                     r"[0-9.]+ s, validation loss", process.stdout)
    assert "| Mine | 1 |" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
def test_pipeline_binary_with_hoa(tmp_path):
    process = _run("pipeline", "--dataset=planted", "--epochs=2",
                   "--width=8", "--hoa", "--budgets=2,3", "--num_seeds=2",
                   f"--out_dir={tmp_path}")
    assert process.returncode == 0, process.stderr
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["method"]) == {"MTL", "STL", "RG", "CS", "HOA",
                                      "TAG"}
    assert (tmp_path / "hoa" / "performance.csv").is_file()
