"""Tests for tag_keras.select_groups, checked against brute force."""

import itertools

import numpy as np
import pandas as pd
import pytest

from tag_keras.select import _scores
from tag_keras.select import grouping


def _frame(z):
    names = [f"t{i}" for i in range(len(z))]
    return pd.DataFrame(np.asarray(z, float), index=names, columns=names)


def _score(z, task, group, allow_singletons):
    others = [b for b in group if b != task]
    if not others:
        return z[task, task] if allow_singletons else -np.inf
    return np.mean(z[others, task])


def _brute_force(z, k, allow_singletons=False, max_group_size=None):
    """Optimum straight from the definition, by enumeration.

    Choose at most k groups and serve each task by its best chosen group.
    Every chosen group serves some task in an optimal choice, so enumerating
    the groups the tasks are served by is the same as enumerating set
    partitions of the tasks into at most k *served blocks* and giving each
    block S its best group G ⊇ S (every superset tried, no shortcut).
    """
    n = len(z)
    limit = max_group_size or n
    groups = [
        g
        for size in range(1, limit + 1)
        for g in itertools.combinations(range(n), size)
    ]

    values = {}
    for g in groups:  # values[block] = best over groups containing it.
        for size in range(1, len(g) + 1):
            for block in itertools.combinations(g, size):
                value = sum(_score(z, a, g, allow_singletons) for a in block)
                values[block] = max(values.get(block, -np.inf), value)

    def partitions(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for part in partitions(rest):
            for i in range(len(part)):
                yield part[:i] + [[first] + part[i]] + part[i + 1 :]
            yield [[first]] + part

    best = -np.inf
    for part in partitions(list(range(n))):
        if len(part) <= k and all(tuple(b) in values for b in part):
            best = max(best, sum(values[tuple(b)] for b in part))
    return best / n


def _literal_brute_force(z, k):
    """For n <= 4: every combination of at most k groups, literally.

    A chosen group that serves nobody changes nothing, so it needs no check.
    """
    n = len(z)
    groups = [
        g for s in range(2, n + 1) for g in itertools.combinations(range(n), s)
    ]
    best = -np.inf
    for m in range(1, k + 1):
        for chosen in itertools.combinations(groups, m):
            served = [
                max((_score(z, a, g, False) for g in chosen if a in g),
                    default=-np.inf)
                for a in range(n)
            ]
            if all(s > -np.inf for s in served):
                best = max(best, np.mean(served))
    return best


def _random(n, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "ties":
        return rng.integers(-2, 3, size=(n, n)).astype(float)
    if kind == "negative":
        return rng.normal(-0.01, 0.02, size=(n, n))
    return rng.uniform(1e-3, 1e-1, size=(n, n))


def _check_valid(result, z, k, allow_singletons=False, max_group_size=None):
    names = list(_frame(z).index)
    assert set(result.serve) == set(names)  # Every task is served ...
    assert len(result.groups) <= k  # ... within the budget ...
    for task, index in result.serve.items():
        group = result.groups[index]
        assert task in group  # ... by a group that contains it.
        idx = [names.index(t) for t in group]
        expected = _score(z, names.index(task), idx, allow_singletons)
        np.testing.assert_allclose(result.task_scores[task], expected)
        # No chosen group serves it better.
        for other in result.groups:
            if task in other:
                oidx = [names.index(t) for t in other]
                assert _score(
                    z, names.index(task), oidx, allow_singletons
                ) <= expected + 1e-12
    for i, group in enumerate(result.groups):
        assert i in result.serve.values()  # Every group serves someone.
        assert len(group) >= (1 if allow_singletons else 2)
        if max_group_size:
            assert len(group) <= max_group_size
    np.testing.assert_allclose(
        result.score, np.mean(list(result.task_scores.values()))
    )
    assert result.upper_bound >= result.score - 1e-12


@pytest.mark.parametrize("kind", ["uniform", "ties", "negative"])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_matches_brute_force(n, kind):
    for seed in range(2):
        z = _random(n, seed + 10 * n, kind)
        for k in range(1, n + 1):
            result = grouping.select_groups(_frame(z), k)
            assert result.optimal
            np.testing.assert_allclose(
                result.score, _brute_force(z, k), rtol=1e-9, atol=1e-12
            )
            _check_valid(result, z, k)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_partition_brute_force_matches_literal_definition(n):
    for seed in range(3):
        z = _random(n, seed, "ties" if seed else "negative")
        for k in range(1, n + 1):
            np.testing.assert_allclose(
                _literal_brute_force(z, k), _brute_force(z, k)
            )


@pytest.mark.parametrize("n", [2, 4, 6])
def test_singletons_match_brute_force(n):
    z = _random(n, n, "negative")
    for k in range(1, n + 1):
        result = grouping.select_groups(_frame(z), k, allow_singletons=True)
        np.testing.assert_allclose(
            result.score, _brute_force(z, k, allow_singletons=True)
        )
        _check_valid(result, z, k, allow_singletons=True)


@pytest.mark.parametrize("size", [2, 3])
def test_max_group_size_matches_brute_force(size):
    z = _random(6, size, "uniform")
    for k in range(-(-6 // size), 7):
        result = grouping.select_groups(_frame(z), k, max_group_size=size)
        np.testing.assert_allclose(
            result.score, _brute_force(z, k, max_group_size=size)
        )
        _check_valid(result, z, k, max_group_size=size)


def test_two_clusters():
    z = np.full((6, 6), -0.01)
    z[:3, :3] = z[3:, 3:] = 0.05
    result = grouping.select_groups(_frame(z), 2)
    assert result.groups == (("t0", "t1", "t2"), ("t3", "t4", "t5"))
    assert dict(result.serve) == {f"t{i}": i // 3 for i in range(6)}
    np.testing.assert_allclose(result.score, 0.05)


def test_helper_joins_every_group_and_spoiler_joins_none():
    rng = np.random.default_rng(0)
    z = rng.uniform(0.0, 0.01, size=(6, 6))
    z[0, :] = 0.1  # t0 helps everyone.
    z[5, :] = -0.1  # t5 hurts everyone.
    z[:, 5] = np.maximum(z[:, 5], 0.0)
    result = grouping.select_groups(_frame(z), 3)
    for group in result.groups:
        assert "t0" in group
        if "t5" in group:
            assert result.serve["t5"] == result.groups.index(group)
            assert group == ("t0", "t5")


def test_score_rewards_helping_without_serving():
    # t2 helps t0 and t1 but nobody helps t2: with two networks, t2 is a
    # helper in t0's and t1's group and served by the group of its best
    # partner.
    z = np.array([[0, 0.2, 0.0], [0.2, 0, 0.0], [0.9, 0.9, 0]]) - 0.05
    result = grouping.select_groups(_frame(z), 1)
    assert result.groups == (("t0", "t1", "t2"),)
    np.testing.assert_allclose(result.task_scores["t0"], (0.15 + 0.85) / 2)


def test_budget_is_monotone_and_large_budget_is_unlimited_optimum():
    z = _random(7, 3, "negative")
    scores = [grouping.select_groups(_frame(z), k).score for k in range(1, 9)]
    assert all(a <= b + 1e-15 for a, b in zip(scores, scores[1:]))
    best = np.where(np.eye(7, dtype=bool), -np.inf, z).max(axis=0).mean()
    np.testing.assert_allclose(scores[-1], best)
    np.testing.assert_allclose(scores[-2], best)  # k = n


def test_normalize_is_invariant_to_scaling_targets():
    z = _random(5, 0, "uniform")
    scaled = z * np.array([1.0, 10.0, 0.1, 3.0, 7.0])[None, :]
    first = grouping.select_groups(_frame(z), 2, normalize=True)
    second = grouping.select_groups(_frame(scaled), 2, normalize=True)
    assert first.groups == second.groups
    np.testing.assert_allclose(first.score, second.score)
    normalized = z / np.diag(z)[None, :]
    np.testing.assert_allclose(first.score, _brute_force(normalized, 2))


def test_normalize_singleton_scores_one():
    z = np.array([[1.0, -5.0, -5.0], [-5.0, 1.0, 0.5], [-5.0, 0.5, 1.0]])
    result = grouping.select_groups(
        _frame(z), 2, normalize=True, allow_singletons=True
    )
    assert result.groups == (("t0",), ("t1", "t2"))
    assert result.task_scores["t0"] == 1.0


def test_normalize_rejects_nonpositive_self_affinity():
    z = _random(3, 0, "uniform")
    z[1, 1] = 0.0
    with pytest.raises(ValueError, match=r"affinity.loc\['t1', 't1'\]=0.0"):
        grouping.select_groups(_frame(z), 2, normalize=True)


def test_deterministic_with_ties():
    z = np.zeros((7, 7))
    first = grouping.select_groups(_frame(z), 3)
    for _ in range(3):
        assert grouping.select_groups(_frame(z), 3) == first


@pytest.mark.parametrize("n", [7, 9])
def test_bounded_proofs_bracket_the_optimum(n):
    for seed, k in [(0, 2), (1, 3), (2, 4)]:
        z = _random(n, seed, "negative")
        exact = grouping.select_groups(_frame(z), k)
        approx = grouping.select_groups(_frame(z), k, max_exact_tasks=0,
                                        max_proven_tasks=0)
        assert approx.method == "column_generation"
        _check_valid(approx, z, k)
        assert approx.score <= exact.score + 1e-12
        assert approx.upper_bound >= exact.score - 1e-12
        assert approx.optimal == (approx.upper_bound == approx.score)


def test_one_task_and_empty():
    one = pd.DataFrame([[0.3]], index=["a"], columns=["a"])
    result = grouping.select_groups(one, 1, allow_singletons=True)
    assert result.groups == (("a",),) and result.score == 0.3
    with pytest.raises(ValueError, match="at least two tasks"):
        grouping.select_groups(one, 1)
    with pytest.raises(ValueError, match="at least two tasks"):
        grouping.select_groups(pd.DataFrame(), 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_groups": 0}, "Received: num_groups=0"),
        ({"num_groups": 1.5}, "Received: num_groups=1.5"),
        ({"num_groups": 2, "max_group_size": 1}, "max_group_size=1"),
        ({"num_groups": 1, "max_group_size": 3}, "cannot serve 4 tasks"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grouping.select_groups(_frame(np.ones((4, 4))), **kwargs)


def test_bad_matrices():
    with pytest.raises(ValueError, match="square"):
        grouping.select_groups(pd.DataFrame(np.ones((2, 3))), 1)
    frame = _frame(np.ones((3, 3))).rename(columns={"t2": "x"})
    with pytest.raises(ValueError, match="same unique task names"):
        grouping.select_groups(frame, 1)
    frame = _frame(np.ones((3, 3)))
    frame.iloc[0, 2] = np.nan
    with pytest.raises(ValueError, match=r"affinity.loc\['t0', 't2'\]=nan"):
        grouping.select_groups(frame, 1)


def test_columns_in_another_order_are_aligned():
    z = _random(4, 1, "uniform")
    frame = _frame(z)
    shuffled = frame[["t2", "t0", "t3", "t1"]]
    assert grouping.select_groups(shuffled, 2) == grouping.select_groups(
        frame, 2
    )


def test_to_dict_has_the_json_names():
    result = grouping.select_groups(_frame(_random(4, 0, "uniform")), 2)
    entry = result.to_dict()
    for key in ["num_groups", "groups", "serve", "task_scores", "score",
                "optimal", "upper_bound"]:
        assert key in entry
    assert entry["groups"] == [list(g) for g in result.groups]


# ------------------------------------------------ column generation


def _clustered(n, seed):
    """Clusters that help each other, mild harm across, a little noise."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(max(2, n // 4), size=n)
    same = clusters[:, None] == clusters[None, :]
    strength = rng.lognormal(np.log(0.01), 0.5, size=n)
    z = np.where(same, 3.0, -0.3) * strength[:, None]
    z += rng.normal(0.0, 0.01, size=(n, n))
    np.fill_diagonal(z, 0.05 + rng.uniform(0.0, 0.05, size=n))
    return z


@pytest.mark.parametrize("n", [8, 10, 12])
@pytest.mark.parametrize("kind", ["negative", "clustered"])
def test_column_generation_proves_the_dynamic_programs_optimum(n, kind):
    for seed, k, options in [(0, 2, {}), (1, 3, {"allow_singletons": True}),
                             (2, 4, {"max_group_size": 5})]:
        if kind == "clustered":
            z = _clustered(n, seed)
        else:
            z = _random(n, seed, "negative")
        exact = grouping.select_groups(_frame(z), k, **options)
        proven = grouping.select_groups(_frame(z), k, max_exact_tasks=0,
                                        **options)
        assert proven.method == "column_generation"
        _check_valid(proven, z, k, **options)
        assert proven.optimal
        assert proven.score == pytest.approx(exact.score, abs=1e-12)


def _optimum_and_poor_start(n, k, seed):
    """A random matrix, its optimum (dynamic program), a random partition."""
    from tag_keras.select import _solvers

    z = _random(n, seed, "negative")
    values = _scores.Scores(z, n).blocks.all_values()
    _, optimum = _solvers.solve_partition_dp(n, values, k)
    labels = np.random.default_rng(seed).permutation(n) % k
    start = [sum(1 << t for t in range(n) if labels[t] == b)
             for b in range(k)]
    return z, optimum, start


def test_reduced_cost_fixing_finds_the_optimum_from_a_poor_start():
    from tag_keras.select import _columns

    for seed in range(4):
        n, k = 11, 3
        z, optimum, start = _optimum_and_poor_start(n, k, seed)
        blocks, total, bound, proven = _columns.prove(
            _scores.Scores(z, n), k, start, _columns.Deadline(None))
        assert proven and total == pytest.approx(optimum, abs=1e-9)
        assert sorted(blocks) == sorted(set(blocks))
        assert sum(blocks) == 2**n - 1 and len(blocks) <= k
        assert bound == pytest.approx(total)


def test_bounds_stay_valid_when_time_runs_out():
    import time

    for seed in range(3):
        z = _random(12, seed, "negative")
        exact = grouping.select_groups(_frame(z), 3)
        rushed = grouping.select_groups(_frame(z), 3, max_exact_tasks=0,
                                        time_limit=1e-6)
        assert rushed.score <= exact.score + 1e-12
        assert rushed.upper_bound >= exact.score - 1e-12
        assert rushed.optimal == (rushed.upper_bound == rushed.score)
    # Beyond the dynamic program the proof uses the time it is given and
    # stops then (within a second), reporting progress.
    z = _clustered(36, 0)
    messages = []
    start = time.perf_counter()
    result = grouping.select_groups(_frame(z), 2, time_limit=1.5,
                                    progress=messages.append)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.5 + 1.0
    assert not result.optimal and result.upper_bound > result.score
    assert messages[0].startswith("local search: restart")
    assert messages[-1].startswith(
        f"column generation: score {result.score:.6g}, bound ")
    assert messages[-1].endswith("not proven")


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True,
                                   "10"])
def test_bad_time_limits_are_refused(value):
    z = _random(5, 0, "negative")
    with pytest.raises(ValueError, match="Received: time_limit=") as info:
        grouping.select_groups(_frame(z), 2, time_limit=value)
    assert "\n" not in str(info.value)


class _StopAfter:
    """A deadline that passes after `calls` checks (left: a little)."""

    def __init__(self, calls):
        self.calls = calls

    def passed(self):
        self.calls -= 1
        return self.calls < 0

    def left(self):
        return 0.01

    def early(self, share):
        return self


def test_the_bound_after_any_pricing_round_is_valid():
    from tag_keras.select import _columns, _search

    bounds = 0
    for seed in range(4):
        n, k = 12, 3
        z, optimum, start = _optimum_and_poor_start(n, k, seed)
        for checks in (1, 3, 10, 30, 100):
            # A check per pricing round and every 128 search nodes.
            blocks, total, bound, proven = _columns.prove(
                _scores.Scores(z, n), k, start, _StopAfter(checks))
            assert total <= optimum + 1e-9
            assert sum(blocks) == 2**n - 1 and len(blocks) <= k
            if bound is not None:
                bounds += 1
                assert bound >= optimum - 1e-9
                assert bound >= total - 1e-9
    assert bounds >= 8
    incumbent, _ = _search.local_search(_scores.Scores(z, n), k)
    _, _, bound, proven = _columns.prove(_scores.Scores(z, n), k, incumbent,
                                         _StopAfter(0))
    assert bound is None and not proven


def test_bounds_beyond_the_proof_are_never_below_another_search():
    from tag_keras.select import _search

    for n, k in [(30, 2), (36, 3)]:
        z = _clustered(n, 1)
        result = grouping.select_groups(_frame(z), k, time_limit=2.0)
        _check_valid(result, z, k)
        for seed in (1, 2, 3):
            _, other = _search.local_search(_scores.Scores(z, n), k,
                                            restarts=4, seed=seed)
            assert result.upper_bound >= other / n - 1e-12
        assert result.optimal == (result.upper_bound == result.score)


def test_without_a_time_limit_large_searches_stop_at_the_same_point():
    z = _clustered(30, 2)
    first = grouping.select_groups(_frame(z), 3)
    assert grouping.select_groups(_frame(z), 3) == first
    assert first.method in ("column_generation", "local_search")


@pytest.mark.parametrize("max_size, singles", [(6, True), (3, False)])
def test_the_solvers_forms_agree_with_the_objectives_definition(max_size,
                                                                 singles):
    # One definition of the selection objective, `grouping.task_score`
    # (a member's mean affinity from the others; a singleton's diagonal);
    # the solvers' vectorised form (`_scores.Scores`) and the block values
    # derived from it (`_blocks`: f(S) = max over groups G ⊇ S of the
    # summed scores of S in G) must agree with it everywhere.
    n = 6
    z = np.random.default_rng(5).normal(size=(n, n))
    scores = _scores.Scores(z, max_size,
                            singles=np.diag(z) if singles else None)
    groups = [g for size in range(1, max_size + 1)
              for g in itertools.combinations(range(n), size)]
    for group in groups:
        got = scores.member_scores(list(group))
        if len(group) == 1 and not singles:
            assert got.tolist() == [-np.inf]
            continue
        np.testing.assert_allclose(
            got, [grouping.task_score(z, a, group) for a in group],
            rtol=1e-12)
    values = scores.blocks.all_values()
    for mask in range(1, 2**n):
        block = [t for t in range(n) if mask >> t & 1]
        best = max((sum(grouping.task_score(z, a, g) for a in block)
                    for g in groups if set(block) <= set(g)
                    and (len(g) > 1 or singles)), default=-np.inf)
        assert values[mask] == pytest.approx(best, rel=1e-12, abs=1e-12)
        assert scores.blocks.value(mask)[0] == pytest.approx(
            best, rel=1e-12, abs=1e-12)
