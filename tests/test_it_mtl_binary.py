"""The IT-MTL comparison binary: a tiny run, its files, resuming, errors."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments import data as data_lib
from experiments.lib import it_mtl
from experiments.lib import training

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = ["STL", "MTL", "IT-MTL", "IT-MTL (first order)"]
NEW_METHODS = ["IT-UW-MTL", "IT-UW-PCGrad (first order)", "MGDA", "MGDA-UB"]


@pytest.fixture(scope="module")
def two_tasks():
    return data_lib.load_dataset(
        "planted", tasks=("c0_t0", "c1_t0"), num_train=64,
        num_validation=32, num_test=40, num_features=6)


@pytest.mark.slow
def test_tiny_comparison_writes_tables_and_resumes(two_tasks, tmp_path,
                                                   monkeypatch):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, width=4)
    summary = it_mtl.run(two_tasks, config, str(tmp_path), seeds=2,
                         methods=METHODS, log=lambda _: None)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert sorted(zip(runs["method"], runs["seed"])) == sorted(
        (m, s) for m in METHODS for s in (0, 1))
    for task in two_tasks.tasks:
        assert runs[f"{task}_accuracy"].between(0, 100).all()
    assert (runs["ms_per_step"] > 0).all()
    assert list(summary.index) == METHODS
    written = pd.read_csv(tmp_path / "summary.csv", index_col="method")
    mtl_rows = runs[runs["method"] == "MTL"]["c0_t0_accuracy"].to_numpy()
    assert written.loc["MTL", "c0_t0_mean"] == pytest.approx(mtl_rows.mean())
    assert written.loc["MTL", "c0_t0_se"] == pytest.approx(
        np.std(mtl_rows, ddof=1) / np.sqrt(2))
    table = (tmp_path / "results.md").read_text()
    assert "| IT-MTL (first order) |" in table and " ± " in table
    wins = it_mtl.candidate_wins(str(tmp_path), METHODS, 2)
    assert set(wins) == {"IT-MTL", "IT-MTL (first order)"}
    assert sum(wins["IT-MTL"].values()) == 2 * 4   # 2 seeds x 4 steps
    assert "- IT-MTL: c0_t0 " in table
    candidates = pd.read_csv(tmp_path / "candidates" / "IT-MTL_seed1.csv")
    assert list(candidates.columns) == ["epoch", "steps", "c0_t0", "c1_t0",
                                        "all"]
    assert candidates["steps"].iloc[0] == 4   # 64 examples / batch 16

    # Rerunning trains nothing already in runs.csv.
    trained = []
    monkeypatch.setattr(it_mtl, "train_method",
                        lambda *a: trained.append(a) or {})
    it_mtl.run(two_tasks, config, str(tmp_path), seeds=2, methods=METHODS,
               log=lambda _: None)
    assert trained == []


def test_markdown_table_by_hand():
    runs = pd.DataFrame({
        "method": ["MTL", "MTL", "IT-MTL", "IT-MTL"], "seed": [0, 1, 0, 1],
        "left_accuracy": [90.0, 92.0, 91.0, 93.0],
        "right_accuracy": [80.0, 80.0, 81.0, 85.0],
        "ms_per_step": [2.0, 4.0, 6.0, 8.0],
    })
    summary = it_mtl.summarize(runs, ("left", "right"))
    assert list(summary.index) == ["MTL", "IT-MTL"]
    table = it_mtl.markdown(summary, ("left", "right"))
    assert "| MTL | 91.00 ± 1.00 | 80.00 ± 0.00 | 3.0 | 2 |" in table
    assert "| IT-MTL | 92.00 ± 1.00 | 83.00 ± 2.00 | 7.0 | 2 |" in table


def test_bad_method_and_one_task_are_errors(two_tasks, tmp_path):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05)
    with pytest.raises(ValueError, match="Unknown methods"):
        it_mtl.run(two_tasks, config, str(tmp_path), methods=["SGD"])
    with pytest.raises(ValueError, match="two or more tasks"):
        it_mtl.run(two_tasks.select_tasks(("c0_t0",)), config, str(tmp_path))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.run(
        [sys.executable, "-m", "experiments.it_mtl", "--methods=SGD",
         f"--out_dir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode != 0
    assert "--methods" in process.stderr and "SGD" in process.stderr


def test_the_added_methods_train(two_tasks, tmp_path):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, width=4)
    summary = it_mtl.run(two_tasks, config, str(tmp_path), seeds=1,
                         methods=NEW_METHODS, log=lambda _: None)
    assert list(summary.index) == NEW_METHODS
    runs = pd.read_csv(tmp_path / "runs.csv")
    for task in two_tasks.tasks:
        assert runs[f"{task}_accuracy"].between(0, 100).all()
    assert (tmp_path / "candidates" /
            "IT-UW-PCGrad_first_order_seed0.csv").exists()
