"""Documentation is tested too: every CLI command has its section in docs/cli.md."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from openvrm.cli.main import registered

ROOT = Path(__file__).resolve().parents[1]


def _command_paths(group: typer.Typer, prefix: str = "vrm") -> list[str]:
    paths = []
    for cmd in group.registered_commands:
        name = cmd.name or (cmd.callback.__name__.replace("_", "-") if cmd.callback else "")
        paths.append(f"{prefix} {name}")
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        paths += _command_paths(sub.typer_instance, f"{prefix} {sub.name}")
    return paths


def test_every_command_is_documented() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    headings = set(re.findall(r"^### (vrm [a-z -]+)$", doc, flags=re.M))
    commands = set(_command_paths(registered()))
    assert len(commands) > 20
    assert commands - headings == set(), "commands missing from docs/cli.md"
    assert headings - commands == set(), "docs/cli.md documents commands that do not exist"


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
