"""The decision rule on simulated differences, where the truth is known.

Per-example differences follow the crossed model of
`tag_keras.train.statistics`,

    x[s, i] = Δ + a_s + b_i + e_si,

with normal example effects b and interactions e, and seed effects a
that are normal or heavy-tailed (one seed in ten shifted by ±3 SDs of
a, the sign at random, so the mean stays Δ). Each budget's candidates
are compared with the all-task network exactly as
`tag_keras.train.decide` does: the candidate with the lowest estimate is
chosen, its one-sided bounds are at level 1 − alpha / tests (tests =
candidates × budgets × looks), and the answer is `answers(low, high,
margin)`; a sequential run looks after 3 and 5 seeds and stops a budget
once it is decided.

Only the statistics the rule reads are drawn, from their exact joint
distribution: the seed means x̄_s (over all N examples), and for each
look S the example mean square MS_example(S) and the residual sum of
squares SS_residual(S). In an orthonormal basis of the examples (the
mean and N − 1 contrasts), the contrast coordinates v_k = (b_k, e_1k,
…, e_8k) are independent N(0, diag(σ²_b, σ²_e, …)), so every quadratic
form the rule needs is a function of W = Σ_k v_k v_kᵀ ~ Wishart(N − 1),
drawn by Bartlett's decomposition: MS_example(S) = S wᵀ W w / (N − 1)
with w = (1, 1/S, …, 1/S, 0, …), and SS_residual(S) = tr(C_S W_ee) with
C_S the centring matrix of the first S seeds. The simulation therefore
costs nothing per example; `tests/test_decision_rule.py` checks it
against `compare` on raw arrays.
"""

import dataclasses

import numpy as np

from tag_keras.train import comparison
from tag_keras.train import statistics

