"""Selection from group affinities: parsing, the surrogate, the optimum."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import tag_keras
from tag_keras.select import group_affinity as group_lib

TASKS = ("a", "b", "c", "d")


def _frame(values):
    """`{(source tuple, target): value}` as a group-affinity DataFrame."""
    return pd.DataFrame(
        [{"sources": "|".join(s), "target": t, "affinity": v, "count": 3,
          "stderr": 0.1} for (s, t), v in values.items()])


def _every_source(rng, tasks=TASKS):
    return {(s, t): float(rng.normal())
            for size in range(1, len(tasks) + 1)
            for s in itertools.combinations(tasks, size) for t in tasks}


def _brute_force(values, k, tasks=TASKS):
    """Best mean served Z(G∖{a}→a) over every collection of <= k groups."""
    groups = [g for size in range(2, len(tasks) + 1)
              for g in itertools.combinations(tasks, size)]

    def score(a, g):
        return values[(tuple(t for t in g if t != a), a)]

    best = -np.inf
    for m in range(1, k + 1):
        for chosen in itertools.combinations(groups, m):
            served = [max((score(a, g) for g in chosen if a in g),
                          default=-np.inf) for a in tasks]
            best = max(best, np.mean(served))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_selection_with_every_source_measured_is_the_brute_force_optimum(
        seed, k):
    values = _every_source(np.random.default_rng(seed))
    result = tag_keras.select_groups_from_group_affinity(_frame(values), k)
    assert result.optimal and result.estimated == ()
    np.testing.assert_allclose(result.score, _brute_force(values, k))
    for task, index in result.serve.items():
        group = result.groups[index]
        source = tuple(t for t in group if t != task)
        assert result.task_scores[task] == pytest.approx(
            values[(source, task)])


def test_the_surrogate_is_least_squares_on_membership():
    rng = np.random.default_rng(3)
    values = {k: v for k, v in _every_source(rng).items()
              if len(k[0]) <= 2}  # Singles and pairs: 10 sources, 4 tasks.
    tasks, measured = group_lib.parse(_frame(values))
    predict, fit = group_lib.surrogate(tasks, measured)
    for a, target in enumerate(tasks):
        sources = [s for (s, t) in values if t == target]
        design = np.array([[1.0] + [float(u in s) for u in tasks]
                           for s in sources])
        y = np.array([values[(s, target)] for s in sources])
        beta = np.linalg.lstsq(design, y, rcond=None)[0]
        for s in [("a", "b", "c"), ("b", "c", "d"), TASKS]:
            mask = sum(1 << tasks.index(u) for u in s)
            row = np.array([1.0] + [float(u in s) for u in tasks])
            assert predict[mask, a] == pytest.approx(row @ beta)
        residual = y - design @ beta
        r2 = 1 - residual @ residual / np.sum((y - y.mean()) ** 2)
        row = fit.iloc[a]
        assert (row.target, row.points, row.parameters, row.intercept) == (
            target, 10, 5, True)
        assert row.r2 == pytest.approx(r2)


def test_with_single_sources_only_the_surrogate_adds_pair_affinities():
    rng = np.random.default_rng(4)
    values = {k: v for k, v in _every_source(rng).items() if len(k[0]) == 1}
    tasks, measured = group_lib.parse(_frame(values))
    predict, fit = group_lib.surrogate(tasks, measured)
    mask = 0b0111  # a, b, c
    assert predict[mask, 3] == pytest.approx(
        sum(values[((t,), "d")] for t in "abc"))
    assert not fit.intercept.any() and fit.r2.isna().all()
    result = tag_keras.select_groups_from_group_affinity(_frame(values), 2)
    # Pairs are measured (the pair's other task is a single source); only
    # groups of three or more are estimated.
    for task, index in result.serve.items():
        assert (task in result.estimated) == (len(result.groups[index]) > 2)


def test_estimates_are_flagged_and_measured_scores_used_as_is():
    values = {(s, t): 0.0 for (s, t) in _every_source(
        np.random.default_rng(0)) if len(s) == 1}
    values[(("b", "c"), "a")] = 5.0  # {a, b, c} serves a best.
    values[(("b", "c", "d"), "a")] = -5.0
    result = tag_keras.select_groups_from_group_affinity(_frame(values), 2)
    assert ("a", "b", "c") in result.groups
    assert result.task_scores["a"] == 5.0 and "a" not in result.estimated
    for task, index in result.serve.items():
        source = tuple(t for t in result.groups[index] if t != task)
        assert (task in result.estimated) == ((source, task) not in values)
    assert result.to_dict()["estimated"] == list(result.estimated)


def test_singletons_score_self_affinity_when_allowed():
    values = {(s, t): -1.0 for (s, t) in _every_source(
        np.random.default_rng(0))}
    for t in TASKS:
        values[((t,), t)] = 1.0
    result = tag_keras.select_groups_from_group_affinity(
        _frame(values), 4, allow_singletons=True)
    assert result.groups == tuple((t,) for t in TASKS)
    assert result.score == 1.0
    without = tag_keras.select_groups_from_group_affinity(_frame(values), 4)
    assert all(len(g) >= 2 for g in without.groups)


@pytest.mark.parametrize("sources, message", [
    ("a||b", "sources='a||b'"),
    ("", "sources=''"),
    ("a|a", "sources='a|a'"),
    ("a|z", r"\['z'\]"),
])
def test_malformed_or_unknown_sources_are_one_line_errors(sources, message,
                                                         tmp_path):
    frame = _frame({(("a",), "b"): 0.1, (("b",), "a"): 0.2})
    frame.loc[len(frame)] = [sources, "a", 0.3, 1, 0.0]
    frame.to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(ValueError, match=message):
        tag_keras.select_groups_from_group_affinity(
            group_lib.read_group_affinity(tmp_path / "g.csv"), 1)


def test_other_bad_inputs_are_one_line_errors():
    frame = _frame({(("a",), "b"): 0.1, (("b",), "a"): 0.2})
    with pytest.raises(ValueError, match="columns"):
        tag_keras.select_groups_from_group_affinity(
            frame.drop(columns="sources"), 1)
    with pytest.raises(ValueError, match="appear once"):
        tag_keras.select_groups_from_group_affinity(
            pd.concat([frame, frame]), 1)
    bad = frame.copy()
    bad.loc[0, "affinity"] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tag_keras.select_groups_from_group_affinity(bad, 1)
    with pytest.raises(ValueError, match="num_groups=0"):
        tag_keras.select_groups_from_group_affinity(frame, 0)


def _tag_select(*args):
    return subprocess.run(
        [sys.executable, "-m", "tag_keras.cli", *args],
        capture_output=True, text=True, timeout=120)


def test_tag_select_reads_a_group_affinity_file(tmp_path):
    values = _every_source(np.random.default_rng(5))
    path = tmp_path / "group_affinity.csv"
    _frame(values).to_csv(path, index=False)
    out = tmp_path / "groups.json"
    done = _tag_select(f"--group_affinity={path}", "--num_groups=2,3",
                       f"--output={out}")
    assert done.returncode == 0, done.stderr
    assert "Surrogate" in done.stdout and "Budget 2" in done.stdout
    document = json.loads(out.read_text())
    assert document["mode"] == "group_affinity"
    for entry, k in zip(document["results"], (2, 3)):
        assert entry["score"] == pytest.approx(_brute_force(values, k))
        assert entry["estimated"] == []
    broken = tmp_path / "broken.csv"
    broken.write_text("sources,target,affinity\na|,a,0.1\n")
    done = _tag_select(f"--group_affinity={broken}", "--num_groups=2")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "sources='a|'" in done.stderr
    done = _tag_select(f"--group_affinity={path}", "--stability=20")
    assert done.returncode == 1 and "--stability" in done.stderr


def _sources_frame(n, seed, extra):
    """Clustered group affinities of n tasks: every single source, the
    all-task one and `extra` random groups, each measured onto every
    target (as `AffinityLogger` writes them)."""
    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(n)]
    cluster = rng.integers(0, 3, n)
    sources = [(b,) for b in range(n)] + [tuple(range(n))]
    sources += [tuple(sorted(rng.choice(n, int(rng.integers(2, n)),
                                        replace=False)))
                for _ in range(extra)]
    shared = rng.normal(0.2, 0.1, n)
    rows = []
    for source in dict.fromkeys(sources):
        for a in range(n):
            pulls = [(0.15 if cluster[b] == cluster[a] else -0.1)
                     + rng.normal(0.0, 0.05) for b in source if b != a]
            rows.append({"sources": "|".join(tasks[b] for b in source),
                         "target": tasks[a], "affinity": shared[a]
                         + sum(pulls) / max(1.0, len(pulls)) ** 0.5})
    return pd.DataFrame(rows)


def _check_served(result, frame):
    """Scores are the measured value or the surrogate's, flagged so."""
    tasks, measured = group_lib.parse(frame)
    offset, z, _ = group_lib._fit(tasks, measured)
    for task, index in result.serve.items():
        a = tasks.index(task)
        group = [tasks.index(t) for t in result.groups[index]]
        source = sum(1 << b for b in group if b != a) or 1 << a
        if (source, a) in measured:  # A singleton: Z(a→a).
            expected = measured[(source, a)]
        else:
            expected = offset[a] + sum(z[b, a] for b in group if b != a)
        assert result.task_scores[task] == pytest.approx(expected)
        assert (task in result.estimated) == ((source, a) not in measured)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_column_generation_proves_the_tables_optimum(seed, monkeypatch):
    frame = _sources_frame(9, seed, extra=6)
    cases = [(1, {}), (2, {}), (3, {"allow_singletons": True}),
             (4, {"max_group_size": 4})]
    exact = [tag_keras.select_groups_from_group_affinity(frame, k, **options)
             for k, options in cases]
    monkeypatch.setattr(group_lib, "MAX_TASKS", 2)
    for (k, options), table in zip(cases, exact):
        result = tag_keras.select_groups_from_group_affinity(frame, k,
                                                             **options)
        assert table.method == "dynamic_program"
        assert result.method == "column_generation"
        assert result.optimal and result.gap == 0.0
        assert result.score == pytest.approx(table.score, abs=1e-12)
        assert len(result.groups) <= k
        _check_served(result, frame)


