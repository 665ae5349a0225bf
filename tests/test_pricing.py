"""The group search behind column generation, against brute force."""

import itertools

import numpy as np
import pytest

from tag_keras.select import _pricing


def _problem(n, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, size=(n, n))
    pi = rng.normal(0.5, 0.5, size=n)
    return z, pi


def _brute(z, pi, sizes):
    """max_G P(G) over every group with a size in `sizes`."""
    n = len(z)
    return max(_pricing.gains(z, pi, list(group))[0]
               for size in sizes
               for group in itertools.combinations(range(n), size))


def _gain_by_hand(z, pi, group):
    total = 0.0
    for a in group:
        others = [b for b in group if b != a]
        score = (z[a, a] if not others
                 else np.mean([z[b, a] for b in others]))
        total += max(score - pi[a], 0.0)
    return total


@pytest.mark.parametrize("seed", range(4))
def test_gains_by_hand(seed):
    z, pi = _problem(6, seed)
    for group in [[0], [1, 4], [0, 2, 3, 5], list(range(6))]:
        gain, served = _pricing.gains(z, pi, group)
        assert gain == pytest.approx(_gain_by_hand(z, pi, group))
        assert gain == pytest.approx(
            _gain_by_hand(z, pi, group) if len(served) else 0.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("singletons", [False, True])
def test_search_finds_the_brute_force_maximum(seed, singletons):
    n, max_size = 9, [9, 4, 9, 3, 9, 5][seed]
    z, pi = _problem(n, seed)
    sizes = range(1 if singletons else 2, max_size + 1)
    truth = _brute(z, pi, sizes)
    found, upper, complete, nodes = _pricing.best_groups(
        z, pi, -1.0, max_size, singletons, lambda: False)
    assert complete and nodes > 0
    assert upper == pytest.approx(truth, abs=1e-12)
    assert max(gain for gain, _ in found) == pytest.approx(truth)
    for gain, served in found:  # Each offered block earns its gain.
        assert len(served) and gain <= truth + 1e-12
    # A threshold above the maximum: nothing found, the bound proven.
    found, upper, complete, _ = _pricing.best_groups(
        z, pi, truth + 0.1, max_size, singletons, lambda: False)
    assert complete and not found and upper == pytest.approx(truth + 0.1)


@pytest.mark.parametrize("seed", range(5))
def test_every_node_bound_covers_its_completions(seed):
    n = 8
    z, pi = _problem(n, seed)
    rng = np.random.default_rng(seed)
    for size in range(2, n + 1):
        no_self = z.copy()
        np.fill_diagonal(no_self, -np.inf)
        search = _pricing._SizeSearch(z, no_self, pi, size)
        for _ in range(10):
            order = rng.permutation(n)
            num_chosen = int(rng.integers(0, size))
            chosen = order[:num_chosen]
            free = np.sort(order[num_chosen + int(rng.integers(0, 2)):])
            left = size - num_chosen
            if not 0 < left < len(free):
                continue
            bound, score = search.bound(chosen, free)
            best = max(_pricing.gains(z, pi, list(chosen) + list(rest))[0]
                       for rest in itertools.combinations(free, left))
            assert bound >= best - 1e-12
            assert score.shape == (len(free),)


def test_stopped_and_barred_searches_keep_a_valid_bound():
    z, pi = _problem(10, 7)
    truth = _brute(z, pi, range(2, 11))
    found, upper, complete, _ = _pricing.best_groups(
        z, pi, 0.0, 10, False, lambda: True)
    assert not complete and upper >= truth - 1e-12
    found, upper, complete, _ = _pricing.best_groups(
        z, pi, 0.0, 10, False, lambda: False, limit=1)
    assert not complete and upper >= truth - 1e-12
    found, upper, complete, _ = _pricing.best_groups(
        z, pi, 0.0, 10, False, lambda: False, bar=truth / 2)
    assert complete and upper >= truth - 1e-12


def test_greedy_offers_real_groups():
    z, pi = _problem(9, 3)
    truth = _brute(z, pi, range(1, 10))
    offered = _pricing.greedy(z, pi, 9, True)
    assert offered
    for gain, served in offered:
        assert 0 < gain <= truth + 1e-12 and len(served)
