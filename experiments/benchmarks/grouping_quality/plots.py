"""The figures of the grouping_quality report (matplotlib, Agg backend).

Per task set:

* `<dataset>_affinity.png`: the affinity matrices (mean over seeds) of
  TAG, first-order, validation affinity and CS, next to the measured
  ground truth: the benefit to each target task of training with each
  source task (test error alone minus in the pair network, points).
* `<dataset>_affinity_epochs.png`: per-epoch affinity onto three tasks
  from every other task (the every-step run of the first seed), as the
  paper's figure of affinities changing over training.
* `<dataset>_methods.png`: total test error per method and budget (mean ±
  standard error over seeds).
* `<dataset>_frequency.png`: the measurement-frequency and window
  ablation: total test error of the chosen groups against seconds spent.
"""

import os

import numpy as np
import pandas as pd

from experiments.benchmarks.grouping_quality import report


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _heatmap(axes, frame, title, figure):
    values = frame.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
    n = len(frame)
    axes.set_xticks(range(n), frame.columns, rotation=90, fontsize=7)
    axes.set_yticks(range(n), frame.index, fontsize=7)
    axes.set_xlabel("target")
    axes.set_ylabel("source")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)


def _benefit(tasks, seeds_done):
    """`[b, a]`: a's mean test error alone minus with b (points)."""
    def mean(group, task):
        key = tuple(t for t in tasks if t in group)
        return 100 * float(np.mean([nets[key]["test_error"][task]
                                    for nets, _ in seeds_done.values()]))

    frame = pd.DataFrame(np.nan, index=list(tasks), columns=list(tasks))
    for a in tasks:
        for b in tasks:
            if a != b:
                frame.loc[b, a] = mean({a}, a) - mean({a, b}, a)
    return frame


def affinity_figure(tasks, seeds_done, path, tag_every):
    plt = _pyplot()
    panels = [(f"TAG lookahead (every {tag_every})",
               f"lookahead_every_{tag_every}"),
              (f"first-order (every {tag_every})",
               f"first_order_every_{tag_every}"),
              (f"validation lookahead (every {tag_every})",
               f"validation_every_{tag_every}"),
              ("CS: gradient cosine (every step)", "cosine_every_1")]
    figure, axes = plt.subplots(1, 5, figsize=(25, 5.2))
    for ax, (title, name) in zip(axes[:-1], panels, strict=True):
        z = sum(report.affinity_frame(runs[name], tasks)
                for _, runs in seeds_done.values()) / len(seeds_done)
        _heatmap(ax, z, title, figure)
    _heatmap(axes[-1], _benefit(tasks, seeds_done),
             "measured: error alone − error in pair (points)", figure)
    figure.suptitle(f"Row = source, column = target; mean over "
                    f"{len(seeds_done)} seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def epochs_figure(tasks, epochs, path):
    plt = _pyplot()
    targets = [tasks[0], tasks[len(tasks) // 2], tasks[-1]]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4), sharex=True)
    for ax, target in zip(axes, targets, strict=True):
        onto = epochs[(epochs["target"] == target)
                      & (epochs["source"] != target)]
        for source, part in onto.groupby("source", sort=False):
            ax.plot(part["epoch"] + 1, part["affinity"], marker="o",
                    markersize=3, label=source)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"affinity onto {target}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("epoch mean of Z(source → target) / lr")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def methods_figure(summary, path):
    plt = _pyplot()
    budgets = sorted(summary["budget"].unique())
    figure, axes = plt.subplots(1, len(budgets),
                                figsize=(4.5 * len(budgets), 4),
                                sharey=True, squeeze=False)
    for ax, budget in zip(axes[0], budgets, strict=True):
        part = summary[summary["budget"] == budget].set_index("method")
        names = [m for m in report.SUMMARY_METHODS if m in part.index]
        y = np.arange(len(names))
        ax.errorbar(part.loc[names, "test_error"], y,
                    xerr=part.loc[names, "test_error_se"].fillna(0.0),
                    fmt="o", capsize=3)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_title(f"budget {budget}")
        ax.set_xlabel("total test error (%)")
        ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def frequency_figure(ablation, summary, path):
    plt = _pyplot()
    budgets = sorted(ablation["budget"].unique())
    means = ablation.groupby(["budget", "variant"], sort=False)[
        ["seconds", "test_error"]].mean().reset_index()
    figure, axes = plt.subplots(1, len(budgets),
                                figsize=(5 * len(budgets), 4),
                                squeeze=False)
    for ax, budget in zip(axes[0], budgets, strict=True):
        part = means[means["budget"] == budget]
        ax.scatter(part["seconds"], part["test_error"])
        for _, row in part.iterrows():
            ax.annotate(row["variant"].replace(" (every ", "\n(every "),
                        (row["seconds"], row["test_error"]), fontsize=6)
        reference = summary[summary["budget"] == budget].set_index("method")
        for method, style in (("Optimal", "g--"), ("RG", "r:"),
                              ("MTL", "k-.")):
            if method in reference.index:
                ax.axhline(reference.loc[method, "test_error"],
                           color=style[0], linestyle=style[1:],
                           label=method)
        ax.set_title(f"budget {budget}")
        ax.set_xlabel("seconds of the measuring run (mean over seeds)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("total test error of the chosen groups (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write_figures(task_sets, done, out_dir, *, summary, ablation, partners,
                  tag_every):
    """Writes every figure; returns `{dataset: [file names]}`."""
    del partners  # The table says it better than a figure.
    written = {}
    for task_set in task_sets:
        seeds_done = done.get(task_set.name, {})
        if not seeds_done:
            continue
        name, tasks = task_set.name, task_set.tasks
        files = [f"{name}_affinity.png", f"{name}_methods.png",
                 f"{name}_frequency.png"]
        affinity_figure(tasks, seeds_done, os.path.join(out_dir, files[0]),
                        tag_every)
        methods_figure(summary[summary["dataset"] == name],
                       os.path.join(out_dir, files[1]))
        frequency_figure(ablation[ablation["dataset"] == name],
                         summary[summary["dataset"] == name],
                         os.path.join(out_dir, files[2]))
        seed = min(seeds_done)
        path = report.every_step_file(out_dir, name, seed,
                                      "affinity_epochs.csv")
        if os.path.exists(path):
            files.insert(1, f"{name}_affinity_epochs.png")
            epochs_figure(tasks, pd.read_csv(path),
                          os.path.join(out_dir, files[1]))
        written[name] = files
    return written
