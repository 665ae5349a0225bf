"""The A/A benchmark's pieces: the arms view, label flipping and the
U-statistic interval, on hand-made networks."""

import types

import numpy as np
import pytest

from experiments.benchmarks.decision import self_comparison


class _Trainer:
    """A GroupTrainer stand-in: per-example outcomes drawn per seed."""

    tasks = ("a", "b")
    splits = ("train", "validation", "test")
    early_stopping = "a carved 10% of train"

    def __init__(self, shift=0.0):
        self.shift = shift

    def network(self, group, seed):
        rng = np.random.default_rng(seed)
        outcomes = {}
        for split in ("validation", "test"):
            outcomes[split] = {}
            for task in group:
                errors = (rng.random(200) < 0.2 + self.shift).astype(float)
                outcomes[split][task] = (errors * 2.0, errors)
        return types.SimpleNamespace(outcomes=outcomes)


def test_the_arms_serve_each_arm_from_its_own_seeds():
    trainer = _Trainer()
    one = ((("a", "b"),), {"a": 0, "b": 0})
    arms = self_comparison.Arms((trainer, *one, [10, 11, 12]),
                                (trainer, *one, [20, 21, 22]))
    reference = arms.network(("a", "b"), 1).outcomes["test"]["a"][1]
    candidate = arms.network(arms.candidate, 1).outcomes["test"]["a"][1]
    np.testing.assert_array_equal(
        reference, trainer.network(("a", "b"), 11).outcomes["test"]["a"][1])
    np.testing.assert_array_equal(
        candidate, trainer.network(("a", "b"), 21).outcomes["test"]["a"][1])
    with pytest.raises(ValueError, match="hold 3 seeds"):
        arms.train([("a", "b")], [0, 3])


def test_a_replicate_decides_like_decide_and_sees_a_large_degradation():
    one = ((("a", "b"),), {"a": 0, "b": 0})
    pool = list(range(100, 116))
    out = self_comparison.replicate(self_comparison.Arms(
        (_Trainer(), *one, pool[:8]), (_Trainer(0.3), *one, pool[:8])))
    # The candidate errs 30 points more often on each task: shown worse.
    assert out["answer"] == "keep together"
    assert out["answer_detail"] == "all-task better"
    assert out["seeds_used"] == 3 and out["difference"] > 0.4


def test_flipped_flips_the_share_asked_of_one_task_in_train_only():
    labels = {"a": np.zeros(10000), "b": np.ones(10000)}
    labels["a"][:10] = np.nan
    data = {"train": (np.zeros((10000, 1)), labels),
            "test": (np.zeros((5, 1)), {"a": np.zeros(5), "b": np.ones(5)})}
    out = self_comparison.flipped(data, "a", 0.3)
    flipped = out["train"][1]["a"]
    assert np.isnan(flipped[:10]).all()
    assert np.nanmean(flipped) == pytest.approx(0.3, abs=0.02)
    np.testing.assert_array_equal(out["train"][1]["b"], labels["b"])
    assert np.nanmean(labels["a"]) == 0  # the input is not changed
    assert out["test"] is data["test"]


def test_the_u_statistic_interval_is_binomial_when_seeds_do_not_matter():
    # Outcomes independent of the seeds drawn: zeta_1 is 0, and what is
    # left is the replicates' own (binomial) variance.
    rng = np.random.default_rng(0)
    used = [set(rng.permutation(40)[:4]) for _ in range(4000)]
    outcomes = rng.random(4000) < 0.1
    rate, se, low, high = self_comparison.u_statistic_interval(
        outcomes, used, list(range(40)), 4)
    binomial = np.sqrt(outcomes.var(ddof=1) / 4000)
    assert rate == pytest.approx(outcomes.mean())
    assert binomial <= se < 1.5 * binomial
    assert low < rate < high


def test_the_u_statistic_interval_widens_when_one_seed_drives_the_rate():
    # Pool of 20; replicates draw 4 seeds; the outcome is 1 exactly when
    # seed 0 is drawn: the rate rests on one seed, not on the replicates.
    rng = np.random.default_rng(1)
    used = [set(rng.permutation(20)[:4]) for _ in range(2000)]
    outcomes = np.array([0 in u for u in used], float)
    rate, se, _, _ = self_comparison.u_statistic_interval(
        outcomes, used, list(range(20)), 4)
    naive = np.sqrt(rate * (1 - rate) / 2000)
    assert rate == pytest.approx(0.2, abs=0.03)
    assert se > 5 * naive


def test_summary_rates_each_answer_of_each_case():
    import pandas as pd

    rows = []
    for r in range(40):
        answer = ("split" if r % 10 == 0 else "keep together" if r % 10 == 1
                  else "undecided")
        rows.append({"task_set": "toy", "case": "all-task network",
                     "replicate": r, "pool": 20, "true_sign": "zero",
                     "seeds_a": " ".join(str(2000 + (r + i) % 20)
                                         for i in range(3)),
                     "seeds_b": " ".join(str(2000 + (r + 10 + i) % 20)
                                         for i in range(3)),
                     "answer": answer, "answer_detail": (
                         "all-task better" if answer == "keep together"
                         else ""), "seeds_used": 3})
    table = self_comparison.summary(pd.DataFrame(rows)).set_index("answer")
    assert table.loc["split", "rate"] == pytest.approx(0.1)
    assert table.loc["keep together: all-task better", "rate"] == (
        pytest.approx(0.1))
    assert table.loc["keep together: within the margin", "rate"] == 0
    assert table.loc["undecided", "rate"] == pytest.approx(0.8)
    assert (table.pool == 20).all() and (table.replicates == 40).all()


def test_a_replicate_on_every_seed_at_once_has_no_looks():
    one = ((("a", "b"),), {"a": 0, "b": 0})
    pool = list(range(200, 210))
    out = self_comparison.replicate(self_comparison.Arms(
        (_Trainer(), *one, pool), (_Trainer(0.3), *one, pool),
        first=len(pool)), max_seeds=None)
    assert out["seeds_used"] == 10
    assert out["answer_detail"] == "all-task better"
