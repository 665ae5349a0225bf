"""Training the groups a selector chose, and their served test errors.

For every budget of a groups document (`tag_keras.select.document`: the
JSON of `tag-select --output`, of HOA or of the pipeline), trains one
network per chosen group (each the size of the all-task model; a group
chosen for several budgets is trained once) with the protocol of
`training`, and evaluates every task on the test split with the network
of the group that serves it.
"""

from experiments.lib import results as results_lib
from experiments.lib import training
from tag_keras import InputError
from tag_keras.select import validate_groups


def check_groups(document, tasks, budgets=None):
    """Raises `InputError` unless `document` fits these tasks.

    Args:
        document: A `tag_keras.select.GroupsDocument`.
        tasks: The dataset's tasks.
        budgets: Budgets that must be in the document (None: any).
    """
    try:
        kept = document.results_for(budgets)
    except ValueError as error:
        raise InputError(str(error).replace("the document",
                                            "the groups JSON")) from None
    unknown = sorted({t for r in document.results for g in r.chosen.groups
                      for t in g} - set(tasks))
    if unknown:
        raise InputError(
            f"The groups name tasks the dataset lacks: {unknown}. Received: "
            f"dataset tasks={list(tasks)}")
    # Every task trained for must be served by every budget kept, whatever
    # the document's own `tasks` list says (or lacks).
    validate_groups({**document.document,
                     "results": [r.entry for r in kept]}, tasks=list(tasks))


def train_groups(engine, document, *, budgets=None, method="TAG",
                 search_seconds=None, seed=None, log=print):
    """Trains the groups of every budget and evaluates the served tasks.

    Args:
        engine: A `tag_keras.train.GroupTrainer`
            (`training.seeded_trainer`; it may already hold some groups:
            they are not trained again).
        document: A `tag_keras.select.GroupsDocument`
            (`tag_keras.select.read_document`).
        budgets: Budgets to keep (default: all in `document`).
        method: Method name for the table rows.
        search_seconds: Optional `{budget: seconds}` spent finding groups.
        seed: The training seed (default: the engine's first).
        log: Progress output.

    Returns:
        A list of `results.MethodResult`, one per budget.
    """
    check_groups(document, engine.tasks, budgets)
    seed = engine.seeds[0] if seed is None else seed
    kept = document.results_for(budgets)
    log(f"{method}: training the groups of budgets "
        f"{[r.num_groups for r in kept]} ...")
    engine.train([g for r in kept for g in r.chosen.groups], seeds=[seed])
    return [results_lib.MethodResult(
        method=method, num_groups=r.num_groups,
        errors=training.served_errors(engine, *r.chosen, seed=seed),
        groups=r.chosen.groups,
        search_seconds=(search_seconds or {}).get(r.num_groups),
        affinity_structure=r.affinity_structure) for r in kept]
