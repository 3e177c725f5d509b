"""The README's set-up commands are the ones CI runs.

Fails when someone edits the README's test command without .ci/run (or the reverse), or when the set-up
section stops giving exactly two commands.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_gives_exactly_two_setup_commands():
    commands = _setup_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("synchrogap reproduce")
    assert "python -m pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_commands = [line for line in ci if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci_commands == [_setup_commands()[1]]
