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
             "difference": -0.1, "error_high": 0.2}
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
         "--decision_task_sets=pooled", "--measure_seeds=1",
         "--truth_seeds=2",
         "--epochs=4", "--budgets=2", f"--out_dir={tmp_path}"],
        cwd=_ROOT, env=dict(os.environ, PYTHONPATH=_ROOT),
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = pd.read_csv(tmp_path / "answers.csv")
    assert len(answers) == len(report.DECIDERS)
    assert set(answers.answer) <= {"split", "keep together"}
    assert (tmp_path / "report.md").read_text().startswith("# Does")


def test_validated_best_picks_the_lowest_served_validation_loss():
    import types

    from experiments.benchmarks.decision import proposers

    validation = {("a", "b"): {"a": 0.5, "b": 0.5}, ("a",): {"a": 0.2},
                  ("b",): {"b": 0.6}, ("c",): {"c": 0.1},
                  ("b", "c"): {"b": 0.3, "c": 0.4}}
    first = types.SimpleNamespace(groups=(("a", "b"), ("c",)),
                                  serve={"a": 0, "b": 0, "c": 1})
    second = types.SimpleNamespace(groups=(("a",), ("b", "c")),
                                   serve={"a": 0, "b": 1, "c": 1})
    # first: 0.5 + 0.5 + 0.1 = 1.1; second: 0.2 + 0.3 + 0.4 = 0.9.
    assert proposers.validated_best([first, second], validation) is second


def test_proposer_summary_pairs_with_release_mtl_and_random():
    from experiments.benchmarks.calibration import report as calibration_report
    from experiments.benchmarks.decision import proposers

    release = calibration_report.RELEASE
    rows = []
    for seed, (tag, other) in enumerate([(10.0, 9.0), (12.0, 10.0),
                                         (11.0, 11.0)]):
        rows += [{"method": release, "seed": seed, "test_error": tag},
                 {"method": proposers.SHRUNK, "seed": seed,
                  "test_error": other}]
    rows += [{"method": proposers.RANDOM, "seed": None, "test_error": 12.0},
             {"method": "Test oracle (truth)", "seed": None,
              "test_error": 8.0}]
    frame = pd.DataFrame(rows).assign(dataset="toy", budget=2,
                                      mtl_error=13.0)
    summary = proposers.summarize(frame).set_index("method")
    shrunk = summary.loc[proposers.SHRUNK]
    # Paired with release: -1, -2, 0.
    assert shrunk["minus release"] == pytest.approx(-1.0)
    assert shrunk["minus release se"] == pytest.approx(np.sqrt(1 / 3))
    assert shrunk["minus RG"] == pytest.approx(10.0 - 12.0)
    assert shrunk["minus MTL"] == pytest.approx(-3.0)
    # The oracle gains 5 over MTL; the shrunk proposer 3 of them.
    assert shrunk["share of oracle gain"] == pytest.approx(0.6)


def test_a_partial_rerun_keeps_the_other_task_sets_rows(tmp_path):
    for name in ("answers", "quality", "cost"):
        pd.DataFrame({"task_set": ["pooled", "mnist7"], "x": [1, 2]}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    kept = report.earlier_rows(str(tmp_path), ["mnist7"])
    assert kept == [[{"task_set": "pooled", "x": 1}]] * 3
    assert report.earlier_rows(str(tmp_path / "none"), ["x"]) == [[], [], []]


def test_cost_table_by_hand():
    cost = [{"task_set": "toy", "seed": s, "measure_seconds": m,
             "decision_seconds": d, "decision_networks": k}
            for s, (m, d, k) in enumerate([(10.0, 40.0, 20), (14.0, 80.0, 20)])]
    table = report.cost_table(cost, {"toy": 4}, budgets=(2,), seeds=3,
                              top=2).set_index("search")
    assert table.loc["TAG measuring run", "seconds"] == pytest.approx(12.0)
    both = table.loc["TAG + validated decision"]
    assert (both.trainings, both.seconds) == (21.0, pytest.approx(72.0))
    # 3 s per network (mean of 2 and 4): HOA = (4 + 6) x 3 seeds.
    hoa = table.loc["HOA"]
    assert hoa.trainings == 30.0 and hoa.seconds == pytest.approx(90.0)
    assert table.loc["every group (exhaustive)", "trainings"] == 45.0
    assert table.loc["TAG best of 2 (validation)", "trainings"] == 13.0
    assert not table.loc["HOA", "measured"]


def test_derived_rows_add_the_point_estimate_decider_once():
    rows = report.answer_rows(("a", "b"), _units(), _totals)
    for row in rows:
        row["task_set"] = "toy"
    name = "validation mean (no interval)"
    assert sum(r["decider"] == name for r in rows) == 3
    stripped = [r for r in rows if r["decider"] != name]
    derived = report.derived_rows(stripped)
    # Every difference is -0.1: the point estimate says split, right.
    added = [r for r in derived if r["decider"] == name]
    assert len(added) == 3
    assert all(r["answer"] == "split" and r["right"] for r in added)
    assert len(report.derived_rows(derived)) == len(derived)


def test_the_calibration_figure_draws_deciders_missing_on_some_sets(
        tmp_path):
    rows = report.answer_rows(("a", "b"), _units(), _totals)
    for row in rows:
        row["task_set"] = "toy"
    other = [dict(r, task_set="old") for r in rows
             if r["decider"] != "validated decision (error)"]
    path = tmp_path / "calibration.png"
    report.plot_calibration(report.calibration(rows + other), path)
    assert path.stat().st_size > 0


def test_pipeline_runs_judge_each_answer_on_its_own_claim():
    from experiments.benchmarks.decision import pipeline_runs

    def entry(decision, detail, test_difference, **more):
        return {"decision": decision, "answer_detail": detail,
                "test_difference": test_difference, "margin": 0.1, **more}

    held = pipeline_runs.held_on_test
    assert held(entry("split", "split better", -0.01)) == "yes"
    assert held(entry("split", "split better", 0.01)) == "no"
    assert held(entry("keep together", "all-task better", 0.01)) == "yes"
    assert held(entry("keep together", "all-task better", -0.01)) == "no"
    # Within the margin claims only that the gain is below the margin.
    assert held(entry("keep together", "within the margin", -0.05)) == "yes"
    assert held(entry("keep together", "within the margin", -0.2)) == "no"
    assert held(entry("undecided", "not shown either way", -0.5)) == "n/a"
    decide = pipeline_runs.what_would_decide
    assert decide(entry("split", "split better", -1)) == ""
    assert decide(entry("undecided", "", 0, seeds_needed=12,
                        seeds_needed_range=[5, None])) == (
        "about 12 seeds (range 5->1000)")
    assert decide(entry("undecided", "", 0, seeds_needed=None,
                        validation_factor=2.5)) == (
        "2.50x the validation examples")
    assert decide(entry("undecided", "", 0, seeds_needed=None,
                        validation_factor=None)) == (
        "not reachable with more seeds or data")
