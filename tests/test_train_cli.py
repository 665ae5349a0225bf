"""`tag-train` run as a user runs it: a tiny model module, files read back,
and one-line errors before any training."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests import cli_runner

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
_GROUPS = {"tasks": ["a", "b", "c"], "results": [
    {"num_groups": 2, "groups": [["a", "b"], ["c"]],
     "serve": {"a": 0, "b": 0, "c": 1}},
    {"num_groups": 3, "groups": [["a"], ["b"], ["c"]],
     "serve": {"a": 0, "b": 1, "c": 2}}]}


def _arguments(tmp_path, args, groups):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(groups))
    return ["--model=tests.train_module:build",
            f"--data={_ROOT}/tests/train_module.py:data",
            f"--groups={path}", f"--out_dir={tmp_path / 'out'}",
            "--epochs=1", *args]


def _run(tmp_path, *args, groups=_GROUPS):
    """`tag-train` in a process of its own."""
    command = [sys.executable, "-m", "tag_keras.train.cli",
               *_arguments(tmp_path, args, groups)]
    return subprocess.run(command, cwd=_ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=_ROOT))


def _run_here(tmp_path, *args, groups=_GROUPS):
    """`tag-train`'s main in this process (checks before any training)."""
    return cli_runner.run_main("tag_keras.train.cli", "tag-train",
                               *_arguments(tmp_path, args, groups))


@pytest.mark.slow
@pytest.mark.keras_range
def test_tag_train_end_to_end_with_the_all_task_model(tmp_path):
    import keras

    from tests import train_module

    keras.utils.set_random_seed(0)
    model = train_module.build(["a", "b", "c"])
    x, y = train_module.data()["train"]
    model.fit(x, {t: y[t] for t in "ab"} | {"c": np.nan_to_num(y["c"])},
              epochs=1, verbose=0)
    model.save(tmp_path / "all.keras")
    done = _run(tmp_path, "--seeds=0,1", "--max_seeds=2", "--metric=loss",
                "--random_groupings=3", "--stl",
                f"--all_task_model={tmp_path / 'all.keras'}")
    assert done.returncode == 0, done.stderr[-3000:]
    # The all-task network of seed 0 is the given model: only seed 1's is
    # trained. 7 distinct groups (5 chosen, 2 more from the 3 random
    # partitions of budget 2) x 2 seeds - 1 networks.
    assert "[13/13]" in done.stdout and "[14/" not in done.stdout
    out = tmp_path / "out"
    document = json.loads((out / "decision.json").read_text())
    assert [e["num_groups"] for e in document["budgets"]] == [2, 3]
    for entry in document["budgets"]:
        assert entry["decision"] in ("split", "keep together", "undecided")
        assert entry["metric"] == "loss" and entry["seeds"] == 2
        assert entry["low"] <= entry["difference"] <= entry["high"]
        margin = entry["margin"]
        assert (entry["decision"] == "split") == (
            entry["high"] < 0 and entry["low"] <= -margin)
        assert (entry["decision"] == "keep together") == (
            entry["low"] > -margin)
        assert (entry["seeds_needed"] is None
                or entry["decision"] == "undecided")
        assert isinstance(entry["test_difference"], float)
    assert document["best"]["num_groups"] in (1, 2, 3)
    assert document["best"]["decision"] == document["answer"]
    assert document["random"]["2"]["exact"] is True
    stl = document["baselines"]["STL"]
    assert stl["groups"] == [["a"], ["b"], ["c"]] and stl["num_groups"] == 3
    # STL is budget 3's grouping here: the same networks, the same numbers.
    assert stl["difference"] == document["budgets"][1]["difference"]
    results = pd.read_csv(out / "results.csv")
    assert set(results.seed) == {0, 1}
    assert len(results.groupby(["group", "seed"])) == 14
    assert len(results) == 2 * 2 * (3 + 2 + 1 + 1 + 1 + 2 + 2)
    assert "Answer: " in done.stdout
    # A rerun trains nothing.
    again = _run(tmp_path, "--seeds=0,1", "--max_seeds=2", "--metric=loss",
                 "--random_groupings=3", "--stl",
                 f"--all_task_model={tmp_path / 'all.keras'}")
    assert again.returncode == 0 and "[1/" not in again.stdout


