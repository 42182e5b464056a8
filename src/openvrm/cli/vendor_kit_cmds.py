"""`vrm vendor`: run the vendor kit (the company side of the protocol) and act as the vendor.

The kit keeps its key, store and configuration in one folder (``--store``, default ``./vrm-vendor`` or
``OPENVRM_VENDOR_STORE``). `vrm vendor serve` writes the configuration there; the other commands read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openvrm.cli.context import JsonOpt, emit, out
from openvrm.errors import InvalidValue, NotFound
from openvrm.vendor.config import CONFIG_FILE, DEFAULT_STORE_DIR, VendorConfig
from openvrm.vendor.kit import PushResult, VendorKit
from openvrm.vendor.rbutton import snippet

vendor = typer.Typer(
    help="Run the vendor kit: meet people's VRM agents as a company (see docs/vendors.md).",
    no_args_is_help=True,
)
push = typer.Typer(help="Push a receipt or a notice to a person's agent.", no_args_is_help=True)

DEFAULT_PURPOSE = "https://w3id.org/dpv#ServiceProvision"

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="OPENVRM_VENDOR_STORE",
        help="The vendor kit's folder (key, database, configuration). Env: OPENVRM_VENDOR_STORE.",
    ),
]
AgreementArg = Annotated[str, typer.Argument(help="The relationship's agreement id (or a unique prefix).")]


def register(app: typer.Typer) -> None:
    app.add_typer(vendor, name="vendor")
    vendor.add_typer(push, name="push")


@contextmanager
def _kit(store: Path) -> Iterator[VendorKit]:
    kit = VendorKit(VendorConfig.load(store))
    try:
        yield kit
    finally:
        kit.close()


def _agreement(kit: VendorKit, text: str) -> str:
    text = text.strip()
    ids = [r.agreement_id for r in kit.relationships()]
    if text in ids:
        return text
    found = [i for i in ids if i.startswith(text) or i.removeprefix("sha256:").startswith(text)]
    if len(found) == 1 and len(text) >= 6:
        return found[0]
    if len(found) > 1:
        raise InvalidValue(f"{text!r} matches {len(found)} relationships; give more of the id")
    raise NotFound(f"no relationship {text!r}: see `vrm vendor relationships`")


def _say(text: str) -> None:
    out.print(text, markup=False, emoji=False)


def _pushed(as_json: bool, result: PushResult, what: str) -> None:
    state = {
        "acked": "acknowledged by the agent",
        "delivered": "queued by the agent (its vault is locked); the acknowledgement comes later",
        "pending": "not delivered yet; `vrm vendor retry` sends it again",
    }.get(result.state, result.state)
    emit(as_json, result.to_json(), lambda: _say(f"{what} {result.event_id}: {state}"))


@vendor.command("serve")
def serve_cmd(
    name: Annotated[str | None, typer.Option(help="The vendor's name (kept in the store).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9001,
    store: StoreOpt = DEFAULT_STORE_DIR,
    accept: Annotated[
        list[str] | None,
        typer.Option("--accept", help="A roster term id the vendor accepts; repeat, most preferred first."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="The public URL (default http://HOST:PORT).")
    ] = None,
    allow_loopback: Annotated[
        bool, typer.Option("--allow-loopback", help="Allow agents on 127.0.0.1 (tests and demos).")
    ] = False,
    alternative: Annotated[
        bool,
        typer.Option(
            "--alternative/--no-alternative",
            help="Answer an unacceptable proffer with our first term as an alternative (else reject).",
        ),
    ] = True,
    privacy_contact: Annotated[
        str | None, typer.Option("--privacy-contact", help="An e-mail address.")
    ] = None,
) -> None:
    """Serve the vendor's endpoints with uvicorn and print the r-button snippet."""
    import uvicorn

    from openvrm.vendor.app import create_vendor_app

    saved = VendorConfig.load(store) if (store / CONFIG_FILE).exists() else None
    config = VendorConfig(
        name=name or (saved.name if saved else "Example Vendor"),
        base_url=base_url or f"http://{host}:{port}",
        store_dir=store,
        store_url=saved.store_url if saved else None,
        key_path=saved.key_path if saved else None,
        accepted_terms=tuple(accept)
        if accept
        else (saved.accepted_terms if saved else ("service-delivery-only",)),
        alternative=alternative,
        privacy_contact=privacy_contact or (saved.privacy_contact if saved else None),
        allow_loopback=allow_loopback,
    )
    config.save()
    app = create_vendor_app(config)
    _say(f"{config.name} is serving at {config.base_url} (discovery: /.well-known/vrm)")
    _say(f"vendor key: {app.state.kit.did}")
    out.print("Paste this where the r-button should appear:\n")
    out.print(snippet(config.base_url), markup=False, emoji=False)
    uvicorn.run(app, host=host, port=port, log_level="info")


