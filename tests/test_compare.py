"""`tag_keras.train.compare`: the crossed seed × example comparison and
its three answers, against NumPy by hand."""

import numpy as np
import pytest
from scipy import stats

from tag_keras.train import comparison
from tag_keras.train import statistics


def _by_hand(d, margin, alpha=0.025, comparisons=1):
    """The comparison written out with loops over seeds, tasks and
    examples."""
    num_seeds, num_tasks, num_examples = d.shape
    x = np.zeros((num_seeds, num_examples))
    for s in range(num_seeds):
        for t in range(num_tasks):
            labelled = [i for i in range(num_examples)
                        if not np.isnan(d[s, t, i])]
            mean = sum(d[s, t, i] for i in labelled) / len(labelled)
            x[s] += mean
            for i in labelled:
                x[s, i] += num_examples * (d[s, t, i] - mean) / len(labelled)
    grand = x.mean()
    seed_means, example_means = x.mean(1), x.mean(0)
    ms_a = num_examples * ((seed_means - grand) ** 2).sum() / (num_seeds - 1)
    ms_b = num_seeds * ((example_means - grand) ** 2).sum() / (
        num_examples - 1)
    residual = 0.0
    for s in range(num_seeds):
        for i in range(num_examples):
            residual += (x[s, i] - seed_means[s] - example_means[i]
                         + grand) ** 2
    ms_e = residual / ((num_seeds - 1) * (num_examples - 1))
    var_a = max(ms_a - ms_e, 0) / num_examples
    var_b = max(ms_b - ms_e, 0) / num_seeds
    variance = (var_a / num_seeds + var_b / num_examples
                + ms_e / (num_seeds * num_examples))
    # Satterthwaite over the mean squares that make up the variance, with
    # MS_seed at the upper end of its one-sided 90% interval.
    ms_a = (num_seeds - 1) * ms_a / stats.chi2.ppf(0.1, num_seeds - 1)
    k_a, k_b = float(ms_a > ms_e), float(var_b > 0)
    terms = [(k_a * ms_a, num_seeds - 1), (k_b * ms_b, num_examples - 1),
             ((1 - k_a - k_b) * ms_e, (num_seeds - 1) * (num_examples - 1))]
    df = sum(t for t, _ in terms) ** 2 / sum(t ** 2 / f for t, f in terms)
    q = stats.t.ppf(1 - alpha / comparisons, df)
    se = np.sqrt(variance)
    return {"difference": grand, "seed_variance": var_a,
            "example_variance": var_b, "interaction_variance": ms_e,
            "standard_error": se, "df": df, "low": grand - q * se,
            "high": grand + q * se}


@pytest.mark.parametrize("shape,seed", [((3, 2, 11), 0), ((5, 3, 7), 1),
                                        ((2, 1, 4), 2)])
def test_compare_matches_numpy_by_hand_with_missing_labels(shape, seed):
    rng = np.random.default_rng(seed)
    d = (rng.normal(size=shape) + rng.normal(size=(shape[0], 1, 1))
         + rng.normal(size=(1, 1, shape[2])))
    d[:, 0, [1, 3]] = np.nan  # Examples unlabelled for task 0.
    got = comparison.compare(d, margin=0.3, alpha=0.05, comparisons=3)
    want = _by_hand(d, 0.3, 0.05, 3)
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value, rel=1e-9), name
    assert got.seeds == shape[0] and got.examples == shape[2]
    assert got.comparisons == 3 and got.margin == 0.3
    # The statistic is the mean over seeds of the summed per-task means.
    per_seed = [sum(np.nanmean(d[s, t]) for t in range(shape[1]))
                for s in range(shape[0])]
    assert got.difference == pytest.approx(np.mean(per_seed))


