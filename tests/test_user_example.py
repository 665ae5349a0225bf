"""The docs' user example, run as written (slow: about 4 minutes)."""

import json
import os
import pathlib
import re
import subprocess

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_readme_user_example_runs_to_a_decision(tmp_path):
    text = (_ROOT / "docs" / "guides" / "deciding.md").read_text()
    section = text[text.index("## From your own model to a decision"):]
    commands = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)
    (tmp_path / "examples").symlink_to(_ROOT / "examples")
    env = dict(os.environ, PYTHONPATH=str(_ROOT))
    for command in commands.splitlines():
        done = subprocess.run(command.split(), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    decision = json.loads(
        (tmp_path / "runs/user/train/decision.json").read_text())
    assert [b["num_groups"] for b in decision["budgets"]] == [2, 3]
    for budget in decision["budgets"]:
        assert budget["decision"] in ("split", "keep together", "undecided")
        assert budget["seeds"] >= 3 and budget["margin"] > 0
        assert budget["candidates"] == 2