@pytest.mark.parametrize("args, groups, message", [
    (["--model=no_such_module:build"], _GROUPS,
     "--model: cannot import no_such_module"),
    (["--model=tests.train_module:data"], _GROUPS,
     "--model: data must take one argument"),
    (["--data=tests.train_module:no_validation"], _GROUPS,
     "--data: .*'train' and 'validation'"),
    ([], {"tasks": ["a", "z"], "results": [
        {"num_groups": 1, "groups": [["a", "z"]],
         "serve": {"a": 0, "z": 0}}]},
     r"--groups names tasks \['z'\]"),
    (["--margin=0"], _GROUPS, "--margin must be positive"),
    (["--margin=-0.5"], _GROUPS, "--margin must be positive"),
    (["--seeds=0,1,2", "--max_seeds=2"], _GROUPS,
     "--max_seeds must be at least the number of --seeds"),
    (["--seeds=0"], _GROUPS, "--seeds needs at least 2 seeds"),
    # Issue 35: each of these failed late, raw, or not at all.
    (["--seeds=0,0"], _GROUPS, "--seeds must be distinct"),
    (["--seeds=-1,0"], _GROUPS, r"--seeds must be in \[0, 2\*\*32\)"),
    ([f"--seeds=0,{2 ** 32}"], _GROUPS, r"must be in \[0, 2\*\*32\)"),
    (["--data=tests.train_module:short_labels"], _GROUPS,
     "--data: Split 'train', task 'a': 48 inputs but labels of shape"),
    (["--data=tests.train_module:wide_labels"], _GROUPS,
     r"--data: task 'a' has labels of shape \(3,\) per example"),
    (["--data=tests.train_module:one_validation_example"], _GROUPS,
     "'validation' split decides and needs at least 2 examples"),
    (["--data=tests.train_module:unlabelled_validation"], _GROUPS,
     "Task 'b' has no labelled example in the 'validation' split"),
    (["--data=tests.train_module:spaced_names"], {
        "tasks": ["a b", "b"], "results": [
            {"num_groups": 2, "groups": [["a b"], ["b"]],
             "serve": {"a b": 0, "b": 1}}]},
     "Task name 'a b' cannot name a layer under TensorFlow"),
    (["--model=tests.train_module:drops_a_head"], _GROUPS,
     r"--groups names tasks \['b'\] that --model's network of \(a, b\)"),
    # Issue 37: where the networks train.
    (["--workers=0"], _GROUPS, "--workers must be at least 1"),
    (["--workers=2", "--ray_address=auto"], _GROUPS,
     "Give --workers .* or --ray_address .*, not both"),
    (["--ray_address=127.0.0.1:1"], _GROUPS,
     "--ray_address: no Ray cluster answers at 127.0.0.1:1 within"),
    (["--ray_address=nowhere"], _GROUPS, "--ray_address must be host:port"),
    (["--cpus_per_network=2"], _GROUPS,
     "--cpus_per_network and --gpus_per_network apply to Ray tasks"),
    (["--workers=1", "--gpus_per_network=1"], _GROUPS,
     "--gpus_per_network asks for 1 GPUs per network, but no node"),
])
def test_bad_input_is_one_line_before_training(tmp_path, args, groups,
                                               message):
    # The one that starts a Ray runtime runs in a process of its own.
    run = _run if "--workers=1" in args else _run_here
    done = run(tmp_path, *args, groups=groups)
    assert done.returncode == 1
    lines = [line for line in done.stderr.strip().splitlines()
             if not re.match(r"(WARNING: All log messages|[IWE]\d{4} )",
                             line)]  # TensorFlow's own start-up lines.
    assert len(lines) == 1 and lines[0].startswith("tag-train: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out" / "networks").exists()


