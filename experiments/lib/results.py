"""Comparison tables: one row per method and budget, as CSV and markdown.

`MethodResult` is one row (per-task test errors of the groups that serve
each task); `write_results` writes `results.csv` (read it with pandas) and
`results.md` (the same, shaped like the TAG paper's tables).
"""

import dataclasses
import math
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One row of a comparison table.

    Attributes:
        method: E.g. "MTL", "STL", "RG", "CS", "TAG", "HOA".
        num_groups: The budget (networks at inference).
        errors: Task -> test error (fraction), served by the chosen groups
            (for RG, the mean over the sampled groupings).
        groups: The groups, as tuples of task names ((), for RG).
        search_seconds: Wall time spent finding the groups (training for
            the affinities or performances, plus selection); None if none.
        samples: How many groupings were averaged (RG).
    """

    method: str
    num_groups: int
    errors: Mapping
    groups: tuple = ()
    search_seconds: float | None = None
    samples: int = 1

    @property
    def total(self):
        """Total test error in percent (sum over tasks, as the paper)."""
        return 100 * sum(self.errors.values())


def mean_errors(list_of_errors):
    """Task-wise mean of several `{task: error}`."""
    tasks = list(list_of_errors[0])
    return {t: float(np.mean([e[t] for e in list_of_errors])) for t in tasks}


def results_frame(results, tasks):
    """One row per method and budget: per-task and total test error (%)."""
    rows = []
    for r in results:
        row = {"method": r.method, "num_groups": r.num_groups,
               "samples": r.samples,
               "groups": " | ".join("+".join(g) for g in r.groups)}
        row.update({t: round(100 * r.errors[t], 4) for t in tasks})
        row["total"] = round(r.total, 4)
        row["search_seconds"] = (None if r.search_seconds is None
                                 else round(r.search_seconds, 2))
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "num_groups", "samples",
                                       "groups", *tasks, "total",
                                       "search_seconds"])


def markdown_table(frame, tasks):
    """A results frame as a markdown table shaped like the paper's."""
    header = ["Method", "Groups", *tasks, "Total", "Search time"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in frame.to_dict("records"):
        method = row["method"]
        if row["samples"] > 1:
            method += f" (mean of {row['samples']})"
        search = row["search_seconds"]
        search = "" if search is None or (
            isinstance(search, float) and math.isnan(search)) else (
            f"{search:.1f} s")
        cells = [method, str(row["num_groups"])]
        cells += [f"{row[t]:.2f}" for t in tasks]
        cells += [f"{row['total']:.2f}", search]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results, tasks, out_dir, *, title=None):
    """Writes `results.csv` and `results.md` in `out_dir`; returns the frame.

    The CSV has columns method, num_groups, samples, groups, one per task
    (test error in %), total (%) and search_seconds.
    """
    frame = results_frame(results, tasks)
    frame.to_csv(os.path.join(out_dir, "results.csv"), index=False)
    text = markdown_table(frame, tasks)
    if title:
        text = f"{title}\n\n{text}"
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(text)
    return frame
