"""The markdown text of the grouping_quality report.

Every number in it is computed from the tables of
`grouping_quality.report`; nothing is typed in by hand.
"""

import dataclasses

import numpy as np

from experiments.lib import training
from experiments.benchmarks.grouping_quality import report as gq_report

_SELECTED = ("Optimal", "Test oracle", "TAG", "TAG first-order",
             "TAG validation", "CS", "HOA")


def _pm(mean, se):
    return f"{mean:.2f}" if not np.isfinite(se) else f"{mean:.2f} ± {se:.2f}"


def _percent(value):
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def headline(summary, dataset, budgets):
    """One bullet per budget: what TAG captures, at what cost."""
    lines = []
    for budget in budgets:
        part = summary[(summary["dataset"] == dataset)
                       & (summary["budget"] == budget)].set_index("method")
        if part.empty:
            continue
        get = part["test_error"]
        oracle = gq_report.captured(summary, dataset, budget,
                                    reference="Test oracle")
        share = gq_report.captured(summary, dataset, budget)
        caveat = ""
        if share is not None and share > 1:
            caveat = (" Above 100%: TAG's groups beat, on test, the groups"
                      " chosen by every network's validation loss, whose "
                      "own test improvement is small.")
        lines.append(
            f"* budget {budget}: MTL {get['MTL']:.2f}, Optimal "
            f"{get['Optimal']:.2f} (test oracle {get['Test oracle']:.2f}), "
            f"TAG {get['TAG']:.2f}, HOA {get['HOA']:.2f}, RG "
            f"{get['RG']:.2f}: TAG captures "
            f"{_percent(share)} of the "
            "optimal improvement over MTL ("
            f"{_percent(oracle)}"
            " of the test oracle's), at "
            f"{100 * part.loc['TAG', 'cost_fraction']:.1f}% of the "
            "exhaustive search's compute (HOA "
            f"{100 * part.loc['HOA', 'cost_fraction']:.1f}%)." + caveat)
    return lines


def failures(summary, partners, dataset, budgets):
    """Where TAG does worse than a baseline or picks a bad partner."""
    lines = []
    for budget in budgets:
        part = summary[(summary["dataset"] == dataset)
                       & (summary["budget"] == budget)].set_index("method")
        if part.empty:
            continue
        tag = part.loc["TAG", "test_error"]
        worse = [m for m in ("MTL", "RG", "HOA", "CS", "STL")
                 if part.loc[m, "test_error"] < tag]
        if worse:
            lines.append(f"* budget {budget}: TAG's groups ({tag:.2f}) are "
                         "worse on test than " + ", ".join(
                             f"{m} ({part.loc[m, 'test_error']:.2f})"
                             for m in worse) + ".")
    table = partners[dataset][0]
    n = len(table)
    for row in table.itertuples():
        if row.rank_predicted > (n - 1) / 2:
            lines.append(
                f"* {row.task}: TAG's predicted partner {row.predicted} "
                f"ranks {row.rank_predicted} of {n - 1} measured partners "
                f"({row.error_predicted:.2f}% vs best {row.best} "
                f"{row.error_best:.2f}%, worst {row.worst} "
                f"{row.error_worst:.2f}%).")
    return lines or ["* none found by these checks."]


def _costs(seeds_done):
    costs = [gq_report.step_costs(runs) for _, runs in seeds_done.values()]
    plain, measured = np.mean(costs, axis=0)
    return plain, measured


def _method_table(summary, dataset, budgets):
    part = summary[summary["dataset"] == dataset]
    rows = []
    for method in gq_report.SUMMARY_METHODS:
        cells = [method]
        for budget in budgets:
            row = part[(part["budget"] == budget) & (part["method"] == method)]
            cells.append(_pm(row["test_error"].iloc[0],
                             row["test_error_se"].iloc[0])
                         if len(row) else "")
        rows_m = part[part["method"] == method]
        fraction = rows_m["cost_fraction"].dropna()
        cells.append("" if fraction.empty
                     else f"{100 * fraction.mean():.1f}%")
        seconds = rows_m["search_seconds"].dropna()
        cells.append("" if seconds.empty else f"{seconds.mean():.0f} s")
        rows.append(cells)
    return _table(["Method", *[f"k = {b}" for b in budgets],
                   "search cost / exhaustive", "search seconds"], rows)


