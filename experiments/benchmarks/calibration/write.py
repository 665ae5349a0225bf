"""Runs the calibration benchmark's units of work and writes its files.

Flag-free: `experiments.benchmarks.calibration` calls `run`.
"""

import os

import numpy as np
import pandas as pd

from experiments.benchmarks.calibration import report as report_lib
from experiments.benchmarks.grouping_quality import work as work_lib
from experiments.lib import tables
from tag_keras import select as select_lib


def _measured(task_set, seed, out_dir, variants, train, log):
    """`{"runs", "steps", "group_affinity"}` of one measuring seed, or None
    when a run is missing (and `train` is False)."""
    work = work_lib.SeedWork(task_set, seed, out_dir, train=train, log=log)
    runs = {v.name: work.run(v) for v in variants}
    if any(r is None for r in runs.values()):
        return None
    steps, groups = {}, {}
    for variant in variants:
        folder = os.path.join(work.run_dir(variant), "affinity")
        if variant.write_steps:
            steps[variant.name] = pd.read_csv(
                os.path.join(folder, "affinity_steps.csv"))
        if variant.sources != "tasks":
            groups[variant.name] = select_lib.read_group_affinity(
                os.path.join(folder, "group_affinity.csv"))
    return {"runs": runs, "steps": steps, "group_affinity": groups}


def _truth(task_set, seed, out_dir, train, log):
    work = work_lib.SeedWork(task_set, seed, out_dir, train=train, log=log)
    groups = work_lib.subsets(task_set.tasks)
    networks = {}
    for index, group in enumerate(groups, start=1):
        if train and not os.path.exists(work.network_path(group)):
            log(f"[{task_set.name} truth seed {seed}] network "
                f"{index}/{len(groups)}")
        networks[group] = work.network(group)
    return None if any(r is None for r in networks.values()) else networks


def run(task_sets, out_dir, *, truth_seeds, measure_seeds, variants, budgets,
        resamples, train=True, command=None, log=print):
    """Trains what is missing (measuring runs first, then the truth of each
    task set) and rewrites every file after each task set completes.

    Returns:
        The names of the task sets reported.
    """
    from tag_keras.select import stability

    reported, frames = [], {}
    # Measuring runs are cheap: all of them first, so that a task set
    # whose truth is imported is reported early.
    measured = {t.name: {s: _measured(t, s, out_dir, variants, train, log)
                         for s in measure_seeds} for t in task_sets}
    for task_set in task_sets:
        truth = {s: _truth(task_set, s, out_dir, train, log)
                 for s in truth_seeds}
        seeds = {s: m for s, m in measured[task_set.name].items()
                 if m is not None}
        if any(v is None for v in truth.values()) or not seeds:
            log(f"[{task_set.name}] incomplete: not reported")
            continue
        rows, corr, structures, costs, truth_frame = (
            report_lib.evaluate_task_set(
                task_set.tasks, truth, seeds, budgets, resamples=resamples,
                assess=stability.assess))
        for name, part in (("results", rows), ("correlations", corr),
                           ("structures", structures), ("costs", costs),
                           ("truth", truth_frame.to_dict("records"))):
            frame = pd.DataFrame(part)
            frame.insert(0, "dataset", task_set.name)
            frames.setdefault(name, []).append(frame)
        reported.append(task_set.name)
        write(out_dir, {k: pd.concat(v, ignore_index=True)
                        for k, v in frames.items()},
              task_sets=[t for t in task_sets if t.name in reported],
              truth_seeds=truth_seeds, measure_seeds=measure_seeds,
              command=command)
    return reported


