"""The calibration benchmark: a tiny real run, its files, and its maths."""

import numpy as np
import pandas as pd
import pytest

from experiments import data as data_lib
from experiments.benchmarks.calibration import __main__ as calibration_bin
from experiments.benchmarks.calibration import report as report_lib
from experiments.benchmarks.calibration import write as write_lib
from experiments.benchmarks.grouping_quality import work as work_lib
from experiments.lib import training

TASKS = ("c0_t0", "c0_t1", "noise_0")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = data_lib.load_dataset(
        "planted", tasks=TASKS, num_train=64, num_validation=32,
        num_test=40, num_features=6)
    config = training.TrainConfig(epochs=2, batch_size=16, learning_rate=0.05,
                                  patience=1, lr_halving_epochs=1, width=4)
    task_set = work_lib.TaskSet(data, config)
    out_dir = tmp_path_factory.mktemp("calibration")
    variants = tuple(
        v if v.method == "plain" else work_lib.Variant(
            v.name, v.method, 1, held_out=v.held_out,
            write_steps=v.write_steps, step=v.step, sources=v.sources)
        for v in calibration_bin.VARIANTS)
    reported = write_lib.run(
        [task_set], out_dir, truth_seeds=[0, 1], measure_seeds=[0, 1],
        variants=variants, budgets=[2], resamples=10, command="tiny",
        log=lambda line: None)
    return out_dir, reported


@pytest.mark.slow
def test_a_tiny_run_writes_every_file(run):
    out_dir, reported = run
    assert reported == ["planted"]
    for name in ("results", "summary", "correlations", "structures", "costs",
                 "truth", "calibration", "noise_floor"):
        assert not pd.read_csv(out_dir / f"{name}.csv").empty, name
    results = pd.read_csv(out_dir / "results.csv")
    methods = set(results.method)
    assert {report_lib.RELEASE, report_lib.GROUP_AFFINITY, "HOA", "MTL",
            "STL", "Test oracle (truth)", "RG (exact expectation)",
            "Optimal (validation)", "TAG sgd step", "TAG increment step",
            "CS"} <= methods
    # Measuring methods: one row per measuring seed; HOA per truth seed.
    assert sorted(results[results.method == "TAG sgd step"].seed) == [0, 1]
    truth = pd.read_csv(out_dir / "truth.csv")
    assert len(truth) == 3 * 4 and (truth.seeds == 2).all()
    # The oracle is a bound: no method beats it on the truth.
    oracle = results[results.method == "Test oracle (truth)"].test_error.min()
    assert results.test_error.min() >= oracle - 1e-9
    structures = pd.read_csv(out_dir / "structures.csv")
    assert set(structures.affinity_structure) <= {"stable", "unclear"}
    assert len(structures) == 3 * 2  # Three estimators, two seeds, budget 2.
    report = (out_dir / "report.md").read_text()
    assert ("Calibration of the affinity structure" in report
            and "tiny" in report)


@pytest.mark.slow
def test_a_rerun_trains_nothing(run):
    out_dir, _ = run
    lines = []
    data = data_lib.load_dataset(
        "planted", tasks=TASKS, num_train=64, num_validation=32,
        num_test=40, num_features=6)
    config = training.TrainConfig(epochs=2, batch_size=16, learning_rate=0.05,
                                  patience=1, lr_halving_epochs=1, width=4)
    variants = tuple(
        v if v.method == "plain" else work_lib.Variant(
            v.name, v.method, 1, held_out=v.held_out,
            write_steps=v.write_steps, step=v.step, sources=v.sources)
        for v in calibration_bin.VARIANTS)
    write_lib.run([work_lib.TaskSet(data, config)], out_dir,
                  truth_seeds=[0, 1], measure_seeds=[0, 1],
                  variants=variants, budgets=[2], resamples=10,
                  train=False, log=lines.append)
    assert not any("network" in line or " run " in line for line in lines)


def _network(errors):
    return {"test_error": errors, "validation_loss": errors}


def test_truth_benefits_and_totals_by_hand():
    groups = {("a",): {"a": 0.2}, ("b",): {"b": 0.1},
              ("a", "b"): {"a": 0.1, "b": 0.3}}
    other = {("a",): {"a": 0.4}, ("b",): {"b": 0.1},
             ("a", "b"): {"a": 0.1, "b": 0.1}}
    truth, frame = report_lib.truth_table({
        0: {g: _network(e) for g, e in groups.items()},
        1: {g: _network(e) for g, e in other.items()}})
    assert truth[("a",)]["a"] == pytest.approx(0.3)
    assert truth[("a", "b")]["b"] == pytest.approx(0.2)
    row = frame[(frame.group == "a") & (frame.task == "a")].iloc[0]
    assert row.test_error_se == pytest.approx(np.std([0.2, 0.4], ddof=1)
                                              / np.sqrt(2))
    pair, group = report_lib.benefits(("a", "b"), truth)
    assert pair[("b", "a")] == pytest.approx(20.0)   # 30% alone, 10% with b.
    assert pair[("a", "b")] == pytest.approx(-10.0)  # 10% alone, 20% with a.
    assert group[(("a", "b"), "a")] == pytest.approx(20.0)
    assert report_lib.total_error(truth, (("a", "b"), ("b",)),
                                  {"a": 0, "b": 1}) == pytest.approx(20.0)


def test_calibration_counts_right_and_wrong_structures():
    structures = pd.DataFrame({
        "method": ["m"] * 4, "dataset": ["d"] * 4, "budget": [2, 2, 3, 3],
        "affinity_structure": ["stable", "stable", "unclear", "unclear"],
        "split_better": [True, False, False, True]})
    table = report_lib.calibration(structures)
    overall = table[table.dataset == "all"].iloc[0]
    assert (overall["stable"], overall["stable, split better"]) == (2, 1)
    assert (overall["unclear"], overall["unclear, split not better"]) == (
        2, 1)
    assert overall["split better (any structure)"] == 2
