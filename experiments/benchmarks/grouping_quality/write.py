"""Writes the grouping_quality results: CSVs, figures and report.md.

Evaluation is `grouping_quality.report`'s, the text
`grouping_quality.markdown`'s, the figures `grouping_quality.plots`'s;
this module runs them over the finished seeds and writes the files (it is
the only one that imports all three).
"""

import os

import numpy as np
import pandas as pd

from experiments.benchmarks.grouping_quality import markdown
from experiments.benchmarks.grouping_quality import plots
from experiments.benchmarks.grouping_quality import report


def _long_tables(task_sets, done, tag_every):
    networks, runs, affinity = [], [], []
    for task_set in task_sets:
        for seed, (nets, records) in sorted(
                done.get(task_set.name, {}).items()):
            for group, r in nets.items():
                networks += [{
                    "dataset": task_set.name, "seed": seed,
                    "group": "+".join(group), "task": t,
                    "test_error": r["test_error"][t],
                    "validation_loss": round(r["validation_loss"][t], 6),
                    "epochs": r["epochs"], "best_epoch": r["best_epoch"],
                    "seconds": round(r["seconds"], 3)} for t in group]
            for name, r in records.items():
                runs.append({
                    "dataset": task_set.name, "seed": seed, "variant": name,
                    **{k: r["variant"][k] for k in ("method", "every",
                                                    "held_out")},
                    "seconds": round(r["seconds"], 3), "steps": r["steps"],
                    "measured_steps": r["measured_steps"],
                    "epochs": r["epochs"], "best_epoch": r["best_epoch"],
                    "mtl_test_error": 100 * sum(r["test_error"].values())})
                if r["affinity"] is not None:
                    z = report.affinity_frame(r, task_set.tasks)
                    affinity += [{
                        "dataset": task_set.name, "seed": seed,
                        "variant": name, "source": s, "target": t,
                        "affinity": float(f"{z.loc[s, t]:.5g}")}
                        for s in z.index for t in z.columns]
    return (pd.DataFrame(networks), pd.DataFrame(runs),
            pd.DataFrame(affinity))


def _steps_frame(out_dir, dataset, seed):
    path = report.every_step_file(out_dir, dataset, seed, "affinity_steps.csv")
    return pd.read_csv(path) if os.path.exists(path) else None


def write_report(task_sets, done, out_dir, *, budgets, frequencies,
                 tag_every, command=None):
    """Evaluates every finished seed and writes the CSVs, plots, report.

    Args:
        task_sets: The `TaskSet`s.
        done: `{dataset: {seed: (networks, runs)}}` of finished seeds.
        out_dir: The results folder.
        budgets: Budgets to evaluate (larger than the task count: dropped).
        frequencies: The ablation's frequencies.
        tag_every: TAG's frequency.
        command: The command line, quoted in the report.

    Returns:
        The summary `DataFrame` (also `summary.csv`).
    """
    os.makedirs(out_dir, exist_ok=True)
    results, ablation, partner_tables = [], [], {}
    for task_set in task_sets:
        seeds_done = done.get(task_set.name, {})
        if not seeds_done:
            continue
        usable = [b for b in budgets if b <= len(task_set.tasks)]
        shares = []
        for seed, (nets, runs) in sorted(seeds_done.items()):
            steps = _steps_frame(out_dir, task_set.name, seed)
            rows, more = report.evaluate_seed(
                task_set.tasks, nets, runs, usable, tag_every=tag_every,
                frequencies=frequencies, steps=steps)
            if steps is not None:
                shares.append(report.common_share(steps))
            results += [{"dataset": task_set.name, "seed": seed, **r}
                        for r in rows]
            ablation += [{"dataset": task_set.name, "seed": seed, **r}
                         for r in more]
        partner_tables[task_set.name] = (
            *report.partners(task_set.tasks, seeds_done, tag_every),
            float(np.mean(shares)) if shares else None)
    results, ablation = pd.DataFrame(results), pd.DataFrame(ablation)
    summary = report.summarize(results)
    networks, runs, affinity = _long_tables(task_sets, done, tag_every)
    for name, frame in (("results", results), ("summary", summary),
                        ("ablation", ablation), ("networks", networks),
                        ("runs", runs), ("affinity", affinity)):
        frame.to_csv(os.path.join(out_dir, f"{name}.csv"), index=False,
                     float_format="%.6g")
    pd.concat([t[0].assign(dataset=d) for d, t in partner_tables.items()]
              ).to_csv(os.path.join(out_dir, "partners.csv"), index=False,
                       float_format="%.6g")
    figures = plots.write_figures(task_sets, done, out_dir, summary=summary,
                                  ablation=ablation, partners=partner_tables,
                                  tag_every=tag_every)
    text = markdown.report(task_sets, done, summary=summary, results=results,
                           ablation=ablation, partners=partner_tables,
                           figures=figures, runs=runs, budgets=budgets,
                           tag_every=tag_every, command=command)
    with open(os.path.join(out_dir, "report.md"), "w") as handle:
        handle.write(text)
    return summary
