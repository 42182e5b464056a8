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
relay = typer.Typer(
    help="Answer people's intents: register at an intent relay, subscribe, read intents, send offers.",
    no_args_is_help=True,
)

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
    vendor.add_typer(relay, name="relay")


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
    from openvrm.vendor.relay_client import intent_links

    with _kit(store) as kit:
        rows = kit.relationships()
        links = intent_links(kit)

    def text() -> None:
        if not rows:
            out.print("no relationships yet")
            return
        table = Table("agreement", "status", "term", "events", "since", "from intent")
        for r in rows:
            link = links.get(r.agreement_id)
            table.add_row(
                r.agreement_id,
                r.status,
                r.term,
                str(r.events),
                r.created_at.date().isoformat(),
                f"{link['intent_id']} (offer {link['offer_id']})" if link else "-",
            )
        out.print(table)

    emit(as_json, [{**r.to_json(), "intent": links.get(r.agreement_id)} for r in rows], text)


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


# -- vrm vendor relay ---------------------------------------------------------------------------------------

RelayOpt = Annotated[
    str | None,
    typer.Option(
        "--relay", help="The relay's URL (default: the one registered with `vrm vendor relay register`)."
    ),
]


def _money(amount: str | None, currency: str, per: str | None) -> dict[str, str] | None:
    if amount is None:
        return None
    from openvrm.vendor.rules import PERIODS

    money = {"amount": amount.strip(), "currency": currency.strip().upper()}
    if per is not None:
        if per not in PERIODS:
            raise InvalidValue(f"--per is one of {', '.join(PERIODS)}")
        money["per"] = per
    return money


