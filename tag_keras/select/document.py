"""The groups document: the JSON every selector writes and trainers read.

    {"tasks": [...], <settings>, "results": [
        {"num_groups": 2, "groups": [["a", "b"], ...], "serve": {"a": 0, ...},
         "score": 0.123, "optimal": true, "upper_bound": 0.130, ...}, ...]}

`tag-select --output`, the pipeline, HOA and the demo write it with
`write_groups`; `experiments.train_groups` reads it with `read_groups`.
`validate_groups` checks a document already in memory. One module owns the
format, so that every writer and reader agree on it.
"""

from __future__ import annotations



import json
import os
from typing import Any, Sequence

from tag_keras import _errors
from tag_keras._compat import affinity_structure  # noqa: F401 (public here)
from tag_keras import _files

#: Keys every result entry carries.
REQUIRED_RESULT_KEYS = ("num_groups", "groups", "serve")


def groups_document(tasks: Sequence[str], groupings: Sequence, *,
                    stabilities: Sequence | None = None,
                    candidates: Sequence | None = None,
                    **settings: Any) -> dict:
    """The document for `Grouping`s (one per budget) and the settings used.

    Args:
        tasks: The task names, in matrix order.
        groupings: `Grouping` results, one per budget.
        stabilities: Optional `stability.Stability` per grouping: each
            result then carries `"affinity_structure"` ("stable" or
            "unclear") and a `"stability"` object.
        candidates: Optional list, per grouping, of the budget's best
            distinct groupings (`select_groups(top=m)`, best first): each
            result then carries `"candidates"`, a list of `{"groups",
            "serve", "score"}` that `tag-train` trains and judges.
        **settings: JSON-ready settings recorded next to the results (for
            example `mode="affinity"`, `normalize=False`).

    Returns:
        The document as a dict, already validated.
    """
    results = [g.to_dict() for g in groupings]
    for result, stability in zip(results, stabilities or ()):
        result.update(affinity_structure=stability.affinity_structure,
                      stability=stability.to_dict())
    for result, options in zip(results, candidates or ()):
        result["candidates"] = [
            {"groups": [list(g) for g in o.groups], "serve": dict(o.serve),
             "score": o.score} for o in options]
    document = {"tasks": list(tasks), **settings, "results": results}
    return validate_groups(document)


def write_groups(path: str | os.PathLike, document: dict) -> None:
    """Validates `document` and writes it as indented JSON to `path`.

    The parent directory is created if missing; the file is replaced
    atomically, so a reader never sees half a document.
    """
    validate_groups(document, source=os.fspath(path))
    try:
        text = json.dumps(document, indent=2, allow_nan=False)
    except ValueError:
        raise _errors.InputError(
            f"The groups document for {path} holds a non-finite number (a "
            "score overflowed: affinities near the float limit?); rescale "
            "the matrix. Nothing was written.") from None
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    _files.replace_atomically(path, text)


def read_groups(path: str | os.PathLike,
                tasks: Sequence[str] | None = None) -> dict:
    """Reads and validates a groups document; returns it as a dict.

    With `tasks`, every one of them must be served by every budget
    (`validate_groups`).

    Raises:
        InputError: The file is missing, not JSON, or not a valid
            document (the message names the file and what is wrong).
    """
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise _errors.InputError(
            f"Cannot read the groups JSON {path}: "
            f"{' '.join(str(error).split())}") from None
    return validate_groups(document, source=os.fspath(path), tasks=tasks)


