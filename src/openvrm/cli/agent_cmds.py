"""`vrm connect`, `vrm connections`, `vrm grants`, `vrm holders`, `vrm requests`, `vrm ledger verify`.

The person's side of the VRM protocol from the command line: connect to a vendor under your terms, grant
and revoke profile fields, answer vendors' data requests, and check the signed ledger of every connection.
"""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from openvrm.agent.service import DEFAULT_PURPOSE, DEFAULT_TERMS, AgentService
from openvrm.cli.context import AgentUrlOpt, JsonOpt, emit, id_table, out, state, unlocked
from openvrm.ledger.money import parse_date
from openvrm.net import policy_for
from openvrm.vault.core import UnlockedVault

connections = typer.Typer(
    help="Protocol connections with vendors: ledger, end, block, GDPR.", no_args_is_help=True
)
grants = typer.Typer(
    help="Profile fields granted to vendors: add, list, revoke, consent receipts.", no_args_is_help=True
)
requests = typer.Typer(
    help="Vendors' requests for your data, waiting for your decision.", no_args_is_help=True
)
ledger = typer.Typer(help="The signed, hash-chained ledgers of your connections.", no_args_is_help=True)

ConnectionArg = Annotated[
    str, typer.Argument(help="The connection's id, as `vrm connections list` shows it.")
]
GrantArg = Annotated[str, typer.Argument(help="The grant's id, as `vrm grants list` shows it.")]
GrantUntilOpt = Annotated[
    str | None, typer.Option("--until", help="Last day of the grant (YYYY-MM-DD); default: no end.")
]
EntryArg = Annotated[str, typer.Argument(help="The request's entry id, as `vrm requests list` shows it.")]


def register(app: typer.Typer) -> None:
    app.command("connect")(connect_cmd)
    app.add_typer(connections, name="connections")
    app.add_typer(grants, name="grants")
    app.command("holders")(holders_cmd)
    app.add_typer(requests, name="requests")
    app.add_typer(ledger, name="ledger")


def _agent(ctx: typer.Context, uv: UnlockedVault) -> AgentService:
    return AgentService(uv, policy=policy_for(state(ctx).settings()))


