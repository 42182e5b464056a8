"""`vrm tokens`, `vrm export`, `vrm import`, `vrm backup`, `vrm serve`, `vrm demo`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from openvrm.cli.context import (
    JsonOpt,
    ask_new_passphrase,
    emit,
    err,
    id_table,
    open_vault,
    out,
    state,
    unlocked,
)
from openvrm.config import MAX_CHECK_WORKERS
from openvrm.errors import InvalidValue, NotFound
from openvrm.vault import tokens as token_store

tokens = typer.Typer(
    help="API tokens for scripts (each unlocks the vault for its requests).", no_args_is_help=True
)


TokenArg = Annotated[
    str, typer.Argument(help="The token's or session's id, as `vrm tokens list` shows it (not the token).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(tokens, name="tokens")
    app.command("export")(export)
    app.command("import")(import_)
    app.command("backup")(backup)
    app.command("serve")(serve)
    app.command("demo")(demo)


@tokens.command("create")
def tokens_create(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="A name to tell it apart in `vrm tokens list`, e.g. backup-script.")
    ],
    kind: Annotated[
        str, typer.Option(help="api (full API access) or feed (only the calendar feed /feeds/calendar.ics).")
    ] = "api",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token (or a calendar feed token). It is shown once: store it like a password."""
    if kind not in ("api", "feed"):
        raise InvalidValue("--kind is api or feed")
    with unlocked(ctx) as uv:
        token, info = token_store.create(uv, name, kind=kind)
    emit(as_json, info.to_json() | {"token": token}, lambda: typer.echo(token))


@tokens.command("list")
def tokens_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List API tokens and CLI sessions (never their secrets)."""
    with unlocked(ctx) as uv:
        items = token_store.list_tokens(uv)

    def text() -> None:
        table = id_table("kind", "name", "created", "expires")
        for t in items:
            table.add_row(
                t.id,
                t.kind,
                t.name,
                f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never",
            )
        out.print(table)

    emit(as_json, [t.to_json() for t in items], text)


@tokens.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: TokenArg, as_json: JsonOpt = False) -> None:
    """Revoke a token or session by id; it stops working at once."""
    vault = open_vault(state(ctx))
    try:
        token_store.revoke(vault, token_id)
    finally:
        vault.close()
    emit(as_json, {"revoked": token_id}, f"Revoked {token_id}.")


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar driven by ``progress(stage, done, total)`` callbacks, on stderr."""
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=not enabled,
    ) as bar:
        tasks: dict[str, object] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

        yield update


def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Archive to write (.zip, or .zip.age when encrypted).")],
    encrypt: Annotated[
        bool,
        typer.Option(
            help="Encrypt the archive with a passphrase (age format). Env: OPENVRM_EXPORT_PASSPHRASE."
        ),
    ] = False,
    export_passphrase_file: Annotated[
        Path | None, typer.Option(help="Read the archive passphrase from this file.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite FILE if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write everything in the vault to one archive (documented in docs/export-format.md).

    Without --encrypt the archive holds your data in the clear: keep it safe or delete it after use.
    """
    from openvrm.exchange import export_vault

    if file.exists() and not force:
        raise InvalidValue(f"{file} exists; use --force to overwrite it")
    archive_pass = (
        ask_new_passphrase("OPENVRM_EXPORT_PASSPHRASE", export_passphrase_file, "Archive passphrase")
        if encrypt
        else None
    )
    with unlocked(ctx) as uv, progress_bar(not as_json) as progress:
        summary = export_vault(uv, file, passphrase=archive_pass, progress=progress, overwrite=force)
    emit(
        as_json,
        summary.to_json(),
        f"Exported to {file}" + (" (encrypted)." if encrypt else " (NOT encrypted)."),
    )


def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An archive written by `vrm export`.")],
    export_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            help="The archive's passphrase file, if it is encrypted. Env: OPENVRM_EXPORT_PASSPHRASE."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore an archive into this vault. Everything is checked first; a bad archive changes nothing."""
    from openvrm.exchange import import_archive, is_encrypted

    if not file.is_file():
        raise InvalidValue(f"no such archive: {file}")
    archive_pass = None
    if is_encrypted(file):
        if export_passphrase_file is not None:
            archive_pass = ask_new_passphrase("OPENVRM_EXPORT_PASSPHRASE", export_passphrase_file)
        elif os.environ.get("OPENVRM_EXPORT_PASSPHRASE"):
            archive_pass = os.environ["OPENVRM_EXPORT_PASSPHRASE"]
        else:
            archive_pass = str(typer.prompt("Archive passphrase", hide_input=True)) if os.isatty(0) else None
    with unlocked(ctx) as uv, progress_bar(not as_json) as progress:
        summary = import_archive(uv, file, passphrase=archive_pass, progress=progress)
    emit(as_json, summary.to_json(), f"Imported {file}.")


def backup(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(help="A new, empty folder for the copy.")],
    as_json: JsonOpt = False,
) -> None:
    """Copy the vault, consistently, while it may be in use. Needs no passphrase; the copy stays sealed.

    Restore by pointing openvrm at the copy: `vrm --home DEST check`.
    """
    from openvrm.exchange import backup_vault

    vault = open_vault(state(ctx))
    try:
        with progress_bar(not as_json) as progress:
            summary = backup_vault(vault, dest, progress=progress)
    finally:
        vault.close()
    emit(as_json, summary.to_json(), f"Backed up to {dest}.")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    demo_vendors: Annotated[
        bool,
        typer.Option(
            "--demo-vendors",
            help="Also run three reference vendors under /demo-vendors/ to try the protocol (loopback only).",
        ),
    ] = False,
    relay: Annotated[
        bool, typer.Option("--relay", help="Also run an intent relay under /relay (see docs/relay.md).")
    ] = False,
    mail_port: Annotated[
        int | None,
        typer.Option(
            "--mail-port",
            min=1,
            max=65535,
            help="Also run the mail gateway (`vrm mail serve`) on this port; it needs the mail key "
            "(OPENVRM_MAIL_KEY) or the passphrase once at start.",
        ),
    ] = None,
    mail_dns_zone: Annotated[
        Path | None,
        typer.Option("--mail-dns-zone", help="Answer the gateway's DNS from this file.", hidden=True),
    ] = None,
    check_workers: Annotated[
        int | None,
        typer.Option(
            "--check-workers",
            min=0,
            max=MAX_CHECK_WORKERS,
            help="Worker processes that check vendors' pushes when they overlap (default: one per core "
            "beyond the server's own, at most 4, or OPENVRM_CHECK_WORKERS; 0: none).",
        ),
    ] = None,
) -> None:
    """Run the web app and API. The vault stays locked until you log in with your passphrase."""
    settings = state(ctx).settings()
    if check_workers is not None:
        settings = dataclasses.replace(settings, check_workers=check_workers)
    vault = open_vault(state(ctx))
    vault.close()
    if mail_port is not None:
        with _mail_gateway(ctx, host, mail_port, mail_dns_zone):
            _serve(settings, host, port, demo_vendors, relay)
        return
    _serve(settings, host, port, demo_vendors, relay)