def test_a_task_without_values_is_left_out():
    rng = np.random.default_rng(4)
    d = rng.normal(size=(3, 2, 9))
    with_nan = d.copy()
    with_nan[:, 1] = np.nan  # E.g. the error of a regression head.
    assert comparison.compare(with_nan, margin=1.0).difference == (
        pytest.approx(comparison.compare(d[:, :1], margin=1.0).difference))


def test_the_variance_is_unbiased_and_counts_the_interaction_once():
    # Var(D) = σ²_a / S + σ²_b / N + σ²_e / (S N) = 0.004 + 0.01 + 0.001;
    # the interaction counted twice would give 0.016.
    rng = np.random.default_rng(5)
    estimates = []
    for _ in range(400):
        x = (0.2 * rng.normal(size=(10, 1, 1))
             + rng.normal(size=(1, 1, 100)) + rng.normal(size=(10, 1, 100)))
        estimates.append(comparison.compare(x, margin=1.0).standard_error
                         ** 2)
    assert np.mean(estimates) == pytest.approx(0.015, rel=0.025)


def _design(delta, seed_sd, example_sd, noise_sd, seeds=3, examples=400,
            rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    return (delta + seed_sd * rng.normal(size=(seeds, 1, 1))
            + example_sd * rng.normal(size=(1, 1, examples))
            + noise_sd * rng.normal(size=(seeds, 1, examples)))


def test_each_answer_on_constructed_differences():
    split = comparison.compare(_design(-1.0, 0.01, 0.5, 0.5), margin=0.2)
    assert split.answer == "split" and split.answer_detail == "split better"
    assert split.high < 0 and split.low <= -0.2
    assert split.seeds_needed is None and split.validation_factor is None
    better = comparison.compare(_design(0.5, 0.01, 0.5, 0.5), margin=0.2)
    assert (better.answer, better.answer_detail) == (
        "keep together", "all-task better")
    assert better.low > 0
    within = comparison.compare(_design(-0.02, 0.001, 0.05, 0.05),
                                margin=0.5)
    assert (within.answer, within.answer_detail) == (
        "keep together", "within the margin")
    assert -0.5 < within.low <= 0
    # Shown better, but by less than the margin: not worth splitting.
    small = comparison.compare(_design(-0.3, 0.001, 0.05, 0.05), margin=1.0)
    assert small.high < 0 and small.answer == "keep together"
    undecided = comparison.compare(_design(-0.2, 1.0, 0.5, 0.5), margin=0.3)
    assert undecided.answer == "undecided"
    assert undecided.low <= -0.3 and undecided.high >= 0


def test_a_zero_width_interval_decides_nothing():
    # Issue 35: copies (or any differences that never vary) give a zero
    # standard error; nothing can be bounded, so nothing is decided.
    got = comparison.compare(np.zeros((3, 2, 5)), margin=0.1)
    assert (got.difference, got.low, got.high) == (0.0, 0.0, 0.0)
    assert got.answer == "undecided"
    assert got.answer_detail == comparison.NO_VARIATION
    assert got.what_would_decide() == comparison.NO_VARIATION
    # Float32 round-off is not variation either.
    rounded = -0.3 + np.random.default_rng(0).normal(0, 3e-8, (2, 3, 24))
    assert comparison.compare(rounded, margin=0.2).answer == "undecided"
    split_looking = comparison.compare(np.full((2, 1, 2), -1.6), margin=0.1)
    assert split_looking.high == split_looking.low == pytest.approx(-1.6)
    assert split_looking.answer == "undecided"


def test_a_constant_difference_has_no_variance_with_partial_labels():
    d = np.full((3, 2, 8), -0.25)
    d[:, 1, :3] = np.nan  # Task 1 labels 5 of the 8 examples.
    got = comparison.compare(d, margin=0.1)
    assert got.difference == pytest.approx(-0.5)
    assert got.standard_error == pytest.approx(0.0, abs=1e-12)
    assert got.answer == "undecided"  # a zero-width interval is no evidence


def test_seeds_needed_falls_as_the_seed_variance_falls():
    needed = []
    for seed_sd in (1.0, 0.5, 0.3):
        d = _design(-0.3, 0.0, 0.2, 0.2, rng_seed=3)
        # The same examples, the seed effects scaled exactly.
        d = d + seed_sd * np.array([-1.0, 0.0, 1.0])[:, None, None]
        got = comparison.compare(d, margin=0.1)
        assert got.answer == "undecided"
        needed.append(got.seeds_needed)
        low, high = got.seeds_needed_range
        assert low <= got.seeds_needed and (high is None
                                            or high >= got.seeds_needed)
    assert needed[0] > needed[1] > needed[2] > 3


def test_more_seeds_cannot_decide_when_only_the_example_part_is_large():
    # Tiny seed variance, a large example variance: only more validation
    # examples can narrow the interval.
    z = np.random.default_rng(7).normal(size=60)
    z = (z - z.mean()) / z.std()
    d = -0.1 + 3.0 * z[None, None, :] + 1e-3 * np.array(
        [-1.0, 0.0, 1.0])[:, None, None]
    got = comparison.compare(d, margin=0.1)
    assert got.answer == "undecided"
    assert got.seeds_needed is None
    assert got.validation_factor is not None and got.validation_factor > 1
    assert "more seeds alone cannot" in got.what_would_decide()


def test_planned_power_matches_a_simulation():
    # decided_probability against simulated runs of the planned design.
    rng = np.random.default_rng(11)
    delta, margin, level = -0.4, 0.3, 1 - 0.025
    seed_var, example_var, noise_var = 0.2, 0.5, 0.5
    seeds, examples = 6, 200
    want = comparison.decided_probability(
        delta, margin, level, seed_var, example_var, noise_var, seeds,
        examples)
    decided = 0
    for _ in range(600):
        d = _design(delta, np.sqrt(seed_var), np.sqrt(example_var),
                    np.sqrt(noise_var), seeds=seeds, examples=examples,
                    rng_seed=int(rng.integers(1 << 30)))
        # compare's answer, without its (slower) planning figures.
        x = statistics.contributions(d)
        mean, *ms = statistics.mean_squares(x)
        low, high, *_ = statistics.interval(mean, *ms, *x.shape, level)
        decided += comparison.answers(low, high, margin) != "undecided"
    assert decided / 600 == pytest.approx(float(want), abs=0.06)


def test_bad_arguments_are_one_line_errors():
    d = np.zeros((3, 1, 4))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        comparison.compare(d[:1], margin=1.0)
    with pytest.raises(ValueError, match="at least 2 validation examples"):
        comparison.compare(d[:, :, :1], margin=1.0)
    for bad in (0, -1.0, float("nan"), True, "x"):
        with pytest.raises(ValueError, match="`margin` must be a positive"):
            comparison.compare(d, margin=bad)
    with pytest.raises(ValueError, match="`alpha`"):
        comparison.compare(d, margin=1.0, alpha=0.7)
    with pytest.raises(ValueError, match="`comparisons`"):
        comparison.compare(d, margin=1.0, comparisons=0)
    with pytest.raises(ValueError, match="seeds, tasks, examples"):
        comparison.compare(np.zeros((3, 4)), margin=1.0)
    with pytest.raises(ValueError, match="labelled at some seeds"):
        partial = np.zeros((2, 1, 3))
        partial[1] = np.nan
        comparison.compare(partial, margin=1.0)


def test_the_vectorised_pieces_agree_with_compare():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 30)) + rng.normal(size=(4, 1))
    mean, ms_a, ms_b, ms_e = statistics.mean_squares(x)
    low, high, se, df, parts = statistics.interval(mean, ms_a, ms_b, ms_e,
                                                   4, 30, 0.975)
    got = comparison.compare(x[:, None, :], margin=0.5)
    assert (got.low, got.high, got.df) == pytest.approx(
        (float(low), float(high), float(df)))
    assert comparison.answers(low, high, 0.5) == got.answer