def connect_cmd(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The vendor's site or its /.well-known/vrm URL.")],
    term: Annotated[
        list[str] | None,
        typer.Option(
            "--term", help=f"A roster term to proffer, preferred first (default: {', '.join(DEFAULT_TERMS)})."
        ),
    ] = None,
    agent_url: AgentUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Connect to a vendor: proffer your terms; on an accept both sides sign the agreement."""
    base = agent_url or os.environ.get("OPENVRM_PUBLIC_URL") or "http://127.0.0.1:8765"
    with unlocked(ctx) as uv:
        result = _agent(ctx, uv).connect(url, agent_base_url=base, terms=term)

    def text() -> None:
        if result.connection is not None:
            t = result.term or {}
            out.print(f"Connected to {result.connection.vendor_name} under {t.get('id')} {t.get('version')}.")
            out.print(f"Connection id: {result.connection.id}")
        elif result.decision == "alternative":
            t = result.term or {}
            out.print(f"The vendor offers another term instead: {t.get('id')} {t.get('version')}.")
            out.print(f"To accept it: vrm connect {url} --term {t.get('id')}")
        else:
            out.print(f"The vendor declined: {result.reason or 'no reason given'}")

    emit(as_json, result.to_json(), text)


@connections.command("list")
def list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every connection, with its term and status."""
    with unlocked(ctx) as uv:
        items = _agent(ctx, uv).connections()

    def text() -> None:
        table = id_table("vendor", "term", "status", "since")
        for c in items:
            table.add_row(
                c.id,
                c.vendor_name,
                (c.term or {}).get("id", ""),
                c.status,
                c.created_at.date().isoformat() if c.created_at else "",
            )
        out.print(table if items else "No connections yet: `vrm connect URL`.")

    emit(as_json, [c.to_json() for c in items], text)


@connections.command("show")
def show_cmd(ctx: typer.Context, connection_id: ConnectionArg, as_json: JsonOpt = False) -> None:
    """A connection, its ledger and its grants."""
    with unlocked(ctx) as uv:
        agent = _agent(ctx, uv)
        c = agent.get(connection_id)
        entries = agent.ledger(connection_id)
        gs = agent.grants(connection_id)

    def text() -> None:
        out.print(Text.assemble((c.vendor_name, "bold"), f" ({c.status}) under {(c.term or {}).get('id')}"))
        out.print(f"agreement {c.agreement_id}")
        table = Table("#", "from", "event", "state", "at")
        for e in entries:
            table.add_row(str(e.position), e.author, e.subtype, e.state, str(e.event.get("created_at")))
        out.print(table)
        for g in gs:
            status = "active" if g.active else "revoked" if g.revoked_at else "expired"
            out.print(f"grant {g.id}: {', '.join(g.fields)} ({status})")

    data = {
        "connection": c.to_json(),
        "ledger": [e.to_json() for e in entries],
        "grants": [g.to_json() for g in gs],
    }
    emit(as_json, data, text)


@connections.command("end")
def end_cmd(
    ctx: typer.Context,
    connection_id: ConnectionArg,
    reason: Annotated[str, typer.Option("--reason", help="Told to the vendor.")] = "ended by the person",
    as_json: JsonOpt = False,
) -> None:
    """End a relationship: grants are revoked and the vendor acknowledges the end."""
    with unlocked(ctx) as uv:
        entry = _agent(ctx, uv).end(connection_id, reason=reason)
    emit(as_json, entry.to_json(), f"End of relationship sent ({entry.state}).")


@connections.command("block")
def block_cmd(
    ctx: typer.Context,
    connection_id: ConnectionArg,
    unblock: Annotated[bool, typer.Option("--unblock", help="Unblock it instead.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Block a vendor (it gets nothing and can push nothing), or --unblock it."""
    with unlocked(ctx) as uv:
        c = _agent(ctx, uv).set_blocked(connection_id, not unblock)
    emit(as_json, c.to_json(), f"{c.vendor_name} is now {c.status}.")


@connections.command("gdpr")
def gdpr_cmd(
    ctx: typer.Context,
    connection_id: ConnectionArg,
    right: Annotated[
        str,
        typer.Option(
            "--right", help="access, rectification, erasure, restriction, portability or objection."
        ),
    ],
    scope: Annotated[
        str, typer.Option("--scope", help="What the request covers, in your words (up to 500 characters).")
    ] = "all personal data you hold about me under this relationship",
    as_json: JsonOpt = False,
) -> None:
    """Send a GDPR request as a signed ledger event."""
    with unlocked(ctx) as uv:
        entry = _agent(ctx, uv).gdpr_request(connection_id, right, scope=scope)
    emit(as_json, entry.to_json(), f"GDPR {right} request sent ({entry.state}).")


@connections.command("sync")
def sync_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """File events vendors pushed while the vault was locked, and re-send what is not acknowledged."""
    with unlocked(ctx) as uv:
        agent = _agent(ctx, uv)
        filed, refused = agent.process_inbox()
        delivered = agent.deliver_pending()
    data = {"filed": filed, "refused": refused, "delivered": delivered}
    emit(as_json, data, f"Filed {filed} event(s), refused {refused}, delivered {delivered} pending.")


@grants.command("add")
def grant_add_cmd(
    ctx: typer.Context,
    connection_id: ConnectionArg,
    field: Annotated[list[str], typer.Option("--field", help="A profile field to grant (repeat).")],
    purpose: Annotated[str, typer.Option("--purpose", help="A DPV purpose IRI.")] = DEFAULT_PURPOSE,
    until: GrantUntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant profile fields to a connection; the values are sealed to the vendor's key."""
    end = parse_date(until, "--until") if until else None
    with unlocked(ctx) as uv:
        g = _agent(ctx, uv).grant(connection_id, field, purpose=purpose, until=end)
    emit(as_json, g.to_json(), f"Granted {', '.join(g.fields)} (grant {g.id}).")


@grants.command("list")
def grant_list_cmd(
    ctx: typer.Context,
    connection: Annotated[
        str | None, typer.Option("--connection", help="Only this connection's grants (its id).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every grant, active or not."""
    with unlocked(ctx) as uv:
        items = _agent(ctx, uv).grants(connection)

    def text() -> None:
        table = id_table("connection", "fields", "until", "status")
        for g in items:
            status = "active" if g.active else "revoked" if g.revoked_at else "expired"
            table.add_row(g.id, g.connection_id, ", ".join(g.fields), g.until or "", status)
        out.print(table if items else "No grants.")

    emit(as_json, [g.to_json() for g in items], text)


@grants.command("revoke")
def grant_revoke_cmd(ctx: typer.Context, grant_id: GrantArg, as_json: JsonOpt = False) -> None:
    """Revoke a grant: the vendor can no longer fetch it, and is told."""
    with unlocked(ctx) as uv:
        g = _agent(ctx, uv).revoke(grant_id)
    emit(as_json, g.to_json(), f"Revoked grant {g.id}.")


@grants.command("receipt")
def grant_receipt_cmd(ctx: typer.Context, grant_id: GrantArg) -> None:
    """Print the grant as a Kantara Consent Receipt v1.1 (JSON)."""
    with unlocked(ctx) as uv:
        receipt = _agent(ctx, uv).kantara_receipt(grant_id)
    out.print_json(json.dumps(receipt))


def holders_cmd(
    ctx: typer.Context,
    field: Annotated[
        str | None,
        typer.Argument(help="A profile field, e.g. email or address.home; every field when omitted."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who holds my ...? Every vendor with an active grant, per field."""
    with unlocked(ctx) as uv:
        items = _agent(ctx, uv).holders(field)

    def text() -> None:
        table = Table("field", "vendor", "purpose", "until", "grant")
        for h in items:
            table.add_row(h.field, h.vendor_name, h.purpose.rsplit("#", 1)[-1], h.until or "", h.grant_id)
        out.print(table if items else "No vendor holds that through a grant.")

    emit(as_json, [h.to_json() for h in items], text)


@requests.command("list")
def requests_list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Data requests waiting for your decision."""
    with unlocked(ctx) as uv:
        pairs = _agent(ctx, uv).data_requests()

    def text() -> None:
        table = Table("entry", "vendor", "fields", "why")
        for c, e in pairs:
            p = e.event["payload"]
            table.add_row(e.id, c.vendor_name, ", ".join(p.get("fields", [])), str(p.get("why", "")))
        out.print(table if pairs else "No data requests waiting.")

    emit(as_json, [{"connection": c.to_json(), "entry": e.to_json()} for c, e in pairs], text)


@requests.command("approve")
def requests_approve_cmd(
    ctx: typer.Context,
    entry_id: EntryArg,
    until: GrantUntilOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a data request: the fields are granted (maybe until a date) and the vendor told."""
    end = parse_date(until, "--until") if until else None
    with unlocked(ctx) as uv:
        entry = _agent(ctx, uv).answer_data_request(entry_id, approve=True, until=end)
    emit(as_json, entry.to_json(), "Approved.")


@requests.command("deny")
def requests_deny_cmd(ctx: typer.Context, entry_id: EntryArg, as_json: JsonOpt = False) -> None:
    """Deny a data request; the vendor is told."""
    with unlocked(ctx) as uv:
        entry = _agent(ctx, uv).answer_data_request(entry_id, approve=False)
    emit(as_json, entry.to_json(), "Denied.")


@ledger.command("verify")
def verify_cmd(
    ctx: typer.Context,
    connection_id: Annotated[
        str | None,
        typer.Argument(help="One connection's id (`vrm connections list`); every connection when omitted."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every agreement, hash link, signature and acknowledgement; name the first broken link.

    Exits with 4 when a chain is broken.
    """
    with unlocked(ctx) as uv:
        reports = _agent(ctx, uv).verify(connection_id)

    def text() -> None:
        for r in reports:
            if r.ok:
                out.print(f"ok  {r.agreement_id}: {r.events} event(s), {r.acknowledged} acknowledged")
            else:
                where = f"event {r.broken_at} ({r.broken_event})" if r.broken_at else "the agreement"
                out.print(f"BROKEN  {r.agreement_id}: at {where}: {r.reason}")
        if not reports:
            out.print("No connections to verify.")

    emit(as_json, [r.to_json() for r in reports], text)
    if any(not r.ok for r in reports):
        raise typer.Exit(4)
