"""The TAG ablations: tiny runs, their files, resuming."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import tag_keras

from experiments.lib import ablations
from experiments.lib import training
from tests.conftest import PLANTED_TASKS as TASKS


def test_measurement_correlates_subsampled_and_held_out_matrices(
        planted_three_tasks, tmp_path, monkeypatch):
    config = training.TrainConfig(epochs=2, batch_size=8, learning_rate=0.05,
                                  patience=2, width=4)
    summary = ablations.measurement(planted_three_tasks, config, str(tmp_path),
                                    seeds=1, frequencies=(1, 2, 4),
                                    log=lambda _: None)
    rows = pd.read_csv(tmp_path / "measurement.csv")
    assert list(rows["comparison"]) == [
        "every 2 steps vs every step", "every 4 steps vs every step",
        "validation vs training batches"]
    # Recompute one correlation from the written per-step values.
    steps = pd.read_csv(tmp_path / "runs" / "seed0" / "train" /
                        "affinity_steps.csv")
    assert sorted(steps["step"].unique()) == list(range(16))

    def off_diagonal(chosen):
        matrix = chosen.pivot_table(index="source", columns="target",
                                    values="affinity").reindex(
            index=list(TASKS), columns=list(TASKS)).to_numpy()
        return matrix[~np.eye(3, dtype=bool)]

    expected = stats.pearsonr(off_diagonal(steps),
                              off_diagonal(steps[steps["step"] % 4 == 0]))[0]
    assert rows.loc[1, "pearson_r"] == pytest.approx(expected)
    assert summary.loc[2, "seeds"] == 1
    # Resuming trains nothing.
    monkeypatch.setattr(ablations.training, "train_network",
                        lambda *a, **k: pytest.fail("trained again"))
    ablations.measurement(planted_three_tasks, config, str(tmp_path), seeds=1,
                          frequencies=(1, 2, 4), log=lambda _: None)


def test_wider_networks_scale_the_width(planted_three_tasks, tmp_path):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, width=2)
    summary = ablations.wider(planted_three_tasks, config, str(tmp_path),
                              factors=(1, 2), seeds=2, log=lambda _: None)
    rows = pd.read_csv(tmp_path / "wider.csv")
    assert sorted(rows["width"].unique()) == [2, 4]
    assert list(summary["width"]) == ["1x (2)", "2x (4)"]
    assert summary.loc[0, "minus 1x"] == 0.0


def test_tag_groups_with_and_without_pcgrad(planted_three_tasks, tmp_path,
                                           monkeypatch):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, width=4,
                                  affinity_every_n_steps=1)
    engines = []
    original = ablations.training.seeded_trainer

    def spy(*args, **kwargs):
        engines.append(original(*args, **kwargs))
        return engines[-1]

    monkeypatch.setattr(ablations.training, "seeded_trainer", spy)
    summary = ablations.pcgrad(planted_three_tasks, config, str(tmp_path),
                               seeds=1, budgets=(2,), log=lambda _: None)
    # The all-task network is the plain engine's, trained as the groups.
    all_task = engines[0].network(TASKS, 0)
    assert summary.loc[0, "all-task"] == pytest.approx(
        100 * sum(all_task.mean("test", t, "error") for t in TASKS))
    rows = pd.read_csv(tmp_path / "pcgrad.csv")
    assert sorted(rows["method"]) == ["TAG", "TAG+PCGrad"]
    # The same groups for both methods, each with two or more tasks.
    assert rows["groups"].nunique() == 1
    assert all(len(g.split("|")) >= 2 for g in rows["groups"][0].split())
    plain, projected = rows.set_index("method")["total_error"][
        ["TAG", "TAG+PCGrad"]]
    assert summary.loc[0, "PCGrad minus plain"] == pytest.approx(
        projected - plain)


def test_groups_from_other_settings_train_under_the_base_one(
        planted_three_tasks, tmp_path, monkeypatch):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, width=4,
                                  affinity_every_n_steps=1)
    measured, engines = [], []
    original = ablations.training.train_network
    original_engine = ablations.training.seeded_trainer

    def spy(data, config, **kwargs):
        measured.append((config.batch_size, config.learning_rate))
        return original(data, config, **kwargs)

    def engine_spy(data, config, *args, **kwargs):
        engine = original_engine(data, config, *args, **kwargs)
        engines.append(((config.batch_size, config.learning_rate), engine))
        return engine

    monkeypatch.setattr(ablations.training, "train_network", spy)
    monkeypatch.setattr(ablations.training, "seeded_trainer", engine_spy)
    summary = ablations.settings(planted_three_tasks, config, str(tmp_path),
                                 seeds=1, budgets=(2,), log=lambda _: None)
    assert measured == [(16, 0.05), (8, 0.05), (16, 0.1)]
    # Every group network trains under the base setting, in the library's
    # GroupTrainer, and the table is its served test error.
    assert [setting for setting, _ in engines] == [(16, 0.05)]
    assert engines[0][1].stored()
    rows = pd.read_csv(tmp_path / "settings.csv")
    grouping = tag_keras.select_groups(pd.read_csv(
        tmp_path / "runs" / "seed0" / "base" / "affinity" / "affinity.csv",
        index_col="source"), 2)
    served = ablations.training.served_errors(
        engines[0][1], grouping.groups, grouping.serve)
    assert rows.set_index("setting").loc["base", "total_error"] == (
        pytest.approx(100 * sum(served.values())))
    assert list(summary["setting"]) == ["base", "half batch",
                                        "double learning rate"]
    assert summary.loc[0, "same groups as base"] == 1


def test_hoa_with_half_size_singles(planted_three_tasks, tmp_path,
                                    monkeypatch):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, width=4)
    engines = []
    original = ablations.training.seeded_trainer

    def spy(data, config, *args, **kwargs):
        engine = original(data, config, *args, **kwargs)
        engines.append((config.width, engine))
        return engine

    monkeypatch.setattr(ablations.training, "seeded_trainer", spy)
    summary = ablations.hoa_half(planted_three_tasks, config, str(tmp_path),
                                 seeds=1, budgets=(1, 2), log=lambda _: None)
    # Half-width networks are single-task ones only.
    (half,) = [engine for width, engine in engines if width == 2]
    assert sorted(n.tasks for n in half.stored()) == [(t,) for t in TASKS]
    rows = pd.read_csv(tmp_path / "hoa_half.csv")
    assert sorted(set(rows["method"])) == ["HOA", "HOA, half-size singles"]
    half = rows[rows.method == "HOA, half-size singles"]
    # The budget counts a half-size single as half a network.
    assert (half.networks - half.half_size / 2 <= half.budget).all()
    pivot = rows.pivot_table(index="budget", columns="method",
                             values="total_error")
    np.testing.assert_allclose(
        summary["half minus full"],
        (pivot["HOA, half-size singles"] - pivot["HOA"]).to_numpy())
    again = ablations.hoa_half(planted_three_tasks, config, str(tmp_path),
                               seeds=1, budgets=(1, 2), log=lambda _: None)
    pd.testing.assert_frame_equal(again, summary)
