"""The information-transfer experiments: data, tiny runs, resuming."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments import data as data_lib
from experiments.data import transfer_tasks
from experiments.lib import tables
from experiments.lib import training
from experiments.lib import transfer as transfer_lib
from tag_keras import transfer

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_synthetic_pairs_have_the_planned_covariances():
    source, target = transfer_tasks.task_pair(d=20, source_samples=4000,
                                              target_samples=4000, seed=0)
    # X = R D Qᵀ: the covariance is Q D² Qᵀ up to the common scale.
    covariance = source.x_train.T @ source.x_train / 4000
    expected = source.basis @ np.diag(source.scales ** 2) @ source.basis.T
    expected *= np.trace(covariance) / np.trace(expected)
    assert np.linalg.norm(covariance - expected) < 0.1 * np.linalg.norm(
        expected)
    np.testing.assert_array_equal(source.scales, target.scales)
    # The task model explains the labels up to the noise.
    residual = source.y_test - source.x_test @ source.beta
    assert np.std(residual) == pytest.approx(0.5, rel=0.1)
    scores = [transfer.covariance_similarity(*(t.x_train for t in
                                               transfer_tasks.task_pair(
                                                   d=20, overlap=o, seed=1)))
              for o in (1.0, 0.5, 0.0)]
    assert scores[0] > scores[1] > scores[2]
    source, target = transfer_tasks.task_pair(d=20, rotate=True, seed=2,
                                              target_samples=2000)
    residual = target.y_test - target.x_test @ target.beta
    assert np.std(residual) == pytest.approx(0.5, rel=0.1)
    _, logistic = transfer_tasks.task_pair(d=20, kind="logistic", seed=0)
    assert set(np.unique(logistic.y_train)) == {0.0, 1.0}
    with pytest.raises(ValueError, match="Received: overlap=2"):
        transfer_tasks.task_pair(overlap=2)


@pytest.mark.slow
def test_similarity_experiment_writes_rows_and_resumes(tmp_path,
                                                      monkeypatch):
    monkeypatch.setattr(transfer_lib, "CONDITIONS",
                        transfer_lib.CONDITIONS[:1]
                        + transfer_lib.CONDITIONS[-1:])
    summary = transfer_lib.similarity(
        str(tmp_path), seeds=2, epochs=2, d=10, source_samples=60,
        target_samples=20, test_samples=50, log=lambda _: None)
    runs = pd.read_csv(tmp_path / "similarity_linear.csv")
    assert len(runs) == 2 * 2 * 3
    assert list(summary["condition"]) == ["overlap 1.00", "rotated"]
    wide = runs[runs["condition"] == "rotated"].pivot_table(
        index="seed", columns="method", values="target_loss")
    assert summary.loc[1, "benefit of alignment"] == pytest.approx(
        (wide["MTL"] - wide["MTL+align"]).mean())
    assert "±" in tables.markdown(summary)
    trained = []
    monkeypatch.setattr(transfer_lib, "train_pair",
                        lambda *a, **k: trained.append(a))
    transfer_lib.similarity(str(tmp_path), seeds=2, log=lambda _: None)
    assert trained == []


@pytest.fixture(scope="module")
def tiny_data():
    return data_lib.load_dataset(
        "planted", tasks=("c0_t0", "c0_t1", "noise_0"), num_train=64,
        num_validation=32, num_test=40, num_features=6)


def test_flip_labels_flips_the_share_asked_for_one_task(tiny_data):
    noisy = transfer_lib.flip_labels(tiny_data, "c0_t0", 0.5, seed=3)
    before = [y for _, y in tiny_data.train.as_numpy_iterator()]
    after = [y for _, y in noisy.train.as_numpy_iterator()]
    flipped = np.mean([a["c0_t0"] != b["c0_t0"]
                       for a, b in zip(after, before)])
    assert 0.25 < flipped < 0.75
    assert all(a["c0_t1"] == b["c0_t1"] for a, b in zip(after, before))
    again = [y["c0_t0"] for _, y in transfer_lib.flip_labels(
        tiny_data, "c0_t0", 0.5, seed=3).train.as_numpy_iterator()]
    assert again == [a["c0_t0"] for a in after]
    test = [y["c0_t0"] for _, y in noisy.test.as_numpy_iterator()]
    assert test == [y["c0_t0"] for _, y in tiny_data.test.as_numpy_iterator()]


@pytest.mark.slow
def test_label_noise_and_capacity_tiny_runs(tiny_data, tmp_path):
    config = training.TrainConfig(epochs=1, batch_size=16, learning_rate=0.05,
                                  patience=1, width=4)
    summary = transfer_lib.label_noise(
        tiny_data, config, str(tmp_path), noisy_task="noise_0",
        fractions=(0.2,), seeds=2, rank=1, log=lambda _: None)
    runs = pd.read_csv(tmp_path / "label_noise.csv")
    assert sorted(runs["method"].unique()) == ["MTL", "SVD", "UW"]
    svd = summary[summary["method"] == "SVD"].iloc[0]
    wide = runs.pivot_table(index="seed", columns="method",
                            values="clean_error")
    assert svd["minus MTL"] == pytest.approx((wide["SVD"]
                                              - wide["MTL"]).mean())
    assert np.isfinite(svd["noisy task weight"])
    capacity = transfer_lib.capacity(tiny_data, config, str(tmp_path),
                                     widths=(2, 4), seeds=1,
                                     log=lambda _: None)
    rows = pd.read_csv(tmp_path / "capacity.csv")
    assert len(rows) == 2 * 4           # all-task + three single-task
    first = rows[rows["width"] == 2]
    assert capacity.loc[0, "single-task sum"] == pytest.approx(
        first.loc[first["network"] != "all", "total_error"].sum())


def test_binary_rejects_an_unknown_noisy_task(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "experiments.transfer",
         "--experiment=label_noise", "--dataset=planted",
         "--noisy_task=nope", f"--out_dir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Received: noisy_task='nope'" in done.stderr
