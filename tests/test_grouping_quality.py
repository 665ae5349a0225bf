"""The grouping-quality benchmark: a tiny real run, its files, its resume.

Three planted tasks, one epoch, width 4, one seed: seven networks and five
measuring runs, then the same call again, which must train nothing.
"""

import io
import os

import numpy as np
import pandas as pd
import pytest

from experiments import data as data_lib
from experiments.lib import training
from experiments.benchmarks.grouping_quality import __main__ as gq
from experiments.benchmarks.grouping_quality import report as gq_report
from tag_keras import InputError

TASKS = ("c0_t0", "c0_t1", "noise_0")


@pytest.fixture(scope="module")
def task_set():
    data = data_lib.load_dataset(
        "planted", tasks=TASKS, num_train=64, num_validation=32,
        num_test=40, num_features=6)
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, lr_halving_epochs=1, width=4)
    return gq.TaskSet(data, config)


@pytest.fixture(scope="module")
def benchmark(task_set, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("grouping_quality")
    options = dict(seeds=[0], budgets=[2], frequencies=[1], tag_every=1,
                   command="python -m experiments.benchmarks.grouping_quality"
                   " --tiny", log=lambda line: None)
    first = gq.run_benchmark([task_set], out_dir, **options)
    files = {p.name: p.read_bytes() for p in out_dir.glob("*.csv")}
    second = gq.run_benchmark([task_set], out_dir, **options)
    return out_dir, first, second, files, options


@pytest.mark.slow
def test_trains_every_group_and_run_once_then_resumes(benchmark, task_set):
    out_dir, first, second, files, options = benchmark
    runs = gq.variants([1], tag_every=1)
    assert [v.name for v in runs] == [
        "plain", "lookahead_every_1", "first_order_every_1",
        "validation_every_1", "cosine_every_1"]
    assert first["networks_trained"] == 7
    assert first["runs_trained"] == len(runs)
    assert second["networks_trained"] == 0
    assert second["runs_trained"] == 0
    assert second["seeds_reported"] == {"planted": [0]}
    # The same results from the cache (selection times aside).
    for name, content in files.items():
        if name in ("results.csv", "summary.csv"):
            before = pd.read_csv(io.BytesIO(content))
            after = pd.read_csv(out_dir / name)
            pd.testing.assert_series_equal(after["test_error"],
                                           before["test_error"])
        else:
            assert (out_dir / name).read_bytes() == content, name
    # A lost unit is trained again, and only that one.
    os.remove(gq.SeedWork(task_set, 0, out_dir).network_path(("c0_t1",)))
    third = gq.run_benchmark([task_set], out_dir, **options)
    assert (third["networks_trained"], third["runs_trained"]) == (1, 0)


@pytest.mark.slow
def test_files_are_written_and_read_back(benchmark):
    out_dir = benchmark[0]
    results = pd.read_csv(out_dir / "results.csv")
    assert set(results["method"]) == set(gq_report.SUMMARY_METHODS)
    assert (results["budget"] == 2).all()
    networks = pd.read_csv(out_dir / "networks.csv")
    assert networks["group"].nunique() == 7
    assert len(networks) == 3 * 1 + 3 * 2 + 3  # Task rows per group size.
    assert networks["test_error"].between(0, 1).all()
    summary = pd.read_csv(out_dir / "summary.csv")
    assert (summary["seeds"] == 1).all()
    ablation = pd.read_csv(out_dir / "ablation.csv")
    assert list(ablation["variant"]) == [
        "every 1", "first quarter (every 1)", "middle quarter (every 1)",
        "last quarter (every 1)"]
    assert list(ablation["time_source"]) == ["measured"] + ["modelled"] * 3
    assert (ablation["measured_steps"].iloc[1:] <= 2).all()  # 4 steps / 4.
    partners = pd.read_csv(out_dir / "partners.csv")
    assert list(partners["task"]) == list(TASKS)
    assert partners["rank_predicted"].between(1, 2).all()
    runs = pd.read_csv(out_dir / "runs.csv")
    assert len(runs) == 5 and (runs["steps"] == 4).all()
    affinity = pd.read_csv(out_dir / "affinity.csv")
    assert len(affinity) == 4 * 9  # Four measuring runs, 3 x 3 each.
    text = (out_dir / "report.md").read_text()
    assert "--tiny" in text and "## planted: 3 tasks, 7 networks" in text
    for figure in ("planted_affinity.png", "planted_affinity_epochs.png",
                   "planted_methods.png", "planted_frequency.png"):
        assert (out_dir / figure).stat().st_size > 1000, figure
        assert f"]({figure})" in text


@pytest.mark.slow
def test_optimal_is_best_on_what_it_optimises(benchmark):
    out_dir = benchmark[0]
    results = pd.read_csv(out_dir / "results.csv")
    ablation = pd.read_csv(out_dir / "ablation.csv")
    feasible = results[results["num_networks"] <= results["budget"]]
    assert set(feasible["method"]) >= {"TAG", "CS", "HOA", "RG", "MTL"}
    optimal = results[results["method"] == "Optimal"].iloc[0]
    oracle = results[results["method"] == "Test oracle"].iloc[0]
    # Optimal minimises the mean served validation loss; the oracle the
    # total test error; over every grouping of at most `budget` networks.
    assert (feasible["validation_objective"]
            >= optimal["validation_objective"] - 1e-9).all()
    assert (feasible["test_error"] >= oracle["test_error"] - 1e-9).all()
    assert (ablation["test_error"] >= oracle["test_error"] - 1e-9).all()
    assert optimal["cost_fraction"] >= 1.0
    tag = results[results["method"] == "TAG"].iloc[0]
    assert 0 < tag["cost_fraction"] < 1


@pytest.mark.parametrize("n, k, count", [(1, 1, 1), (3, 2, 3), (4, 2, 7),
                                         (4, 3, 6), (6, 3, 90), (7, 4, 350)])
def test_set_partitions_are_all_partitions(n, k, count):
    tasks = [f"t{i}" for i in range(n)]
    partitions = gq_report.set_partitions(tasks, k)
    assert len(partitions) == count  # Stirling numbers of the second kind.
    assert len({frozenset(map(frozenset, p)) for p in partitions}) == count
    for partition in partitions:
        assert len(partition) == k
        assert sorted(t for g in partition for t in g) == tasks


def test_window_affinity_keeps_the_window_and_every_kth_step():
    steps = pd.DataFrame(
        [{"step": s, "epoch": 0, "source": a, "target": b,
          "affinity": float(s)} for s in range(40) for a in "ab"
         for b in "ab"])
    matrix, count = gq_report.window_affinity(steps, 40, (0.25, 0.75), 5)
    assert count == 4  # Steps 10, 15, 20, 25 of [10, 30).
    np.testing.assert_allclose(matrix.to_numpy(), 17.5)


def test_subsets_in_size_then_task_order():
    assert gq.subsets("abc") == [("a",), ("b",), ("c",), ("a", "b"),
                                 ("a", "c"), ("b", "c"), ("a", "b", "c")]


def test_unknown_dataset_is_a_one_line_error():
    with pytest.raises(InputError) as error:
        gq.load_task_sets(["celeba"])
    assert str(error.value) == ("--datasets must name planted or digits. "
                                "Received: 'celeba'")