#: Most seeds any rule uses; the looks of the sequential rule.
MAX_SEEDS = 8
LOOKS = (3, 5, 8)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One setting of the simulation (variances of one example's
    contribution; the margin is 1, so Δ is in margins)."""

    delta: float
    examples: int
    seed_variance: float
    example_variance: float
    interaction_variance: float
    candidates: int
    budgets: int = 3
    heavy_tails: bool = False


def components_for(standard_error_at_3, seed_share, examples,
                   interaction_per_example=1.0):
    """`(σ²_a, σ²_b, σ²_e)` giving D the standard error
    `standard_error_at_3` at 3 seeds and `examples` examples, a share
    `seed_share` of its variance from the seeds, and the rest split
    between examples and interaction as σ²_e = `interaction_per_example`
    · σ²_b (the interaction's share at one seed)."""
    total = standard_error_at_3 ** 2
    seed = 3 * seed_share * total
    # σ²_b / N + σ²_e / (3 N) = (1 - share) total, σ²_e = r σ²_b.
    example = (1 - seed_share) * total * examples / (
        1 + interaction_per_example / 3)
    return seed, example, interaction_per_example * example


def draw(cell, reps, rng):
    """`(means [R, C, S], ms_example [R, C, L], ss_residual [R, C, L])`
    for C = budgets × candidates comparisons and L looks."""
    count = cell.budgets * cell.candidates
    n = cell.examples
    sd_a, sd_b, sd_e = np.sqrt([cell.seed_variance, cell.example_variance,
                                cell.interaction_variance])
    a = sd_a * rng.standard_normal((reps, count, MAX_SEEDS))
    if cell.heavy_tails:
        shifted = rng.random((reps, count, MAX_SEEDS)) < 0.1
        signs = rng.choice([-1.0, 1.0], size=(reps, count, MAX_SEEDS))
        a = a + shifted * signs * 3 * sd_a
    b_mean = sd_b / np.sqrt(n) * rng.standard_normal((reps, count, 1))
    e_means = sd_e / np.sqrt(n) * rng.standard_normal(
        (reps, count, MAX_SEEDS))
    means = cell.delta + a + b_mean + e_means
    # Bartlett: W = D A Aᵀ D with A lower triangular.
    p = MAX_SEEDS + 1
    lower = np.tril(rng.standard_normal((reps, count, p, p)), -1)
    diagonal = np.sqrt(rng.chisquare(n - 1 - np.arange(p),
                                     size=(reps, count, p)))
    lower[..., np.arange(p), np.arange(p)] = diagonal
    scale = np.array([sd_b] + [sd_e] * MAX_SEEDS)
    factor = scale[:, None] * lower  # D A
    ms_example, ss_residual = [], []
    for look in LOOKS:
        w = np.zeros(p)
        w[0] = 1.0
        w[1:look + 1] = 1.0 / look
        projected = np.einsum("i,rcij->rcj", w, factor)
        ms_example.append(look * np.sum(projected ** 2, -1) / (n - 1))
        block = factor[..., 1:look + 1, :]
        centred = block - block.mean(axis=-2, keepdims=True)
        ss_residual.append(np.sum(centred ** 2, axis=(-2, -1)))
    return means, np.stack(ms_example, -1), np.stack(ss_residual, -1)


def bounds_at(means, ms_example, ss_residual, look_index, examples,
              level):
    """`(estimate, low, high)` of every comparison at one look."""
    look = LOOKS[look_index]
    seed_means = means[..., :look]
    estimate = seed_means.mean(-1)
    ms_seed = examples * np.sum((seed_means - estimate[..., None]) ** 2,
                                -1) / (look - 1)
    ms_residual = ss_residual[..., look_index] / ((look - 1)
                                                  * (examples - 1))
    low, high, *_ = statistics.interval(
        estimate, ms_seed, ms_example[..., look_index], ms_residual, look,
        examples, level)
    return estimate, low, high


def run_rules(cell, reps, rng, alpha=0.025, margin=1.0):
    """The answers of every rule on one set of draws.

    Returns:
        `{rule: {"answers": [R, budgets] answer strings, "seeds": [R,
        budgets] seeds used}}` for rules "fixed 3", "fixed 5", "fixed 8"
        and "sequential 3-5-8".
    """
    means, ms_example, ss_residual = draw(cell, reps, rng)
    shape = (reps, cell.budgets, cell.candidates)

    def answer(look_index, tests):
        estimate, low, high = bounds_at(
            means, ms_example, ss_residual, look_index, cell.examples,
            1 - alpha / tests)
        estimate, low, high = (v.reshape(shape) for v in (estimate, low,
                                                          high))
        chosen = np.argmin(estimate, axis=-1)[..., None]
        low = np.take_along_axis(low, chosen, -1)[..., 0]
        high = np.take_along_axis(high, chosen, -1)[..., 0]
        return comparison.answers(low, high, margin)

    tests = cell.budgets * cell.candidates
    results = {}
    for index, look in enumerate(LOOKS):
        results[f"fixed {look}"] = {
            "answers": answer(index, tests),
            "seeds": np.full((reps, cell.budgets), look)}
    final = np.full((reps, cell.budgets), comparison.UNDECIDED, dtype=object)
    seeds = np.zeros((reps, cell.budgets), int)
    open_ = np.ones((reps, cell.budgets), bool)
    for index, look in enumerate(LOOKS):
        now = answer(index, tests * len(LOOKS))
        closing = open_ & ((now != comparison.UNDECIDED)
                           | (index == len(LOOKS) - 1))
        final[closing] = now[closing]
        seeds[closing] = look
        open_ &= ~closing
    results["sequential 3-5-8"] = {"answers": final.astype(str),
                                   "seeds": seeds}
    return results


def summarize(cell, results):
    """One row per rule: the rates the demands read, with their Monte
    Carlo standard errors, and the seeds used."""
    rows = []
    for rule, result in results.items():
        answers, seeds = result["answers"], result["seeds"]
        reps = len(answers)
        split_any = (answers == comparison.SPLIT).any(axis=1)
        keep_all = (answers == comparison.KEEP_TOGETHER).all(axis=1)
        row = {"rule": rule, "reps": reps,
               "split_budget": np.mean(answers == comparison.SPLIT),
               "keep_budget": np.mean(answers == comparison.KEEP_TOGETHER),
               "undecided_budget": np.mean(answers == comparison.UNDECIDED),
               "split_overall": split_any.mean(),
               "keep_overall": keep_all.mean(),
               "seeds_per_budget": seeds.mean(),
               # The all-task network trains the most seeds any budget uses.
               "seeds_all_task": seeds.max(axis=1).mean()}
        for name in ("split_budget", "keep_budget", "split_overall",
                     "keep_overall"):
            p = row[name]
            row[name + "_se"] = float(np.sqrt(p * (1 - p) / reps))
        rows.append(row)
    return rows
