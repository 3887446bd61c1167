"""The README's two commands and the CI entry point stay true to each other."""

from __future__ import annotations

import re

from tools import ROOT


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", quick_start, re.S)]


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "otel-chatbot demo" in demo and "pip install -e '.[dev]'" in demo
    assert "pytest" in tests and "pip install -e '.[dev]'" in tests
    assert all("\n" not in command for command in commands), "each command is one line"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    test_command = _readme_commands()[1]
    assert test_command in ci, f".ci/run must end by running the README test command {test_command!r}"
    assert ci[-1] == test_command
    joined = "\n".join(ci)
    for tool in ("apt-get install", "prometheus-alertmanager", "ruff check", "mypy"):
        assert tool in joined, f".ci/run must run {tool}"


def test_ci_script_is_executable() -> None:
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111