def validate_groups(document: dict, source: str = "the groups document",
                    tasks: Sequence[str] | None = None) -> dict:
    """Returns `document` if it is a valid groups document, else raises.

    Checks: `tasks`, when given in the document, is a list of distinct
    task names (strings); a non-empty `results` list; each entry has an
    integer `num_groups` >= 1, `groups` (non-empty lists of distinct task
    names) and `serve` (an object: task -> index of a group that holds
    it); every task a group names, and every task of `tasks`, is served;
    the same for each entry's `candidates` (`tag-select --top`), when
    present. With the argument `tasks` (the tasks a trainer will serve),
    every one of them must be served by every entry too.

    Raises:
        InputError: Naming `source` and the first problem found.
    """
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list) or not results:
        raise _errors.InputError(
            f"{source} has no `results` list (expected the JSON of "
            "tag-select --output).")
    listed = document.get("tasks")
    if listed is not None and (
            not isinstance(listed, list)
            or not all(isinstance(t, str) for t in listed)
            or len(set(listed)) != len(listed)):
        raise _errors.InputError(
            f"In {source}, `tasks` must be a list of distinct task names. "
            f"Received: tasks={listed!r}")
    required = list(listed or []) + [t for t in tasks or ()
                                     if t not in (listed or [])]
    for entry in results:
        if not isinstance(entry, dict):
            raise _errors.InputError(
                f"Each result in {source} must be an object. Received: "
                f"{entry!r}")
        missing = sorted(set(REQUIRED_RESULT_KEYS) - set(entry))
        if missing:
            raise _errors.InputError(
                f"A result in {source} lacks {missing}. Received: "
                f"{sorted(entry)}")
        budget = entry["num_groups"]
        if isinstance(budget, bool) or not isinstance(budget, int) or (
                budget < 1):
            raise _errors.InputError(
                f"In {source}, `num_groups` must be an integer >= 1. "
                f"Received: num_groups={budget!r}")
        _check_entry(entry, budget, required, source)
        candidates = entry.get("candidates")
        if candidates is not None:
            if not isinstance(candidates, list) or not candidates:
                raise _errors.InputError(
                    f"In {source}, budget {budget}: `candidates` must be a "
                    f"non-empty list. Received: candidates={candidates!r}")
            for candidate in candidates:
                if not isinstance(candidate, dict) or not {
                        "groups", "serve"} <= set(candidate):
                    raise _errors.InputError(
                        f"In {source}, budget {budget}: each candidate "
                        "needs `groups` and `serve`. Received: "
                        f"{candidate!r}")
                _check_entry(candidate, budget,
                             required + list(entry["serve"]), source)
    return document


def candidates_by_budget(document: dict, budgets=None) -> dict:
    """`{budget: [(groups, serve), ...]}` of a validated document: each
    budget's entries and their `candidates` (from `--top`), in order,
    each distinct grouping once; a budget given twice keeps both.

    Args:
        document: A validated groups document.
        budgets: The budgets wanted (None: every budget in it).

    Raises:
        ValueError: A wanted budget is not in the document.
    """
    entries = {}
    for entry in document["results"]:
        entries.setdefault(entry["num_groups"], []).append(entry)
    wanted = sorted(entries) if budgets is None else sorted(set(budgets))
    absent = [b for b in wanted if b not in entries]
    if absent:
        raise ValueError(f"Budgets {absent} are not in the document; it has "
                         f"{sorted(entries)}")
    candidates = {}
    for budget in wanted:
        unique = {}
        for entry in entries[budget]:
            for option in entry.get("candidates") or [entry]:
                grouping = (tuple(tuple(g) for g in option["groups"]),
                            dict(option["serve"]))
                unique.setdefault(repr(grouping), grouping)
        candidates[budget] = list(unique.values())
    return candidates


def _check_entry(entry, budget, required, source):
    groups = entry["groups"]
    if not isinstance(groups, list) or not groups or not all(
            isinstance(g, list) and g and all(isinstance(t, str) for t in g)
            for g in groups):
        raise _errors.InputError(
            f"In {source}, budget {budget}: `groups` must be a list of "
            f"non-empty lists of task names. Received: groups={groups!r}")
    for group in groups:
        if len(set(group)) != len(group):
            raise _errors.InputError(
                f"In {source}, budget {budget}: a group repeats a task. "
                f"Received: group={group!r}")
    serve = entry["serve"]
    if not isinstance(serve, dict):
        raise _errors.InputError(
            f"In {source}, budget {budget}: `serve` must be an object of "
            f"task -> group index. Received: serve={serve!r}")
    for task, index in serve.items():
        if isinstance(index, bool) or not isinstance(index, int) or not (
                0 <= index < len(groups)) or task not in groups[index]:
            raise _errors.InputError(
                f"In {source}, budget {budget}: task {task!r} is served by "
                f"group {index!r}, which does not hold it.")
    named = [t for g in groups for t in g]
    unserved = [t for t in dict.fromkeys(required + named) if t not in serve]
    if unserved:
        raise _errors.InputError(
            f"In {source}, budget {budget}: tasks {unserved} are not "
            "served by any group.")
