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
        affinity_structure: For a grouping chosen from measured affinities with its
            stability assessed: the affinity structure, "stable" or
            "unclear" (`tag_keras.select.stability`); "" otherwise.
        seed_totals: Training seed -> total test error (%) of that seed's
            networks; empty when the row has one unnamed run.
        decision: The validated decision for this budget ("split" or
            "keep together", `tag_keras.train.decide`); "" where none.
    """

    method: str
    num_groups: int
    errors: Mapping
    groups: tuple = ()
    search_seconds: float | None = None
    samples: int = 1
    affinity_structure: str = ""
    seed_totals: Mapping = dataclasses.field(default_factory=dict)
    decision: str = ""

    @classmethod
    def over_seeds(cls, method, num_groups, per_seed, **fields):
        """A row from `{seed: {task: test error}}`: the task-wise mean over
        seeds, with each seed's total kept for the SE and the paired
        differences."""
        seeds = sorted(per_seed)
        return cls(method, num_groups,
                   mean_errors([per_seed[s] for s in seeds]),
                   seed_totals={s: 100 * sum(per_seed[s].values())
                                for s in seeds}, **fields)

    @property
    def total(self):
        """Total test error in percent (sum over tasks, as the paper)."""
        return 100 * sum(self.errors.values())

    @property
    def total_se(self):
        """Standard error of `total` over seeds (NaN below two)."""
        return _se(list(self.seed_totals.values()))


def _se(values):
    if len(values) < 2:
        return math.nan
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def paired_difference(result, reference):
    """`(mean, SE, seeds)` of `result.total - reference.total`, paired by
    training seed over the seeds both have."""
    seeds = sorted(set(result.seed_totals) & set(reference.seed_totals))
    if not seeds:
        return math.nan, math.nan, 0
    values = [result.seed_totals[s] - reference.seed_totals[s]
              for s in seeds]
    return float(np.mean(values)), _se(values), len(seeds)


def mean_errors(list_of_errors):
    """Task-wise mean of several `{task: error}`."""
    tasks = list(list_of_errors[0])
    return {t: float(np.mean([e[t] for e in list_of_errors])) for t in tasks}


def results_frame(results, tasks):
    """One row per method and budget: per-task and total test error (%).

    With several seeds, `total_se` is the SE of the total over seeds and
    `vs_mtl` / `vs_mtl_se` the difference with the MTL row paired by seed
    (over the seeds both have; `seeds` counts them).
    """
    mtl = next((r for r in results if r.method == "MTL"), None)
    rows = []
    for r in results:
        row = {"method": r.method, "num_groups": r.num_groups,
               "samples": r.samples,
               "groups": " | ".join("+".join(g) for g in r.groups)}
        row.update({t: round(100 * r.errors[t], 4) for t in tasks})
        row["total"] = round(r.total, 4)
        row["total_se"] = round(r.total_se, 4)
        difference, se, seeds = (paired_difference(r, mtl) if mtl else
                                 (math.nan, math.nan, 0))
        row["vs_mtl"], row["vs_mtl_se"] = round(difference, 4), round(se, 4)
        row["seeds"] = len(r.seed_totals) or 1
        row["search_seconds"] = (None if r.search_seconds is None
                                 else round(r.search_seconds, 2))
        row["affinity_structure"] = r.affinity_structure
        row["decision"] = r.decision
        rows.append(row)
    return pd.DataFrame(rows, columns=[
        "method", "num_groups", "samples", "groups", *tasks, "total",
        "total_se", "vs_mtl", "vs_mtl_se", "seeds", "search_seconds",
        "affinity_structure", "decision"])


def _present(value):
    return not (value is None or (isinstance(value, float)
                                  and math.isnan(value)))


def markdown_table(frame, tasks):
    """A results frame as a markdown table shaped like the paper's.

    Totals carry ± their SE over seeds where there are several, with the
    paired difference with MTL; the affinity structure and the validated
    decision get columns when any row has them.
    """
    structures = ("affinity_structure" in frame
                  and frame["affinity_structure"].fillna("").any())
    decisions = "decision" in frame and frame["decision"].fillna("").any()
    seeded = "total_se" in frame and frame["total_se"].notna().any()
    header = ["Method", "Groups", *tasks, "Total"] + (
        ["vs MTL"] if seeded else []) + ["Search time"] + (
        ["Affinity structure"] if structures else []) + (
        ["Decision (validation)"] if decisions else [])
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in frame.to_dict("records"):
        method = row["method"]
        if row["samples"] > 1:
            method += f" (mean of {row['samples']})"
        search = row["search_seconds"]
        search = f"{search:.1f} s" if _present(search) else ""
        cells = [method, str(row["num_groups"])]
        cells += [f"{row[t]:.2f}" for t in tasks]
        total = f"{row['total']:.2f}"
        if seeded and _present(row.get("total_se")):
            total += f" ± {row['total_se']:.2f}"
        cells.append(total)
        if seeded:
            vs = ""
            if row["method"] != "MTL" and _present(row.get("vs_mtl")):
                vs = f"{row['vs_mtl']:+.2f}"
                if _present(row.get("vs_mtl_se")):
                    vs += f" ± {row['vs_mtl_se']:.2f}"
            cells.append(vs)
        cells.append(search)
        for column, shown in (("affinity_structure", structures),
                              ("decision", decisions)):
            if shown:
                value = row.get(column)
                cells.append(value if isinstance(value, str) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_figure(frame, path):
    """A PNG of the total test error per method and budget.

    One line per method over the budgets; the all-task network (MTL, and
    any all-task baseline with one network) and STL are horizontal
    reference lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.5, 4))
    styles = {"MTL": ("black", "--"), "STL": ("grey", ":")}
    budgets = set()
    for method, rows in frame.groupby("method", sort=False):
        if method in styles or rows["num_groups"].max() == 1:
            color, style = styles.get(method, (None, "-."))
            axes.axhline(rows["total"].iloc[0], color=color, linestyle=style,
                         label=f"{method} ({rows['num_groups'].iloc[0]} "
                         "network" + ("s)" if method == "STL" else ")"))
            continue
        rows = rows.sort_values("num_groups")
        budgets.update(rows["num_groups"])
        axes.plot(rows["num_groups"], rows["total"], marker="o",
                  label=method)
    axes.set_xticks(sorted(budgets))
    axes.set_xlabel("networks (budget)")
    axes.set_ylabel("total test error (%)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def write_results(results, tasks, out_dir, *, title=None):
    """Writes `results.csv`, `results.md` and `results.png` in `out_dir`.

    The CSV has columns method, num_groups, samples, groups, one per task
    (test error in %), total (%) and search_seconds; the figure
    (`write_figure`) is embedded in the markdown. Returns the frame.
    """
    frame = results_frame(results, tasks)
    frame.to_csv(os.path.join(out_dir, "results.csv"), index=False)
    write_figure(frame, os.path.join(out_dir, "results.png"))
    text = markdown_table(frame, tasks)
    text += "\n![Total test error per method and budget](results.png)\n"
    if title:
        text = f"{title}\n\n{text}"
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(text)
    return frame
