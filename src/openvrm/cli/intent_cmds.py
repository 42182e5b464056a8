"""`vrm intents ...`: ask the market for offers without saying who you are.

Write an intent (or a standing interest), publish it to a relay under a key made for it only, fetch the
offers vendors send, compare them side by side against your constraints and your current contract, and
accept one: only that vendor then learns who you are, through a connection under the intent's terms.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from openvrm.cli.context import AgentUrlOpt, JsonOpt, emit, id_table, out, state, unlocked
from openvrm.errors import InvalidValue
from openvrm.intents.service import IntentRecord, IntentService, parse_features
from openvrm.intents.taxonomy import categories
from openvrm.net import policy_for
from openvrm.vault.core import UnlockedVault

intents = typer.Typer(
    help="Intents: ask vendors for offers under a fresh pseudonym, compare them, accept one.",
    no_args_is_help=True,
)

RelayOpt = Annotated[
    str | None,
    typer.Option("--relay", help="The relay's URL; default $OPENVRM_RELAY_URL or your server's /relay."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(intents, name="intents")


def _service(ctx: typer.Context, uv: UnlockedVault, relay: str | None = None) -> IntentService:
    return IntentService(uv, policy=policy_for(state(ctx).settings()), relay_url=relay)


def _price(max_price: str | None, currency: str, per: str) -> dict[str, str] | None:
    if max_price is None:
        return None
    return {"amount": max_price, "currency": currency, "per": per}


def _where(country: str | None, region: str | None, postal: str | None, radius: int | None) -> dict[str, Any]:
    return {"country": country, "region": region, "postal_code": postal, "radius_km": radius}


def _print_intent(i: IntentRecord) -> None:
    muted = " · muted" if i.muted else ""
    out.print(Text.assemble((i.category_label, "bold"), f" ({i.category}) · {i.kind} · {i.state}{muted}"))
    if i.text:
        out.print(i.text)
    pm = i.constraints.get("price_max")
    if pm:
        out.print(f"at most {pm['amount']} {pm['currency']} per {pm['per']}")
    for f in i.constraints.get("features", []):
        out.print(f"feature {f['name']}={f['value']}{' (required)' if f['required'] else ''}")
    if "contract_months_max" in i.constraints:
        out.print(f"contract at most {i.constraints['contract_months_max']} months")
    if i.where:
        out.print("where: " + ", ".join(f"{k} {v}" for k, v in i.where.items()))
    if i.expires_at:
        out.print(f"expires {i.expires_at.isoformat()}")
    else:
        out.print(f"expires {i.expires_in_days} days after publishing")
    out.print(f"id: {i.id}")


CategoryOpt = Annotated[
    str | None, typer.Option("--category", help="A taxonomy id (`vrm intents categories`).")
]
TextOpt = Annotated[str | None, typer.Option("--text", help="What you want, in your words.")]
MaxPriceOpt = Annotated[str | None, typer.Option("--max-price", help="The most you would pay, e.g. 15.")]
CurrencyOpt = Annotated[str, typer.Option("--currency", help="The ceiling's currency.")]
PerOpt = Annotated[str, typer.Option("--per", help="month, year or once.")]
FeatureOpt = Annotated[
    list[str] | None, typer.Option("--feature", help="A feature you want, NAME=VALUE (repeatable).")
]
RequiredOpt = Annotated[
    list[str] | None, typer.Option("--required", help="A feature NAME offers must have (repeatable).")
]
QuantityOpt = Annotated[int | None, typer.Option("--quantity", min=1, help="How many you want.")]
MonthsOpt = Annotated[
    int | None, typer.Option("--contract-months-max", min=0, help="Longest contract; 0: no minimum term.")
]
CountryOpt = Annotated[str | None, typer.Option("--country", help="Two-letter country code, e.g. FR.")]
RegionOpt = Annotated[
    str | None,
    typer.Option("--region", help="A region of --country, as an ISO 3166-2 code: ARA or FR-ARA."),
]
PostalOpt = Annotated[
    str | None, typer.Option("--postal-code", help="Where you want it: a postal code, e.g. 69003.")
]
RadiusOpt = Annotated[
    int | None,
    typer.Option("--radius-km", min=1, max=1000, help="How far from the postal code, in kilometres."),
]
IntentArg = Annotated[str, typer.Argument(help="The intent's id, as `vrm intents list` shows it.")]
ExpiresOpt = Annotated[int | None, typer.Option("--expires-in", help="Days until it expires once published.")]
TermOpt = Annotated[
    list[str] | None, typer.Option("--term", help="A roster term to carry (default intent-only; repeatable).")
]


@intents.command("categories")
def categories_cmd(as_json: JsonOpt = False) -> None:
    """The taxonomy: every category id you can ask about."""
    cats = list(categories().values())

    def text() -> None:
        table = Table("id", "label")
        for c in cats:
            table.add_row(c.id, c.label)
        out.print(table)

    emit(as_json, [{"id": c.id, "label": c.label, "aliases": list(c.aliases)} for c in cats], text)


@intents.command("new")
def new_cmd(
    ctx: typer.Context,
    category_id: CategoryOpt = None,
    text: TextOpt = None,
    max_price: MaxPriceOpt = None,
    currency: CurrencyOpt = "EUR",
    per: PerOpt = "month",
    feature: FeatureOpt = None,
    required: RequiredOpt = None,
    quantity: QuantityOpt = None,
    contract_months_max: MonthsOpt = None,
    country: CountryOpt = None,
    region: RegionOpt = None,
    postal_code: PostalOpt = None,
    radius_km: RadiusOpt = None,
    expires_in: ExpiresOpt = None,
    term: TermOpt = None,
    interest: Annotated[
        bool, typer.Option("--interest", help="A standing interest (up to 366 days) instead of a request.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a draft intent; nothing leaves the vault until you publish it."""
    if not category_id:
        raise typer.BadParameter("--category is required (see `vrm intents categories`)")
    with unlocked(ctx) as uv:
        record = _service(ctx, uv).create(
            category_id,
            text or "",
            kind="interest" if interest else "rfp",
            price=_price(max_price, currency, per),
            features=parse_features(feature or [], required or []),
            quantity=quantity,
            contract_months_max=contract_months_max,
            where=_where(country, region, postal_code, radius_km),
            terms=term,
            expires_in_days=expires_in,
        )

    def text_out() -> None:
        _print_intent(record)
        out.print(f"Publish it: vrm intents publish {record.id}")

    emit(as_json, record.to_json(), text_out)


