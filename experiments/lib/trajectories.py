"""Optimisation trajectories of single- and multi-task networks.

The trajectory paper's setup (Mueller, Dredze and Andrews, TMLR 2024) on
a bundled dataset: for each target task, the single-task network (STL),
the all-task network (MTL), networks of the target with random auxiliary
task sets (AUX<k>), and the all-task network trained with PCGrad and with
GradNorm; each with `tag_keras.callbacks.TrajectoryLogger` on the
target tasks every epoch, for several seeds. Networks train for a fixed
number of epochs (no early stopping: a trajectory needs its whole path).

Writes in `out_dir`:

* `runs/seed<k>/<run>/trajectory.csv`, one per network (a rerun skips the
  networks whose trajectory is complete);
* `summaries.csv`: one row per run, target and seed with the paper's
  summaries (`tag_keras.diagnostics.summarize`) and the final test error;
* `gaps.csv`: `generalization_gap` of each multi-task run against STL per
  target and seed, and `windows.csv`, the early / end window means;
* `factors.csv`: each run's summary minus STL's (or, for PCGrad and
  GradNorm, minus MTL's), mean ± SE over seeds and whether it is beyond
  two standard errors;
* `correlations.csv`: Pearson r of the final gradient conflict with each
  factor's difference from STL and with the target's test error, over
  the multi-task runs;
* `curves.png` (test error against training loss) and `results.md`.
"""

import dataclasses
import os

import numpy as np
import pandas as pd

from experiments.lib import training

#: Summaries compared between runs (`tag_keras.diagnostics.summarize`).
FACTORS = ("generalization", "sharpness", "fisher", "coherence")


@dataclasses.dataclass(frozen=True)
class Run:
    """One network of the experiment.

    Attributes:
        name: `STL`, `MTL`, `AUX<k>`, `PCGrad` or `GradNorm`.
        tasks: The network's tasks.
        targets: The target tasks it is measured on.
        method: None, `"pcgrad"` or `"gradnorm"`.
        baseline: What its factors are compared with (`"STL"`, `"MTL"`).
    """

    name: str
    tasks: tuple
    targets: tuple
    method: str = None
    baseline: str = "STL"

    @property
    def label(self):
        """Directory name: the name, and the target for one-target runs."""
        if len(self.targets) == 1 and self.name != "MTL":
            return f"{self.name}_{self.targets[0]}"
        return self.name


def plan(tasks, targets, *, aux_sets=2, aux_size=3, seed=0):
    """The networks for one seed: STL, MTL, AUX sets, PCGrad, GradNorm.

    The auxiliary sets are drawn from the other tasks with `seed` (the same
    sets for every training seed, so that seeds average one design).
    """
    unknown = [t for t in targets if t not in tasks]
    if unknown or not targets:
        raise ValueError(f"`targets` must be tasks of the dataset {tasks}. "
                         f"Received: targets={list(targets)}.")
    if aux_size < 1 or aux_size > len(tasks) - 1:
        raise ValueError(f"`aux_size` must be between 1 and {len(tasks) - 1}"
                         f". Received: aux_size={aux_size}.")
    rng = np.random.default_rng(seed)
    runs = [Run("STL", (t,), (t,)) for t in targets]
    runs.append(Run("MTL", tuple(tasks), tuple(targets)))
    for target in targets:
        others = [t for t in tasks if t != target]
        for k in range(aux_sets):
            aux = rng.choice(others, size=aux_size, replace=False)
            runs.append(Run(f"AUX{k + 1}", (target, *sorted(aux)), (target,)))
    runs.append(Run("PCGrad", tuple(tasks), tuple(targets), "pcgrad", "MTL"))
    runs.append(Run("GradNorm", tuple(tasks), tuple(targets), "gradnorm",
                    "MTL"))
    return runs


def train_run(data, config, run, log_dir, *, max_samples=512,
              sharpness_steps=10):
    """Trains `run`'s network with a `TrajectoryLogger`; returns its error.

    Returns:
        `{target: final test error}`.
    """
    import tag_keras
    from tag_keras import mtl
    from tag_keras.callbacks import TrajectoryLogger

    group = data.select_tasks(run.tasks)
    logger = TrajectoryLogger(
        log_dir, group.batches("train", 256), group.batches("test", 512),
        tasks=run.targets,
        validation_data=group.batches("validation", 512),
        max_samples=max_samples, sharpness_steps=sharpness_steps,
        coherence_batch_size=16, tensorboard=False)
    kwargs = {}
    if run.method is not None:
        method = {"pcgrad": mtl.PCGrad, "gradnorm": mtl.GradNorm}[run.method]
        kwargs = {"model_cls": tag_keras.TaskAffinityModel,
                  "affinity_every_n_steps": 0, "training_method": method()}
    result, _ = training.train_network(data, config, tasks=run.tasks,
                                       callbacks=[logger], **kwargs)
    return {t: result.test_error[t] for t in run.targets}