@contextmanager
def _mail_gateway(ctx: typer.Context, host: str, port: int, zone: Path | None) -> Iterator[None]:
    from openvrm.cli.mail_cmds import resolver_for
    from openvrm.mail.gateway import Gateway
    from openvrm.mail.keys import MailKeys
    from openvrm.server.smtp_gateway import GatewayServer, gateway_in_thread
    from openvrm.vault.core import Vault

    key_text = os.environ.get("OPENVRM_MAIL_KEY")
    if key_text:
        keys = MailKeys.from_text(key_text)
    else:
        with unlocked(ctx) as uv:
            keys = MailKeys.from_vault(uv)
    vault = Vault.open(state(ctx).settings())
    try:
        gateway = Gateway(vault, keys, resolver_for(zone))
        try:
            gateway.config()
        except NotFound as exc:
            err.print(Text.assemble(("The mail gateway is not started:", "yellow"), f" {exc}"))
            yield
            return
        with gateway_in_thread(GatewayServer(gateway, host=host, port=port)):
            err.print(
                Text.assemble("Mail gateway for your aliases on ", (f"smtp://{host}:{port}", "bold"), ".")
            )
            yield
    finally:
        vault.close()


def _serve(settings: Any, host: str, port: int, demo_vendors: bool, relay: bool) -> None:
    from openvrm.server.app import run

    err.print(
        Text.assemble(
            "openvrm is running at ", (f"http://{host}:{port}/", "bold"), f" (vault at {settings.home})."
        )
    )
    err.print("Log in with your vault passphrase; log out to lock the vault. Press Ctrl+C to stop.")
    if demo_vendors:
        err.print(
            f"Reference vendors: connect to http://{host}:{port}/demo-vendors/telco, .../energy or .../books "
            "from the Connections page."
        )
    run(settings, host=host, port=port, demo_vendors=demo_vendors, relay=relay)


DEMO_PASSPHRASE = "demo vault passphrase"  # noqa: S105 - public on purpose: the demo has no secrets
DEMO_DNS_ZONE = "demo-dns-zone.json"  # the demo mail's DNS answers (public keys), for --mail-dns-zone


def demo(
    ctx: typer.Context,
    if_missing: Annotated[bool, typer.Option(help="Do nothing when the vault already exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a demo vault full of realistic sample vendors, relationships, documents and profile data."""
    from openvrm.demo import populate_demo

    st = state(ctx)
    vault = open_vault(st, create=True)
    try:
        if vault.exists():
            if if_missing:
                emit(
                    as_json,
                    {"created": False, "home": str(st.settings().home), "passphrase": DEMO_PASSPHRASE},
                    f"Demo vault already at {st.settings().home}; passphrase: {DEMO_PASSPHRASE!r}",
                )
                return
            raise InvalidValue(f"a vault already exists at {st.settings().home}")
        uv = vault.create(DEMO_PASSPHRASE)
        counts = populate_demo(uv, zone_file=st.settings().home / DEMO_DNS_ZONE)
        uv.lock()
    finally:
        vault.close()
    emit(
        as_json,
        {"created": True, "home": str(st.settings().home), "passphrase": DEMO_PASSPHRASE, "counts": counts},
        f"Created a demo vault at {st.settings().home}; passphrase: {DEMO_PASSPHRASE!r}",
    )
