"""Training the groups a selector chose, and their served test errors.

For every budget of a groups document (`tag_keras.select.document`: the
JSON of `tag-select --output`, of HOA or of the pipeline), trains one
network per chosen group (each the size of the all-task model; a group
chosen for several budgets is trained once) with the protocol of
`training`, and evaluates every task on the test split with the network
of the group that serves it.
"""

from experiments.lib import results as results_lib
from tag_keras import InputError
from tag_keras.select import document as document_lib
from tag_keras.select import validate_groups


def check_groups(document, tasks, budgets=None):
    """Raises `InputError` unless `document` fits these tasks.

    Args:
        document: A validated groups document.
        tasks: The dataset's tasks.
        budgets: Budgets that must be in the document (None: any).
    """
    if budgets is not None:
        have = [e["num_groups"] for e in document["results"]]
        absent = sorted(set(budgets) - set(have))
        if absent:
            raise InputError(
                f"Budgets {absent} are not in the groups JSON; it has "
                f"{have}.")
    unknown = sorted({t for e in document["results"] for g in e["groups"]
                      for t in g} - set(tasks))
    if unknown:
        raise InputError(
            f"The groups name tasks the dataset lacks: {unknown}. Received: "
            f"dataset tasks={list(tasks)}")
    # Every task trained for must be served by every budget kept, whatever
    # the document's own `tasks` list says (or lacks).
    kept = [e for e in document["results"]
            if budgets is None or e["num_groups"] in budgets]
    validate_groups({**document, "results": kept}, tasks=list(tasks))


def train_groups(trainer, document, *, budgets=None, method="TAG",
                 search_seconds=None, log=print):
    """Trains the groups of every budget and evaluates the served tasks.

    Args:
        trainer: A `training.GroupTrainer` (it may already hold some
            groups; they are not trained again).
        document: A groups document (`tag_keras.select.read_groups`).
        budgets: Budgets to keep (default: all in `document`).
        method: Method name for the table rows.
        search_seconds: Optional `{budget: seconds}` spent finding groups.
        log: Progress output.

    Returns:
        A list of `results.MethodResult`, one per budget.
    """
    entries = [e for e in document["results"]
               if budgets is None or e["num_groups"] in budgets]
    check_groups(document, trainer.data.tasks, budgets)
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
            search_seconds=(search_seconds or {}).get(budget),
            affinity_structure=document_lib.affinity_structure(entry)))
    return results
