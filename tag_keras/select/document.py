"""The groups document: the JSON every selector writes and trainers read.

    {"tasks": [...], <settings>, "results": [
        {"num_groups": 2, "groups": [["a", "b"], ...], "serve": {"a": 0, ...},
         "score": 0.123, "optimal": true, "upper_bound": 0.130, ...}, ...]}

`tag-select --output`, the pipeline, HOA and the demo write it with
`write_groups`. Trainers read it typed, with `read_document` (or
`GroupsDocument.from_dict` for one in memory): each budget's `BudgetResult`
and its `Candidate`s, the one form of a grouping that `tag-train`, the
pipeline, the experiments and `tag_keras.train.decide` take.
`read_groups` and `validate_groups` give and check the JSON dict itself.
One module owns the format, so that every writer and reader agree on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

from tag_keras import _errors
from tag_keras import _files
from tag_keras._compat import affinity_structure

#: Keys every result entry carries.
REQUIRED_RESULT_KEYS = ("num_groups", "groups", "serve")


def groups_document(
    tasks: Sequence[str],
    groupings: Sequence,
    *,
    stabilities: Sequence | None = None,
    candidates: Sequence | None = None,
    **settings: Any,
) -> dict:
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
        result.update(
            affinity_structure=stability.affinity_structure,
            stability=stability.to_dict(),
        )
    for result, options in zip(results, candidates or ()):
        result["candidates"] = [
            {
                "groups": [list(g) for g in o.groups],
                "serve": dict(o.serve),
                "score": o.score,
            }
            for o in options
        ]
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
            "the matrix. Nothing was written."
        ) from None
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    _files.replace_atomically(path, text)


def read_groups(
    path: str | os.PathLike, tasks: Sequence[str] | None = None
) -> dict:
    """Reads and validates a groups document; returns it as a dict.

    With `tasks`, every one of them must be served by every budget
    (`validate_groups`).

    Raises:
        InputError: The file is missing, not JSON, or not a valid
            document (the message names the file and what is wrong).
    """
    return validate_groups(_load(path), source=os.fspath(path), tasks=tasks)


def _load(path):
    """The JSON at `path`; `InputError` naming the file if unreadable."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise _errors.InputError(
            f"Cannot read the groups JSON {path}: "
            f"{' '.join(str(error).split())}"
        ) from None


def validate_groups(
    document: dict,
    source: str = "the groups document",
    tasks: Sequence[str] | None = None,
) -> dict:
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
            "tag-select --output)."
        )
    listed = document.get("tasks")
    if listed is not None and (
        not isinstance(listed, list)
        or not all(isinstance(t, str) for t in listed)
        or len(set(listed)) != len(listed)
    ):
        raise _errors.InputError(
            f"In {source}, `tasks` must be a list of distinct task names. "
            f"Received: tasks={listed!r}"
        )
    required = list(listed or []) + [
        t for t in tasks or () if t not in (listed or [])
    ]
    for entry in results:
        if not isinstance(entry, dict):
            raise _errors.InputError(
                f"Each result in {source} must be an object. Received: "
                f"{entry!r}"
            )
        missing = sorted(set(REQUIRED_RESULT_KEYS) - set(entry))
        if missing:
            raise _errors.InputError(
                f"A result in {source} lacks {missing}. Received: "
                f"{sorted(entry)}"
            )
        budget = entry["num_groups"]
        if (
            isinstance(budget, bool)
            or not isinstance(budget, int)
            or (budget < 1)
        ):
            raise _errors.InputError(
                f"In {source}, `num_groups` must be an integer >= 1. "
                f"Received: num_groups={budget!r}"
            )
        _check_entry(entry, budget, required, source)
        candidates = entry.get("candidates")
        if candidates is not None:
            if not isinstance(candidates, list) or not candidates:
                raise _errors.InputError(
                    f"In {source}, budget {budget}: `candidates` must be a "
                    f"non-empty list. Received: candidates={candidates!r}"
                )
            for candidate in candidates:
                if not isinstance(candidate, dict) or not {
                    "groups",
                    "serve",
                } <= set(candidate):
                    raise _errors.InputError(
                        f"In {source}, budget {budget}: each candidate "
                        "needs `groups` and `serve`. Received: "
                        f"{candidate!r}"
                    )
                _check_entry(
                    candidate, budget, required + list(entry["serve"]), source
                )
    return document


class Candidate(NamedTuple):
    """A grouping as a trainer takes it: the groups, and which group
    serves each task. Unpacks as `(groups, serve)`.

    Attributes:
        groups: The groups, tuples of task names.
        serve: Task name -> index into `groups` of the group serving it.
    """

    groups: tuple
    serve: dict

    @classmethod
    def of(cls, item: Any) -> Candidate:
        """From a document entry or candidate (a dict), a `Grouping`, or
        a `(groups, serve)` pair."""
        if isinstance(item, dict):
            groups, serve = item["groups"], item["serve"]
        elif hasattr(item, "groups") and hasattr(item, "serve"):
            groups, serve = item.groups, item.serve
        else:
            groups, serve = item
        return cls(tuple(tuple(g) for g in groups), dict(serve))


