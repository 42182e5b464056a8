"""Every option and argument of every `vrm` command says, in its help, what it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from openvrm.cli.main import registered


def _leaf_commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    # Typer ships its own click (typer._click): groups are told apart by their subcommands, not their class.
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _leaf_commands(sub, f"{path} {name}")
    else:
        yield path, command


def test_every_option_and_argument_has_help() -> None:
    commands = list(_leaf_commands(typer.main.get_group(registered()), "vrm"))
    assert len(commands) > 50
    missing = [
        f"{path} {'/'.join(param.opts) if param.param_type_name == 'option' else param.name.upper()}"
        for path, command in commands
        for param in command.params
        if "--help" not in param.opts and not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == [], "options and arguments without help text:\n" + "\n".join(missing)
