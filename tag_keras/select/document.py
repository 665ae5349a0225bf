"""The groups document: the JSON every selector writes and trainers read.

    {"tasks": [...], <settings>, "results": [
        {"num_groups": 2, "groups": [["a", "b"], ...], "serve": {"a": 0, ...},
         "score": 0.123, "optimal": true, "upper_bound": 0.130, ...}, ...]}

`tag-select --output`, the pipeline, HOA and the demo write it with
`write_groups`; `experiments.train_groups` reads it with `read_groups`.
`validate_groups` checks a document already in memory. One module owns the
format, so that every writer and reader agree on it.
"""

import json
import os

from tag_keras import _files

#: Keys every result entry carries.
REQUIRED_RESULT_KEYS = ("num_groups", "groups", "serve")


class GroupsDocumentError(ValueError):
    """A groups document is unusable; the message is one line."""


def groups_document(tasks, groupings, *, stabilities=None, **settings):
    """The document for `Grouping`s (one per budget) and the settings used.

    Args:
        tasks: The task names, in matrix order.
        groupings: `Grouping` results, one per budget.
        stabilities: Optional `stability.Stability` per grouping: each
            result then carries `"verdict"` and a `"stability"` object.
        **settings: JSON-ready settings recorded next to the results (for
            example `mode="affinity"`, `normalize=False`).

    Returns:
        The document as a dict, already validated.
    """
    results = [g.to_dict() for g in groupings]
    for result, stability in zip(results, stabilities or ()):
        result.update(verdict=stability.verdict,
                      stability=stability.to_dict())
    document = {"tasks": list(tasks), **settings, "results": results}
    return validate_groups(document)


def write_groups(path, document):
    """Validates `document` and writes it as indented JSON to `path`.

    The parent directory is created if missing; the file is replaced
    atomically, so a reader never sees half a document.
    """
    validate_groups(document, source=os.fspath(path))
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    _files.replace_atomically(path, json.dumps(document, indent=2))


def read_groups(path):
    """Reads and validates a groups document; returns it as a dict.

    Raises:
        GroupsDocumentError: The file is missing, not JSON, or not a valid
            document (the message names the file and what is wrong).
    """
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise GroupsDocumentError(
            f"Cannot read the groups JSON {path}: "
            f"{' '.join(str(error).split())}") from None
    return validate_groups(document, source=os.fspath(path))


def validate_groups(document, source="the groups document"):
    """Returns `document` if it is a valid groups document, else raises.

    Checks: a non-empty `results` list; each entry has `num_groups`,
    `groups` (lists of task names) and `serve` (task -> index of a group
    that holds the task); every task in `tasks`, when given, is served.

    Raises:
        GroupsDocumentError: Naming `source` and the first problem found.
    """
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list) or not results:
        raise GroupsDocumentError(
            f"{source} has no `results` list (expected the JSON of "
            "tag-select --output).")
    tasks = document.get("tasks")
    for entry in results:
        if not isinstance(entry, dict):
            raise GroupsDocumentError(
                f"Each result in {source} must be an object. Received: "
                f"{entry!r}")
        missing = sorted(set(REQUIRED_RESULT_KEYS) - set(entry))
        if missing:
            raise GroupsDocumentError(
                f"A result in {source} lacks {missing}. Received: "
                f"{sorted(entry)}")
        _check_entry(entry, tasks, source)
    return document


def _check_entry(entry, tasks, source):
    budget = entry["num_groups"]
    groups = entry["groups"]
    if not isinstance(groups, list) or not all(
            isinstance(g, list) and g and all(isinstance(t, str) for t in g)
            for g in groups):
        raise GroupsDocumentError(
            f"In {source}, budget {budget}: `groups` must be a list of "
            f"non-empty lists of task names. Received: groups={groups!r}")
    for task, index in entry["serve"].items():
        if not isinstance(index, int) or not 0 <= index < len(groups) or (
                task not in groups[index]):
            raise GroupsDocumentError(
                f"In {source}, budget {budget}: task {task!r} is served by "
                f"group {index}, which does not hold it.")
    if tasks is not None:
        unserved = [t for t in tasks if t not in entry["serve"]]
        if unserved:
            raise GroupsDocumentError(
                f"In {source}, budget {budget}: tasks {unserved} are not "
                "served by any group.")
