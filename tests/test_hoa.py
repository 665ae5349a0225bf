"""Tests for tag_keras.select.performance: HOA selection from losses."""

import itertools

import numpy as np
import pandas as pd
import pytest

from tag_keras.select import performance as hoa

# Hand-made losses for three tasks: a and b gain from each other, c gains
# from nobody and hurts a.
_ROWS = [
    ("a", "a", 1.0), ("b", "b", 1.0), ("c", "c", 1.0),
    ("a|b", "a", 0.5), ("a|b", "b", 0.6),
    ("a|c", "a", 1.2), ("a|c", "c", 0.9),
    ("b|c", "b", 1.1), ("b|c", "c", 0.95),
]


def _table(rows=_ROWS):
    return pd.DataFrame(rows, columns=["group", "task", "value"])


def test_unmeasured_groups_average_the_pairs():
    tasks, measured = hoa._parse(_table())
    losses = hoa.group_losses(tasks, measured)
    everyone = 0b111
    np.testing.assert_allclose(losses[everyone], [0.85, 0.85, 0.925])
    np.testing.assert_allclose(losses[0b011], [0.5, 0.6, np.nan])
    assert np.isnan(losses[0b001, 1])  # b is not in {a}.


@pytest.mark.parametrize(
    "k, groups, serve, score",
    [
        (1, (("a", "b", "c"),), {"a": 0, "b": 0, "c": 0}, 2.625 / 3),
        (2, (("a", "b"), ("a", "c")), {"a": 0, "b": 0, "c": 1}, 2.0 / 3),
        (3, (("a", "b"), ("a", "c")), {"a": 0, "b": 0, "c": 1}, 2.0 / 3),
    ],
)
def test_hand_made_table(k, groups, serve, score):
    result = hoa.select_groups_from_performance(_table(), k)
    assert result.groups == groups
    assert dict(result.serve) == serve
    np.testing.assert_allclose(result.score, score)
    assert result.minimize and result.optimal
    assert result.upper_bound == result.score


def test_single_task_network_serves_a_task_nobody_helps():
    rows = [r for r in _ROWS if r[0] != "a|c"] + [
        ("a|c", "a", 1.2), ("a|c", "c", 1.5),
    ]
    rows = [r for r in rows if r[:2] != ("b|c", "c")] + [("b|c", "c", 1.4)]
    result = hoa.select_groups_from_performance(_table(rows), 2)
    assert result.groups == (("a", "b"), ("c",))
    assert result.task_scores["c"] == 1.0


def test_measured_triple_overrides_the_approximation():
    rows = _ROWS + [("a|b|c", "a", 0.1), ("a|b|c", "b", 0.2),
                    ("a|b|c", "c", 0.3)]
    result = hoa.select_groups_from_performance(_table(rows), 1)
    np.testing.assert_allclose(list(result.task_scores.values()),
                               [0.1, 0.2, 0.3])


def test_matches_brute_force_on_random_pairs():
    rng = np.random.default_rng(0)
    names = list("abcde")
    rows = [(t, t, rng.uniform(0.5, 1.5)) for t in names]
    for x, y in itertools.combinations(names, 2):
        rows += [(f"{x}|{y}", x, rng.uniform(0.3, 1.7)),
                 (f"{x}|{y}", y, rng.uniform(0.3, 1.7))]
    tasks, measured = hoa._parse(_table(rows))
    losses = hoa.group_losses(tasks, measured)
    for k in range(1, 6):
        best = np.inf
        for m in range(1, k + 1):
            for chosen in itertools.combinations(range(1, 32), m):
                rows_ = losses[list(chosen)]
                served = np.where(np.isnan(rows_), np.inf, rows_).min(axis=0)
                if np.isfinite(served).all():
                    best = min(best, served.mean())
        result = hoa.select_groups_from_performance(_table(rows), k)
        np.testing.assert_allclose(result.score, best)
        assert len(result.groups) <= k


def test_max_group_size():
    result = hoa.select_groups_from_performance(
        _table(), 1, max_group_size=3)
    assert len(result.groups[0]) == 3
    with pytest.raises(ValueError, match="cannot serve 3 tasks"):
        hoa.select_groups_from_performance(_table(), 1, max_group_size=2)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("a|b", "c", 1.0)], "group='a|b', task='c'"),
        ([("a|b", "a", float("nan"))], "value=nan"),
        ([("a|b", "a", 1.0), ("b|a", "a", 2.0)], "measured once"),
        ([("a|b", "a", 1.0)], "tasks without one=\\['b'\\]"),
    ],
)
def test_bad_tables(rows, message):
    with pytest.raises(ValueError, match=message):
        hoa.select_groups_from_performance(_table(rows), 1)


def test_missing_columns():
    with pytest.raises(ValueError, match="group, task, value"):
        hoa.select_groups_from_performance(pd.DataFrame({"x": [1]}), 1)


def test_read_performance(tmp_path):
    path = tmp_path / "perf.csv"
    _table().to_csv(path, index=False)
    table = hoa.read_performance(path)
    assert hoa.select_groups_from_performance(table, 2).groups == (
        ("a", "b"), ("a", "c"))


