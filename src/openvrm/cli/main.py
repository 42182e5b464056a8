"""Entry point of `vrm`: the root command, global options, and the one place errors become messages.

Exit codes: 0 success; 1 an error (bad value, not found, conflict, damaged archive); 2 a usage error;
3 authentication (wrong passphrase, locked vault, bad token); 4 the vault is damaged (`vrm check`
found problems, or the store cannot be read); 70 an internal error (a bug: please report it);
130 interrupted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from openvrm import __version__
from openvrm.cli import (
    agent_cmds,
    conformance_cmds,
    data_cmds,
    intent_cmds,
    ledger_cmds,
    mail_cmds,
    profile_cmds,
    relay_cmds,
    rights_cmds,
    vault_cmds,
    vendor_cmds,
    vendor_kit_cmds,
)
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


class ErrorHandlingGroup(TyperGroup):
    """Turns every exception into one line on stderr and an exit code; never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OpenVRMError as exc:
            err.print(f"[bold red]error:[/] {_escape(str(exc))}")
            raise typer.Exit(exit_code_for(exc)) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except OSError as exc:
            err.print(
                f"[bold red]error:[/] {_escape(exc.strerror or str(exc))}: {_escape(str(exc.filename or ''))}"
            )
            raise typer.Exit(1) from None
        except Exception as exc:
            if os.environ.get("OPENVRM_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {_escape(str(exc)[:300])} "
                "(a bug in openvrm; rerun with OPENVRM_DEBUG=1 for the traceback and please report it)"
            )
            raise typer.Exit(70) from None


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


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


vault_cmds.register(app)
profile_cmds.register(app)
vendor_cmds.register(app)
data_cmds.register(app)
ledger_cmds.register(app)
rights_cmds.register(app)
vendor_kit_cmds.register(app)
agent_cmds.register(app)
intent_cmds.register(app)
conformance_cmds.register(app)
relay_cmds.register(app)
mail_cmds.register(app)


def main() -> None:
    app(prog_name="vrm")


if __name__ == "__main__":  # pragma: no cover
    main()
