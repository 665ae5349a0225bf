"""`choose_groups`: the one selection path, against its selectors."""

import numpy as np
import pandas as pd
import pytest

import tag_keras
from tag_keras.select import choose


def _matrix(seed=0, n=6):
    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(n)]
    return pd.DataFrame(rng.normal(size=(n, n)), index=tasks, columns=tasks)


def _steps(matrix, count=27, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame([
        {"step": s, "source": i, "target": j,
         "affinity": matrix.loc[i, j] + rng.normal(0, 0.1)}
        for s in range(count) for i in matrix.index for j in matrix.columns])


def test_equals_select_groups_per_budget_with_times_and_document():
    matrix = _matrix()
    selection = tag_keras.choose_groups(matrix, [3, 2, 3],
                                        allow_singletons=True)
    assert selection.budgets == [2, 3]
    assert set(selection.seconds) == {2, 3}
    assert all(s >= 0 for s in selection.seconds.values())
    for budget, grouping in zip(selection.budgets, selection.groupings):
        expected = tag_keras.select_groups(matrix, budget,
                                           allow_singletons=True)
        assert grouping.groups == expected.groups
        assert grouping.score == pytest.approx(expected.score)
    document = selection.document
    assert document["mode"] == "affinity"
    assert document["allow_singletons"] is True
    assert document["tasks"] == list(matrix.index)
    assert [r["num_groups"] for r in document["results"]] == [2, 3]
    assert "candidates" not in document["results"][0]
    assert selection.candidates is None and selection.stabilities is None


def test_candidates_and_stability_reach_the_document():
    matrix = _matrix(2)
    selection = choose.choose_groups(matrix, [2], top=3,
                                     steps=_steps(matrix), resamples=20)
    (options,) = selection.candidates
    assert len(options) == 3
    assert options[0].groups == selection.groupings[0].groups
    (result,) = selection.document["results"]
    assert len(result["candidates"]) == 3
    assert result["affinity_structure"] in ("stable", "unclear")
    assert selection.stabilities[0].resamples == 20


def test_performance_and_group_affinity_modes():
    tasks = ["a", "b", "c"]
    rows = [{"group": "|".join(g), "task": t, "value": 1.0 + 0.1 * len(g)}
            for g in (("a",), ("b",), ("c",), ("a", "b"), ("a", "c"),
                      ("b", "c"), ("a", "b", "c")) for t in g]
    performance = pd.DataFrame(rows)
    selection = choose.choose_groups(performance, [2], mode="performance",
                                     record={"value": "validation_loss"})
    expected = tag_keras.select_groups_from_performance(performance, 2)
    assert selection.groupings[0].groups == expected.groups
    assert selection.document["mode"] == "performance"
    assert selection.document["value"] == "validation_loss"
    assert selection.tasks == tasks


@pytest.mark.parametrize("kwargs, message", [
    ({"budgets": []}, "at least one budget"),
    ({"budgets": [0]}, "integer >= 1"),
    ({"budgets": [2.5]}, "integer >= 1"),
    ({"budgets": [2], "mode": "hoa"}, "`mode` must be one of"),
    ({"budgets": [2], "mode": "performance", "top": 2}, "need an affinity"),
])
def test_bad_requests_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        choose.choose_groups(_matrix(), **kwargs)
