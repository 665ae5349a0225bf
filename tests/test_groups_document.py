"""The groups document's one validation, used by every reader."""

import json

import pytest

from tag_keras import select as select_lib

_GOOD = {"num_groups": 2, "groups": [["a", "b"], ["c"]],
         "serve": {"a": 0, "b": 0, "c": 1}}


@pytest.mark.parametrize("document, message", [
    ({"results": [{**_GOOD, "serve": [0, 0, 1]}]}, "`serve` must be an"),
    ({"tasks": "abc", "results": [_GOOD]}, "`tasks` must be a list"),
    ({"tasks": ["a", "a"], "results": [_GOOD]}, "`tasks` must be a list"),
    ({"results": [{**_GOOD, "num_groups": "two"}]}, "num_groups='two'"),
    ({"results": [{**_GOOD, "num_groups": True}]}, "num_groups=True"),
    ({"results": [{**_GOOD, "groups": [["a", "b", "a"], ["c"]]}]},
     "repeats a task"),
    ({"results": [{**_GOOD, "serve": {"a": 0, "c": 1}}]},
     r"tasks \['b'\] are not served"),
    ({"tasks": ["a", "b", "c", "d"], "results": [_GOOD]},
     r"tasks \['d'\] are not served"),
    ({"results": [{**_GOOD, "candidates": [{"groups": [["a", "b", "c"]]}]}]},
     "each candidate needs"),
    ({"results": [{**_GOOD, "candidates": [
        {"groups": [["a", "b"]], "serve": {"a": 0, "b": 0}}]}]},
     r"tasks \['c'\] are not served"),
])
def test_malformed_documents_are_one_line_errors(tmp_path, document,
                                                 message):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(document))
    with pytest.raises(select_lib.InputError, match=message) as info:
        select_lib.read_groups(path)
    assert "\n" not in str(info.value)


def test_the_tasks_to_train_must_be_served_whatever_the_document_lists(
        tmp_path):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({"results": [_GOOD]}))  # No `tasks` list.
    assert select_lib.read_groups(path)["results"][0] == _GOOD
    with pytest.raises(select_lib.InputError,
                       match=r"tasks \['d'\] are not served"):
        select_lib.read_groups(path, tasks=["a", "b", "c", "d"])


def test_experiments_check_groups_refuses_unserved_tasks_before_training():
    from experiments.lib import groups as groups_lib

    document = select_lib.GroupsDocument.from_dict({"results": [_GOOD]})
    groups_lib.check_groups(document, ["a", "b", "c"])
    with pytest.raises(select_lib.InputError, match="not served"):
        groups_lib.check_groups(document, ["a", "b", "c", "d"])


def test_the_typed_reader_gives_budgets_candidates_and_groups(tmp_path):
    document = {"tasks": ["a", "b", "c"], "results": [
        {**_GOOD, "num_groups": 2, "affinity_structure": "stable",
         "score": 0.5,
         "candidates": [{"groups": _GOOD["groups"], "serve": _GOOD["serve"]},
                        {"groups": [["a"], ["b", "c"]],
                         "serve": {"a": 0, "b": 1, "c": 1}}]},
        {"num_groups": 1, "groups": [["a", "b", "c"]],
         "serve": {"a": 0, "b": 0, "c": 0}, "verdict": "keep together"}]}
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(document))
    typed = select_lib.read_document(path)
    assert typed == select_lib.GroupsDocument.from_dict(document)
    assert typed.tasks == ("a", "b", "c") and typed.budgets == [1, 2]
    two, one = typed.results
    assert two.chosen == select_lib.Candidate(
        tuple(tuple(g) for g in _GOOD["groups"]), _GOOD["serve"])
    assert (two.score, two.affinity_structure) == (0.5, "stable")
    assert (one.score, one.affinity_structure) == (None, "unclear")
    # Budgets sorted; each budget's candidates best first; a grouping
    # unpacks as (groups, serve), as tag_keras.train.decide takes it.
    candidates = typed.candidates()
    assert list(candidates) == [1, 2]
    groups, serve = candidates[2][1]
    assert groups == (("a",), ("b", "c")) and serve["c"] == 1
    assert typed.candidates([2]) == {2: candidates[2]}
    assert typed.groups([1]) == [("a", "b", "c")]
    with pytest.raises(ValueError, match=r"Budgets \[3\] are not in"):
        typed.candidates([3])
    with pytest.raises(select_lib.InputError, match="tasks \\['d'\\] are "
                       "not served"):
        select_lib.read_document(path, tasks=["a", "b", "c", "d"])
    # A document without a `tasks` list: the served tasks.
    del document["tasks"]
    assert select_lib.GroupsDocument.from_dict(document).tasks == (
        "a", "b", "c")
