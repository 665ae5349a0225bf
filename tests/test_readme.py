"""README's commands are the ones CI runs; its quickstart runs as
written; the docs give a command for every binary."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (_ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _readme_commands()[1]
    assert test_command == "python -m pytest -q"
    ci_lines = (_ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci_lines]


def test_the_oldest_keras_is_one_version_in_setup_ci_and_the_guards():
    source = (_ROOT / "tag_keras" / "_keras_private.py").read_text()
    oldest = ".".join(re.search(r"^OLDEST_KERAS = \((\d+), (\d+)\)$",
                                source, re.M).groups())
    newest = ".".join(re.search(
        r"^NEWEST_TESTED_KERAS = \((\d+), (\d+)\)$", source, re.M).groups())
    setup = (_ROOT / "setup.py").read_text()
    assert f'"keras>={oldest},<4"' in setup
    ci = (_ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^OLDEST_KERAS={re.escape(oldest)}\.\d+$", ci, re.M)
    assert "python -m pytest -q -m keras_range" in ci
    pinned = re.search(r"^keras==(\d+\.\d+)\.\d+$",
                       (_ROOT / "requirements.txt").read_text(), re.M)
    assert pinned.group(1) == newest


def test_readme_install_command_installs_and_runs_the_main_job():
    install = _readme_commands()[0]
    assert "pip install -r requirements.txt -e ." in install
    assert install.endswith(
        "python -m experiments.pipeline --dataset=digits "
        "--out_dir=runs/digits")


def _docs_commands():
    text = "\n".join(p.read_text() for p in (_ROOT / "docs").rglob("*.md"))
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_builds_the_docs_strictly():
    ci_lines = [line.strip() for line in
                (_ROOT / ".ci" / "run").read_text().splitlines()]
    assert any("mkdocs build --strict" in line and not line.startswith("#")
               for line in ci_lines)


def test_ci_runs_the_pinned_toolchain_on_the_package():
    ci_lines = [line.strip() for line in
                (_ROOT / ".ci" / "run").read_text().splitlines()]
    for command in ("ruff check tag_keras", "ruff format --check tag_keras",
                    "mypy"):
        assert command in ci_lines
        assert f"`{command}`" in (_ROOT / "README.md").read_text()
    pins = (_ROOT / "requirements.txt").read_text()
    assert re.search(r"^ruff==\d+\.\d+\.\d+$", pins, re.M)
    assert re.search(r"^mypy==\d+\.\d+\.\d+$", pins, re.M)
    assert "files = tag_keras" in (_ROOT / "mypy.ini").read_text()
    # PEP 561: installed, the package tells type checkers it is typed.
    assert (_ROOT / "tag_keras" / "py.typed").is_file()
    assert '"py.typed"' in (_ROOT / "setup.py").read_text()


def test_the_readme_stays_short():
    assert len((_ROOT / "README.md").read_bytes()) < 10_000


def _run_python(code, cwd, timeout=600, **env):
    """Runs `code` in a fresh interpreter on this checkout; asserts that
    it exits 0 and returns the finished process."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True,
        text=True, timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(_ROOT), **env))
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _quickstart(path):
    text = path.read_text()
    section = text[text.index("Quickstart"):]
    return re.search(r"```python\n(.*?)\n```", section, re.S).group(1)


@pytest.mark.backends
def test_the_quickstart_runs_as_written(tmp_path):
    code = _quickstart(_ROOT / "README.md")
    assert len(code.splitlines()) <= 25
    # The docs' getting-started page shows the same code.
    assert code == _quickstart(_ROOT / "docs" / "getting-started.md")
    done = _run_python(code, tmp_path)
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["target", "a", "b", "c", "d"]
    groups = ast.literal_eval(lines[-1])  # a tuple of tuples of names
    assert len(groups) <= 2 and set().union(*groups) == set("abcd")
    # The pairs the README names, on either backend (the JAX pass of
    # .ci/run runs this test under KERAS_BACKEND=jax). The quickstart is
    # not seeded: a task may also serve in the other group on some runs.
    for pair in ({"a", "b"}, {"c", "d"}):
        assert any(pair <= set(group) for group in groups), groups
    assert (tmp_path / "runs/quickstart/affinity.csv").exists()


# As if TensorFlow were not installed: `import tensorflow` fails and
# `importlib.util.find_spec` finds nothing.
_WITHOUT_TENSORFLOW = (
    "import sys\n"
    "for name in ('tensorflow', 'tf_keras', 'tensorboard'):\n"
    "    sys.modules[name] = None\n")


@pytest.mark.backends
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax",
                    reason="needs KERAS_BACKEND=jax")
def test_the_quickstart_and_the_selector_run_without_tensorflow(tmp_path):
    code = _WITHOUT_TENSORFLOW + _quickstart(_ROOT / "README.md")
    done = _run_python(code, tmp_path, KERAS_BACKEND="jax")
    # TensorBoard events are the one thing left out, and it says so.
    assert "writes no TensorBoard events" in done.stderr
    logs = tmp_path / "runs/quickstart"
    assert {p.name for p in logs.iterdir()} >= {
        "affinity.csv", "affinity_stderr.csv", "affinity_epochs.csv",
        "affinity_steps.csv", "affinity.png"}
    _run_python(_WITHOUT_TENSORFLOW +
                "sys.argv = ['tag-select', '--affinity=runs/quickstart/"
                "affinity.csv', '--num_groups=2', '--output=groups.json']\n"
                "from tag_keras.select.cli import run\nrun()",
                tmp_path, timeout=120, KERAS_BACKEND="jax")
    document = json.loads((tmp_path / "groups.json").read_text())
    assert document["tasks"] == ["a", "b", "c", "d"]


@pytest.mark.backends
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax",
                    reason="needs KERAS_BACKEND=jax")
def test_the_jax_custom_loop_runs_as_written(tmp_path):
    text = (_ROOT / "docs" / "guides" / "backends.md").read_text()
    section = text[text.index("## Custom loops in JAX"):]
    code = re.search(r"```python\n(.*?)\n```", section, re.S).group(1)
    assert "meter.measure(" in code and "meter.fold(" in code
    done = _run_python(code, tmp_path)
    assert done.stdout.strip().splitlines()[0].split() == ["target", "a",
                                                            "b"]


def test_docs_have_a_command_for_every_binary():
    commands = "\n".join(_docs_commands())
    for module in ("demo", "run_affinity", "train_groups", "hoa",
                   "pipeline", "it_mtl", "trajectories", "transfer",
                   "landscapes", "ablations"):
        assert f"python -m experiments.{module} --" in commands, module
    assert "tag-select --affinity=" in commands
    for value in ("mirrored", "multi_worker"):
        assert f"--distribution={value} " in commands, value


def test_the_custom_loop_guide_runs_as_written(tmp_path):
    text = (_ROOT / "docs" / "guides" / "custom-loops.md").read_text()
    code = re.search(r"```python\n(.*?)\n```", text, re.S).group(1)
    assert "meter.forward(model" in code and "forward.losses_at(" in code
    done = _run_python(code, tmp_path)
    # The printed 2x2 matrix: a header and one row per source task.
    lines = done.stdout.strip().splitlines()
    assert lines[-2].split()[0] == "a" and lines[-1].split()[0] == "b"
