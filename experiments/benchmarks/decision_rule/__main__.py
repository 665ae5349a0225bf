"""Calibrate the decision rule where the truth is known (no training).

    python -m experiments.benchmarks.decision_rule \\
        --out_dir=experiments/benchmarks/results/decision_rule

The grid of issue 34: Δ / margin in {−3, −2, −1, −0.5, 0, +0.5, +1};
seeds 3, 5, 8 fixed and the sequential rule (looks 3, 5, 8); 300 and
1,000 examples; seed share of D's variance 0.2, 0.5, 0.9 (at 3 seeds);
1 or 3 candidates × 3 budgets; normal and heavy-tailed seed effects;
and D's standard error at 3 seeds in margins (`--simulation_noise`: the measured
noise of real decisions is several margins; smaller values show the rule
where it decides often). Writes `cells.csv` (one row per cell and rule),
`demands.csv` (the worst cell of each demand) and `report.md`.
"""

import itertools
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np
import pandas as pd

from experiments import common_flags
from experiments.benchmarks.decision_rule import simulate
from experiments.lib import tables

_COMMON = common_flags.define_common_flags(("out_dir", "seed"))
_REPS = flags.DEFINE_integer("simulation_reps", 5000,
                             "Replications per cell.", lower_bound=100)
_NOISE = flags.DEFINE_list(
    "simulation_noise", ["0.25", "1", "4"], "D's standard error at 3 "
    "seeds, in margins.")
DEFAULT_OUT_DIR = "experiments/benchmarks/results/decision_rule"

DELTAS = (-3, -2, -1, -0.5, 0, 0.5, 1)
EXAMPLES = (300, 1000)
SEED_SHARES = (0.2, 0.5, 0.9)
CANDIDATES = (1, 3)
#: Nominal rate and the demanded bound of each wrong answer.
ALPHA, LIMIT = 0.025, 0.035


def grid(noise_levels):
    """Every cell of the grid, with its settings as a dict."""
    for noise, examples, share, candidates, heavy, delta in itertools.product(
            noise_levels, EXAMPLES, SEED_SHARES, CANDIDATES, (False, True),
            DELTAS):
        seed, example, interaction = simulate.components_for(
            noise, share, examples)
        yield ({"noise": noise, "examples": examples, "seed_share": share,
                "candidates": candidates, "heavy_tails": heavy,
                "delta": delta},
               simulate.Cell(delta, examples, seed, example, interaction,
                             candidates, heavy_tails=heavy))


def demands(cells):
    """The worst cell of each demand: P(split | Δ ≥ 0) and P(keep
    together | Δ ≤ −margin), per budget and overall."""
    rows = []
    for name, rate, where in (
            ("P(split | Δ ≥ 0), any budget", "split_overall",
             cells.delta >= 0),
            ("P(split | Δ ≥ 0), per budget", "split_budget",
             cells.delta >= 0),
            ("P(keep together | Δ ≤ −margin), per budget", "keep_budget",
             cells.delta <= -1),
            ("P(keep together | Δ ≤ −margin), every budget", "keep_overall",
             cells.delta <= -1)):
        subset = cells[where]
        worst = subset.loc[subset[rate].idxmax()]
        rows.append({"demand": name, "worst": worst[rate],
                     "worst_se": worst[rate + "_se"], "limit": LIMIT,
                     "holds": bool(worst[rate] <= LIMIT),
                     "cells": int(len(subset)),
                     "cells_over_nominal": int((subset[rate] > ALPHA
                                                + 2 * subset[rate + "_se"]
                                                ).sum()),
                     **{k: worst[k] for k in (
                         "rule", "noise", "examples", "seed_share",
                         "candidates", "heavy_tails", "delta")}})
    return pd.DataFrame(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        noise = [float(v) for v in _NOISE.value]
    except ValueError:
        print(f"decision_rule: error: --noise must be numbers. Received: "
              f"{','.join(_NOISE.value)}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(_COMMON.seed.value)
    out_dir = _COMMON.out_dir.value or DEFAULT_OUT_DIR
    start = time.perf_counter()
    rows = []
    for settings, cell in grid(noise):
        for row in simulate.summarize(cell, simulate.run_rules(
                cell, _REPS.value, rng, alpha=ALPHA)):
            rows.append({**settings, **row})
    cells = pd.DataFrame(rows)
    os.makedirs(out_dir, exist_ok=True)
    cells.to_csv(os.path.join(out_dir, "cells.csv"), index=False)
    worst = demands(cells)
    worst.to_csv(os.path.join(out_dir, "demands.csv"), index=False)
    curves = (cells.groupby(["noise", "rule", "delta"])
              [["split_budget", "keep_budget", "undecided_budget",
                "seeds_per_budget", "seeds_all_task"]].mean().reset_index())
    curves.to_csv(os.path.join(out_dir, "curves.csv"), index=False)
    seconds = time.perf_counter() - start
    command = "python -m experiments.benchmarks.decision_rule " + " ".join(
        sys.argv[1:])
    with open(os.path.join(out_dir, "report.md"), "w") as handle:
        handle.write("\n".join([
            "# The decision rule where the truth is known (issue 34)", "",
            f"Command: `{command.strip()}` ({len(cells)} cell × rule rows, "
            f"{_REPS.value} replications each, {seconds:.0f} s).", "",
            "Margin = 1; Δ is the true difference in margins (negative: "
            "the split is better); noise is D's standard error at 3 seeds "
            "in margins. Nominal rate 2.5% one-sided; demanded at most "
            "3.5% in every cell.", "",
            "## The demands, worst cell of each", "",
            tables.markdown(worst), "",
            "## Power and undecided answers, mean over the other settings",
            "", tables.markdown(curves, digits=3), ""]))
    print(worst.to_string(index=False))
    print(f"{len(cells)} rows in {seconds:.0f} s; wrote {out_dir}")
    return 0


if __name__ == "__main__":
    app.run(main)
