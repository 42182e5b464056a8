"""`vrm mail ...` for the relationship mailbox: the gateway, aliases, rules, messages, leaks, replies.

The `vrm mail` group also holds `setup` and `show` (the person's own SMTP server, in rights_cmds); this
module adds the alias gateway's commands to it. See docs/mail.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from openvrm.cli.context import JsonOpt, emit, id_table, open_vault, out, state, unlocked
from openvrm.cli.rights_cmds import mail
from openvrm.errors import InvalidValue
from openvrm.mail.auth import DnsResolver, Resolver, ZoneResolver
from openvrm.mail.gateway import Gateway
from openvrm.mail.keys import MailKeys
from openvrm.mail.routing import DELIVERIES, MODES, Alias, Downstream
from openvrm.mail.service import STYLES, MailRecord, MailService

gateway = typer.Typer(
    help="The alias gateway's settings: its domains and your real mailbox.", no_args_is_help=True
)
alias_cmd = typer.Typer(
    help="Aliases: one address per vendor, made, disabled, deleted.", no_args_is_help=True
)
mail.add_typer(gateway, name="gateway")
mail.add_typer(alias_cmd, name="alias")

AliasArg = Annotated[str, typer.Argument(help="The alias's id, as `vrm mail alias list` shows it.")]
MessageArg = Annotated[str, typer.Argument(help="The message's id, as `vrm mail messages` shows it.")]


def register(app: typer.Typer) -> None:  # noqa: ARG001 - the commands hang off the `vrm mail` group
    return None


def _alias_row(a: Alias) -> tuple[str, ...]:
    state_text = "blocked" if a.blocked else a.state
    return (a.id, a.address, a.vendor_name, state_text, a.mode, a.deliver)


def _print_aliases(aliases: list[Alias]) -> None:
    table = id_table("address", "vendor", "state", "rules", "delivery")
    for a in aliases:
        table.add_row(*_alias_row(a))
    out.print(table)


# -- vrm mail gateway ------------------------------------------------------------------------------------


@gateway.command("setup")
def gateway_setup(
    ctx: typer.Context,
    domain: Annotated[
        list[str], typer.Option("--domain", help="A domain whose mail comes to the gateway (repeatable).")
    ],
    forward_to: Annotated[str, typer.Option("--forward-to", help="Your real mailbox; vendors never see it.")],
    deliver: Annotated[
        str, typer.Option(help=f"Default for new aliases: {', '.join(DELIVERIES)}.")
    ] = "forward",
    smtp_host: Annotated[
        str | None,
        typer.Option(help="Server that takes forwarded mail (default: the one of `vrm mail setup`)."),
    ] = None,
    smtp_port: Annotated[int | None, typer.Option(help="Its port (default 587).")] = None,
    smtp_tls: Annotated[str, typer.Option(help="starttls, tls or none.")] = "starttls",
    smtp_user: Annotated[
        str | None, typer.Option(help="Login, if it asks (password: OPENVRM_SMTP_PASSWORD).")
    ] = None,
    max_size: Annotated[
        int | None, typer.Option(help="Largest message accepted, in bytes (default 10 MiB).")
    ] = None,
    max_recipients: Annotated[
        int | None, typer.Option(help="Most recipients in one message (default 20).")
    ] = None,
    auto_alias: Annotated[
        bool | None,
        typer.Option(
            "--auto-alias/--no-auto-alias",
            help="Give every vendor an alias when a relationship or connection with it is made.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the gateway's domains, your real address and where forwarded mail goes.

    Point the domains' MX records at the host running `vrm mail serve`.
    """
    downstream = None
    if smtp_host:
        default_port = {"starttls": 587, "tls": 465, "none": 25}.get(smtp_tls, 587)
        downstream = Downstream(
            smtp_host,
            smtp_port or default_port,
            smtp_tls,  # type: ignore[arg-type]
            smtp_user,
            os.environ.get("OPENVRM_SMTP_PASSWORD") if smtp_user else None,
        )
    with unlocked(ctx) as uv:
        cfg = MailService(uv).setup(
            domains=domain,
            forward_to=forward_to,
            deliver=deliver,
            downstream=downstream,
            max_message_bytes=max_size,
            max_recipients=max_recipients,
            auto_alias=auto_alias,
        )
    note = (
        ""
        if cfg.downstream
        else " No server to forward through yet: mail is kept in the vault until one is set."
    )
    emit(
        as_json,
        cfg.to_json(),
        f"Gateway set for {', '.join(cfg.domains)}, forwarding to {cfg.forward_to}.{note}",
    )