def test_beyond_the_table_bounds_hold_and_time_limits_are_kept(
        monkeypatch):
    import time

    from tag_keras.select import _columns
    from tag_keras.select import _search

    frame = _sources_frame(30, 3, extra=10)
    messages = []
    # Deadline and measurement both in this thread's CPU time: on a loaded
    # machine the wall clock runs on while the thread waits for a core, and
    # other threads' CPU time (process_time) is not the search's, so only
    # this says, whatever the load, whether the deadline is read often.
    monkeypatch.setattr(_columns, "_clock", time.thread_time)
    start = time.thread_time()
    result = tag_keras.select_groups_from_group_affinity(
        frame, 3, time_limit=1.0, progress=messages.append)
    assert time.thread_time() - start < 1.0 + 1.0
    monkeypatch.undo()
    assert result.upper_bound >= result.score
    assert messages[-1].startswith(
        f"column generation: score {result.score:.6g}, bound ")
    _check_served(result, frame)
    tasks, measured = group_lib.parse(frame)
    scores = group_lib._objective(tasks, measured, False, 30)
    for seed in (1, 2):
        _, other = _search.local_search(scores, 3, restarts=2, seed=seed)
        assert result.upper_bound >= other / 30 - 1e-12
    proven = tag_keras.select_groups_from_group_affinity(frame, 3)
    assert proven.optimal and proven.method == "column_generation"
    assert proven.score >= result.score - 1e-12
    assert proven.score <= result.upper_bound + 1e-12
    with pytest.raises(ValueError, match="Received: time_limit=0"):
        tag_keras.select_groups_from_group_affinity(frame, 3, time_limit=0)


