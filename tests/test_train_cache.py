"""The network cache is checked against what it was made from (issue 35):
changed data, model code or fit settings retrain; a damaged file is named
and retrained; a replaced --all_task_model is noticed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tag_keras import train
from tag_keras.train import fingerprint
from tests import train_module

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _trainer(directory, data=None, build=train_module.build, epochs=1,
             lines=None):
    return train.GroupTrainer(
        build, data or train_module.data(), seeds=[0],
        fit_kwargs={"epochs": epochs}, directory=str(directory),
        log=(lines.append if lines is not None else None))


def _trained(lines):
    return [line for line in lines if line.startswith("[")]


def test_changed_data_retrains_and_says_so(tmp_path):
    _trainer(tmp_path).train([("a", "b")])
    data = train_module.data()
    x, y = data["train"]
    data["train"] = (x + 1.0, y)
    lines = []
    _trainer(tmp_path, data, lines=lines).train([("a", "b")])
    assert any("Stale network (a, b) seed 0" in line
               and "its data changed" in line for line in lines), lines
    assert len(_trained(lines)) == 1
    # The same data again: the network just trained is reused.
    lines = []
    _trainer(tmp_path, data, lines=lines).train([("a", "b")])
    assert lines == []


def test_fewer_validation_examples_is_changed_data(tmp_path):
    _trainer(tmp_path).train([("a",)])
    data = train_module.data()
    x, y = data["validation"]
    data["validation"] = (x[:10], {t: v[:10] for t, v in y.items()})
    lines = []
    network = _trainer(tmp_path, data, lines=lines).network(("a",), 0)
    assert network.outcomes["validation"]["a"][0].shape == (10,)
    assert any("data changed" in line for line in lines)


def test_changed_fit_settings_retrain_without_any_settings_file(tmp_path):
    _trainer(tmp_path, epochs=1).train([("a",)])
    assert not (tmp_path / "train_settings.json").exists()
    lines = []
    _trainer(tmp_path, epochs=2, lines=lines).train([("a",)])
    assert any("its fit changed" in line for line in lines), lines


def test_edited_model_code_retrains(tmp_path):
    source = tmp_path / "user_model.py"
    body = ("import keras\n"
            "def build(tasks):\n"
            "    inputs = keras.Input((4,))\n"
            "    z = keras.layers.Dense({width})(inputs)\n"
            "    model = keras.Model(inputs, {{t: keras.layers.Dense(1, "
            "name=t)(z) for t in tasks}})\n"
            "    model.compile(optimizer='sgd', loss='mse')\n"
            "    return model\n")
    import importlib.util

    def load(width):
        source.write_text(body.format(width=width))
        spec = importlib.util.spec_from_file_location(
            f"user_model_{width}", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.build

    _trainer(tmp_path / "out", build=load(4)).train([("a",)])
    lines = []
    _trainer(tmp_path / "out", build=load(5), lines=lines).train([("a",)])
    assert any("its model and architecture changed" in line
               for line in lines), lines


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip", "random"])
def test_a_damaged_cache_file_is_named_moved_aside_and_retrained(tmp_path,
                                                                 damage):
    first = _trainer(tmp_path).network(("a",), 0)
    (path,) = (tmp_path / "networks").glob("*.npz")
    payload = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(payload[: len(payload) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flip":
        middle = len(payload) // 2
        path.write_bytes(payload[:middle] + bytes([payload[middle] ^ 0xFF])
                         + payload[middle + 1:])
    else:
        path.write_bytes(np.random.default_rng(0).bytes(len(payload)))
    lines = []
    again = _trainer(tmp_path, lines=lines).network(("a",), 0)
    damaged = [line for line in lines if "Damaged cache file" in line]
    if damage == "flip" and not damaged:
        # A flipped byte inside a stored array leaves a readable file
        # whose numbers changed: nothing can tell that from a network.
        pytest.skip("the flipped byte landed in array data")
    assert len(damaged) == 1 and str(path) in damaged[0]
    assert "(a) seed 0" in damaged[0] and "\n" not in damaged[0]
    assert (tmp_path / "networks" / (path.name + ".damaged")).exists()
    np.testing.assert_allclose(again.outcomes["test"]["a"][0],
                               first.outcomes["test"]["a"][0], rtol=1e-5)


def test_fingerprints_of_data_see_every_byte_and_of_fit_the_callbacks():
    import keras

    data = train_module.data()
    digest = fingerprint.data_digest(data)
    assert fingerprint.data_digest(train_module.data()) == digest
    x, y = data["test"]
    y = dict(y)
    y["a"] = y["a"].copy()
    y["a"][5] = 1 - y["a"][5]
    assert fingerprint.data_digest({**data, "test": (x, y)}) != digest
    early = keras.callbacks.EarlyStopping(patience=2)
    base = fingerprint.fit_digest({"epochs": 3, "callbacks": [early]}, 32)
    assert base == fingerprint.fit_digest(
        {"epochs": 3, "callbacks": [keras.callbacks.EarlyStopping(
            patience=2)]}, 32)
    assert base != fingerprint.fit_digest(
        {"epochs": 3, "callbacks": [keras.callbacks.EarlyStopping(
            patience=3)]}, 32)
    assert base != fingerprint.fit_digest({"epochs": 3, "callbacks": [
        early]}, 16)
    assert fingerprint.changed({"data": "1"}, {"data": "1", "fit": "2"}) == [
        "fit"]


def _cli(tmp_path, *args):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"tasks": ["a", "b", "c"], "results": [
        {"num_groups": 2, "groups": [["a", "b"], ["c"]],
         "serve": {"a": 0, "b": 0, "c": 1}}]}))
    return subprocess.run(
        [sys.executable, "-m", "tag_keras.train.cli",
         "--model=tests.train_module:build",
         "--data=tests/train_module.py:data", f"--groups={groups}",
         f"--out_dir={tmp_path / 'out'}", "--epochs=1", "--seeds=0,1",
         "--max_seeds=2", *args],
        cwd=_ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=_ROOT))


def _saved_model(path, seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = train_module.build(["a", "b", "c"])
    x, y = train_module.data()["train"]
    model.fit(x, {t: np.nan_to_num(v) for t, v in y.items()}, epochs=1,
              verbose=0)
    model.save(path)


@pytest.mark.slow
def test_tag_train_notices_a_replaced_all_task_model(tmp_path):
    path = tmp_path / "all.keras"
    _saved_model(path, 0)
    first = _cli(tmp_path, f"--all_task_model={path}")
    assert first.returncode == 0, first.stderr[-3000:]
    again = _cli(tmp_path, f"--all_task_model={path}")
    assert again.returncode == 0 and "Stale" not in again.stdout
    assert "[1/" not in again.stdout  # nothing trained
    _saved_model(path, 1)
    replaced = _cli(tmp_path, f"--all_task_model={path}")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert "Stale network (a, b, c) seed 0" in replaced.stdout
    assert "its model changed" in replaced.stdout
    before = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert before["all_tasks"]["validation_total"] is not None


def test_the_settings_refusal_names_what_differs_and_a_garbled_file(
        tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_settings.json").write_text(json.dumps({"epochs": 3}))
    done = _cli(tmp_path)
    assert done.returncode == 1
    assert "epochs=3 (now 1)" in done.stderr
    assert len([line for line in done.stderr.splitlines()
                if line.startswith("tag-train: error:")]) == 1
    (out / "train_settings.json").write_text("{not json")
    done = _cli(tmp_path)
    assert done.returncode == 1
    assert "cannot be read as the settings" in done.stderr


_WIDTH = {"value": 8}


def _build_with_global_width(tasks):
    import keras

    inputs = keras.Input((4,))
    z = keras.layers.Dense(_WIDTH["value"], activation="relu")(inputs)
    model = keras.Model(inputs, {t: keras.layers.Dense(1, name=t)(z)
                                 for t in tasks})
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_a_changed_architecture_retrains_even_from_another_module(tmp_path):
    # The model function's code is the same; what it builds changes (as
    # when it reads its width from a helper module that was edited).
    build = _build_with_global_width
    _trainer(tmp_path, build=build).train([("a",)])
    lines = []
    _trainer(tmp_path, build=build, lines=lines).train([("a",)])
    assert lines == []  # the same architecture: reused
    _WIDTH["value"] = 9
    try:
        lines = []
        _trainer(tmp_path, build=build, lines=lines).train([("a",)])
    finally:
        _WIDTH["value"] = 8
    assert any("its architecture changed" in line for line in lines), lines
