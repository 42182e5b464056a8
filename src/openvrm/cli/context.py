"""What every command needs: settings, passphrases, an unlocked vault, and output in text or JSON."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from openvrm.config import Settings
from openvrm.errors import AuthError, InvalidValue, OpenVRMError, VaultLocked
from openvrm.vault import tokens
from openvrm.vault.core import UnlockedVault, Vault

# Rich markup and emoji codes are off: what is printed is often a vendor's or a sender's text (a vendor
# named "[/x]" would otherwise crash a table, "[link=...]" would plant a link). Styles are given as
# `Text` or `style=`, never spelled inside the strings.
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]

# The parts of a postal address, for an address field (`vrm profile set`, `vrm move`): an address needs at
# least a street, a city and a country.
StreetOpt = Annotated[
    str | None,
    typer.Option(help="Street and number, e.g. '1 rue de la Paix'; an address needs it.", show_default=False),
]
ExtraOpt = Annotated[
    str | None, typer.Option(help="A second line: building, floor, c/o.", show_default=False)
]
PostalCodeOpt = Annotated[
    str | None, typer.Option(help="Postal or ZIP code, e.g. 75002.", show_default=False)
]
CityOpt = Annotated[str | None, typer.Option(help="Town or city; an address needs it.", show_default=False)]
RegionOpt = Annotated[
    str | None,
    typer.Option(help="State, province or county, where the country uses one.", show_default=False),
]
CountryOpt = Annotated[
    str | None,
    typer.Option(help="Two-letter ISO 3166 code, e.g. FR; an address needs it.", show_default=False),
]

AgentUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--agent-url",
        help="The public URL of your `vrm serve` (vendors push to it); default $OPENVRM_PUBLIC_URL or "
        "http://127.0.0.1:8765.",
    ),
]


@dataclass
class State:
    home: Path | None = None
    passphrase_file: Path | None = None

    def settings(self) -> Settings:
        return Settings.resolve(self.home)


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def _read_passphrase_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidValue(f"passphrase file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"cannot read passphrase file {path}: {exc}") from None
    # As restic does: the first line is the passphrase; a trailing newline is not part of it.
    passphrase = text.splitlines()[0] if text else ""
    if not passphrase:
        raise InvalidValue(f"passphrase file {path} is empty")
    return passphrase


def passphrase_from_environment(st: State) -> str | None:
    if os.environ.get("OPENVRM_PASSPHRASE"):
        return os.environ["OPENVRM_PASSPHRASE"]
    file = st.passphrase_file or (
        Path(os.environ["OPENVRM_PASSPHRASE_FILE"]) if os.environ.get("OPENVRM_PASSPHRASE_FILE") else None
    )
    if file is not None:
        return _read_passphrase_file(file)
    return None


def _interactive() -> bool:
    return sys.stdin.isatty()


def ask_passphrase(st: State, prompt: str = "Vault passphrase") -> str:
    found = passphrase_from_environment(st)
    if found is not None:
        return found
    if not _interactive():
        raise VaultLocked(
            "no passphrase: set OPENVRM_PASSPHRASE or OPENVRM_PASSPHRASE_FILE, pass --passphrase-file, "
            "or run in a terminal"
        )
    return str(typer.prompt(prompt, hide_input=True))


def ask_new_passphrase(env_name: str, file: Path | None, what: str = "New passphrase") -> str:
    """A new passphrase: from ``file``, the variable ``env_name``, or asked twice without echo."""
    if file is not None:
        return _read_passphrase_file(file)
    if os.environ.get(env_name):
        return os.environ[env_name]
    if not _interactive():
        raise InvalidValue(f"no new passphrase: set {env_name}, give a passphrase file, or run in a terminal")
    return str(typer.prompt(what, hide_input=True, confirmation_prompt=True))


def open_vault(st: State, *, create: bool = False) -> Vault:
    return Vault.open(st.settings(), create=create)


@contextmanager
def unlocked(ctx: typer.Context) -> Iterator[UnlockedVault]:
    """Open and unlock the vault for one command: a CLI session (OPENVRM_SESSION) or the passphrase."""
    st = state(ctx)
    vault = open_vault(st)
    try:
        session = os.environ.get("OPENVRM_SESSION")
        uv: UnlockedVault | None = None
        if session:
            try:
                uv = tokens.unlock(vault, session, kind="session")
            except AuthError as exc:
                if passphrase_from_environment(st) is None and not _interactive():
                    raise AuthError(
                        f"OPENVRM_SESSION is not usable ({exc}); run `vrm unlock` again"
                    ) from None
        if uv is None:
            uv = vault.unlock(ask_passphrase(st))
        try:
            yield uv
        finally:
            uv.lock()
    finally:
        vault.close()


def emit(as_json: bool, data: Any, text: Callable[[], None] | str | None = None) -> None:
    """Print ``data`` as JSON, or run/print the text rendering."""
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
        return
    if callable(text):
        text()
    elif text is not None:
        out.print(text)


def fail(message: str) -> OpenVRMError:
    return InvalidValue(message)


def id_table(*headers: str) -> Table:
    """A table whose first column holds record ids, never cut: people copy them into the next command."""
    table = Table()
    table.add_column("id", no_wrap=True, min_width=32)
    for header in headers:
        table.add_column(header)
    return table


def address_or_value(
    field: str, value: str | None, parts: dict[str, str | None], *, no_value: str, stray_parts: str
) -> Any:
    """What `vrm profile set` and `vrm move` were given for ``field``: the address parts of an address
    field (never a plain value), else the value (never address parts). ``no_value`` and ``stray_parts`` are
    the messages for a missing value and for address parts given to another field."""
    from openvrm.profile.fields import ADDRESS_PARTS

    given = {k: v for k, v in parts.items() if v is not None}
    if field.strip().lower().split(".")[0] == "address":
        if value is not None:
            raise InvalidValue(
                f"give an address with --{', --'.join(p.replace('_', '-') for p in ADDRESS_PARTS)}"
            )
        return given
    if given:
        raise InvalidValue(stray_parts)
    if value is None:
        raise InvalidValue(no_value)
    return value
