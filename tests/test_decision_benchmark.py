"""The decision benchmark's summaries on hand-made tables, and a smoke run."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments.benchmarks.decision import report

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_truth_row_split_better_and_all_as_good_within_se():
    row = report.truth_row([10.0, 12.0, 11.0], [12.0, 13.0, 12.0])
    assert row["truth_difference"] == pytest.approx(-4 / 3)
    assert row["split_better"] and not row["all_as_good"]
    # A split worse by less than its SE: the all-task network is as good.
    row = report.truth_row([10.0, 13.0], [11.0, 11.0])
    assert row["truth_difference"] == pytest.approx(0.5)
    assert not row["split_better"] and row["all_as_good"]
    # Better by less than the SE: both "split better" and "as good".
    row = report.truth_row([9.0, 12.0], [11.0, 11.0])
    assert row["split_better"] and row["all_as_good"]


def _units():
    entry = {"groups": [["a"], ["b"]], "serve": {"a": 0, "b": 1},
             "difference": -0.1}
    return [
        {"seed": 0, "budgets": {"2": {**entry, "affinity_structure": "stable",
                                      "decision": "split"}}},
        {"seed": 1, "budgets": {"2": {**entry,
                                      "affinity_structure": "unclear",
                                      "decision": "split"}}},
        {"seed": 2, "budgets": {"2": {**entry, "affinity_structure": "stable",
                                      "decision": "keep together"}}},
    ]


def _totals(groups, serve):
    # Every split beats the all-task network by 2 points on every seed.
    return np.array([10.0, 11.0]) if len(groups) == 2 else np.array(
        [12.0, 13.0])


def test_answers_and_calibration_against_a_hand_made_table():
    rows = report.answer_rows(("a", "b"), _units(), _totals)
    for row in rows:
        row["task_set"] = "toy"
    assert len(rows) == 3 * len(report.DECIDERS)
    table = report.calibration(rows).set_index(["task_set", "decider"])
    validated = table.loc[("toy", "validated decision")]
    assert (validated.split_answers, validated.split_right) == (2, 2)
    assert (validated.keep_answers, validated.keep_right) == (1, 0)
    assert validated.split_share == 1.0 and validated.keep_share == 0.0
    affinity = table.loc[("toy", "affinity structure (stable = split)")]
    assert (affinity.split_answers, affinity.keep_answers) == (2, 1)
    always_keep = table.loc[("toy", "always keep together")]
    assert (always_keep.keep_answers, always_keep.keep_right) == (3, 0)
    assert np.isnan(always_keep.split_share)
    pooled = table.loc[("all", "always split")]
    assert (pooled.split_answers, pooled.split_right) == (3, 3)


def test_quality_against_a_hand_made_table():
    partitions = ([(("a",), ("b",))], True)
    rows = report.quality("toy", _units(), _totals, {2: partitions},
                          ["a", "b"])
    (row,) = rows
    assert row["tag"] == pytest.approx(10.5)
    assert row["tag_se"] == pytest.approx(0.0)
    assert row["random"] == pytest.approx(10.5)
    assert row["mtl"] == pytest.approx(12.5)
    assert row["stl"] == pytest.approx(10.5)
    assert row["tag_vs_mtl"] == pytest.approx(-2.0)
    assert row["random_exact"] is True


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.decision",
         "--task_sets=pooled", "--measure_seeds=1", "--truth_seeds=2",
         "--epochs=4", "--budgets=2", f"--out_dir={tmp_path}"],
        cwd=_ROOT, env=dict(os.environ, PYTHONPATH=_ROOT),
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = pd.read_csv(tmp_path / "answers.csv")
    assert len(answers) == len(report.DECIDERS)
    assert set(answers.answer) <= {"split", "keep together"}
    assert (tmp_path / "report.md").read_text().startswith("# Does")
