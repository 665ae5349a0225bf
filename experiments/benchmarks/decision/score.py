"""The decision benchmark's rates, recomputed from `answers.csv` alone.

    python -m experiments.benchmarks.decision.score \\
        --answers=experiments/benchmarks/results/decision_calibration/answers.csv

Prints, per truth class, how often each decision-maker said split, keep
together and undecided (cluster-bootstrap 95% intervals by task set and
measuring seed), each answer's precision and the issue-36 demands.
Nothing but the table is read: anyone can check the committed numbers.
"""

from absl import app
from absl import flags
import pandas as pd

from experiments.benchmarks.decision import report

_ANSWERS = flags.DEFINE_string(
    "answers", "experiments/benchmarks/results/decision_calibration/"
    "answers.csv", "The benchmark's answers.csv.")
_SCORE_REPS = flags.DEFINE_integer("score_bootstrap", 2000,
                                   "Cluster-bootstrap resamples.",
                                   lower_bound=100)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    answers = pd.read_csv(_ANSWERS.value)
    summary = report.tables(answers, _SCORE_REPS.value)
    print("Demands:\n" + report.demands_markdown(summary["demands"]))
    print("\nAnswers per truth class:\n"
          + report.rates_markdown(summary["classes"]))
    print("\nPrecision:\n" + report.markdown(summary["precision"], list(
        summary["precision"].columns)))
    return 0


if __name__ == "__main__":
    app.run(main)
