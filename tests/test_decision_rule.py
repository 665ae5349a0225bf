"""The decision rule's simulator (`experiments.benchmarks.decision_rule`)
against raw arrays through `compare`'s statistics."""

import numpy as np
import pytest

from experiments.benchmarks.decision_rule import simulate
from tag_keras.train import comparison
from tag_keras.train import statistics


def test_the_mean_squares_have_their_expectations():
    cell = simulate.Cell(0.0, 40, 0.3, 0.7, 1.3, candidates=1, budgets=2)
    means, ms_example, ss_residual = simulate.draw(
        cell, 20000, np.random.default_rng(0))
    for index, look in enumerate(simulate.LOOKS):
        assert ms_example[..., index].mean() == pytest.approx(
            1.3 + look * 0.7, rel=0.02)
        assert ss_residual[..., index].mean() == pytest.approx(
            1.3 * (look - 1) * 39, rel=0.02)
    # Seed means: Var = σ²_a + σ²_b / N + σ²_e / N, mean Δ.
    assert means.var() == pytest.approx(0.3 + 2.0 / 40, rel=0.03)


def _raw_answers(cell, reps, rng, look, tests):
    """The rule on raw `[seeds, examples]` arrays, one budget."""
    answers = []
    sd = np.sqrt([cell.seed_variance, cell.example_variance,
                  cell.interaction_variance])
    for _ in range(reps):
        x = (cell.delta + sd[0] * rng.standard_normal((look, 1))
             + sd[1] * rng.standard_normal((1, cell.examples))
             + sd[2] * rng.standard_normal((look, cell.examples)))
        mean, *ms = statistics.mean_squares(x)
        low, high, *_ = statistics.interval(mean, *ms, look, cell.examples,
                                            1 - 0.025 / tests)
        answers.append(comparison.answer_of(float(low), float(high), 1.0)[0])
    return np.array(answers)


@pytest.mark.parametrize("look", [3, 8])
def test_the_simulator_matches_raw_arrays(look):
    seed, example, interaction = simulate.components_for(0.4, 0.5, 60)
    cell = simulate.Cell(-1.2, 60, seed, example, interaction,
                         candidates=1, budgets=1)
    simulated = simulate.run_rules(cell, 3000, np.random.default_rng(1))
    fast = simulated[f"fixed {look}"]["answers"][:, 0]
    raw = _raw_answers(cell, 1500, np.random.default_rng(2), look, 1)
    for answer in ("split", "keep together", "undecided"):
        p, q = np.mean(fast == answer), np.mean(raw == answer)
        se = np.sqrt(p * (1 - p) / 3000 + q * (1 - q) / 1500) + 1e-3
        assert abs(p - q) < 4 * se, (answer, p, q)


def test_the_sequential_rule_stops_decided_budgets():
    seed, example, interaction = simulate.components_for(0.3, 0.5, 300)
    cell = simulate.Cell(-2.0, 300, seed, example, interaction,
                         candidates=1)
    result = simulate.run_rules(cell, 500, np.random.default_rng(3))
    sequential = result["sequential 3-5-8"]
    assert set(np.unique(sequential["seeds"])) <= {3, 5, 8}
    # Decided before the last look means it stopped there.
    stopped = sequential["seeds"] < 8
    assert (sequential["answers"][stopped] != "undecided").all()
    # Fewer seeds on average than fixed 8, and a stronger answer than
    # fixed 3.
    assert sequential["seeds"].mean() < 8
    assert (np.mean(sequential["answers"] == "split")
            > np.mean(result["fixed 3"]["answers"] == "split"))