def _brute_force_half(tasks, losses, half, budget):
    """Best mean served loss over collections of full networks (cost 1,
    any measured group) and half-size singles (cost 0.5) within budget."""
    full = [g for g in range(1, 2 ** len(tasks))]
    options = [(g, 1.0, False) for g in full] + [
        (1 << a, 0.5, True) for a in range(len(tasks))]
    best = np.inf
    for m in range(1, 2 * budget + 1):
        for chosen in itertools.combinations(options, m):
            if sum(c for _, c, _ in chosen) > budget:
                continue
            served = []
            for a in range(len(tasks)):
                candidates = [half[a] if is_half else losses[g, a]
                              for g, _, is_half in chosen
                              if g >> a & 1 and not np.isnan(
                                  half[a] if is_half else losses[g, a])]
                served.append(min(candidates, default=np.inf))
            best = min(best, np.mean(served))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [1, 2])
def test_half_size_singles_count_half_a_network(seed, budget):
    rng = np.random.default_rng(seed)
    tasks = ["a", "b", "c"]
    rows = [("|".join(g), t, float(rng.uniform(0.5, 1.5)))
            for size in (1, 2) for g in itertools.combinations(tasks, size)
            for t in g]
    half = pd.DataFrame({"task": tasks,
                         "value": rng.uniform(0.6, 1.4, size=3)})
    result = hoa.select_groups_from_performance(
        _table(rows), budget, half_size_singles=half)
    names, measured = hoa._parse(_table(rows))
    losses = hoa.group_losses(names, measured)
    expected = _brute_force_half(
        names, losses, half.set_index("task").loc[names, "value"].to_numpy(),
        budget)
    np.testing.assert_allclose(result.score, expected)
    cost = sum(0.5 if g in result.half_size else 1.0 for g in result.groups)
    assert cost <= budget
    for task in result.half_size:
        assert result.task_scores[task[0]] == pytest.approx(
            half.set_index("task").loc[task[0], "value"])


def test_two_half_singles_fit_where_one_network_would():
    rows = [("a", "a", 1.0), ("b", "b", 1.0), ("a|b", "a", 0.9),
            ("a|b", "b", 0.9)]
    half = pd.DataFrame({"task": ["a", "b"], "value": [0.5, 0.5]})
    result = hoa.select_groups_from_performance(_table(rows), 1,
                                                half_size_singles=half)
    assert result.groups == (("a",), ("b",))
    assert result.half_size == (("a",), ("b",))
    assert result.score == 0.5
    assert result.to_dict()["half_size"] == [["a"], ["b"]]
    without = hoa.select_groups_from_performance(_table(rows), 1)
    assert without.groups == (("a", "b"),) and without.half_size == ()
    with pytest.raises(ValueError, match="task='z'"):
        hoa.select_groups_from_performance(
            _table(rows), 1, half_size_singles=pd.DataFrame(
                {"task": ["z"], "value": [0.1]}))


def _pairs_table(n, seed):
    """Singles and every pair of n tasks, random losses."""
    rng = np.random.default_rng(seed)
    tasks = [f"t{i:02d}" for i in range(n)]
    rows = [(t, t, float(rng.uniform(0.5, 1.5))) for t in tasks]
    rows += [(f"{a}|{b}", t, float(rng.uniform(0.4, 1.6)))
             for a, b in itertools.combinations(tasks, 2) for t in (a, b)]
    return _table(rows)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [2, 3])
def test_beyond_the_table_hoa_is_select_groups_on_pair_losses(
        seed, k, monkeypatch):
    table = _pairs_table(8, seed)
    exact = hoa.select_groups_from_performance(table, k)
    # Force the large-n route on a size the exact table also solves.
    monkeypatch.setattr(hoa, "MAX_TASKS", 7)
    routed = hoa.select_groups_from_performance(table, k)
    np.testing.assert_allclose(routed.score, exact.score)
    assert routed.minimize and routed.optimal
    assert routed.upper_bound == pytest.approx(routed.score)
    for task, value in routed.task_scores.items():
        group = routed.groups[routed.serve[task]]
        tasks, measured = hoa._parse(table)
        losses = hoa.group_losses(tasks, measured)
        mask = sum(1 << tasks.index(t) for t in group)
        assert value == pytest.approx(losses[mask, tasks.index(task)])


def test_hoa_beyond_the_table_proves_or_bounds_at_20_tasks():
    result = hoa.select_groups_from_performance(_pairs_table(20, 3), 3,
                                                time_limit=30)
    assert result.minimize
    assert result.upper_bound <= result.score + 1e-12  # A lower bound.
    assert len(result.groups) <= 3


def test_hoa_beyond_the_table_needs_every_pair_and_nothing_larger(
        monkeypatch):
    monkeypatch.setattr(hoa, "MAX_TASKS", 2)
    rows = [r for r in _ROWS if r[0] != "b|c"]
    with pytest.raises(ValueError, match="every pair"):
        hoa.select_groups_from_performance(_table(rows), 2)
    rows = _ROWS + [("a|b|c", "a", 0.1), ("a|b|c", "b", 0.1),
                    ("a|b|c", "c", 0.1)]
    with pytest.raises(ValueError, match="group of 3 tasks"):
        hoa.select_groups_from_performance(_table(rows), 2)