@relay.command("register")
def relay_register_cmd(
    relay_url: Annotated[str, typer.Argument(help="The relay's URL, e.g. https://relay.example/relay.")],
    webhook: Annotated[
        bool,
        typer.Option(
            "--webhook/--no-webhook",
            help="Have intents pushed to our /vrm/relay-hook (else read them with `vrm vendor relay poll`).",
        ),
    ] = True,
    name: Annotated[str | None, typer.Option(help="The name shown with our offers (default: ours).")] = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Register the vendor at an intent relay (again: update it) and remember the relay."""
    from openvrm.vendor.relay_client import HOOK_PATH, RelayClient

    config = VendorConfig.load(store)
    with _kit(store) as kit:
        client = RelayClient(kit, relay_url)
        client.register(name, webhook=webhook)
        config.relay_url = client.relay_url
        config.save()
        hook = kit.url(HOOK_PATH) if webhook else None
    emit(
        as_json,
        {"relay": client.relay_url, "webhook": hook},
        lambda: _say(
            f"registered at {client.relay_url}; "
            + (f"intents are pushed to {hook}" if hook else "read intents with `vrm vendor relay poll`")
        ),
    )


@relay.command("subscribe")
def relay_subscribe_cmd(
    category: Annotated[
        list[str],
        typer.Option(
            "--category", help="A taxonomy id (telecom.mobile); repeat. A parent covers its children."
        ),
    ],
    region: Annotated[
        list[str] | None, typer.Option("--region", help="A country (FR) or country-region (FR-ARA); repeat.")
    ] = None,
    keyword: Annotated[
        list[str] | None,
        typer.Option("--keyword", help="Only intents whose text holds one of these; repeat."),
    ] = None,
    price_min: Annotated[
        str | None, typer.Option("--price-min", help="Skip intents whose ceiling is below.")
    ] = None,
    price_max: Annotated[str | None, typer.Option("--price-max", help="The top of our price range.")] = None,
    currency: Annotated[str, typer.Option(help="The currency of --price-min/--price-max.")] = "EUR",
    relay_url: RelayOpt = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Subscribe to the intents of some categories (and regions, prices, keywords)."""
    from openvrm.vendor.relay_client import RelayClient

    with _kit(store) as kit:
        sub_id = RelayClient(kit, relay_url).subscribe(
            category,
            regions=region or (),
            price_min=_money(price_min, currency, None),
            price_max=_money(price_max, currency, None),
            keywords=keyword or (),
        )
    emit(as_json, {"subscription_id": sub_id}, lambda: _say(f"subscription {sub_id}"))


@relay.command("subscriptions")
def relay_subscriptions_cmd(
    relay_url: RelayOpt = None, store: StoreOpt = DEFAULT_STORE_DIR, as_json: JsonOpt = False
) -> None:
    """List our subscriptions at the relay."""
    from openvrm.vendor.relay_client import RelayClient

    with _kit(store) as kit:
        subs = RelayClient(kit, relay_url).subscriptions()

    def text() -> None:
        if not subs:
            out.print("no subscriptions")
        for sub in subs:
            cats = ", ".join(sub.get("categories") or [])
            _say(f"{sub.get('subscription_id')}: {cats} {sub.get('regions') or ''}")

    emit(as_json, subs, text)


@relay.command("unsubscribe")
def relay_unsubscribe_cmd(
    subscription_id: Annotated[str, typer.Argument(help="The subscription id.")],
    relay_url: RelayOpt = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Delete one of our subscriptions."""
    from openvrm.vendor.relay_client import RelayClient

    with _kit(store) as kit:
        RelayClient(kit, relay_url).unsubscribe(subscription_id)
    emit(as_json, {"deleted": subscription_id}, lambda: _say(f"subscription {subscription_id} deleted"))


@relay.command("poll")
def relay_poll_cmd(
    answer: Annotated[
        bool, typer.Option("--answer", help="Answer each new intent with the rules file (rules.json).")
    ] = False,
    relay_url: RelayOpt = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Read the relay's feed from where we stopped: new intents and decisions are stored."""
    from openvrm.vendor.relay_client import RelayClient

    with _kit(store) as kit:
        client = RelayClient(kit, relay_url)
        pages = []
        while True:
            page = client.poll()
            pages.append(page)
            if not page.items or len(pages) >= 50:
                break
        intents = [i for p in pages for i in p.intents]
        decisions = [d for p in pages for d in p.decisions]
        answers = {i["intent_id"]: client.answer(i) for i in intents} if answer else {}
    skipped = [s for p in pages for s in p.skipped]
    data = {
        "intents": [i["intent_id"] for i in intents],
        "decisions": [{"intent_id": d["intent_id"], "decision": d.get("decision")} for d in decisions],
        "skipped": skipped,
        "answers": answers,
        "cursor": pages[-1].next,
    }

    def text() -> None:
        _say(f"{len(intents)} new intent(s), {len(decisions)} decision(s)")
        for i in intents:
            line = f"  {i['intent_id']} {i['category']}: {i.get('text', '')}"
            if i["intent_id"] in answers:
                a = answers[i["intent_id"]]
                line += f" -> offer {a['offer_id']}" if a["offer_id"] else f" -> no offer ({a['reason']})"
            _say(line)
        for d in decisions:
            _say(f"  {d['intent_id']}: {d.get('decision')}")
        for s in skipped:
            _say(f"  skipped {s}")

    emit(as_json, data, text)


@relay.command("offer")
def relay_offer_cmd(
    intent_id: Annotated[
        str, typer.Argument(help="The intent's id (or a unique prefix), from `vrm vendor relay intents`.")
    ],
    price: Annotated[str, typer.Option(help="The price, like 12.99.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, like EUR.")] = "EUR",
    per: Annotated[str, typer.Option(help="month, year or once.")] = "month",
    include: Annotated[list[str] | None, typer.Option("--include", help="What is included; repeat.")] = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="A feature NAME=VALUE (data_gb=60); repeat.")
    ] = None,
    conditions: Annotated[str, typer.Option(help="Conditions, in plain words.")] = "",
    contract_months: Annotated[
        int | None, typer.Option("--contract-months", help="Minimum term in months (0: none).")
    ] = None,
    valid_days: Annotated[int, typer.Option("--valid-days", help="How long the offer holds.")] = 7,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Answer a received intent with an offer, signed and sealed to the intent's key."""
    from datetime import UTC, datetime, timedelta

    from openvrm.protocol import messages as m
    from openvrm.vendor.relay_client import RelayClient, received_intent

    features = []
    for item in feature or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidValue(f"a feature is written NAME=VALUE, not {item!r}")
        features.append({"name": name.strip(), "value": value.strip()})
    money = _money(price, currency, per)
    assert money is not None  # noqa: S101 - price is required
    with _kit(store) as kit:
        info = received_intent(kit, intent_id)
        until = min(datetime.now(UTC) + timedelta(days=valid_days), m.parse_time(info.expires_at))
        accepted = [m.term_ref(t) for t in kit.config.terms()]
        terms = [t for t in info.record.get("terms", []) if t in accepted]
        if not terms:
            raise InvalidValue("the intent allows none of the terms this vendor accepts (see --accept)")
        offer = RelayClient(kit, info.relay).send_offer(
            info.record,
            price=money,
            includes=include or (),
            features=features,
            conditions=conditions,
            contract_months=contract_months,
            valid_until=until,
            terms=terms,
        )
    emit(as_json, offer, lambda: _say(f"offer {offer['offer_id']} sent for intent {info.intent_id}"))


@relay.command("intents")
def relay_intents_cmd(
    state: Annotated[
        str | None,
        typer.Option(help="Only intents in this state: open, offered, accepted, declined, closed."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """List the intents relays delivered to us, and what became of them."""
    from openvrm.vendor.relay_client import STATES, received_intents

    if state is not None and state not in STATES:
        raise InvalidValue(f"--state is one of {', '.join(STATES)}")
    with _kit(store) as kit:
        rows = received_intents(kit, state)

    def text() -> None:
        if not rows:
            out.print("no intents received")
            return
        table = Table("intent", "category", "state", "offer", "expires", "text")
        for r in rows:
            table.add_row(r.intent_id, r.category, r.state, r.offer_id or "-", r.expires_at, r.text)
        out.print(table)

    emit(as_json, [r.to_json() for r in rows], text)


@relay.command("rules")
def relay_rules_cmd(
    file: Annotated[
        Path | None, typer.Option("--file", help="The rules file (default: the store's rules.json).")
    ] = None,
    store: StoreOpt = DEFAULT_STORE_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Check a rules file and show the rules that will answer intents."""
    from openvrm.vendor.rules import load_rules

    path = file if file is not None else VendorConfig.load(store).rules_file
    if not path.exists():
        raise NotFound(f"no rules file at {path}: write one (see docs/vendors.md, 'Answering intents')")
    rules = load_rules(path)
    data = [
        {
            "rule": r.index,
            "category": r.category,
            "country": list(r.country),
            "keywords_any": list(r.keywords_any),
            "max_price_at_least": str(r.max_price_at_least) if r.max_price_at_least is not None else None,
            "even_over_budget": r.even_over_budget,
            "offer": r.offer.to_json(),
        }
        for r in rules.rules
    ]

    def text() -> None:
        _say(f"{path}: {len(data)} rule(s)")
        for r in rules.rules:
            where = ",".join(r.country) or "anywhere"
            _say(f"  {r.index}: {r.category} in {where} -> {r.offer.price} {r.offer.currency}/{r.offer.per}")

    emit(as_json, data, text)