@pytest.mark.parametrize("content, message", [
    (b"garbage", "exists but is not a .keras file"),
    ("uncompiled", "holds an uncompiled model; compile it"),
    ("extra output", r"has outputs \['d'\] that --groups does not name"),
    ("wrong input", "cannot take the 'train' split's inputs"),
])
def test_a_bad_all_task_model_file_is_named_for_what_it_is(
        tmp_path, content, message):
    path = tmp_path / "all.keras"
    if isinstance(content, str):
        import keras

        inputs = keras.Input((5,) if content == "wrong input" else (4,))
        heads = "abcd" if content == "extra output" else "abc"
        model = keras.Model(inputs, {t: keras.layers.Dense(1, name=t)(inputs)
                                     for t in heads})
        if content != "uncompiled":
            model.compile(optimizer="sgd", loss="mse")
        model.save(path)
    else:
        path.write_bytes(content)
    done = _run_here(tmp_path, f"--all_task_model={path}")
    assert done.returncode == 1
    assert re.search(message, done.stderr), done.stderr[-2000:]
    assert not (tmp_path / "out" / "networks").exists()


def test_a_repeated_budget_keeps_both_entries_as_candidates():
    from tag_keras.select import document as document_lib

    document = {"results": [
        {"num_groups": 2, "groups": [["a", "b"], ["c"]],
         "serve": {"a": 0, "b": 0, "c": 1}},
        {"num_groups": 2, "groups": [["a"], ["b", "c"]],
         "serve": {"a": 0, "b": 1, "c": 1}},
        {"num_groups": 2, "groups": [["a", "b"], ["c"]],
         "serve": {"a": 0, "b": 0, "c": 1}}]}
    candidates = document_lib.GroupsDocument.from_dict(
        document).candidates()
    assert [groups for groups, _ in candidates[2]] == [
        (("a", "b"), ("c",)), (("a",), ("b", "c"))]


def test_a_second_run_on_a_busy_out_dir_is_refused(tmp_path):
    import socket

    out = tmp_path / "out"
    out.mkdir()
    # A live process (this test's) owns the directory.
    (out / ".tag_keras.lock").write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname()}))
    done = _run(tmp_path)
    assert done.returncode == 1
    assert f"--out_dir {out} is in use by process {os.getpid()}" in (
        done.stderr)
    assert not (out / "networks").exists()


def test_an_extra_positional_argument_is_one_line(tmp_path):
    done = _run(tmp_path, "extra")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines()
             if line.startswith("tag-train")]
    assert lines == ["tag-train: error: unexpected arguments ['extra']; "
                     "every input is a flag, --name=value (see tag-train "
                     "--help)."]
    assert "USAGE" not in done.stderr and "flags:" not in done.stdout


def _console_script(command):
    """The installed console script: beside this Python, or on PATH."""
    import shutil

    beside = os.path.join(os.path.dirname(sys.executable), command)
    path = beside if os.path.exists(beside) else shutil.which(command)
    if path is None:
        pytest.skip(f"{command} is not installed (pip install -e .)")
    return path


def test_ctrl_c_while_importing_is_one_line():
    import signal
    import time

    path = _console_script("tag-train")
    process = subprocess.Popen([path, "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=cli_runner.as_from_a_terminal)
    time.sleep(0.3)  # importing (NumPy, absl, ...), before main runs
    if process.poll() is not None:
        pytest.skip("the command finished before the signal")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    if process.returncode == 1 and "--model" in out:
        pytest.skip("the help was printed before the signal (it exits 1)")
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "tag-train: interrupted"
    assert "Traceback" not in err


@pytest.mark.keras_range
@pytest.mark.parametrize("model", ["keyed_heads", "subclassed"])
def test_outputs_are_matched_by_their_dict_keys(tmp_path, model):
    # Heads named head_0, ... but keyed by task; and a subclassed model
    # with no input shape until it is called.
    done = _run_here(tmp_path, f"--model=tests.train_module:{model}",
                     "--seeds=0,1", "--max_seeds=2", "--num_groups=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Answer: " in done.stdout


@pytest.mark.parametrize("command, flag", [("tag-train", "--model"),
                                           ("tag-select", "--affinity")])
def test_console_scripts_help_lists_their_flags(command, flag):
    path = _console_script(command)
    done = subprocess.run([path, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode in (0, 1)  # absl's --help exits with 1.
    assert f"  {flag}:" in done.stdout and "--out" in done.stdout