@intents.command("edit")
def edit_cmd(
    ctx: typer.Context,
    intent_id: IntentArg,
    category_id: CategoryOpt = None,
    text: TextOpt = None,
    max_price: MaxPriceOpt = None,
    currency: Annotated[
        str | None, typer.Option("--currency", help="The ceiling's currency (default: as it was, else EUR).")
    ] = None,
    per: Annotated[
        str | None, typer.Option("--per", help="month, year or once (default: as it was, else month).")
    ] = None,
    no_max_price: Annotated[bool, typer.Option("--no-max-price", help="Remove the price ceiling.")] = False,
    feature: FeatureOpt = None,
    required: RequiredOpt = None,
    quantity: QuantityOpt = None,
    contract_months_max: MonthsOpt = None,
    country: CountryOpt = None,
    region: RegionOpt = None,
    postal_code: PostalOpt = None,
    radius_km: RadiusOpt = None,
    expires_in: ExpiresOpt = None,
    term: TermOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a draft (a published intent cannot change: withdraw it and write another)."""
    where = _where(country, region, postal_code, radius_km)
    with unlocked(ctx) as uv:
        service = _service(ctx, uv)
        price = None
        if max_price is not None or currency is not None or per is not None:
            # Only what is given changes: a new amount keeps the ceiling's currency and period.
            before = service.get(intent_id).constraints.get("price_max") or {}
            amount = max_price if max_price is not None else before.get("amount")
            if amount is None:
                raise InvalidValue("the intent has no price ceiling yet: give --max-price with it")
            price = _price(
                str(amount), currency or before.get("currency", "EUR"), per or before.get("per", "month")
            )
        record = service.edit(
            intent_id,
            category_id=category_id,
            text=text,
            price=price,
            clear_price=no_max_price,
            features=parse_features(feature or [], required or []) if (feature or required) else None,
            quantity=quantity,
            contract_months_max=contract_months_max,
            where=where if any(v is not None for v in where.values()) else None,
            terms=term,
            expires_in_days=expires_in,
        )
    emit(as_json, record.to_json(), lambda: _print_intent(record))


@intents.command("publish")
def publish_cmd(
    ctx: typer.Context, intent_id: IntentArg, relay: RelayOpt = None, as_json: JsonOpt = False
) -> None:
    """Sign the draft with its own fresh key and post it to the relay."""
    with unlocked(ctx) as uv:
        record = _service(ctx, uv, relay).publish(intent_id)
    matched = f" ({record.matched} vendors matched)" if record.matched is not None else ""
    emit(
        as_json,
        record.to_json(),
        f"Published to {record.relay_url}{matched}. Fetch offers: vrm intents offers {record.id}",
    )


@intents.command("list")
def list_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Your intents and interests, newest first (expired ones are marked so)."""
    with unlocked(ctx) as uv:
        items = _service(ctx, uv).list()

    def text() -> None:
        table = id_table("kind", "category", "state", "text")
        for i in items:
            table.add_row(i.id, i.kind, i.category, i.state + (" (muted)" if i.muted else ""), i.text[:40])
        out.print(table if items else "No intents yet: `vrm intents new --category ... --text ...`.")

    emit(as_json, [i.to_json() for i in items], text)


@intents.command("show")
def show_cmd(ctx: typer.Context, intent_id: IntentArg, as_json: JsonOpt = False) -> None:
    """An intent and its offers side by side, best first, with scores and savings."""
    with unlocked(ctx) as uv:
        comparison = _service(ctx, uv).compare(intent_id)

    def text() -> None:
        _print_intent(comparison.intent)
        c = comparison.contract
        if c is not None:
            deadline = f", cancel by {c.cancellation_deadline}" if c.cancellation_deadline else ""
            out.print(f"current contract: {c.plan}, {c.price} {c.currency} {c.billing_cycle}{deadline}")
        if not comparison.offers:
            out.print("No offers yet: `vrm intents offers ID` fetches them.")
            return
        table = Table("offer", "vendor", "price", "score", "breaks", "saves/yr", "state")
        for v in comparison.offers:
            o = v.record.offer or {}
            price = o.get("price", {})
            table.add_row(
                v.record.offer_id,
                v.record.vendor_name,
                f"{price.get('amount')} {price.get('currency')}/{price.get('per')}",
                str(v.score.total) if v.score else "",
                ", ".join(v.score.violations) if v.score and v.score.violations else "-",
                f"{v.savings.amount} {v.savings.currency}" if v.savings else "",
                v.record.state,
            )
        out.print(table)
        for v in comparison.offers:  # full ids, which a narrow table may cut
            if v.record.state == "open":
                out.print(
                    f"accept {v.record.vendor_name}: vrm intents accept {intent_id} {v.record.offer_id}"
                )
        for bad in comparison.invalid:
            out.print(f"invalid offer {bad.offer_id}: {bad.reason}")

    emit(as_json, comparison.to_json(), text)


@intents.command("offers")
def offers_cmd(ctx: typer.Context, intent_id: IntentArg, as_json: JsonOpt = False) -> None:
    """Fetch new offers from the relay (signed with the intent's key)."""
    with unlocked(ctx) as uv:
        new = _service(ctx, uv).fetch(intent_id)
    emit(as_json, {"new": new}, f"{new} new offer(s). Compare them: vrm intents show {intent_id}")


@intents.command("accept")
def accept_cmd(
    ctx: typer.Context,
    intent_id: IntentArg,
    offer: Annotated[str, typer.Argument(help="The offer id (from `vrm intents show`).")],
    field: Annotated[
        list[str] | None, typer.Option("--field", help="A profile field to grant the vendor (repeatable).")
    ] = None,
    agent_url: AgentUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accept an offer: the relay is told, you connect to the vendor and grant only the fields you name."""
    base = agent_url or os.environ.get("OPENVRM_PUBLIC_URL") or "http://127.0.0.1:8765"
    with unlocked(ctx) as uv:
        result = _service(ctx, uv).accept(intent_id, offer, agent_base_url=base, fields=field or [])
    conn = result.connection.connection if result.connection else None
    msg = f"Accepted. Connected to {conn.vendor_name} ({conn.id})" if conn else "Accepted."
    if result.granted:
        msg += f"; granted {', '.join(result.granted)}"
    emit(as_json, result.to_json(), msg + ".")


@intents.command("withdraw")
def withdraw_cmd(ctx: typer.Context, intent_id: IntentArg, as_json: JsonOpt = False) -> None:
    """Withdraw an intent (a signed decision tells the relay and the vendors)."""
    with unlocked(ctx) as uv:
        record = _service(ctx, uv).withdraw(intent_id)
    emit(as_json, record.to_json(), "Withdrawn.")


@intents.command("mute")
def mute_cmd(ctx: typer.Context, intent_id: IntentArg, as_json: JsonOpt = False) -> None:
    """Mute a standing interest: it is not polled and its offers are hidden."""
    with unlocked(ctx) as uv:
        record = _service(ctx, uv).set_muted(intent_id, True)
    emit(as_json, record.to_json(), "Muted.")


@intents.command("unmute")
def unmute_cmd(ctx: typer.Context, intent_id: IntentArg, as_json: JsonOpt = False) -> None:
    """Hear a muted interest again."""
    with unlocked(ctx) as uv:
        record = _service(ctx, uv).set_muted(intent_id, False)
    emit(as_json, record.to_json(), "Unmuted.")
