"""Trains the task groups a selector chose and reports their test error.

Reads the JSON of `tag-select` (or of `experiments.hoa` / the pipeline):
`{"tasks": [...], "results": [{"num_groups": k, "groups": [[...], ...],
"serve": {task: group index}, ...}, ...]}`. For every budget, trains one
network per chosen group (each the size of the all-task model; a group
chosen for several budgets is trained once), with the protocol of
`experiments.training`, and evaluates every task on the test split with
the network of the group that serves it.

    tag-select --affinity=runs/aff/affinity/affinity.csv --output=groups.json
    python -m experiments.train_groups --dataset=digits \\
        --groups=groups.json --out_dir=runs/groups

Writes in `--out_dir`: `results.csv` (method, num_groups, samples, groups,
one column per task with its test error in %, total, search_seconds) and
`results.md` (the same as a markdown table). `--distribution` trains every
network under a `tf.distribute` strategy (the batch size is global; with
several workers each reads `--groups` and only the chief writes).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments import distribution as distribution_lib  # noqa: E402
from experiments import results as results_lib  # noqa: E402
from experiments import training  # noqa: E402

_COMMON = common_flags.define_common_flags()
_GROUPS = flags.DEFINE_string(
    "groups", None, "The selector's JSON (tag-select --output=...); "
    "required.")
_METHOD = flags.DEFINE_string(
    "method", "TAG", "Name of the selection method in the table.")


class GroupsError(ValueError):
    """The groups JSON is unusable; the message is one line."""


def read_groups(path):
    """Reads and checks a selector JSON; returns the document."""
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise GroupsError(f"Cannot read the groups JSON {path}: "
                          f"{' '.join(str(error).split())}") from None
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list) or not results:
        raise GroupsError(f"{path} has no `results` list (expected the JSON "
                          "of tag-select --output).")
    for entry in results:
        missing = {"num_groups", "groups", "serve"} - set(entry)
        if missing:
            raise GroupsError(f"A result in {path} lacks {sorted(missing)}. "
                              f"Received: {sorted(entry)}")
        for task, index in entry["serve"].items():
            if not 0 <= index < len(entry["groups"]) or (
                    task not in entry["groups"][index]):
                raise GroupsError(
                    f"In {path}, budget {entry['num_groups']}: task {task!r} "
                    f"is served by group {index}, which does not hold it.")
    return document


def train_groups(trainer, document, *, budgets=None, method="TAG",
                 search_seconds=None, log=print):
    """Trains the groups of every budget and evaluates the served tasks.

    Args:
        trainer: A `training.GroupTrainer` (it may already hold some
            groups; they are not trained again).
        document: The selector JSON, as a dict.
        budgets: Budgets to keep (default: all in `document`).
        method: Method name for the table rows.
        search_seconds: Optional `{budget: seconds}` spent finding groups.
        log: Progress output.

    Returns:
        A list of `experiments.results.MethodResult`, one per budget.
    """
    entries = [e for e in document["results"]
               if budgets is None or e["num_groups"] in budgets]
    if budgets is not None:
        absent = sorted(set(budgets) - {e["num_groups"] for e in entries})
        if absent:
            have = [e["num_groups"] for e in document["results"]]
            raise GroupsError(f"Budgets {absent} are not in the groups JSON; "
                              f"it has {have}.")
    unknown = sorted({t for e in entries for g in e["groups"] for t in g}
                     - set(trainer.data.tasks))
    if unknown:
        raise GroupsError(f"The groups name tasks the dataset lacks: "
                          f"{unknown}. Received: dataset tasks="
                          f"{list(trainer.data.tasks)}")
    log(f"{method}: training the groups of budgets "
        f"{[e['num_groups'] for e in entries]} ...")
    trainer.train_all([tuple(g) for e in entries for g in e["groups"]])
    results = []
    for entry in entries:
        groups = tuple(tuple(g) for g in entry["groups"])
        budget = entry["num_groups"]
        results.append(results_lib.MethodResult(
            method=method, num_groups=budget,
            errors=trainer.served_errors(groups, entry["serve"]),
            groups=groups,
            search_seconds=(search_seconds or {}).get(budget)))
    return results


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not _GROUPS.value:
        raise app.UsageError("--groups is required (the selector's JSON).")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        document = read_groups(_GROUPS.value)
        budgets = _COMMON.budget_list(default=None)
        tasks = _COMMON.tasks.value or document.get("tasks")
        data = training.load_data(
            _COMMON.dataset.value, tasks=tasks,
            data_dir=_COMMON.data_dir.value, seed=_COMMON.seed.value,
            download=_COMMON.download.value)
        config = common_flags.config_from_flags(_COMMON)
        print(f"{data.description}; {training.describe_config(config)}"
              f"{distribution_lib.describe_distribution(distribution)}")
        trainer = training.GroupTrainer(data, config,
                                        distribution=distribution)
        results = train_groups(trainer, document, budgets=budgets,
                               method=_METHOD.value)
    except (training.DataError, GroupsError) as error:
        print(f"train_groups: error: {error}", file=sys.stderr)
        return 1
    out_dir = _COMMON.out_dir_or("runs/groups")
    with distribution_lib.output_dir(out_dir, distribution) as writable:
        os.makedirs(writable, exist_ok=True)
        frame = results_lib.write_results(
            results, data.tasks, writable,
            title=f"Test error (%) on {data.description}")
    print(results_lib.markdown_table(frame, data.tasks))
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/results.csv and {out_dir}/results.md")
    return 0


if __name__ == "__main__":
    app.run(main)
