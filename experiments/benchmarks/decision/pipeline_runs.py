"""The default job rerun under several seeds and protocols, in one table.

    python -m experiments.benchmarks.decision.pipeline_runs \\
        --runs=default_s0=runs/six/default_s0,... --out=results.md

Reads each pipeline run's `results.csv` (total test error, mean ± SE over
its training seeds, and the paired difference with MTL) and
`decision.json` (the validated decision and its test numbers), and writes
one Markdown table: MTL and TAG per budget, the affinity structure, the
decision, and whether the decision was right on the test split (split:
the test loss difference below zero; keep together: the test-loss
interval reaches zero or above, i.e. no split shown better).
"""

import json
import os

from absl import app
from absl import flags
import pandas as pd

_RUNS = flags.DEFINE_list("runs", None, "NAME=DIR pairs of pipeline runs.")
_OUT = flags.DEFINE_string("out", None, "Markdown file to write.")


def rows(name, directory):
    """One row per budget of one pipeline run."""
    results = pd.read_csv(os.path.join(directory, "results.csv"),
                          keep_default_na=False, na_values=[""])
    with open(os.path.join(directory, "decision.json")) as handle:
        decision = json.load(handle)
    mtl = results[results.method == "MTL"].iloc[0]
    out = []
    for entry in decision["budgets"]:
        budget = entry["num_groups"]
        tag = results[(results.method == "TAG")
                      & (results.num_groups == budget)].iloc[0]
        split = entry["decision"] == "split"
        right = (entry["test_difference"] < 0 if split
                 else entry["test_high"] >= 0)
        out.append({
            "run": name, "budget": budget,
            "MTL": f"{mtl.total:.2f} ± {mtl.total_se:.2f}",
            "TAG": f"{tag.total:.2f} ± {tag.total_se:.2f}",
            "TAG - MTL": f"{tag.vs_mtl:+.2f} ± {tag.vs_mtl_se:.2f}",
            "affinity structure": tag.verdict,
            "decision (validation loss, interval)": (
                f"{entry['decision']} ({entry['difference']:+.3f} "
                f"[{entry['low']:+.3f}, {entry['high']:+.3f}])"),
            "test loss difference [interval]": (
                f"{entry['test_difference']:+.3f} "
                f"[{entry['test_low']:+.3f}, {entry['test_high']:+.3f}]"),
            "right on test": "yes" if right else "no"})
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    table = []
    for pair in _RUNS.value:
        name, directory = pair.split("=", 1)
        table += rows(name, directory)
    frame = pd.DataFrame(table)
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |"
              for r in table]
    with open(_OUT.value, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    app.run(main)
