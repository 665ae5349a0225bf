"""HOA (Standley et al.): train every single task and pair, then select.

Trains one network per task and per pair of tasks (n + n(n-1)/2 networks,
each the size of the all-task model, protocol of `training`), writes each
task's measured performance in each network as `performance.csv`
(`group,task,value`, group = task names joined by `|`, value = validation
loss by default, lower is better), and selects groups for each budget with
`tag_keras.select_groups_from_performance` (higher-order groups
approximated by averaging pairs).

Writes in `out_dir`: `performance.csv`, `groups.json` (the groups document
of `tag_keras.select.document`) and `hoa.json` (training and selection
seconds).
"""

import json
import os

import pandas as pd

from experiments.lib import distribution as distribution_lib
from experiments.lib import training
from tag_keras import select as select_lib
from tag_keras.select import choose

HOA_VALUES = ("validation_loss", "test_error")

def measure_performance(engine, *, seed=None, value="validation_loss"):
    """Trains every single task and pair; returns `(DataFrame, seconds)`.

    Args:
        engine: A `tag_keras.train.GroupTrainer`
            (`training.seeded_trainer`); networks it already holds (e.g.
            the single tasks of the STL baseline) are not trained again.
        seed: The training seed of HOA's networks (default: the engine's
            first).
        value: "validation_loss" or "test_error" (each task's mean over
            the split's examples).

    Returns:
        The `group,task,value` table and the total training seconds of its
        networks (cached ones included, as HOA would have trained them).
    """
    if value not in HOA_VALUES:
        raise ValueError(f"`value` must be one of {list(HOA_VALUES)}. "
                         f"Received: value={value!r}")
    seed = engine.seeds[0] if seed is None else seed
    tasks = engine.tasks
    groups = [(t,) for t in tasks] + training.pairs(tasks)
    engine.train(groups, seeds=[seed])
    split, metric = (("validation", "loss") if value == "validation_loss"
                     else ("test", "error"))
    rows = [{"group": "|".join(group), "task": t,
             "value": engine.network(group, seed).mean(split, t, metric)}
            for group in groups for t in group]
    return pd.DataFrame(rows), training.training_seconds(engine, groups, seed)


def run(engine, out_dir, budgets, *, seed=None, value="validation_loss"):
    """Measures, selects and writes the files; returns the groups JSON.

    The document has an extra `search_seconds` entry: `{budget: training
    seconds of all singles and pairs + that budget's selection seconds}`.
    Under a multi-worker `engine.distribution` only the chief writes.
    """
    performance, train_seconds = measure_performance(engine, seed=seed,
                                                     value=value)

    def summary(select_seconds):
        return {"hoa.json": {
            "train_seconds": train_seconds, "select_seconds": select_seconds,
            "networks": len(engine.tasks) + len(
                training.pairs(engine.tasks))}}

    document, select_seconds = select_and_write(
        engine.distribution, performance, budgets, out_dir, value=value,
        extra=summary)
    search = {b: train_seconds + s for b, s in select_seconds.items()}
    return {**document, "search_seconds": search}


def select_and_write(distribution, performance, budgets, out_dir, *, value,
                     extra=None):
    """Selects from `performance` per budget and writes the files.

    Writes `performance.csv`, `groups.json` and, with `extra` (a function
    of the selection seconds giving `{file name: JSON-ready dict}`), more
    JSON files in `out_dir`, on the chief only under a multi-worker
    `distribution` (the strategy the networks trained under, or None).

    Returns:
        `(groups document, {budget: selection seconds})`.
    """
    selection = choose.choose_groups(performance, budgets,
                                     mode="performance",
                                     record={"value": value})
    document, select_seconds = selection.document, selection.seconds
    with distribution_lib.output_dir(out_dir, distribution) as writable:
        os.makedirs(writable, exist_ok=True)
        performance.to_csv(os.path.join(writable, "performance.csv"),
                           index=False)
        select_lib.write_groups(os.path.join(writable, "groups.json"),
                                document)
        for name, content in (extra(select_seconds) if extra else {}).items():
            with open(os.path.join(writable, name), "w") as handle:
                json.dump(content, handle, indent=2)
    return document, select_seconds