def test_tag_select_searches_beyond_the_table(tmp_path):
    path = tmp_path / "group_affinity.csv"
    _sources_frame(16, 4, extra=4).to_csv(path, index=False)
    done = _tag_select(f"--group_affinity={path}", "--num_groups=2",
                       "--time_limit=30", "--progress")
    assert done.returncode == 0, done.stderr
    assert "[column_generation]" in done.stdout
    assert "proven optimal" in done.stdout
    assert "column generation: score" in done.stderr


def test_reduced_cost_fixing_closes_what_the_lp_leaves():
    """From a poor start the LP bound can stay above the restricted
    master's best; fixing over every block, valued by fU >= f, proves the
    table's optimum (these instances leave such gaps)."""
    from experiments.benchmarks import select_benchmark
    from tag_keras.select import _columns

    for n, seed, k in [(10, 5, 3), (13, 7, 3), (13, 25, 4)]:
        frame = select_benchmark.realistic_group_affinity(n, seed, 6)
        tasks, measured = group_lib.parse(frame)
        scores = group_lib._objective(tasks, measured, False, n)
        labels = np.random.default_rng(seed).permutation(n) % k
        start = [sum(1 << t for t in range(n) if labels[t] == b)
                 for b in range(k)]
        optimum = tag_keras.select_groups_from_group_affinity(frame, k).score
        _, total, bound, proven = _columns.prove(
            scores, k, start, _columns.Deadline(None), max_enumerated_tasks=0)
        assert not proven and bound / n > total / n + 1e-9
        assert bound / n >= optimum - 1e-12 >= total / n - 2e-12
        blocks, total, bound, proven = _columns.prove(
            scores, k, start, _columns.Deadline(None))
        assert proven and total / n == pytest.approx(optimum, abs=1e-12)
        assert bound == total and sum(blocks) == 2**n - 1
