"""README's test command is the one CI runs."""

import pathlib
import re

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (_ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    test_command = _readme_commands()[1]
    assert test_command == "python -m pytest -q"
    ci_lines = (_ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci_lines]


def test_readme_install_command_installs_and_runs_the_main_job():
    install = _readme_commands()[0]
    assert "pip install -r requirements.txt -e ." in install
    assert install.endswith(
        "python -m experiments.pipeline --dataset=digits "
        "--out_dir=runs/digits")


def test_readme_has_a_command_for_every_binary():
    commands = "\n".join(_readme_commands())
    for module in ("demo", "run_affinity", "train_groups", "hoa",
                   "pipeline", "it_mtl", "trajectories", "transfer",
                   "landscapes", "ablations"):
        assert f"python -m experiments.{module} --" in commands, module
    assert "tag-select --affinity=" in commands
    for value in ("mirrored", "multi_worker"):
        assert f"--distribution={value} " in commands, value
