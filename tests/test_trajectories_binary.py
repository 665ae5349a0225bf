"""The trajectory experiment: a tiny run, its files, resuming, the analysis."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments.lib import trajectories
from experiments.lib import training
from tests.conftest import PLANTED_TASKS

REPO = pathlib.Path(__file__).resolve().parents[1]
TASKS = PLANTED_TASKS


def test_plan_draws_auxiliary_sets_from_the_other_tasks():
    runs = trajectories.plan(TASKS, ["c0_t0", "c1_t0"], aux_sets=2,
                             aux_size=1, seed=0)
    names = [r.label for r in runs]
    assert names[:3] == ["STL_c0_t0", "STL_c1_t0", "MTL"]
    assert names[-2:] == ["PCGrad", "GradNorm"]
    for item in runs:
        if item.name.startswith("AUX"):
            assert item.tasks[0] == item.targets[0]
            assert len(item.tasks) == 2 and item.tasks[1] != item.tasks[0]
    assert [r.baseline for r in runs if r.method] == ["MTL", "MTL"]
    with pytest.raises(ValueError, match="Received: targets=\\['x'\\]"):
        trajectories.plan(TASKS, ["x"])
    with pytest.raises(ValueError, match="Received: aux_size=3"):
        trajectories.plan(TASKS, ["c0_t0"], aux_size=3)


@pytest.mark.slow
def test_tiny_run_writes_every_file_and_resumes(planted_three_tasks, tmp_path,
                                               monkeypatch):
    config = training.TrainConfig(epochs=3, batch_size=16, learning_rate=0.05,
                                  width=4)
    factors = trajectories.run(
        planted_three_tasks, config, str(tmp_path), targets=["c0_t0"], seeds=2,
        aux_sets=1, aux_size=1, max_samples=32, sharpness_steps=2,
        log=lambda _: None)
    for name in ("summaries.csv", "gaps.csv", "windows.csv", "factors.csv",
                 "correlations.csv", "curves.png", "results.md"):
        assert (tmp_path / name).stat().st_size > 0
    trajectory = pd.read_csv(tmp_path / "runs" / "seed1" / "MTL" /
                             "trajectory.csv")
    # Every epoch measured (no early stopping), the target only.
    assert sorted(trajectory["epoch"].unique()) == [0, 1, 2]
    assert set(trajectory["task"]) == {"c0_t0"}
    summaries = pd.read_csv(tmp_path / "summaries.csv")
    assert sorted(summaries["run"].unique()) == [
        "AUX1", "GradNorm", "MTL", "PCGrad", "STL"]
    # The STL network has one task: no conflict.
    assert summaries.loc[summaries["run"] == "STL", "conflict"].isna().all()
    # A factor difference is the mean over seeds of run - baseline.
    keyed = summaries.set_index(["run", "seed"])
    deltas = [keyed.loc[("PCGrad", s), "sharpness"]
              - keyed.loc[("MTL", s), "sharpness"] for s in (0, 1)]
    row = factors[(factors["run"] == "PCGrad")
                  & (factors["factor"] == "sharpness")].iloc[0]
    assert row["baseline"] == "MTL" and row["seeds"] == 2
    assert row["mean"] == pytest.approx(np.mean(deltas))
    assert row["se"] == pytest.approx(np.std(deltas, ddof=1) / np.sqrt(2))
    assert "| PCGrad | MTL | c0_t0 |" in (tmp_path / "results.md").read_text()

    # Rerunning trains nothing whose trajectory is complete.
    trained = []
    monkeypatch.setattr(trajectories, "train_run",
                        lambda *a, **k: trained.append(a))
    trajectories.run(planted_three_tasks, config, str(tmp_path),
                     targets=["c0_t0"], seeds=2, aux_sets=1, aux_size=1,
                     log=lambda _: None)
    assert trained == []


def test_binary_rejects_an_unknown_target(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "experiments.trajectories", "--dataset=planted",
         "--targets=nope", f"--out_dir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "trajectories: error:" in done.stderr
    assert "Received: targets=['nope']" in done.stderr


def test_landscapes_write_lines_and_surfaces(planted_three_tasks, tmp_path):
    from experiments.lib import landscapes

    config = training.TrainConfig(epochs=2, batch_size=16, learning_rate=0.05,
                                  patience=2, width=4)
    lines, surface = landscapes.run(planted_three_tasks, config, str(tmp_path),
                                    at_epochs=(1,), points=3,
                                    log=lambda _: None)
    for name in ("lines_epoch1", "lines_final", "surface_epoch1",
                 "surface_final"):
        assert (tmp_path / f"{name}.csv").exists()
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert set(lines["source"]) == set(TASKS) | {"total"}
    assert len(surface) == 3 * 3 * len(TASKS)
    written = pd.read_csv(tmp_path / "lines_final.csv")
    assert np.allclose(written["loss"], lines["loss"])
