"""The default job rerun under several seeds and protocols, in one table.

    python -m experiments.benchmarks.decision.pipeline_runs \\
        --runs=default_s0=runs/six/default_s0,... --out=results.md

Reads each pipeline run's `results.csv` (total test error, mean ± SE over
its training seeds, and the paired difference with MTL) and
`decision.json` (the three-way decision and its test numbers), and writes
one Markdown table: MTL and TAG per budget, the affinity structure, the
answer with the seeds it used and what would decide an undecided one,
and whether the answer held on the test split (`held_on_test`).
"""

import os

from absl import app
from absl import flags
import pandas as pd

from tag_keras import train

_RUNS = flags.DEFINE_list("runs", None, "NAME=DIR pairs of pipeline runs.")
_OUT = flags.DEFINE_string("out", None, "Markdown file to write.")
_UNMARKED = flags.DEFINE_bool(
    "allow_unmarked", False, "Also read runs written before decision "
    "files had a completion marker (decision.complete.json); such a run "
    "cannot be told from a torn one, so say which runs you read this way.")


def held_on_test(entry):
    """Whether the answer of a decision.json budget entry held on the test
    split, in the decision's metric: "split" when the test difference is
    below zero, "all-task better" when it is above zero, "within the
    margin" when it is above minus the margin; "n/a" for "undecided"."""
    difference = entry["test_difference"]
    if entry["decision"] == "split":
        held = difference < 0
    elif entry["answer_detail"] == "all-task better":
        held = difference > 0
    elif entry["answer_detail"] == "within the margin":
        held = difference > -entry["margin"]
    else:
        return "n/a"
    return "yes" if held else "no"


def what_would_decide(entry):
    """The planning figures of an undecided entry, in words."""
    if entry["decision"] != "undecided":
        return ""
    if entry.get("seeds_needed"):
        low, high = entry.get("seeds_needed_range") or (None, None)
        spread = (f" (range {low or '>1000'}-{high or '>1000'})"
                  if low or high else "")
        return f"about {entry['seeds_needed']} seeds{spread}"
    if entry.get("validation_factor"):
        return (f"{entry['validation_factor']:.2f}x the validation "
                "examples")
    return "not within 1000 seeds, nor 1000x the validation data, alone"


def read(directory, allow_unmarked=False):
    """A run's decision.json: checked against its completion marker, or
    read as it is when `allow_unmarked` and the run has no marker."""
    import json

    marker = os.path.join(directory, "decision.complete.json")
    if allow_unmarked and not os.path.exists(marker):
        with open(os.path.join(directory, "decision.json")) as handle:
            return json.load(handle)
    return train.read_decision(directory)


def rows(name, directory, allow_unmarked=False):
    """One row per budget of one pipeline run."""
    results = pd.read_csv(os.path.join(directory, "results.csv"),
                          keep_default_na=False, na_values=[""])
    decision = read(directory, allow_unmarked)
    mtl = results[results.method == "MTL"].iloc[0]
    out = []
    for entry in decision["budgets"]:
        budget = entry["num_groups"]
        tag = results[(results.method == "TAG")
                      & (results.num_groups == budget)].iloc[0]
        answer = entry["decision"]
        if entry.get("answer_detail") and answer == "keep together":
            answer += f": {entry['answer_detail']}"
        out.append({
            "run": name, "budget": budget,
            "MTL": f"{mtl.total:.2f} ± {mtl.total_se:.2f}",
            "TAG": f"{tag.total:.2f} ± {tag.total_se:.2f}",
            "TAG - MTL": f"{tag.vs_mtl:+.2f} ± {tag.vs_mtl_se:.2f}",
            "affinity structure": tag.affinity_structure,
            "validation difference [bounds], margin": (
                f"{entry['metric']} {entry['difference']:+.4f} "
                f"[{entry['low']:+.4f}, {entry['high']:+.4f}], "
                f"{entry['margin']:.4f}"),
            "answer": answer, "seeds": entry["seeds"],
            "what would decide": what_would_decide(entry),
            "test difference": f"{entry['test_difference']:+.4f}",
            "held on test": held_on_test(entry)})
    return out


def markdown(table):
    columns = list(table[0])
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |"
              for r in table]
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    table = []
    for pair in _RUNS.value:
        name, directory = pair.split("=", 1)
        table += rows(name, directory, _UNMARKED.value)
    text = markdown(table)
    with open(_OUT.value, "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    app.run(main)
