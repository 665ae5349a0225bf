"""Every file the package writes reads back with its task names as text
(issue 28 item 4): names pandas would read as numbers or NaN."""

import json
import sys

import numpy as np
import pandas as pd
import pytest

from tag_keras import select as select_lib

NAMES = ["1", "01", "1.0", "NA", "nan", "null", "", "b"]


def _matrix(names):
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(len(names), len(names))),
                        index=names, columns=names)


def test_affinity_matrix_round_trips(tmp_path):
    matrix = _matrix(NAMES)
    # As AffinityLogger writes it.
    (tmp_path / "affinity.csv").write_text(
        matrix.to_csv(index_label="source"))
    back = select_lib.read_affinity(tmp_path / "affinity.csv")
    assert list(back.index) == NAMES and list(back.columns) == NAMES
    assert back.index.name == "source"
    np.testing.assert_array_equal(back.to_numpy(), matrix.to_numpy())
    assert select_lib.select_groups(back, 2).serve.keys() == set(NAMES)


def test_long_tables_keep_names(tmp_path):
    steps = pd.DataFrame({"step": [0, 0, 1], "epoch": [0, 0, 0],
                          "source": ["NA", "", "01"],
                          "target": ["null", "1.0", "nan"],
                          "affinity": [0.5, np.nan, -1.0]})
    steps.to_csv(tmp_path / "steps.csv", index=False)
    back = select_lib.read_table(tmp_path / "steps.csv",
                                 ("source", "target"))
    assert list(back.source) == ["NA", "", "01"]
    assert list(back.target) == ["null", "1.0", "nan"]
    assert back.step.dtype == np.int64
    np.testing.assert_array_equal(back.affinity, steps.affinity)
    performance = pd.DataFrame({"group": ["NA|01", "NA", "01"],
                                "task": ["NA", "NA", "01"],
                                "value": [0.1, 0.2, 0.3]})
    performance.to_csv(tmp_path / "p.csv", index=False)
    back = select_lib.read_performance(tmp_path / "p.csv")
    assert list(back.group) == ["NA|01", "NA", "01"]


def test_tag_select_keeps_every_name(tmp_path, monkeypatch, capsys):
    from tag_keras.select import cli

    _matrix(NAMES).to_csv(tmp_path / "affinity.csv", index_label="source")
    monkeypatch.setattr(sys, "argv", [
        "tag-select", f"--affinity={tmp_path / 'affinity.csv'}",
        "--num_groups=2", f"--output={tmp_path / 'groups.json'}"])
    from absl import flags

    flags.FLAGS.unparse_flags()
    flags.FLAGS(sys.argv)
    assert cli.main(sys.argv[:1]) == 0
    document = json.loads((tmp_path / "groups.json").read_text())
    assert document["tasks"] == NAMES
    assert set(document["results"][0]["serve"]) == set(NAMES)


def test_a_model_with_such_names_writes_files_its_readers_read(tmp_path):
    import keras

    import tag_keras

    names = ["1", "01", "NA", "nan", "null"]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, activation="tanh")(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs={t: keras.layers.Dense(1)(h) for t in names},
        affinity_every_n_steps=1)
    model.compile(optimizer="sgd", loss={t: "mse" for t in names})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = {t: rng.normal(size=(8, 1)).astype("float32") for t in names}
    model.fit(x, y, batch_size=4, epochs=1, verbose=0,
              callbacks=[tag_keras.AffinityLogger(tmp_path, figure=False,
                                                  tensorboard=False)])
    matrix = select_lib.read_affinity(tmp_path / "affinity.csv")
    assert sorted(matrix.index) == sorted(names)
    pd.testing.assert_frame_equal(
        matrix.loc[model.affinity().index, model.affinity().columns],
        model.affinity(), check_names=False, check_index_type=False,
        check_column_type=False)
    steps = select_lib.read_table(tmp_path / "affinity_steps.csv",
                                  ("source", "target"))
    assert set(steps.source) == set(names)


@pytest.mark.parametrize("names", [["_a", "-b"], ["/c", ">d", "e"]])
def test_names_plain_keras_accepts_work_in_a_task_affinity_model(names):
    import keras

    import tag_keras

    inputs = keras.Input((3,))
    h = keras.layers.Dense(4)(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs={t: keras.layers.Dense(1)(h) for t in names},
        affinity_every_n_steps=1)
    model.compile(optimizer="sgd", loss={t: "mse" for t in names})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = {t: rng.normal(size=(8, 1)).astype("float32") for t in names}
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert list(model.affinity().index) == names
    assert np.isfinite(model.affinity().to_numpy()).all()


def test_a_separator_in_a_name_is_refused_with_group_sources():
    import keras

    import tag_keras

    variable = keras.Variable([[1.0, 2.0]])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([variable])
    tag_keras.AffinityMeter([variable], optimizer, ["a|b", "c"])  # No groups.
    with pytest.raises(ValueError, match=r"Received: task names \['a\|b'\]"):
        tag_keras.AffinityMeter([variable], optimizer, ["a|b", "c"],
                                affinity_sources="tasks+all")
