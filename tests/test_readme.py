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
    assert "python -m experiments.demo" in install
