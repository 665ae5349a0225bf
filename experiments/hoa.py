"""HOA (Standley et al.): train every single task and pair, then select.

Trains one network per task and per pair of tasks (n + n(n-1)/2 networks,
each the size of the all-task model, protocol of `experiments.training`),
writes each task's measured performance in each network as
`performance.csv` (`group,task,value`, group = task names joined by `|`,
value = validation loss by default, lower is better), and selects groups for
each budget with `tag_keras.select_groups_from_performance` (higher-order
groups approximated by averaging pairs).

    python -m experiments.hoa --dataset=digits --out_dir=runs/hoa
    python -m experiments.train_groups --dataset=digits \\
        --groups=runs/hoa/groups.json --method=HOA --out_dir=runs/hoa_groups

Writes in `--out_dir`: `performance.csv`, `groups.json` (the format of
`tag-select --output`) and `hoa.json` (training and selection seconds).
`--distribution` trains every network under a `tf.distribute` strategy
(the batch size is global; with several workers only the chief writes).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments import distribution as distribution_lib  # noqa: E402
from experiments import training  # noqa: E402

HOA_VALUES = ("validation_loss", "test_error")

_COMMON = common_flags.define_common_flags()
_HOA_VALUE = flags.DEFINE_enum(
    "hoa_value", "validation_loss", HOA_VALUES,
    "The performance HOA minimises: each task's validation loss (as "
    "HOA) or its test error.")


def measure_performance(trainer, *, value="validation_loss"):
    """Trains every single task and pair; returns `(DataFrame, seconds)`.

    Args:
        trainer: A `training.GroupTrainer`; groups it already holds (e.g.
            the single tasks of the STL baseline) are not trained again.
        value: "validation_loss" or "test_error".

    Returns:
        The `group,task,value` table and the total training seconds of its
        networks (cached ones included, as HOA would have trained them).
    """
    if value not in HOA_VALUES:
        raise ValueError(f"`value` must be one of {list(HOA_VALUES)}. "
                         f"Received: value={value!r}")
    tasks = trainer.data.tasks
    groups = [(t,) for t in tasks] + training.pairs(tasks)
    trainer.train_all(groups)
    rows = []
    for group in groups:
        result = trainer.result(group)
        measured = (result.validation_loss if value == "validation_loss"
                    else result.test_error)
        rows += [{"group": "|".join(group), "task": t, "value": measured[t]}
                 for t in group]
    return pd.DataFrame(rows), trainer.seconds(groups)


def select(performance, budgets):
    """HOA selection per budget; returns `([Grouping], {budget: seconds})`."""
    import tag_keras

    groupings, seconds = [], {}
    for budget in budgets:
        start = time.perf_counter()
        groupings.append(tag_keras.select_groups_from_performance(
            performance, budget))
        seconds[budget] = time.perf_counter() - start
    return groupings, seconds


def groups_document(tasks, groupings, **settings):
    """The JSON document of `tag-select --output` for these groupings."""
    return {"tasks": list(tasks), **settings,
            "results": [g.to_dict() for g in groupings]}


def run(trainer, out_dir, budgets, *, value="validation_loss"):
    """Measures, selects and writes the files; returns the groups JSON.

    The document has an extra `search_seconds` entry: `{budget: training
    seconds of all singles and pairs + that budget's selection seconds}`.
    Under a multi-worker `trainer.distribution` only the chief writes.
    """
    performance, train_seconds = measure_performance(trainer, value=value)
    groupings, select_seconds = select(performance, budgets)
    document = groups_document(trainer.data.tasks, groupings,
                               mode="performance", value=value)
    search = {b: train_seconds + s for b, s in select_seconds.items()}
    with distribution_lib.output_dir(out_dir, trainer.distribution) as writable:
        os.makedirs(writable, exist_ok=True)
        performance.to_csv(os.path.join(writable, "performance.csv"),
                           index=False)
        with open(os.path.join(writable, "groups.json"), "w") as handle:
            json.dump(document, handle, indent=2)
        with open(os.path.join(writable, "hoa.json"), "w") as handle:
            json.dump({"train_seconds": train_seconds,
                       "select_seconds": select_seconds,
                       "networks": len(trainer.data.tasks) + len(
                           training.pairs(trainer.data.tasks))},
                      handle, indent=2)
    return {**document, "search_seconds": search}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        data = common_flags.data_from_flags(_COMMON)
        budgets = _COMMON.budget_list()
    except training.DataError as error:
        print(f"hoa: error: {error}", file=sys.stderr)
        return 1
    config = common_flags.config_from_flags(_COMMON)
    out_dir = _COMMON.out_dir_or("runs/hoa")
    n = len(data.tasks)
    print(f"{data.description}; {training.describe_config(config)}"
          f"{distribution_lib.describe_distribution(distribution)}")
    print(f"HOA: training {n} single-task and {n * (n - 1) // 2} pair "
          "networks ...")
    trainer = training.GroupTrainer(data, config, distribution=distribution)
    document = run(trainer, out_dir, budgets, value=_HOA_VALUE.value)
    for entry in document["results"]:
        print(f"Budget {entry['num_groups']}: "
              + " | ".join("+".join(g) for g in entry["groups"])
              + f" (mean {_HOA_VALUE.value} {entry['score']:.4f})")
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/performance.csv, groups.json, hoa.json")
    return 0


if __name__ == "__main__":
    app.run(main)
