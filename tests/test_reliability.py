"""Smaller defects of issue 28: failed writes, tags, finite JSON, inputs
overwritten, Ctrl-C."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tag_keras import _files
from tag_keras import select as select_lib
from tests import cli_runner

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_failed_write_names_the_file_and_leaves_no_temporary(
        tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match=r"Cannot write .*out\.json: No space"):
        _files.replace_atomically(tmp_path / "out.json", "{}")
    assert os.listdir(tmp_path) == []


def test_files_get_the_umask_mode_without_touching_the_umask(tmp_path,
                                                             monkeypatch):
    calls = []
    monkeypatch.setattr(os, "umask", lambda *a: calls.append(a) or 0o22)
    _files.replace_atomically(tmp_path / "a.csv", "x")
    assert calls == []  # The process-wide umask is never set.
    monkeypatch.undo()
    old = os.umask(0o027)
    try:
        _files.replace_atomically(tmp_path / "b.csv", b"x")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "b.csv").st_mode & 0o777) == 0o640


def test_tensorboard_tags_of_different_pairs_never_collide():
    from tag_keras.callbacks import affinity_logger as callbacks

    def tag(source, target):
        return f"affinity/{callbacks._tag(source)}->{callbacks._tag(target)}"

    assert tag("a", "b->c") != tag("a->b", "c")
    assert tag("a", "b") == "affinity/a->b"
    assert tag("x/y", "z") != tag("x", "y/z")


def test_an_overflowing_matrix_is_a_one_line_error_not_infinity(tmp_path):
    names = ["a", "b", "c"]
    huge = pd.DataFrame(np.full((3, 3), 1e308), index=names, columns=names)
    with pytest.raises(ValueError, match="too large to add up") as info:
        select_lib.select_groups(huge, 1)
    assert "\n" not in str(info.value)
    # A document holding a non-finite number is never written.
    grouping = select_lib.select_groups(huge / 1e308, 1)
    document = select_lib.groups_document(names, [grouping])
    document["results"][0]["score"] = float("inf")
    with pytest.raises(select_lib.InputError, match="non-finite"):
        select_lib.write_groups(tmp_path / "g.json", document)
    assert not (tmp_path / "g.json").exists()


def _tag_select(*args):
    return subprocess.run([sys.executable, "-m", "tag_keras.cli", *args],
                          cwd=_ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ,
                                                PYTHONPATH=_ROOT))


def test_output_equal_to_an_input_is_refused(tmp_path):
    path = tmp_path / "affinity.csv"
    names = ["a", "b", "c"]
    pd.DataFrame(np.eye(3), index=names, columns=names).to_csv(
        path, index_label="source")
    before = path.read_text()
    done = _tag_select(f"--affinity={path}", f"--output={path}")
    assert done.returncode == 1
    assert "would overwrite it" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert path.read_text() == before


@pytest.mark.slow
def test_ctrl_c_is_one_line(tmp_path):
    names = [f"t{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(40, 40)), index=names,
                 columns=names).to_csv(tmp_path / "a.csv",
                                       index_label="source")
    process = subprocess.Popen(
        [sys.executable, "-m", "tag_keras.cli",
         f"--affinity={tmp_path / 'a.csv'}", "--num_groups=4",
         "--time_limit=60"], cwd=_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=_ROOT),
        preexec_fn=cli_runner.as_from_a_terminal)
    time.sleep(4)
    if process.poll() is not None:  # a loaded machine slept past the end
        pytest.skip("the search finished before the signal")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines() == ["tag-select: interrupted"]


def test_learning_rate_zero_is_named_as_the_cause():
    import keras

    import tag_keras

    inputs = keras.Input((3,))
    h = keras.layers.Dense(4)(inputs)
    model = tag_keras.TaskAffinityModel(
        inputs=inputs, outputs={t: keras.layers.Dense(1, name=t)(h)
                                for t in "ab"}, affinity_every_n_steps=1)
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss={t: "mse" for t in "ab"})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = {t: rng.normal(size=(8, 1)).astype("float32") for t in "ab"}
    with pytest.warns(UserWarning, match="the learning rate is 0") as record:
        model.fit(x, y, epochs=1, verbose=0)
    assert not any("no labels" in str(w.message) for w in record)