@vendor.command("snippet")
def snippet_cmd(
    store: StoreOpt = DEFAULT_STORE_DIR,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="The vendor's public URL (default: from the store).")
    ] = None,
) -> None:
    """Print the r-button HTML snippet to paste into the vendor's pages."""
    if base_url is None:
        base_url = (
            VendorConfig.load(store).base_url if (store / CONFIG_FILE).exists() else "http://127.0.0.1:9001"
        )
    out.print(snippet(base_url), markup=False, emoji=False)


@vendor.command("relationships")
def relationships_cmd(store: StoreOpt = DEFAULT_STORE_DIR, as_json: JsonOpt = False) -> None:
    """List the relationships (agreements) with people's agents."""
    with _kit(store) as kit:
        rows = kit.relationships()

    def text() -> None:
        if not rows:
            out.print("no relationships yet")
            return
        table = Table("agreement", "status", "term", "events", "since")
        for r in rows:
            table.add_row(r.agreement_id, r.status, r.term, str(r.events), r.created_at.date().isoformat())
        out.print(table)

    emit(as_json, [r.to_json() for r in rows], text)


@push.command("receipt")
def push_receipt_cmd(
    agreement: AgreementArg,
    receipt_id: Annotated[str, typer.Option("--id", help="The receipt or invoice number.")],
    total: Annotated[str, typer.Option(help="The total, like 19.99.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, like EUR.")],
    issued: Annotated[str | None, typer.Option(help="Date issued, YYYY-MM-DD (default today).")] = None,
    line: Annotated[
        list[str] | None, typer.Option("--line", help="A line 'DESCRIPTION=AMOUNT'; repeat.")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Attach this file (at most 700 KiB).")] = None,
    media_type: Annotated[
        str, typer.Option("--media-type", help="The file's media type.")
    ] = "application/pdf",
    profile: Annotated[str | None, typer.Option(help="The file's profile, e.g. factur-x.")] = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Push a receipt (optionally with its file) to the person's agent."""
    lines = []
    for item in line or []:
        desc, sep, amount = item.rpartition("=")
        if not sep or not desc.strip():
            raise InvalidValue(f"a line is written DESCRIPTION=AMOUNT, not {item!r}")
        lines.append({"description": desc.strip(), "amount": amount.strip()})
    data = file.read_bytes() if file is not None else None
    with _kit(store) as kit:
        result = kit.push_receipt(
            _agreement(kit, agreement), receipt_id, issued, total, currency, lines, data, media_type, profile
        )
    _pushed(as_json, result, "receipt")


@push.command("notice")
def push_notice_cmd(
    agreement: AgreementArg,
    summary: Annotated[str, typer.Option(help="What changes, in one or two sentences.")],
    kind: Annotated[str, typer.Option(help="price-change, terms-change, service-end or other.")] = "other",
    effective: Annotated[str | None, typer.Option(help="When it takes effect, YYYY-MM-DD.")] = None,
    cancel_until: Annotated[
        str | None, typer.Option("--cancel-until", help="Last day the person may cancel, YYYY-MM-DD.")
    ] = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Push a notice (price change, change of terms, end of service) to the person's agent."""
    with _kit(store) as kit:
        result = kit.push_notice(_agreement(kit, agreement), kind, summary, effective, cancel_until)
    _pushed(as_json, result, "notice")


@vendor.command("request-data")
def request_data_cmd(
    agreement: AgreementArg,
    field: Annotated[list[str], typer.Option("--field", help="A field to ask for (e.g. phone); repeat.")],
    why: Annotated[str, typer.Option(help="Why you need it, in plain words.")],
    purpose: Annotated[str, typer.Option(help="The purpose, a DPV IRI.")] = DEFAULT_PURPOSE,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Ask the person for data you were not granted; the answer comes as a ledger event."""
    with _kit(store) as kit:
        request_id = kit.request_data(_agreement(kit, agreement), field, purpose, why)
    emit(as_json, {"request_id": request_id}, lambda: _say(f"data request {request_id} sent"))


@vendor.command("grants")
def grants_cmd(
    agreement: AgreementArg, store: StoreOpt = DEFAULT_STORE_DIR, as_json: JsonOpt = False
) -> None:
    """Fetch and open the data the person granted (sealed to the vendor's key)."""
    with _kit(store) as kit:
        grants = kit.fetch_grants(_agreement(kit, agreement))

    def text() -> None:
        if not grants:
            out.print("nothing granted")
        for g in grants:
            _say(f"grant {g.get('grant_id')} for {g.get('purpose')} until {g.get('until') or '-'}")
            for key, value in (g.get("fields") or {}).items():
                out.print(f"  {key}: {value}", markup=False, emoji=False)

    emit(as_json, grants, text)


@vendor.command("retry")
def retry_cmd(store: StoreOpt = DEFAULT_STORE_DIR, as_json: JsonOpt = False) -> None:
    """Send again every event the agents have not received yet (same idempotency keys)."""
    with _kit(store) as kit:
        results = kit.retry_pending()
    emit(as_json, [r.to_json() for r in results], f"{len(results)} event(s) sent again")