def run(data, config, out_dir, *, targets, seeds=5, aux_sets=2, aux_size=3,
        max_samples=512, sharpness_steps=10, log=print):
    """Trains every network for every seed (resuming) and analyses them.

    `config.patience` is raised above `config.epochs`: no early stopping.

    Returns:
        The factors DataFrame.
    """
    config = dataclasses.replace(config, patience=config.epochs + 1)
    runs = plan(data.tasks, targets, aux_sets=aux_sets, aux_size=aux_size)
    rows = []
    for seed in range(seeds):
        for item in runs:
            log_dir = os.path.join(out_dir, "runs", f"seed{seed}", item.label)
            if not _complete(log_dir, config.epochs, item.targets):
                group = training.format_group(item.tasks)
                log(f"seed {seed}: {item.label} {group} ...")
                train_run(data, dataclasses.replace(config, seed=seed),
                          item, log_dir, max_samples=max_samples,
                          sharpness_steps=sharpness_steps)
            rows += _summaries(item, seed, log_dir)
    summaries = pd.DataFrame(rows)
    summaries.to_csv(os.path.join(out_dir, "summaries.csv"), index=False)
    gaps, windows = _gaps(out_dir, runs, seeds)
    gaps.to_csv(os.path.join(out_dir, "gaps.csv"), index=False)
    windows.to_csv(os.path.join(out_dir, "windows.csv"), index=False)
    factors = factor_differences(summaries)
    factors.to_csv(os.path.join(out_dir, "factors.csv"), index=False)
    correlations = conflict_correlations(summaries)
    correlations.to_csv(os.path.join(out_dir, "correlations.csv"),
                        index=False)
    write_curves(out_dir, runs, os.path.join(out_dir, "curves.png"))
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(markdown(factors, windows, correlations, seeds))
    return factors


def _complete(log_dir, epochs, targets):
    path = os.path.join(log_dir, "trajectory.csv")
    if not os.path.exists(path):
        return False
    frame = pd.read_csv(path)
    last = frame[frame["epoch"] == epochs - 1]
    return set(targets) <= set(last["task"])


def _summaries(item, seed, log_dir):
    from tag_keras import diagnostics
    from tag_keras.diagnostics import gap as gap_lib

    frame = diagnostics.read_trajectory(log_dir)
    rows = []
    for target in item.targets:
        summary = diagnostics.summarize(frame, target)
        final = gap_lib.series(frame, target, "error")
        conflict = (gap_lib.series(frame, target, "conflict")
                    if "conflict" in set(frame["measure"]) else None)
        rows.append({
            "run": item.name, "baseline": item.baseline, "target": target,
            "seed": seed, "tasks": "|".join(item.tasks),
            **{f: summary.get(f, np.nan) for f in FACTORS},
            "conflict": (np.nan if conflict is None
                         else float(conflict.iloc[-20:].mean())),
            "test_error": float(final.iloc[-1]),
        })
    return rows


def factor_differences(summaries):
    """Each run's factors minus its baseline's, mean ± SE over seeds."""
    rows = []
    keyed = summaries.set_index(["run", "target", "seed"])
    for (name, target), group in summaries.groupby(["run", "target"],
                                                   sort=False):
        baseline = group["baseline"].iloc[0]
        if name == baseline:
            continue
        for factor in (*FACTORS, "test_error"):
            deltas = []
            for seed, value in zip(group["seed"], group[factor]):
                key = (baseline, target, seed)
                if key in keyed.index:
                    deltas.append(value - keyed.loc[key, factor])
            deltas = np.asarray(deltas, dtype=np.float64)
            deltas = deltas[np.isfinite(deltas)]
            mean = deltas.mean() if len(deltas) else np.nan
            se = (deltas.std(ddof=1) / np.sqrt(len(deltas))
                  if len(deltas) > 1 else np.nan)
            rows.append({"run": name, "baseline": baseline, "target": target,
                         "factor": factor, "mean": mean, "se": se,
                         "seeds": len(deltas),
                         "significant": bool(abs(mean) > 2 * se)
                         if np.isfinite(se) else False})
    return pd.DataFrame(rows)


def conflict_correlations(summaries):
    """Pearson r of the final conflict with factor deltas and test error.

    Over the multi-task runs against STL (one point per run, target and
    seed); the deltas are against the same target's STL of the same seed.
    """
    stl = summaries[summaries["run"] == "STL"].set_index(["target", "seed"])
    multi = summaries[(summaries["run"] != "STL")
                      & np.isfinite(summaries["conflict"])]
    rows = []
    for quantity in (*FACTORS, "test_error"):
        x, y = [], []
        for _, row in multi.iterrows():
            key = (row["target"], row["seed"])
            if key not in stl.index:
                continue
            delta = row[quantity] - stl.loc[key, quantity]
            if np.isfinite(delta):
                x.append(row["conflict"])
                y.append(delta)
        name = f"{quantity} - STL"
        rows.append(_pearson("conflict", name, x, y))
        if quantity == "test_error":
            points = multi[np.isfinite(multi["test_error"])]
            rows.append(_pearson("conflict", "test_error",
                                 points["conflict"], points["test_error"]))
    return pd.DataFrame(rows)


