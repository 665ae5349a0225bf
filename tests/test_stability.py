"""Stability and the affinity structure, stable / unclear (tag_keras.select)."""

import json

import numpy as np
import pandas as pd
import pytest

from tag_keras.select import stability
from tests.test_cli import _run

TASKS = [f"t{i}" for i in range(6)]


def _steps(values):
    """The long per-step table of a `[T, n, n]` array."""
    rows = [{"step": 10 * s, "epoch": s // 5, "source": TASKS[i],
             "target": TASKS[j], "affinity": values[s, i, j]}
            for s in range(len(values)) for i in range(len(TASKS))
            for j in range(len(TASKS))]
    return pd.DataFrame(rows)


def _noise(steps=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(steps, len(TASKS), len(TASKS)))


def _clusters(steps=60, seed=0, noise=1.0):
    structure = -np.ones((len(TASKS), len(TASKS)))
    structure[:3, :3] = structure[3:, 3:] = 1.0
    return structure + noise * _noise(steps, seed)


def test_pure_noise_says_unclear_although_in_sample_gains_look_real():
    result = stability.assess(_steps(_noise()), [2, 3], resamples=50)
    for budget in (2, 3):
        grouping, report = result[budget]
        assert report.affinity_structure == stability.UNCLEAR
        assert report.improvement_low <= 0
        # Chosen and scored on the same steps, noise looks like a gain.
        assert report.in_sample_improvement > 0
        assert report.in_sample_improvement > report.improvement


def test_planted_clusters_say_stable_and_recur():
    result = stability.assess(_steps(_clusters()), 2, resamples=50)
    grouping, report = result[2]
    assert report.affinity_structure == stability.STABLE
    assert report.improvement_low > 0
    assert sorted(grouping.groups) == [("t0", "t1", "t2"),
                                       ("t3", "t4", "t5")]
    assert report.grouping_recurrence > 0.9
    assert min(report.task_recurrence.values()) > 0.9
    # Scored on held-out steps, the gain is the planted one: within-cluster
    # 1 versus the all-task mean (2 * 1 - 3) / 5 = -0.2.
    assert report.improvement == pytest.approx(1.2, abs=0.3)


def test_the_same_seed_gives_the_same_answer():
    steps = _steps(_clusters(noise=3.0))
    first = stability.assess(steps, 2, resamples=20, seed=3)[2][1]
    again = stability.assess(steps, 2, resamples=20, seed=3)[2][1]
    assert first == again
    assert first.seed == 3 and first.resamples == 20 and first.steps == 60
    assert first.block_size == 4  # round(60 ** (1 / 3))


def test_improvement_by_hand():
    z = np.array([[0.0, 2.0, -1.0], [4.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    tasks = ["a", "b", "c"]
    frame = pd.DataFrame(z, index=tasks, columns=tasks)
    from tag_keras.select import select_groups

    grouping = select_groups(frame, 2)
    served = [np.mean([z[o, t] for o in range(3) if o != t and tasks[o]
                       in grouping.groups[grouping.serve[tasks[t]]]])
              for t in range(3)]
    together = [np.mean([z[o, t] for o in range(3) if o != t])
                for t in range(3)]
    assert stability.improvement(z, tasks, grouping) == pytest.approx(
        np.mean(served) - np.mean(together))


@pytest.mark.parametrize("kwargs, message", [
    ({"resamples": 5}, "resamples=5"),
    ({"block_size": 0}, "block_size=0"),
    ({"block_size": 40}, "at least two blocks of 40"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stability.assess(_steps(_noise()), 2, **kwargs)


def test_a_table_without_the_step_columns_is_refused():
    with pytest.raises(ValueError, match=r"lacks the columns \['step'\]"):
        stability.assess(_steps(_noise()).drop(columns="step"), 2)


def test_tag_select_stability_writes_the_affinity_structure(tmp_path, monkeypatch,
                                                 capsys):
    values = _clusters()
    steps = _steps(values)
    steps.to_csv(tmp_path / "affinity_steps.csv", index=False)
    matrix = pd.DataFrame(values.mean(axis=0), index=TASKS, columns=TASKS)
    matrix.to_csv(tmp_path / "affinity.csv", index_label="source")
    output = tmp_path / "groups.json"
    code, out, err = _run(monkeypatch, capsys,
                          f"--affinity={tmp_path / 'affinity.csv'}",
                          "--num_groups=2", "--stability=20",
                          f"--output={output}")
    assert code == 0, err
    assert "affinity structure: stable" in out and "recurs in" in out
    assert "verdict" not in out
    result = json.loads(output.read_text())["results"][0]
    assert result["affinity_structure"] == "stable"
    assert "verdict" not in result
    assert result["stability"]["resamples"] == 20
    assert set(result["stability"]["task_recurrence"]) == set(TASKS)


def test_tag_select_stability_without_steps_is_one_line(tmp_path,
                                                       monkeypatch, capsys):
    matrix = pd.DataFrame(np.eye(3), index=TASKS[:3], columns=TASKS[:3])
    matrix.to_csv(tmp_path / "affinity.csv", index_label="source")
    code, out, err = _run(monkeypatch, capsys,
                          f"--affinity={tmp_path / 'affinity.csv'}",
                          "--stability=20")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "--stability needs the per-step values" in lines[0]