@dataclasses.dataclass(frozen=True)
class BudgetResult:
    """One result of a groups document: a budget's grouping, typed.

    Attributes:
        num_groups: The budget.
        chosen: The selector's grouping for it.
        candidates: What a trainer judges for it: the document's
            `candidates` (`tag-select --top`, best first) or else the
            chosen grouping alone.
        score: The chosen grouping's objective (None where not recorded).
        affinity_structure: "stable", "unclear" or "" (no stability).
        entry: The whole JSON entry, for the fields not typed here.
    """

    num_groups: int
    chosen: Candidate
    candidates: tuple
    score: float | None
    affinity_structure: str
    entry: dict


@dataclasses.dataclass(frozen=True)
class GroupsDocument:
    """A validated groups document, typed: what every trainer reads.

    Attributes:
        tasks: The document's `tasks`, or (where it lists none) every task
            its results serve, sorted.
        results: One `BudgetResult` per entry, in the document's order.
        document: The validated JSON document itself.
    """

    tasks: tuple
    results: tuple
    document: dict

    @classmethod
    def from_dict(
        cls,
        document: dict,
        source: str = "the groups document",
        tasks: Sequence[str] | None = None,
    ) -> GroupsDocument:
        """Validates `document` (`validate_groups`) and types it."""
        validate_groups(document, source=source, tasks=tasks)
        results = tuple(
            BudgetResult(
                num_groups=entry["num_groups"],
                chosen=Candidate.of(entry),
                candidates=tuple(
                    Candidate.of(c)
                    for c in (entry.get("candidates") or [entry])
                ),
                score=entry.get("score"),
                affinity_structure=affinity_structure(entry),
                entry=entry,
            )
            for entry in document["results"]
        )
        listed = document.get("tasks") or sorted(
            {t for r in results for t in r.chosen.serve}
        )
        return cls(tuple(listed), results, document)

    @property
    def budgets(self) -> list:
        """The budgets, sorted, each once."""
        return sorted({r.num_groups for r in self.results})

    def results_for(self, budgets: Iterable[int] | None = None) -> list:
        """The results of `budgets` (None: all), in document order.

        Raises:
            ValueError: A wanted budget is not in the document.
        """
        if budgets is None:
            return list(self.results)
        absent = sorted(set(budgets) - set(self.budgets))
        if absent:
            raise ValueError(
                f"Budgets {absent} are not in the document; it "
                f"has {self.budgets}"
            )
        return [r for r in self.results if r.num_groups in set(budgets)]

    def candidates(self, budgets: Iterable[int] | None = None) -> dict:
        """`{budget: [Candidate, ...]}`: each budget's candidates, in
        order, each distinct grouping once (a budget given twice keeps
        both entries' candidates); what `tag_keras.train.decide` takes.

        Raises:
            ValueError: A wanted budget is not in the document.
        """
        out: dict[int, dict] = {}
        for result in sorted(
            self.results_for(budgets), key=lambda r: r.num_groups
        ):
            unique = out.setdefault(result.num_groups, {})
            for candidate in result.candidates:
                unique.setdefault(repr(candidate), candidate)
        return {b: list(unique.values()) for b, unique in out.items()}

    def groups(self, budgets: Iterable[int] | None = None) -> list:
        """Every group the candidates of `budgets` (None: all) hold, in
        order, each once: the networks a trainer needs."""
        return list(
            dict.fromkeys(
                g
                for options in self.candidates(budgets).values()
                for candidate in options
                for g in candidate.groups
            )
        )


def read_document(
    path: str | os.PathLike, tasks: Sequence[str] | None = None
) -> GroupsDocument:
    """Reads, validates and types a groups document.

    With `tasks`, every one of them must be served by every budget.

    Raises:
        InputError: The file is missing, not JSON, or not a valid
            document (the message names the file and what is wrong).
    """
    return GroupsDocument.from_dict(
        _load(path), source=os.fspath(path), tasks=tasks
    )


def _check_entry(entry, budget, required, source):
    groups = entry["groups"]
    if (
        not isinstance(groups, list)
        or not groups
        or not all(
            isinstance(g, list) and g and all(isinstance(t, str) for t in g)
            for g in groups
        )
    ):
        raise _errors.InputError(
            f"In {source}, budget {budget}: `groups` must be a list of "
            f"non-empty lists of task names. Received: groups={groups!r}"
        )
    for group in groups:
        if len(set(group)) != len(group):
            raise _errors.InputError(
                f"In {source}, budget {budget}: a group repeats a task. "
                f"Received: group={group!r}"
            )
    serve = entry["serve"]
    if not isinstance(serve, dict):
        raise _errors.InputError(
            f"In {source}, budget {budget}: `serve` must be an object of "
            f"task -> group index. Received: serve={serve!r}"
        )
    for task, index in serve.items():
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not (0 <= index < len(groups))
            or task not in groups[index]
        ):
            raise _errors.InputError(
                f"In {source}, budget {budget}: task {task!r} is served by "
                f"group {index!r}, which does not hold it."
            )
    named = [t for g in groups for t in g]
    unserved = [t for t in dict.fromkeys(required + named) if t not in serve]
    if unserved:
        raise _errors.InputError(
            f"In {source}, budget {budget}: tasks {unserved} are not "
            "served by any group."
        )
