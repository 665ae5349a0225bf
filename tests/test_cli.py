"""Tests for the `tag-select` command (tag_keras.cli) on real files."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from absl import flags
from absl.testing import flagsaver

from tag_keras.select import cli

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _write_affinity(path, z, names=None):
    names = names or [f"t{i}" for i in range(len(z))]
    frame = pd.DataFrame(z, index=names, columns=names)
    frame.index.name = "source"
    frame.to_csv(path)
    return path


def _clusters():
    z = np.full((4, 4), -0.01)
    z[:2, :2] = z[2:, 2:] = 0.05
    return z


def _run(monkeypatch, capsys, *args):
    """Runs the console-script entry point; returns (exit code, out, err)."""
    monkeypatch.setattr(sys, "argv", ["tag-select", *args])
    with flagsaver.flagsaver():
        with pytest.raises(SystemExit) as exit_info:
            cli.run()
    flags.FLAGS.unparse_flags()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_table_and_json(tmp_path, monkeypatch, capsys):
    path = _write_affinity(tmp_path / "affinity.csv", _clusters())
    output = tmp_path / "groups.json"
    code, out, _ = _run(monkeypatch, capsys, f"--affinity={path}",
                        "--num_groups=1,2,9", f"--output={output}")
    assert code == 0
    assert "Budget 2: 2 group(s), mean score 0.05, proven optimal" in out
    assert "group 0: *t0 *t1" in out and "group 1: *t2 *t3" in out
    # Budget 9: the optimum uses two groups, and the note says so.
    assert ("(a budget of 2 already reaches this score: budget 9 uses only "
            "2 groups; more cannot help)") in out
    document = json.loads(output.read_text())
    assert document["tasks"] == ["t0", "t1", "t2", "t3"]
    budget2 = document["results"][1]
    assert budget2["num_groups"] == 2
    assert budget2["groups"] == [["t0", "t1"], ["t2", "t3"]]
    assert budget2["serve"] == {"t0": 0, "t1": 0, "t2": 1, "t3": 1}
    assert budget2["score"] == pytest.approx(0.05)
    assert budget2["upper_bound"] == pytest.approx(0.05)
    assert budget2["optimal"] is True
    assert budget2["task_scores"]["t3"] == pytest.approx(0.05)
    assert [r["num_groups"] for r in document["results"]] == [1, 2, 9]


def test_flags_reach_the_selector(tmp_path, monkeypatch, capsys):
    z = _clusters()
    np.fill_diagonal(z, 1.0)
    path = _write_affinity(tmp_path / "a.csv", z)
    output = tmp_path / "g.json"
    code, out, _ = _run(
        monkeypatch, capsys, f"--affinity={path}", "--num_groups=4",
        "--allow_singletons", "--normalize", f"--output={output}")
    assert code == 0
    result = json.loads(output.read_text())["results"][0]
    assert result["groups"] == [["t0"], ["t1"], ["t2"], ["t3"]]
    assert result["score"] == 1.0
    code, out, _ = _run(monkeypatch, capsys, f"--affinity={path}",
                        "--num_groups=2", "--max_group_size=3")
    assert code == 0 and "proven optimal" in out


def test_performance_mode(tmp_path, monkeypatch, capsys):
    path = tmp_path / "perf.csv"
    path.write_text("group,task,value\na,a,1.0\nb,b,1.0\na|b,a,0.5\n"
                    "a|b,b,0.7\n")
    code, out, _ = _run(monkeypatch, capsys, f"--performance={path}",
                        "--num_groups=1")
    assert code == 0
    assert "mean loss 0.6, proven optimal" in out
    assert "group 0: *a *b" in out


def _bad_files(tmp_path):
    text = {
        "not_square.csv": "source,a,b\na,1,2\nb,3,4\nc,5,6\n",
        "labels.csv": "source,a,b\na,1,2\nx,3,4\n",
        "text.csv": "source,a,b\na,1,oops\nb,3,4\n",
        "inf.csv": "source,a,b\na,1,inf\nb,3,4\n",
        "one.csv": "source,a\na,1\n",
        "no_source.csv": "a,b\n1,2\n3,4\n",
        "empty.csv": "",
        "ragged.csv": "group,task,value\na,a,0.1\nb,b,0.2,7,8\n",
    }
    for name, content in text.items():
        (tmp_path / name).write_text(content)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--affinity={d}/missing.csv"], "Affinity file not found"),
        (["--affinity={d}"], "--affinity is a directory; give the CSV in it"),
        (["--affinity={d}/no_source.csv"], "has no `source` column"),
        (["--affinity={d}/ok.csv", "--output={d}"], "--output is a directory"),
        (["--affinity={d}/ok.csv", "--output={d}/ok.csv/x.json"],
         "Cannot create the folder of --output"),
        (["--performance={d}/ok.csv", "--plot={d}/p.png"],
         "--plot: need an affinity matrix"),
        (["--affinity={d}/not_square.csv"], "must be square"),
        (["--affinity={d}/labels.csv"], "same unique task names"),
        (["--affinity={d}/text.csv"], "line 2: 'oops' is not a number"),
        (["--affinity={d}/inf.csv"], "affinity.loc['a', 'b']=inf"),
        (["--affinity={d}/one.csv"], "at least two tasks"),
        (["--affinity={d}/empty.csv"], "Cannot read"),
        (["--affinity={d}/ok.csv", "--num_groups=0"], "num_groups=0"),
        (["--affinity={d}/ok.csv", "--num_groups=2,x"], "num_groups=2,x"),
        (["--affinity={d}/ok.csv", "--num_groups=1", "--max_group_size=2"],
         "cannot serve 4 tasks"),
        ([], "exactly one of --affinity, --performance and --group_affinity"),
        (["--performance={d}/missing.csv"], "Performance file not found"),
        (["--performance={d}/empty.csv"], "Cannot read"),
        (["--performance={d}/ragged.csv"], "line 3: 5 fields"),
    ],
)
def test_bad_input(tmp_path, monkeypatch, capsys, args, message):
    _bad_files(tmp_path)
    _write_affinity(tmp_path / "ok.csv", _clusters())
    args = [a.format(d=tmp_path) for a in args]
    code, out, err = _run(monkeypatch, capsys, *args)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tag-select: error: ")
    assert message in lines[0]


def test_output_folder_is_made_budgets_once_and_the_plot(tmp_path,
                                                         monkeypatch, capsys):
    from matplotlib import image

    path = _write_affinity(tmp_path / "affinity.csv", _clusters())
    output = tmp_path / "new" / "deeper" / "groups.json"
    plot = tmp_path / "figures" / "affinity.png"
    code, out, _ = _run(monkeypatch, capsys, f"--affinity={path}",
                        "--num_groups=2,2,1", f"--output={output}",
                        f"--plot={plot}")
    assert code == 0
    assert out.count("Budget 2:") == 1
    document = json.loads(output.read_text())
    assert [r["num_groups"] for r in document["results"]] == [1, 2]
    pixels = image.imread(plot)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 200
    assert pixels[..., :3].std() > 0.05  # Not blank.


def test_module_runs_as_a_subprocess(tmp_path):
    path = _write_affinity(tmp_path / "affinity.csv", _clusters())
    env = dict(os.environ, PYTHONPATH=str(_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "tag_keras.cli", f"--affinity={path}",
         "--num_groups=2"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "group 0: *t0 *t1" in done.stdout


def test_time_limit_and_progress(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    names = [f"t{i}" for i in range(18)]
    z = pd.DataFrame(rng.normal(0, 0.01, size=(18, 18)), index=names,
                     columns=names)
    path = tmp_path / "affinity.csv"
    z.to_csv(path, index_label="source")
    code, out, err = _run(monkeypatch, capsys, f"--affinity={path}",
                          "--num_groups=2", "--time_limit=30", "--progress")
    assert code == 0
    assert "[column_generation]" in out and "proven optimal" in out
    assert "column generation: score" in err
    for value in ("0", "-3"):
        code, _, err = _run(monkeypatch, capsys, f"--affinity={path}",
                            f"--time_limit={value}")
        assert code == 1
        assert f"Received: time_limit={float(value)}" in err
    performance = tmp_path / "perf.csv"
    performance.write_text("group,task,value\na,a,0.1\nb,b,0.2\na|b,a,0.1\n"
                           "a|b,b,0.1\n")
    code, out, _ = _run(monkeypatch, capsys, f"--performance={performance}",
                        "--time_limit=5", "--num_groups=1")
    assert code == 0 and "proven optimal" in out  # HOA takes it too.
    group = tmp_path / "group.csv"
    group.write_text("sources,target,affinity\na,b,0.1\nb,a,0.2\n")
    code, out, _ = _run(monkeypatch, capsys, f"--group_affinity={group}",
                        "--time_limit=5", "--num_groups=1")
    assert code == 0 and "proven optimal" in out  # So does group affinity.


def test_one_error_type_reaches_the_user(tmp_path):
    # A bad file, a bad groups document, a bad matrix and a bad budget all
    # raise `tag_keras.InputError`, with a one-line message.
    import tag_keras
    from tag_keras import select as select_lib

    (tmp_path / "torn.csv").write_text("source,a,b\na,1,x\nb,0,1\n")
    (tmp_path / "groups.json").write_text('{"results": "x"}')
    matrix = pd.DataFrame([[1.0, 0.0], [0.0, 1.0]], index=["a", "b"],
                          columns=["a", "c"])
    attempts = [
        lambda: select_lib.read_affinity(tmp_path / "torn.csv"),
        lambda: select_lib.read_groups(tmp_path / "groups.json"),
        lambda: select_lib.select_groups(matrix, 2),
        lambda: tag_keras.choose_groups(
            pd.DataFrame(np.eye(3), index=list("abc"), columns=list("abc")),
            budgets=[0]),
    ]
    for attempt in attempts:
        with pytest.raises(tag_keras.InputError) as raised:
            attempt()
        assert "\n" not in str(raised.value)
    assert select_lib.InputError is tag_keras.InputError is cli.InputError
    # One name: the 0.2 aliases are gone (issue 38).
    assert not hasattr(select_lib, "ReadError")
    assert not hasattr(select_lib, "GroupsDocumentError")
    assert issubclass(tag_keras.InputError, ValueError)