def _pearson(x_name, y_name, x, y):
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"x": x_name, "y": y_name, "r": np.nan, "p": np.nan,
                "points": len(x)}
    r, p = stats.pearsonr(x, y)
    return {"x": x_name, "y": y_name, "r": float(r), "p": float(p),
            "points": len(x)}


def _gaps(out_dir, runs, seeds):
    from tag_keras import diagnostics

    gap_rows, window_rows = [], []
    stl = {r.targets[0]: r for r in runs if r.name == "STL"}
    for seed in range(seeds):
        base = os.path.join(out_dir, "runs", f"seed{seed}")
        for item in runs:
            if item.name == "STL":
                continue
            for target in item.targets:
                frame = diagnostics.generalization_gap(
                    os.path.join(base, item.label),
                    os.path.join(base, stl[target].label), target)
                for number, row in frame.iterrows():
                    gap_rows.append({"run": item.name, "target": target,
                                     "seed": seed, "bin": number,
                                     **row.to_dict()})
                for window in ("early", "end"):
                    values = frame.loc[frame["window"] == window, "gap"]
                    window_rows.append({
                        "run": item.name, "target": target, "seed": seed,
                        "window": window, "gap": float(values.mean())})
    return pd.DataFrame(gap_rows), pd.DataFrame(window_rows)


def write_curves(out_dir, runs, path):
    """Test error against training loss, per target (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from tag_keras import diagnostics
    from tag_keras.diagnostics import gap as gap_lib

    targets = [r.targets[0] for r in runs if r.name == "STL"]
    figure, axes = plt.subplots(1, len(targets), figsize=(
        4.5 * len(targets), 4), squeeze=False)
    base = os.path.join(out_dir, "runs", "seed0")
    for axis, target in zip(axes[0], targets):
        for item in runs:
            if target not in item.targets:
                continue
            frame = diagnostics.read_trajectory(os.path.join(base,
                                                             item.label))
            loss = gap_lib.series(frame, target, "loss")
            error = gap_lib.series(frame, target, "error")
            axis.plot(loss, error.reindex(loss.index), marker=".",
                      label=item.name, linewidth=1)
        axis.set_xscale("log")
        axis.invert_xaxis()
        axis.set_xlabel("training loss (log, decreasing)")
        axis.set_ylabel("test error")
        axis.set_title(target)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(factors, windows, correlations, seeds):
    """The tables of `results.md`."""
    lines = [f"Seeds: {seeds}. Differences are mean ± SE over seeds; * "
             "marks |mean| > 2 SE.", "",
             "## Generalization gap at matched training loss (run − STL, "
             "test error)", "",
             "| run | target | early (bins 2-5) | end |", "|---|---|---|---|"]
    for (name, target), group in windows.groupby(["run", "target"],
                                                 sort=False):
        cells = []
        for window in ("early", "end"):
            values = group.loc[group["window"] == window, "gap"].dropna()
            cells.append(_mean_se(values.to_numpy()))
        lines.append(f"| {name} | {target} | {cells[0]} | {cells[1]} |")
    lines += ["", "## Factors: run − baseline", "",
              "| run | baseline | target | " + " | ".join(
                  (*FACTORS, "test_error")) + " |",
              "|---|---|---|" + "---|" * (len(FACTORS) + 1)]
    for (name, target), group in factors.groupby(["run", "target"],
                                                 sort=False):
        cells = []
        for factor in (*FACTORS, "test_error"):
            row = group[group["factor"] == factor].iloc[0]
            star = "*" if row["significant"] else ""
            cells.append(f"{row['mean']:+.3g} ± {row['se']:.2g}{star}")
        lines.append(f"| {name} | {group['baseline'].iloc[0]} | {target} | "
                     + " | ".join(cells) + " |")
    lines += ["", "## Gradient conflict (final cosine to the uniform "
              "multi-task gradient) against …", "",
              "| y | Pearson r | p | points |", "|---|---|---|---|"]
    for _, row in correlations.iterrows():
        lines.append(f"| {row['y']} | {row['r']:+.2f} | {row['p']:.3f} | "
                     f"{row['points']} |")
    return "\n".join(lines) + "\n"


def _mean_se(values):
    values = np.asarray(values, float)
    if not len(values):
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:+.4f}"
    se = values.std(ddof=1) / np.sqrt(len(values))
    star = "*" if abs(values.mean()) > 2 * se else ""
    return f"{values.mean():+.4f} ± {se:.4f}{star}"