@gateway.command("show")
def gateway_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the gateway's settings (never the password)."""
    with unlocked(ctx) as uv:
        cfg = MailService(uv).routes.require_config()
    data = cfg.to_json()

    def text() -> None:
        out.print(f"domains     {', '.join(cfg.domains)}")
        out.print(f"forward to  {cfg.forward_to}")
        ds = cfg.downstream
        out.print(f"through     {f'{ds.host}:{ds.port} ({ds.tls})' if ds else 'nothing (kept in the vault)'}")
        out.print(f"limits      {cfg.max_message_bytes} bytes, {cfg.max_recipients} recipients")

    emit(as_json, data, text)


@mail.command("key")
def mail_key(ctx: typer.Context) -> None:
    """Print the mail key, for a gateway started without your passphrase (OPENVRM_MAIL_KEY).

    It opens the mail routing tables only (aliases, settings, the spool), never the rest of the vault.
    """
    with unlocked(ctx) as uv:
        sys.stdout.write(MailService(uv).mail_key_text() + "\n")


def resolver_for(zone_file: Path | None) -> Resolver:
    """The network's DNS, or a fixed zone from a JSON file (tests and the demo, which have no Internet)."""
    if zone_file is None:
        return DnsResolver()
    try:
        return ZoneResolver.from_json(json.loads(zone_file.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise InvalidValue(f"cannot read the DNS zone file {zone_file}: {exc}") from None


@mail.command("serve")
def mail_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SMTP port (25 in production, behind your MX record).")] = 2525,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Certificate chain (PEM) to offer STARTTLS to senders.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key (PEM).")] = None,
    dns_zone: Annotated[
        Path | None,
        typer.Option(
            "--dns-zone",
            help='Answer DNS from this JSON file ({"name TXT": ["..."]}) instead of the network: tests only.',
            hidden=True,
        ),
    ] = None,
) -> None:
    """Run the SMTP gateway: accept mail for your aliases, check it, forward or keep it.

    It holds the mail key only (from OPENVRM_MAIL_KEY, or derived once from your passphrase at start).
    """
    from openvrm.server.smtp_gateway import GatewayServer, server_tls_context

    if (tls_cert is None) != (tls_key is None):
        raise InvalidValue("STARTTLS needs both --tls-cert and --tls-key")
    tls = None
    if tls_cert is not None and tls_key is not None:
        try:
            tls = server_tls_context(str(tls_cert), str(tls_key))
        except (OSError, ValueError) as exc:
            raise InvalidValue(f"cannot load the TLS certificate or key: {exc}") from None
    st = state(ctx)
    key_text = os.environ.get("OPENVRM_MAIL_KEY")
    if key_text:
        keys = MailKeys.from_text(key_text)
    else:
        with unlocked(ctx) as uv:
            keys = MailKeys.from_vault(uv)
    vault = open_vault(st)
    try:
        gw = Gateway(vault, keys, resolver_for(dns_zone))
        cfg = gw.config()
        server = GatewayServer(gw, host=host, port=port, tls_context=tls)
        out.print(f"openvrm mail gateway for {', '.join(cfg.domains)} on smtp://{host}:{port} (Ctrl-C stops)")
        try:
            asyncio.run(server.serve_forever())
        except KeyboardInterrupt:
            pass
    finally:
        vault.close()


# -- vrm mail alias ---------------------------------------------------------------------------------------