def _groups_table(results, dataset, budgets):
    part = results[results["dataset"] == dataset]
    seeds = sorted(part["seed"].unique())
    rows = []
    for budget in budgets:
        for method in _SELECTED:
            chosen = part[(part["budget"] == budget)
                          & (part["method"] == method)].set_index("seed")
            if chosen.empty:
                continue
            rows.append([method, budget] + [
                f"`{chosen.loc[s, 'groups']}`" for s in seeds])
    return _table(["Method", "k", *[f"seed {s}" for s in seeds]], rows,
                  ["---", "---:"] + ["---"] * len(seeds))


def _partner_table(partners, dataset):
    table, correlations, _, share = partners[dataset]
    rows = [[r.task, r.predicted, f"{r.affinity:.3g}",
             f"{r.error_predicted:.2f}", r.rank_predicted,
             f"{r.best} ({r.error_best:.2f})",
             f"{r.worst} ({r.error_worst:.2f})", f"{r.error_alone:.2f}"]
            for r in table.itertuples()]
    text = _table(["Task", "TAG's partner", "Z(partner → task)",
                   "error with it", "its rank", "best partner (error)",
                   "worst partner (error)", "error alone"], rows,
                  ["---"] * 2 + ["---:"] * 6)
    hits = int((table["rank_predicted"] == 1).sum())
    text += (f"\nTAG's partner is the measured best for {hits} of "
             f"{len(table)} tasks; mean rank "
             f"{table['rank_predicted'].mean():.2f} of {len(table) - 1}. "
             "Correlation over every ordered pair (b → a) between Z(b → a) "
             "and the measured benefit to a of training with b (alone − in "
             "the pair): " + ", ".join(
                 f"{k} {v:.2f}" for k, v in correlations.items()) + ".\n")
    if share is not None:
        text += (
            "\nHow much of the per-step affinity depends on the source at "
            "all: in the every-step run, a term common to every source "
            "(the mean over sources for that step and target) explains "
            f"{100 * share:.0f}% of the variance of the per-step cross-task"
            " affinities Z(b → a, t) (mean over seeds); partners are told "
            "apart by the remaining "
            f"{100 * (1 - share):.0f}% only.\n")
    return text


def _ablation_table(ablation, summary, dataset, budgets):
    part = ablation[ablation["dataset"] == dataset]
    means = part.groupby(["variant", "budget"], sort=False).agg(
        seconds=("seconds", "mean"), test_error=("test_error", "mean"),
        measured_steps=("measured_steps", "mean"),
        modelled=("modelled_seconds", "mean"),
        source=("time_source", "first")).reset_index()
    reference = summary[summary["dataset"] == dataset].set_index(
        ["budget", "method"])["test_error"]
    every_one = means[means["variant"] == "every 1"]["seconds"].mean()
    rows = []
    for variant in means["variant"].unique():
        rows_v = means[means["variant"] == variant].set_index("budget")
        seconds = rows_v["seconds"].mean()
        cells = [variant, f"{rows_v['measured_steps'].mean():.0f}",
                 f"{seconds:.1f} ({rows_v['source'].iloc[0]})",
                 f"{rows_v['modelled'].mean():.1f}",
                 f"{every_one / seconds:.2f}x"]
        gains = []
        for budget in budgets:
            if budget not in rows_v.index:
                cells.append("")
                continue
            error = rows_v.loc[budget, "test_error"]
            rg = reference[(budget, "RG")]
            gains.append(100 * (rg - error) / rg)
            gap = error - reference[(budget, "Optimal")]
            cells.append(f"{error:.2f} ({gap:+.2f})")
        cells.append(f"{np.mean(gains):.2f}%")
        rows.append(cells)
    return _table(["Measured", "steps measured", "seconds", "modelled s",
                   "speed-up vs every 1",
                   *[f"k = {b} error (vs Optimal)" for b in budgets],
                   "better than RG"], rows)


