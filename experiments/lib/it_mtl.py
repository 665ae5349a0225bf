"""IT-MTL against the multi-task baselines on MultiDigits (two tasks).

The transference paper's MultiMNIST comparison on the bundled digits:
single-task models, MTL, PCGrad, UW-MTL, UW-PCGrad, IT-MTL, IT-UW-PCGrad,
IT-MTL's first-order variant, IT-UW-MTL, first-order IT-UW-PCGrad, MGDA
and MGDA-UB, each trained with the protocol of
`training` (SGD with momentum, LR halving, early stopping with
best-weights restore) for `seeds` seeds (10 in the paper), reporting the
mean ± standard error of each task's test accuracy and the median wall
time of one training step.

Writes in `out_dir`: `runs.csv` (one row per method and seed; rerunning
skips the rows already there), `summary.csv` and `results.md` (the table),
and `candidates/<method>_seed<k>.csv` (which IT-MTL candidate won, per
epoch).
"""

import dataclasses
import os

import numpy as np
import pandas as pd

from experiments.lib import timing
from experiments.lib import training


@dataclasses.dataclass(frozen=True)
class Method:
    """How one compared method trains.

    Attributes:
        name: Row label, as in the paper's table.
        training_method: `tasks -> tag_keras.mtl method` (None: plain
            Keras).
        single_task: One network per task.
    """

    name: str
    training_method: object = None
    single_task: bool = False


def _methods():
    from tag_keras import mtl

    def it_candidates(tasks):
        # The paper's two-task set: each task alone and both together.
        return [(t,) for t in tasks] + ["all"]

    return {m.name: m for m in [
        Method("STL", single_task=True),
        Method("MTL"),
        Method("PCGrad", lambda tasks: mtl.PCGrad()),
        Method("UW-MTL", lambda tasks: mtl.UncertaintyWeights()),
        Method("UW-PCGrad",
               lambda tasks: mtl.PCGrad(mtl.UncertaintyWeights())),
        Method("IT-MTL", lambda tasks: mtl.ITMTL(it_candidates(tasks))),
        Method("IT-UW-PCGrad", lambda tasks: mtl.ITMTL(
            ["all", "pcgrad"], loss_weighting=mtl.UncertaintyWeights())),
        Method("IT-MTL (first order)", lambda tasks: mtl.ITMTL(
            it_candidates(tasks), affinity_method="first_order")),
        Method("IT-UW-MTL", lambda tasks: mtl.ITMTL(
            it_candidates(tasks), loss_weighting=mtl.UncertaintyWeights())),
        Method("IT-UW-PCGrad (first order)", lambda tasks: mtl.ITMTL(
            ["all", "pcgrad"], affinity_method="first_order",
            loss_weighting=mtl.UncertaintyWeights())),
        Method("MGDA", lambda tasks: mtl.MGDA()),
        Method("MGDA-UB", lambda tasks: mtl.MGDA(upper_bound=True)),
    ]}


METHOD_NAMES = (
    "STL", "MTL", "PCGrad", "UW-MTL", "UW-PCGrad", "IT-MTL", "IT-UW-PCGrad",
    "IT-MTL (first order)", "IT-UW-MTL", "IT-UW-PCGrad (first order)",
    "MGDA", "MGDA-UB",
)

def train_method(data, config, method, out_dir):
    """Trains `method` once; returns one result row (a dict)."""
    import tag_keras
    from tag_keras import mtl

    row = {"method": method.name, "seed": config.seed}
    if method.single_task:
        timings, epochs = [], 0
        for task in data.tasks:
            timer = timing.StepTimer()
            result, _ = training.train_network(data, config, tasks=(task,),
                                               callbacks=[timer])
            row[f"{task}_accuracy"] = 100 * (1 - result.test_error[task])
            timings.append(timer.median_ms())
            epochs += result.epochs
        # One step of each task's network: the cost of a step of STL.
        row["ms_per_step"] = float(sum(timings))
        row["epochs"] = epochs / len(data.tasks)
        return row
    timer = timing.StepTimer()
    callbacks = [timer]
    kwargs = {}
    if method.training_method is not None:
        training_method = method.training_method(data.tasks)
        kwargs = {"model_cls": tag_keras.TaskAffinityModel,
                  "affinity_every_n_steps": 0,
                  "training_method": training_method}
        if isinstance(training_method, mtl.ITMTL):
            from tag_keras.callbacks import CandidateLogger

            callbacks.append(CandidateLogger(
                _candidates_path(out_dir, method.name, config.seed)))
    result, _ = training.train_network(data, config, callbacks=callbacks,
                                       **kwargs)
    for task in data.tasks:
        row[f"{task}_accuracy"] = 100 * (1 - result.test_error[task])
    row["ms_per_step"] = timer.median_ms()
    row["epochs"] = result.epochs
    return row