@alias_cmd.command("create")
def alias_create(
    ctx: typer.Context,
    vendor_id: Annotated[str, typer.Argument(help="The vendor (id from `vrm vendors list`).")],
    style: Annotated[
        str, typer.Option(help=f"{' or '.join(STYLES)}: shop.x7k2@… or amber.otter.42@….")
    ] = "vendor",
    domain: Annotated[
        str | None, typer.Option(help="One of the gateway's domains (default: the first).")
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note for yourself.")] = None,
    relationship: Annotated[
        str | None,
        typer.Option(
            help="The relationship it is for (default: the vendor's first); forwarded mail names it."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a vendor a new alias."""
    with unlocked(ctx) as uv:
        a = MailService(uv).create_alias(
            vendor_id, style=style, domain=domain, note=note, relationship_id=relationship
        )
    emit(as_json, a.to_json(), f"{a.address} is now {a.vendor_name}'s address for you ({a.id}).")


@alias_cmd.command("list")
def alias_list(
    ctx: typer.Context,
    vendor: Annotated[str | None, typer.Option("--vendor", help="Only this vendor's aliases.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List aliases."""
    with unlocked(ctx) as uv:
        aliases = MailService(uv).aliases(vendor_id=vendor)
    emit(as_json, [a.to_json() for a in aliases], lambda: _print_aliases(aliases))


def _toggle(ctx: typer.Context, alias_id: str, enabled: bool, as_json: bool) -> None:
    with unlocked(ctx) as uv:
        a = MailService(uv).set_enabled(alias_id, enabled)
    emit(
        as_json, a.to_json(), f"{a.address} is {'enabled' if enabled else 'disabled: mail to it is refused'}."
    )


@alias_cmd.command("disable")
def alias_disable(ctx: typer.Context, alias_id: AliasArg, as_json: JsonOpt = False) -> None:
    """Refuse mail to an alias (the sender gets a bounce); enable it again at any time."""
    _toggle(ctx, alias_id, False, as_json)


@alias_cmd.command("enable")
def alias_enable(ctx: typer.Context, alias_id: AliasArg, as_json: JsonOpt = False) -> None:
    """Accept mail to a disabled alias again."""
    _toggle(ctx, alias_id, True, as_json)


@alias_cmd.command("delete")
def alias_delete(ctx: typer.Context, alias_id: AliasArg, as_json: JsonOpt = False) -> None:
    """Delete an alias and its reply addresses (filed messages stay)."""
    with unlocked(ctx) as uv:
        MailService(uv).delete_alias(alias_id)
    emit(as_json, {"deleted": alias_id}, f"Alias {alias_id} deleted.")


@alias_cmd.command("rules")
def alias_rules(
    ctx: typer.Context,
    alias_id: Annotated[str | None, typer.Argument(help="The alias (or use --vendor).")] = None,
    vendor: Annotated[str | None, typer.Option("--vendor", help="Every alias of this vendor.")] = None,
    mode: Annotated[str | None, typer.Option(help=f"{', '.join(MODES)}.")] = None,
    deliver: Annotated[
        str | None, typer.Option(help=f"{', '.join(DELIVERIES)}: forward, or keep in the vault only.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set what happens to mail: forward all, keep only transactional mail, or mute promotions.

    Mail that is not forwarded is kept in the vault; nothing is thrown away.
    """
    with unlocked(ctx) as uv:
        changed = MailService(uv).set_rules(alias_id=alias_id, vendor_id=vendor, mode=mode, deliver=deliver)
    emit(as_json, [a.to_json() for a in changed], lambda: _print_aliases(changed))


# -- messages -----------------------------------------------------------------------------------------------


def _print_messages(msgs: list[MailRecord]) -> None:
    table = Table("id", "received", "from", "to", "subject", "kind", "flags")
    for m in msgs:
        flags: list[str | Text] = []
        if m.leaked:
            flags.append(Text(f"leak: {m.leak.get('reached')}", "red"))
        if m.forwarded:
            flags.append("forwarded")
        if m.bills:
            flags.append(f"{len(m.bills)} bill(s)")
        table.add_row(
            m.id,
            m.received_at.strftime("%Y-%m-%d %H:%M"),
            str(m.summary.get("from", "")),
            m.alias or "",
            str(m.summary.get("subject", "")),
            str(m.summary.get("kind", "")),
            Text(", ").join(Text(f) if isinstance(f, str) else f for f in flags),
        )
    out.print(table)


@mail.command("messages")
def mail_messages(
    ctx: typer.Context,
    vendor: Annotated[str | None, typer.Option("--vendor", help="Only this vendor's mail.")] = None,
    leaks: Annotated[bool, typer.Option("--leaks", help="Only mail flagged as a leak.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List mail received through your aliases (files what arrived while the vault was locked first)."""
    with unlocked(ctx) as uv:
        svc = MailService(uv)
        svc.file_inbox()
        msgs = svc.messages(vendor_id=vendor, leaks_only=leaks)
    emit(as_json, [m.to_json() for m in msgs], lambda: _print_messages(msgs))


@mail.command("message")
def mail_message(
    ctx: typer.Context,
    message_id: MessageArg,
    raw: Annotated[bool, typer.Option("--raw", help="Print the whole message as received.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one message: who wrote, the SPF/DKIM/DMARC results, the leak verdict, the text."""
    with unlocked(ctx) as uv:
        svc = MailService(uv)
        if raw:
            sys.stdout.buffer.write(svc.raw(message_id))
            return
        m = svc.message(message_id)
        body = svc.body(message_id)
    data: dict[str, Any] = m.to_json() | {"body": body}

    def text() -> None:
        out.print(str(m.summary.get("subject", "")), style="bold")
        out.print(f"from {m.summary.get('from')} to {m.alias}, {m.received_at:%Y-%m-%d %H:%M}")
        dkim = ", ".join(f"{d['domain']}={d['result']}" for d in m.auth.get("dkim", [])) or "none"
        out.print(f"SPF {m.auth.get('spf')}, DKIM {dkim}, DMARC {m.auth.get('dmarc')}")
        if m.leaked:
            reached = Text(f"This address reached {m.leak.get('reached')}", "red")
            out.print(Text.assemble(reached, f": {m.leak.get('reason')}"))
        for b in m.bills:
            out.print(f"bill {b['filename']}: {b['status']} {b.get('document_id') or ''}")
        if body:
            out.print()
            out.print(body)

    emit(as_json, data, text)


@mail.command("not-a-leak")
def mail_not_a_leak(ctx: typer.Context, message_id: MessageArg, as_json: JsonOpt = False) -> None:
    """Say a flagged sender is the vendor after all: its domain joins the vendor's domains."""
    with unlocked(ctx) as uv:
        m = MailService(uv).clear_leak(message_id)
    emit(as_json, m.to_json(), "Cleared: that domain now counts as the vendor's.")


@mail.command("send")
def mail_send(
    ctx: typer.Context,
    alias_id: Annotated[str, typer.Argument(help="Write as this alias.")],
    to: Annotated[str, typer.Option("--to", help="The vendor's address.")],
    subject: Annotated[str, typer.Option(help="The subject.")],
    body: Annotated[str | None, typer.Option(help="The text (or --body-file).")] = None,
    body_file: Annotated[
        Path | None, typer.Option(help="Read the text from this file ('-' for stdin).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write to a vendor as the alias; the gateway sends it (your real address never appears)."""
    if (body is None) == (body_file is None):
        raise InvalidValue("give the text with --body or --body-file")
    text = (
        body
        if body is not None
        else (sys.stdin.read() if str(body_file) == "-" else Path(str(body_file)).read_text("utf-8"))
    )
    with unlocked(ctx) as uv:
        entry = MailService(uv).send(alias_id, to=to, subject=subject, body=text)
    emit(
        as_json,
        entry.to_json(),
        f"Queued ({entry.id}); the running gateway sends it (or `vrm mail deliver`).",
    )


@mail.command("queue")
def mail_queue(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Mail the gateway still owes a server: waiting, retrying or failed."""
    with unlocked(ctx) as uv:
        entries = MailService(uv).spool().entries()

    def text() -> None:
        table = id_table("state", "attempts", "next attempt", "to", "last error")
        for e in entries:
            table.add_row(
                e.id,
                e.state,
                str(e.attempts),
                e.next_attempt_at.strftime("%Y-%m-%d %H:%M"),
                ", ".join(e.recipients),
                e.last_error or "",
            )
        out.print(table)

    emit(as_json, [e.to_json() for e in entries], text)


@mail.command("deliver")
def mail_deliver(
    ctx: typer.Context,
    retry: Annotated[
        list[str] | None, typer.Option("--retry", help="Also retry this failed entry now (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliver spooled mail now (what a running gateway does on its own)."""
    from openvrm.server.smtp_gateway import downstream_transport

    with unlocked(ctx) as uv:
        svc = MailService(uv)
        cfg = svc.routes.require_config()
        if cfg.downstream is None:
            raise InvalidValue("no server to deliver through: `vrm mail gateway setup --smtp-host …`")
        spool = svc.spool()
        for entry_id in retry or []:
            spool.retry(entry_id)
        transport = downstream_transport(cfg.downstream, cfg.forward_to)

        async def run() -> Any:
            try:
                return await spool.deliver(transport)
            finally:
                await transport.close()

        report = asyncio.run(run())
    data = {
        "sent": report.sent,
        "retrying": report.retrying,
        "failed": report.failed,
        "errors": report.errors,
    }
    emit(as_json, data, f"sent {report.sent}, retrying later {report.retrying}, failed {report.failed}")
