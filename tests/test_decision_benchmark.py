"""The decision benchmark's summaries on hand-made tables, and a smoke run."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments.benchmarks.decision import report

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_truth_row_classes_by_the_t_interval_and_the_margin():
    # Differences -2, -2.5, -1.5: mean -2, SE 0.2887, t(0.975, 2) = 4.303.
    row = report.truth_row([10.0, 10.5, 11.5], [12.0, 13.0, 13.0], 0.5)
    half = 4.302652729911275 * np.sqrt(0.25 / 3)
    assert row["truth_difference"] == pytest.approx(-2.0)
    assert (row["truth_low"], row["truth_high"]) == (
        pytest.approx(-2 - half), pytest.approx(-2 + half))
    assert row["truth_seeds"] == 3 and row["truth_margin"] == 0.5
    assert row["truth_class"] == "split better"  # high -0.76 < -0.5
    # The same interval against a margin of 1: it straddles -margin.
    assert report.truth_row([10.0, 10.5, 11.5], [12.0, 13.0, 13.0],
                            1.0)["truth_class"] == "indeterminate"
    assert report.truth_class(0.1, 2.0, 1.0) == "all-task better"
    assert report.truth_class(-0.9, 2.0, 1.0) == "within margin"
    assert report.truth_class(-0.9, -0.1, 1.0) == "within margin"
    assert report.truth_class(-3.0, -0.1, 1.0) == "indeterminate"
    # One seed has no interval: indeterminate.
    assert report.truth_row([1.0], [2.0], 0.1)["truth_class"] == (
        "indeterminate")


def test_right_maps_each_class_to_its_answer():
    assert report.right("split", "split better") is True
    assert report.right("keep together", "split better") is False
    assert report.right("keep together", "within margin") is True
    assert report.right("split", "all-task better") is False
    assert report.right("undecided", "split better") is None
    assert report.right("split", "indeterminate") is None


def _units():
    entry = {"groups": [["a"], ["b"]], "serve": {"a": 0, "b": 1},
             "difference": -0.1, "low": -0.2, "high": 0.0, "margin": 0.005,
             "answer_detail": "", "seeds": 5}
    return [
        {"seed": 0, "budgets": {"2": {**entry, "affinity_structure": "stable",
                                      "decision": "split"}}},
        {"seed": 1, "budgets": {"2": {**entry,
                                      "affinity_structure": "unclear",
                                      "decision": "undecided"}}},
        {"seed": 2, "budgets": {"2": {**entry, "affinity_structure": "stable",
                                      "decision": "keep together"}}},
    ]


def _totals(groups, serve):
    # Every split beats the all-task network by 2 points on every seed
    # (plus a little seed noise, so that the truth has an interval).
    return np.array([10.0, 11.2, 9.9]) if len(groups) == 2 else np.array(
        [12.0, 13.0, 12.0])


def test_answer_rows_against_a_hand_made_truth():
    rows = report.answer_rows(("a", "b"), _units(), _totals)
    assert len(rows) == 3 * len(report.DECIDERS)
    validated = [r for r in rows if r["decider"] == "validated decision"]
    # Margin 0.005 in error rate is 0.5 points; D = -1.97, high < -0.5.
    assert {r["truth_class"] for r in rows} == {"split better"}
    assert [r["answer"] for r in validated] == [
        "split", "undecided", "keep together"]
    assert [r["right"] for r in validated] == [True, None, False]
    assert [r["seeds_used"] for r in validated] == [5, 5, 5]
    assert validated[0]["truth_margin"] == pytest.approx(0.5)


def _frame(cases):
    """answers.csv rows of the validated decision from (task set, seed,
    truth class, answer, truth difference, margin)."""
    return pd.DataFrame([{
        "task_set": t, "seed": s, "budget": 2, "decider":
        "validated decision", "answer": a, "truth_class": k,
        "right": report.right(a, k), "truth_difference": d,
        "truth_margin": m, "truth_seeds": 10, "truth_se": 0.1,
        "seeds_used": 3} for t, s, k, a, d, m in cases])


def test_class_rates_precision_and_demands_by_hand():
    frame = _frame([
        ("x", 0, "split better", "split", -3.0, 1.0),
        ("x", 1, "split better", "keep together", -3.0, 1.0),
        ("y", 0, "split better", "undecided", -1.5, 1.0),
        ("y", 1, "all-task better", "keep together", 2.0, 1.0),
        ("y", 1, "within margin", "split", 0.2, 1.0),
        ("y", 2, "indeterminate", "split", -1.0, 1.0),
    ])
    rates = report.class_rates(frame, reps=200).set_index("truth_class")
    assert rates.loc["split better", "cases"] == 3
    assert rates.loc["split better", "split"] == pytest.approx(1 / 3)
    assert rates.loc["split better", "undecided"] == pytest.approx(1 / 3)
    assert rates.loc["indeterminate", "split"] == 1.0
    assert rates.loc["split better", "clusters"] == 3
    precision = report.precision(frame, reps=200).set_index("answer")
    # Split: right once, wrong once (within margin); the indeterminate
    # case is not counted.
    assert (precision.loc["split", "answers"],
            precision.loc["split", "right"]) == (2, 1)
    assert precision.loc["keep together", "precision"] == pytest.approx(0.5)
    demands = report.demands(frame, reps=200).set_index("demand")
    as_good = demands.loc["P(split given the all-task network at least as good)"]
    # All-task better (keep) and within margin with D >= 0 (split).
    assert as_good.cases == 2 and as_good.estimate == pytest.approx(0.5)
    assert as_good.outcome == "not met"
    undecided = demands.loc["P(undecided given a true difference of at least 2 margins)"]
    # |D| >= 2: -3, -3, 2 (not -1.5, 0.2 or -1.0).
    assert undecided.cases == 3 and undecided.estimate == 0.0
    assert undecided.outcome == "met"


def test_the_cluster_interval_covers_the_estimate_and_resamples_clusters():
    frame = _frame([("x", s, "split better", "split" if s % 2 else
                     "keep together", -3.0, 1.0) for s in range(40)])
    estimate, low, high = report.rate(
        frame, "split", frame.truth_class == "split better", reps=2000)
    assert estimate == 0.5 and low < 0.5 < high
    # 40 independent clusters: the interval is about +-1.96 * sqrt(.25/40).
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.25 / 40),
                                       rel=0.25)
    # The same 40 rows in 2 clusters of 20: the interval is wider.
    clustered = frame.assign(seed=frame.seed % 2)
    _, low2, high2 = report.rate(
        clustered, "split", clustered.truth_class == "split better",
        reps=2000)
    assert high2 - low2 > high - low


def test_score_recomputes_the_rates_from_answers_csv(tmp_path):
    frame = _frame([("x", 0, "split better", "split", -3.0, 1.0),
                    ("x", 1, "all-task better", "keep together", 2.0, 1.0)])
    frame.to_csv(tmp_path / "answers.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.decision.score",
         f"--answers={tmp_path / 'answers.csv'}", "--score_bootstrap=100"],
        cwd=_ROOT, env=dict(os.environ, PYTHONPATH=_ROOT),
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| validated decision | precision of split | 100.0%" in (
        done.stdout)


def test_quality_against_a_hand_made_table():
    partitions = ([(("a",), ("b",))], True)
    rows = report.quality("toy", _units(), _totals, {2: partitions},
                          ["a", "b"])
    (row,) = rows
    assert row["tag"] == pytest.approx(31.1 / 3)
    assert row["tag_se"] == pytest.approx(0.0)
    assert row["random"] == pytest.approx(31.1 / 3)
    assert row["mtl"] == pytest.approx(37 / 3)
    assert row["stl"] == pytest.approx(31.1 / 3)
    assert row["tag_vs_mtl"] == pytest.approx(-5.9 / 3)
    assert row["random_exact"] is True


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.decision",
         "--decision_task_sets=pooled", "--measure_seeds=1",
         "--decision_truth_seeds=2", "--decision_bootstrap=100",
         "--epochs=4", "--budgets=2", f"--out_dir={tmp_path}"],
        cwd=_ROOT, env=dict(os.environ, PYTHONPATH=_ROOT),
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = pd.read_csv(tmp_path / "answers.csv")
    assert len(answers) == len(report.DECIDERS)
    assert set(answers.answer) <= {"split", "keep together", "undecided"}
    assert {"truth_seeds", "truth_margin", "truth_class", "seeds_used",
            "answer"} <= set(answers.columns)
    assert (answers.truth_seeds == 2).all()
    for name in ("classes", "precision", "demands", "sets"):
        assert len(pd.read_csv(tmp_path / f"{name}.csv"))
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
        pd.DataFrame({"task_set": ["pooled", "mnist7"], "x": [1, 2],
                      "truth_class": ["within margin"] * 2}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    kept = report.earlier_rows(str(tmp_path), ["mnist7"])
    assert kept == [[{"task_set": "pooled", "x": 1,
                      "truth_class": "within margin"}]] * 3
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


def test_a_rerun_drops_rows_of_the_two_answer_protocol(tmp_path):
    for name in ("answers", "quality", "cost"):
        pd.DataFrame({"task_set": ["pooled"], "x": [1]}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    assert report.earlier_rows(str(tmp_path), ["mnist7"]) == [[], [], []]


def test_the_class_figure_draws_every_decider(tmp_path):
    frame = _frame([("x", 0, "split better", "split", -3.0, 1.0),
                    ("x", 1, "all-task better", "keep together", 2.0, 1.0)])
    frame = pd.concat([frame, frame.assign(decider="always split",
                                           answer="split")])
    path = tmp_path / "classes.png"
    report.plot_classes(report.tables(frame, 100)["classes"], path)
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
        "not within 1000 seeds, nor 1000x the validation data, alone")
