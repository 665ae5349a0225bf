"""The group search behind column generation, against brute force.

Two objectives: pair affinities (s(a, G) the mean of z[b, a] over the
other members) and the group-affinity form (an intercept plus the sum,
with some groups' scores measured instead: special groups).
"""

import itertools

import numpy as np
import pytest

from tag_keras.select import _blocks
from tag_keras.select import _pricing
from tag_keras.select import _scores

KINDS = ["pairs", "group_affinity"]


def _problem(n, seed, kind="pairs", max_size=None, singletons=False):
    """`(Scores, π, by-hand s(a, G))` for a random problem."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, size=(n, n))
    pi = rng.normal(0.5, 0.5, size=n)
    max_size = max_size or n
    if kind == "pairs":
        scores = _scores.Scores(
            z, max_size, singles=z.diagonal() if singletons else None)

        def by_hand(a, group):
            others = [b for b in group if b != a]
            if not others:
                return z[a, a] if singletons else -np.inf
            return np.mean([z[b, a] for b in others])

        return scores, pi, by_hand
    z = z / 2
    offset = rng.normal(0.0, 1.0, size=n)
    singles = np.where(rng.random(n) < 0.7, rng.normal(0.5, 1.0, n), np.nan)
    overrides = {}
    for group in itertools.chain(
            itertools.combinations(range(n), 2),
            (rng.choice(n, size=int(rng.integers(3, n + 1)), replace=False)
             for _ in range(6))):
        row = np.full(n, np.nan)
        for a in group:
            if rng.random() < 0.8:
                row[a] = rng.normal(0.0, 1.0)
        overrides[_blocks.to_mask(group)] = row
    scores = _scores.Scores(z, max_size, mean=False, offset=offset,
                            singles=singles if singletons else None,
                            overrides=overrides)

    def by_hand(a, group):
        if len(group) > max_size:
            return -np.inf
        if len(group) == 1:
            return (singles[a] if singletons and np.isfinite(singles[a])
                    else -np.inf)
        row = overrides.get(_blocks.to_mask(group))
        if row is not None and np.isfinite(row[a]):
            return row[a]
        return offset[a] + sum(z[b, a] for b in group if b != a)

    return scores, pi, by_hand


def _gain_by_hand(by_hand, pi, group):
    return sum(max(by_hand(a, group) - pi[a], 0.0) for a in group)


def _brute(scores, pi, sizes):
    """max_G P(G) over every group with a size in `sizes`."""
    return max(scores.gains(pi, list(group))[0]
               for size in sizes
               for group in itertools.combinations(range(scores.n), size))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(4))
def test_gains_and_scores_by_hand(kind, seed):
    scores, pi, by_hand = _problem(6, seed, kind, singletons=True)
    groups = [[0], [1, 4], [0, 2, 3, 5], list(range(6))]
    groups += [list(g) for g in itertools.combinations(range(6), 3)]
    for group in groups:
        gain, served = scores.gains(pi, group)
        assert gain == pytest.approx(_gain_by_hand(by_hand, pi, group))
        assert sorted(served) == [a for a in group
                                  if by_hand(a, group) > pi[a]]
        for a in group:
            assert scores.score(a, tuple(group)) == pytest.approx(
                by_hand(a, group))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("singletons", [False, True])
def test_block_values_against_every_group(kind, singletons):
    """Without special groups f(S) is exact. With them, `blocks.value` is a
    value some group reaches and `blocks.all_values` a bound on f(S)."""
    n, max_size = 7, 5
    scores, _, by_hand = _problem(n, 3, kind, max_size, singletons)
    groups = [g for size in range(1, max_size + 1)
              for g in itertools.combinations(range(n), size)]
    exact = kind == "pairs"
    assert scores.exact_blocks == exact
    vectorised = scores.blocks.all_values()
    reached = tight = 0
    for mask in range(1, 2**n):
        block = [t for t in range(n) if (mask >> t) & 1]
        truth = max([sum(by_hand(a, g) for a in block) for g in groups
                     if set(block) <= set(g)], default=-np.inf)
        value, helpers = scores.blocks.value(mask)
        if exact:
            assert value == pytest.approx(truth)
        else:
            assert value <= truth + 1e-12
        if np.isfinite(value):
            group = tuple(sorted(block + list(helpers)))
            assert sum(by_hand(a, group) for a in block) == pytest.approx(
                value)
        if exact:
            assert vectorised[mask] == pytest.approx(value)
        else:
            assert vectorised[mask] >= truth - 1e-12
            reached += value == pytest.approx(truth)
            tight += vectorised[mask] == pytest.approx(truth)
    if not exact:  # Both are the truth for most blocks here.
        assert reached >= 0.9 * (2**n - 1) and tight >= 0.9 * (2**n - 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("singletons", [False, True])
def test_search_finds_the_brute_force_maximum(kind, seed, singletons):
    n, max_size = 9, [9, 4, 9, 3, 9, 5][seed]
    scores, pi, _ = _problem(n, seed, kind, max_size, singletons)
    sizes = range(1 if singletons else 2, max_size + 1)
    truth = _brute(scores, pi, sizes)
    found, upper, complete, nodes = _pricing.best_groups(
        scores, pi, -1.0, lambda: False)
    assert complete and nodes > 0
    assert upper == pytest.approx(truth, abs=1e-12)
    assert max(gain for gain, _ in found) == pytest.approx(truth)
    for gain, served in found:  # Each offered block earns its gain.
        assert len(served) and gain <= truth + 1e-12
    # A threshold above the maximum: nothing found, the bound proven.
    found, upper, complete, _ = _pricing.best_groups(
        scores, pi, truth + 0.1, lambda: False)
    assert complete and not found and upper == pytest.approx(truth + 0.1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(5))
def test_every_node_bound_covers_its_form_completions(kind, seed):
    """Node bounds cover every completion valued by the form (special
    groups are valued one by one outside the tree)."""
    n = 8
    scores, pi, _ = _problem(n, seed, kind)
    form = _scores.Scores(scores.z, n, mean=scores.mean,
                          offset=scores.offset)
    rng = np.random.default_rng(seed)
    for size in range(2, n + 1):
        no_self = scores.z.copy()
        np.fill_diagonal(no_self, -np.inf)
        search = _pricing._SizeSearch(scores, no_self, pi, size)
        for _ in range(10):
            order = rng.permutation(n)
            num_chosen = int(rng.integers(0, size))
            chosen = order[:num_chosen]
            free = np.sort(order[num_chosen + int(rng.integers(0, 2)):])
            left = size - num_chosen
            if not 0 < left < len(free):
                continue
            bound, score = search.bound(chosen, free)
            best = max(form.gains(pi, list(chosen) + list(rest))[0]
                       for rest in itertools.combinations(free, left))
            assert bound >= best - 1e-12
            assert score.shape == (len(free),)


@pytest.mark.parametrize("kind", KINDS)
def test_stopped_and_barred_searches_keep_a_valid_bound(kind):
    scores, pi, _ = _problem(10, 7, kind)
    truth = _brute(scores, pi, range(2, 11))
    found, upper, complete, _ = _pricing.best_groups(
        scores, pi, 0.0, lambda: True)
    assert not complete and upper >= truth - 1e-12
    found, upper, complete, _ = _pricing.best_groups(
        scores, pi, 0.0, lambda: False, limit=1)
    assert not complete and upper >= truth - 1e-12
    found, upper, complete, _ = _pricing.best_groups(
        scores, pi, 0.0, lambda: False, bar=truth / 2)
    assert complete and upper >= truth - 1e-12


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_offers_real_groups(kind):
    scores, pi, _ = _problem(9, 3, kind, singletons=True)
    truth = _brute(scores, pi, range(1, 10))
    offered = _pricing.greedy(scores, pi)
    assert offered
    for gain, served in offered:
        assert 0 < gain <= truth + 1e-12 and len(served)
    # Every special group's served set is offered, at its measured gain
    # or at a better group's.
    offers = {tuple(served): gain for gain, served in offered}
    for row, group in zip(scores.special_scores, scores.special_members):
        gains = row - pi
        served = tuple(np.flatnonzero(group & (gains > 0)))
        if served:
            assert offers[served] >= gains[list(served)].sum() - 1e-12