def methods_figure(summary, path):
    """Total truth error per method (mean ± SE over seeds) per budget, the
    all-task network as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    budgets = sorted(summary["budget"].unique())
    figure, axes = pyplot.subplots(1, len(budgets),
                                   figsize=(4.2 * len(budgets), 4.5),
                                   sharey=True, squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        part = summary[summary.budget == budget]
        y = np.arange(len(part))
        ax.errorbar(part["test error"], y,
                    xerr=part["test error se"].fillna(0.0), fmt="o",
                    capsize=3)
        mtl = part[part.method == "MTL"]["test error"]
        if len(mtl):
            ax.axvline(float(mtl.iloc[0]), color="grey", linestyle="--")
        ax.set_yticks(y, part.method, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"budget {budget}")
        ax.set_xlabel("total test error on the truth (%)")
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(str(summary.dataset.iloc[0]))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _summary_by_method(frame, columns):
    out = []
    for (dataset, method), rows in frame.groupby(["dataset", "method"],
                                                 sort=False):
        row = {"dataset": dataset, "method": method, "seeds": len(rows)}
        for column in columns:
            row[column], row[f"{column} se"] = tables.mean_se(rows[column])
        out.append(row)
    return pd.DataFrame(out)


def write(out_dir, frames, *, task_sets, truth_seeds, measure_seeds,
          command):
    """Writes the CSVs and report.md from the long tables."""
    os.makedirs(out_dir, exist_ok=True)
    summary = report_lib.summarize(frames["results"])
    correlation = _summary_by_method(frames["correlations"], [
        "pair_pooled", "pair_within", "group_pooled", "group_within"])
    costs = _summary_by_method(frames["costs"], ["seconds_over_plain"])
    calibration = report_lib.calibration(frames["structures"])
    noise = report_lib.noise_floor(frames["results"])
    for name, frame in {**frames, "summary": summary,
                        "correlation_summary": correlation,
                        "cost_summary": costs, "calibration": calibration,
                        "noise_floor": noise}.items():
        frame.to_csv(os.path.join(out_dir, f"{name}.csv"), index=False)
    for task_set in task_sets:
        methods_figure(summary[summary.dataset == task_set.name],
                       os.path.join(out_dir, f"{task_set.name}_methods.png"))
    text = report_text(frames, summary, correlation, costs, calibration,
                       noise, task_sets=task_sets, truth_seeds=truth_seeds,
                       measure_seeds=measure_seeds, command=command)
    with open(os.path.join(out_dir, "report.md"), "w") as handle:
        handle.write(text)


def _beyond_noise(summary, column):
    """Rows whose `column` differs from 0 by more than 2 SE."""
    value, se = summary[column], summary[f"{column} se"]
    return summary[np.isfinite(se) & (value.abs() > 2 * se)]


def report_text(frames, summary, correlation, costs, calibration, noise, *,
                task_sets, truth_seeds, measure_seeds, command):
    truth = frames["truth"]
    lines = [
        "# Calibration benchmark: methods and the affinity structure on a "
        "de-noised "
        "truth", "",
        "Generated by `experiments/benchmarks/calibration.py`; every number "
        "is computed from the CSVs beside this file.", "", "Command:", "",
        "```bash", command or "", "```", "",
        f"Truth: every group network trained under seeds {truth_seeds}; a "
        "network's truth is its mean test error over them. Measuring "
        f"methods: one run per seed {measure_seeds}, each seed's groups "
        "evaluated on the truth. Errors are total test errors in % (sum "
        "over tasks). `±` is one standard error over seeds; a difference "
        "within two SEs is no difference. `minus release` pairs each seed "
        "with release TAG's same seed.", ""]
    for task_set in task_sets:
        rows = truth[truth.dataset == task_set.name]
        lines += [
            f"## {task_set.name}: {len(task_set.tasks)} tasks", "",
            f"{task_set.data.description}.", "",
            f"![{task_set.name}]({task_set.name}_methods.png)", "",
            f"Truth noise: median seed SE of a network's per-task test error "
            f"{100 * rows.test_error_se.median():.2f} points (max "
            f"{100 * rows.test_error_se.max():.2f}).", ""]
        part = summary[summary.dataset == task_set.name].drop(
            columns="dataset")
        lines += ["### Total test error per budget", "",
                  tables.markdown(part, digits=2)]
        part = correlation[correlation.dataset == task_set.name].drop(
            columns="dataset")
        lines += ["### Correlation with the de-noised benefit", "",
                  "Pair: Z(b→a) against a's error alone minus with b; "
                  "group: a method's score of a in G against a's error "
                  "alone minus in G. Pooled Pearson; within target: mean "
                  "Spearman over targets.", "",
                  tables.markdown(part, digits=3)]
    lines += ["## Cost per step, beside a plain fit (same seed)", "",
              "Whole-fit seconds over the plain fit's; 2-core shared CPU, "
              "rough.", "", tables.markdown(costs, digits=2),
              "## Training-path noise floor", "",
              "Release TAG's groups against those of a second run with "
              "the same seed and settings (whose graph also measures every "
              "subset). Measuring never changes training, and two runs "
              "with one seed are bit-identical on this machine, so every "
              "method of one seed sees the same training path and the "
              "paired differences compare estimators alone; the noise "
              "that remains is the seed's (the ± columns).", "",
              tables.markdown(noise, digits=2),
              "## Calibration of the affinity structure", "",
              "`tag-select --stability`'s affinity structure per (task "
              "set, seed, budget), read as a decision: \"stable\" (split) "
              "is right when the chosen groups' truth error is below the "
              "all-task network's, \"unclear\" (keep together) when it "
              "is not.", "",
              tables.markdown(calibration, digits=2)]
    lines += ["## What wins beyond noise", ""]
    better = _statements(summary, "minus release", ("better than", "worse "
                         "than"), "release TAG")
    lines += better or ["* No method differs from release TAG by more than "
                        "two paired SEs on any task set and budget."]
    lines += ["", "Against the all-task network (MTL), beyond two SEs over "
              "seeds:", ""]
    for (dataset, budget), part in summary[summary.seeds > 1].groupby(
            ["dataset", "budget"], sort=False):
        beyond = _beyond_noise(part, "minus MTL")
        better = beyond[beyond["minus MTL"] < 0].method.tolist()
        worse = beyond[beyond["minus MTL"] > 0].method.tolist()
        within = [m for m in part.method if m not in better + worse]
        lines.append(f"* {dataset}, budget {budget}: better: "
                     f"{', '.join(better) or 'none'}; worse: "
                     f"{', '.join(worse) or 'none'}; no difference: "
                     f"{', '.join(within) or 'none'}.")
    return "\n".join(lines) + "\n"


def _statements(summary, column, words, reference):
    """One line per row whose `column` is beyond two SEs from zero."""
    out = []
    for _, row in _beyond_noise(summary, column).iterrows():
        value, se = row[column], row[f"{column} se"]
        word = words[0] if value < 0 else words[1]
        out.append(f"* {row.dataset}, budget {row.budget}: {row.method} "
                   f"{word} {reference} by {abs(value):.2f} ± {se:.2f} "
                   "points.")
    return out
