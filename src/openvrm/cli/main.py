"""Entry point of `vrm`: the root command, global options, and the one place errors become messages.

Exit codes: 0 success; 1 an error (bad value, not found, conflict, damaged archive); 2 a usage error;
3 authentication (wrong passphrase, locked vault, bad token); 4 the vault is damaged (`vrm check`
found problems, or the store cannot be read); 70 an internal error (a bug: please report it);
130 interrupted.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Iterator, MutableMapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click.core import Command  # typer ships its own click

from openvrm import __version__
from openvrm.cli.context import err, state
from openvrm.errors import (
    AuthError,
    IntegrityError,
    OpenVRMError,
    StorageDamaged,
    VaultLocked,
    WrongPassphrase,
)


def exit_code_for(exc: OpenVRMError) -> int:
    if isinstance(exc, (WrongPassphrase, VaultLocked, AuthError)):
        return 3
    if isinstance(exc, (IntegrityError, StorageDamaged)):
        return 4
    return 1


# Every command of `vrm`, in the order `vrm --help` lists them, and the modules (of openvrm.cli) whose
# `register` defines it. A module is imported only when one of its commands runs (or for `vrm --help`), so
# `vrm upcoming` never loads the web server, the mail gateway or the relay. `vrm mail` is a group of
# rights_cmds that mail_cmds adds its commands to. tests/cli/test_cli.py holds this table to what the
# modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("init", "passwd", "unlock", "lock", "status", "check", "inbox"), ("vault_cmds",)),
    "profile": ("profile_cmds",),
    **dict.fromkeys(("vendors", "docs", "shares"), ("vendor_cmds",)),
    **dict.fromkeys(("tokens", "export", "import", "backup", "serve", "demo"), ("data_cmds",)),
    **dict.fromkeys(("contracts", "upcoming", "spend"), ("ledger_cmds",)),
    **dict.fromkeys(("rights", "move", "moves", "outbox"), ("rights_cmds",)),
    "mail": ("rights_cmds", "mail_cmds"),
    "vendor": ("vendor_kit_cmds",),
    **dict.fromkeys(("connect", "connections", "grants", "holders", "requests", "ledger"), ("agent_cmds",)),
    "intents": ("intent_cmds",),
    "conformance": ("conformance_cmds",),
    "relay": ("relay_cmds",),
}


def registered(modules: tuple[str, ...] | None = None) -> typer.Typer:
    """A Typer holding the commands ``modules`` register (all of them by default), for docs and tests."""
    holder = typer.Typer(rich_markup_mode="rich")
    names = modules if modules is not None else dict.fromkeys(m for ms in COMMANDS.values() for m in ms)
    for name in names:
        importlib.import_module(f"openvrm.cli.{name}").register(holder)
    return holder


@cache
def _commands_of(modules: tuple[str, ...]) -> dict[str, Command]:
    """The click commands that ``modules`` register, built once per process."""
    commands = dict(typer.main.get_group(registered(modules)).commands)
    for command in commands.values():
        _reflow_help(command)
    return commands


def _reflow_help(command: Command) -> None:
    """Join the hard-wrapped lines of a command's docstring into whole paragraphs, for it and its
    subcommands: Typer's help keeps every line break, so a docstring wrapped for the source would be
    printed with its breaks in the middle of the terminal's own lines."""
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)
    for sub in getattr(command, "commands", {}).values():
        _reflow_help(sub)


class _LazyCommands(MutableMapping[str, "Command"]):
    """The root's commands: every name is known at once, each command is built when first asked for."""

    def __init__(self) -> None:
        self._added: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name in self._added:
            return self._added[name]
        modules = COMMANDS[name]  # KeyError for an unknown name, as a dict would
        return _commands_of(modules)[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._added[name] = command

    def __delitem__(self, name: str) -> None:
        del self._added[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._added if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._added.keys())


class ErrorHandlingGroup(TyperGroup):
    """Turns every exception into one line on stderr and an exit code; never a traceback.

    Its commands are loaded lazily (see :data:`COMMANDS`).
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lazy = _LazyCommands()
        for name, command in self.commands.items():
            lazy[name] = command
        self.commands = lazy

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OpenVRMError as exc:
            err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
            raise typer.Exit(exit_code_for(exc)) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except OSError as exc:
            err.print(Text.assemble(("error:", "bold red"), f" {exc.strerror or exc}: {exc.filename or ''}"))
            raise typer.Exit(1) from None
        except Exception as exc:
            if os.environ.get("OPENVRM_DEBUG"):
                raise
            err.print(
                Text.assemble(
                    ("internal error:", "bold red"),
                    f" {type(exc).__name__}: {str(exc)[:300]} (a bug in openvrm; rerun with OPENVRM_DEBUG=1"
                    " for the traceback and please report it)",
                )
            )
            raise typer.Exit(70) from None


app = typer.Typer(
    cls=ErrorHandlingGroup,
    name="vrm",
    help="openvrm: one encrypted place for every vendor you deal with.\n\n"
    "Start with `vrm init`, then `vrm profile set`, `vrm vendors add`, `vrm docs add`, `vrm serve`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"openvrm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar="OPENVRM_HOME",
            help="Vault folder (default: your user data folder). Env: OPENVRM_HOME.",
            show_default=False,
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="Read the passphrase from the first line of this file. Env: OPENVRM_PASSPHRASE_FILE "
            "(or OPENVRM_PASSPHRASE with the passphrase itself).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    st = state(ctx)
    st.home = home
    st.passphrase_file = passphrase_file


def main() -> None:
    app(prog_name="vrm")


if __name__ == "__main__":  # pragma: no cover
    main()