def _candidates_path(out_dir, name, seed):
    name = name.replace(" ", "_").replace("(", "").replace(")", "")
    return os.path.join(out_dir, "candidates", f"{name}_seed{seed}.csv")


def candidate_wins(out_dir, methods, seeds):
    """Steps each IT-MTL candidate won, summed over seeds and epochs.

    Returns:
        `{method: {candidate: steps}}` for the methods that logged choices.
    """
    wins = {}
    for name in methods:
        total = None
        for seed in range(seeds):
            path = _candidates_path(out_dir, name, seed)
            if not os.path.exists(path):
                continue
            counts = pd.read_csv(path).drop(columns=["epoch", "steps"]).sum()
            total = counts if total is None else total.add(counts,
                                                           fill_value=0)
        if total is not None:
            wins[name] = {k: int(v) for k, v in total.items()}
    return wins


def summarize(runs, tasks, order=METHOD_NAMES):
    """Mean ± standard error per method: a DataFrame indexed by method."""
    rows = []
    for name in [m for m in order if m in set(runs["method"])]:
        group = runs[runs["method"] == name]
        row = {"method": name, "runs": len(group)}
        for task in tasks:
            values = group[f"{task}_accuracy"].to_numpy(float)
            row[f"{task}_mean"] = values.mean()
            row[f"{task}_se"] = (values.std(ddof=1) / np.sqrt(len(values))
                                 if len(values) > 1 else float("nan"))
        row["ms_per_step"] = float(group["ms_per_step"].median())
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def markdown(summary, tasks):
    """The paper-shaped table: accuracy (%) mean ± SE, time per step."""
    header = ["Method", *[f"{t.capitalize()} accuracy (%)" for t in tasks],
              "ms / step", "runs"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for name, row in summary.iterrows():
        cells = [name]
        for task in tasks:
            se = row[f"{task}_se"]
            se = "" if np.isnan(se) else f" ± {se:.2f}"
            cells.append(f"{row[f'{task}_mean']:.2f}{se}")
        cells += [f"{row['ms_per_step']:.1f}", str(int(row["runs"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(data, config, out_dir, *, seeds=3, methods=METHOD_NAMES, log=print):
    """Trains every method for every seed (resuming); writes the tables.

    Returns:
        The summary DataFrame.
    """
    if len(data.tasks) < 2:
        raise ValueError("IT-MTL compares multi-task methods: give two or "
                         f"more tasks. Received: tasks={list(data.tasks)}.")
    registry = _methods()
    unknown = [m for m in methods if m not in registry]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}. Choose from "
                         f"{list(METHOD_NAMES)}.")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "runs.csv")
    runs = pd.read_csv(path) if os.path.exists(path) else pd.DataFrame(
        columns=["method", "seed"])
    done = set(zip(runs["method"], runs["seed"].astype(int)))
    for seed in range(seeds):
        for name in methods:
            if (name, seed) in done:
                continue
            log(f"{name}, seed {seed} ...")
            row = train_method(data, dataclasses.replace(config, seed=seed),
                               registry[name], out_dir)
            runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
            runs.to_csv(path, index=False)
            accuracies = ", ".join(f"{t} {row[f'{t}_accuracy']:.2f}%"
                                   for t in data.tasks)
            log(f"  {accuracies}; {row['ms_per_step']:.1f} ms/step")
    selected = runs[runs["method"].isin(methods)
                    & (runs["seed"].astype(int) < seeds)]
    summary = summarize(selected, data.tasks)
    summary.to_csv(os.path.join(out_dir, "summary.csv"))
    table = markdown(summary, data.tasks)
    wins = candidate_wins(out_dir, methods, seeds)
    if wins:
        table += "\nSteps each candidate won (all seeds):\n\n" + "".join(
            f"- {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
            + "\n" for name, counts in wins.items())
    with open(os.path.join(out_dir, "results.md"), "w") as handle:
        handle.write(f"# IT-MTL on {data.description}\n\n"
                     f"{training.describe_config(config)}; seeds "
                     f"0..{seeds - 1}; test accuracy, mean ± standard "
                     "error over seeds.\n\n" + table)
    return summary