def report_text_for(task_set, seeds_done, *, summary, results, ablation,
                    partners, figures, budgets, tag_every):
    name, tasks = task_set.name, task_set.tasks
    usable = [b for b in budgets if b <= len(tasks)]
    plain, measured = _costs(seeds_done)
    config = dataclasses.replace(task_set.config, seed=0)
    out = [f"## {name}: {len(tasks)} tasks, {2 ** len(tasks) - 1} networks "
           f"per seed, seeds {sorted(seeds_done)}\n",
           f"{task_set.data.description}. Tasks: "
           + ", ".join(f"`{t}`" for t in tasks) + ". Protocol: "
           + training.describe_config(config).replace(", seed 0", "")
           + " (early stopping on the validation loss, best epoch "
           "restored).\n",
           "### Headline\n", *headline(summary, name, usable), "",
           "Where TAG fails (automatic checks: worse than a baseline on "
           "test; predicted partner in the worse half):\n",
           *failures(summary, partners, name, usable), "",
           "### Total test error (%, sum over tasks; mean ± standard "
           "error over seeds)\n",
           _method_table(summary, name, usable),
           "Search cost: training seconds spent to find the groups "
           "(TAG and its variants: their one all-task measuring run; "
           "HOA: the single-task and pair networks; Optimal: all "
           f"{2 ** len(tasks) - 1} networks) plus selection, as a "
           "fraction of the training seconds of all networks of the "
           "seed. MTL, STL and RG search nothing.\n",
           "### Groups chosen\n", _groups_table(results, name, usable),
           "### Best partner (TAG's prediction against pair networks)\n",
           _partner_table(partners, name),
           "### Measurement frequency and window ablation\n",
           _ablation_table(ablation, summary, name, usable),
           "Every k steps: one real all-task run per frequency and seed, "
           "timed (`seconds (measured)`). Windows: the every-step run's "
           f"per-step affinities on steps that are multiples of {tag_every}"
           " inside that part of training; their seconds are modelled "
           "from costs measured side by side in the same process: the "
           f"seconds of the real every-{tag_every} run + (measured steps − "
           "its measured steps) × (steady-state seconds per measured step "
           "− per plain step). Steady state (median over"
           f" epochs after the first): {1000 * plain:.1f} ms per plain "
           f"step, {1000 * measured:.1f} ms per measured step "
           f"({measured / plain:.2f}x). `modelled s` applies the same "
           "model to every row, to compare with the measured seconds. "
           "`better than RG`: mean over budgets of (RG − error) / RG, the "
           "paper's ablation measure.\n",
           "### Figures\n"]
    out += [f"![{f}]({f})\n" for f in figures.get(name, [])]
    return "\n".join(out)


def report(task_sets, done, *, summary, results, ablation, partners,
           figures, runs, budgets, tag_every, command=None):
    """The whole `report.md`."""
    del runs  # In runs.csv.
    out = ["# Does TAG find the best groups? Exhaustive-search benchmark\n",
           "Generated by `experiments/benchmarks/grouping_quality.py`; "
           "every number below is computed from the CSVs next to this "
           "file.\n"]
    if command:
        out.append(f"Command:\n\n```bash\n{command}\n```\n")
    out.append(
        "How to read it. For each task set and training seed, every "
        "one of the 2^n − 1 task groups was trained as its own network "
        "(same epoch budget, early stopping on validation loss). "
        "**Optimal** is the exact best choice of at most k networks by "
        "validation loss (each task served by the chosen network where "
        "its validation loss is lowest), evaluated on the test split: "
        "the groups are picked on validation, as a practitioner (and "
        "the paper's selection) would. **Test oracle** picks by the test "
        "errors themselves: the best that any grouping of these "
        "networks reaches on test, a bound, not a method. TAG measures "
        f"lookahead affinity every {tag_every} steps in one all-task "
        "run; TAG first-order uses the first-order approximation; TAG "
        "validation measures the lookahead on validation batches and may "
        "serve a task alone (scored by its self-affinity); CS is the "
        "gradient cosine similarity every step; HOA picks from the "
        "validation losses of the single-task and pair networks; RG is "
        "the exact expected value over all partitions into exactly k "
        "groups; MTL is one all-task network; STL one network per task "
        "(it needs n networks, more than any budget). Errors are total "
        "test errors in % (sum over tasks). Timings are wall-clock "
        "seconds of `fit` on a 2-core CPU machine shared with other "
        "jobs: expect noise of tens of percent.\n")
    for task_set in task_sets:
        seeds_done = done.get(task_set.name, {})
        if seeds_done:
            out.append(report_text_for(
                task_set, seeds_done, summary=summary, results=results,
                ablation=ablation, partners=partners, figures=figures,
                budgets=budgets, tag_every=tag_every))
    out.append("## Files\n\n`results.csv` (per seed, budget and method: "
               "groups, total test error, mean served validation loss, "
               "search seconds and cost fraction), `summary.csv` (mean "
               "and standard error over seeds), `ablation.csv`, "
               "`partners.csv`, `networks.csv` (every network's per-task "
               "test error and validation loss), `runs.csv` (every "
               "measuring run), `affinity.csv` (every matrix).\n")
    return "\n".join(out)
