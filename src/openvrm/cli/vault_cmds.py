"""Vault commands: init, passwd, unlock, lock, status, check, inbox."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from openvrm.cli.context import (
    JsonOpt,
    ask_new_passphrase,
    ask_passphrase,
    emit,
    open_vault,
    out,
    passphrase_from_environment,
    state,
    unlocked,
)
from openvrm.errors import VaultExists
from openvrm.vault import tokens
from openvrm.vault.check import check_vault


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("passwd")(passwd)
    app.command("unlock")(unlock)
    app.command("lock")(lock)
    app.command("status")(status)
    app.command("check")(check)
    app.command("inbox")(inbox)


def init(
    ctx: typer.Context,
    as_json: JsonOpt = False,
) -> None:
    """Create a new vault, protected by a passphrase you choose.

    The passphrase comes from OPENVRM_PASSPHRASE, a passphrase file, or is asked twice without echo.
    There is no way to recover a forgotten passphrase: keep it somewhere safe.
    """
    st = state(ctx)
    vault = open_vault(st, create=True)
    try:
        if vault.exists():
            raise VaultExists(f"a vault already exists at {st.settings().home}")
        passphrase = passphrase_from_environment(st) or ask_new_passphrase(
            "OPENVRM_PASSPHRASE", None, "Passphrase"
        )
        uv = vault.create(passphrase)
        info = {
            "home": str(st.settings().home),
            "database": st.settings().describe_database(),
            "vault_id": uv.vault_id,
        }
        emit(as_json, info, f"Created a vault at {info['home']}.")
    finally:
        vault.close()


def passwd(
    ctx: typer.Context,
    new_passphrase_file: Annotated[
        Path | None,
        typer.Option(help="Read the new passphrase from this file. Env: OPENVRM_NEW_PASSPHRASE."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the passphrase. Only the wrapped vault key changes; no data is re-encrypted."""
    st = state(ctx)
    vault = open_vault(st)
    try:
        old = ask_passphrase(st, "Current passphrase")
        vault.unlock(old).lock()  # a wrong current passphrase fails here, before asking for a new one
        new = ask_new_passphrase("OPENVRM_NEW_PASSPHRASE", new_passphrase_file)
        vault.change_passphrase(old, new)
        emit(as_json, {"changed": True}, "Passphrase changed.")
    finally:
        vault.close()


def unlock(
    ctx: typer.Context,
    minutes: Annotated[int, typer.Option(min=1, max=24 * 60, help="How long the session lasts.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Start a CLI session: prints `export OPENVRM_SESSION=...` so later commands need no passphrase.

    The session token wraps the vault key under its own random secret; `vrm lock` ends every session.
    """
    with unlocked(ctx) as uv:
        token, info = tokens.create(uv, "cli session", kind="session", ttl=timedelta(minutes=minutes))
    emit(
        as_json,
        {"session": token, "expires_at": info.expires_at.isoformat() if info.expires_at else None},
        lambda: typer.echo(f"export OPENVRM_SESSION={token}"),
    )


def lock(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """End every CLI session (OPENVRM_SESSION tokens stop working at once)."""
    vault = open_vault(state(ctx))
    try:
        n = tokens.revoke_kind(vault, "session")
    finally:
        vault.close()
    emit(as_json, {"sessions_ended": n}, f"Ended {n} session(s). The vault is locked.")


def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Where the vault is, which database, and its schema version (no passphrase needed)."""
    st = state(ctx)
    s = st.settings()
    vault = open_vault(st)
    try:
        info = {
            "home": str(s.home),
            "database": s.describe_database(),
            "backend": vault.db.backend,
            "blob_store": s.blob_backend,
            "exists": vault.exists(),
            "schema": vault.db.current_revision(),
            "inbox_items": vault.inbox_count() if vault.exists() else 0,
        }
        if info["exists"]:
            info["vault_id"] = vault.vault_id
            kdf = vault.kdf_params()
            info["kdf"] = {
                "algorithm": "argon2id",
                "time_cost": kdf.time_cost,
                "memory_kib": kdf.memory_kib,
                "parallelism": kdf.parallelism,
            }
    finally:
        vault.close()

    def text() -> None:
        for k, v in info.items():
            out.print(Text.assemble((k, "bold"), f": {v}"))

    emit(as_json, info, text)


def check(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Verify that every record and every file decrypts and matches its hash; report all damage."""
    with unlocked(ctx) as uv:
        report = check_vault(uv)

    def text() -> None:
        out.print(f"Checked {report.records} records, {report.blobs} files, {report.inbox} inbox items.")
        if report.problems:
            table = Table("severity", "where", "id", "problem")
            for p in report.problems:
                table.add_row(p.severity, p.where, p.id, p.problem)
            out.print(table)
        out.print(
            "The vault is intact." if report.ok else "The vault has damage.",
            style="green" if report.ok else "red",
        )

    emit(as_json, report.to_json(), text)
    if not report.ok:
        raise typer.Exit(4)


def inbox(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List items received while the vault was locked (sealed to the vault's public key)."""
    with unlocked(ctx) as uv:
        items = uv.inbox()
    data = [{"id": i.id, "received_at": i.received_at.isoformat(), "item": i.item} for i in items]

    def text() -> None:
        if not items:
            out.print("The inbox is empty.")
        for i in items:
            out.print(f"{i.id}  {i.received_at:%Y-%m-%d %H:%M}  {i.item.get('type', 'item')}")

    emit(as_json, data, text)
