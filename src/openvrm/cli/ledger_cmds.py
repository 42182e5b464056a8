"""`vrm contracts`, `vrm upcoming`, `vrm spend`: the ledger of contracts, deadlines and spending."""

from __future__ import annotations

import re
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from openvrm.cli.context import JsonOpt, emit, id_table, out, unlocked
from openvrm.errors import InvalidValue
from openvrm.ledger import spending as spend_mod
from openvrm.ledger.contracts import ContractService, today_local
from openvrm.ledger.money import parse_date
from openvrm.ledger.terms import CYCLES
from openvrm.ledger.upcoming import KINDS as EVENT_KINDS
from openvrm.ledger.upcoming import to_ics, upcoming
from openvrm.vendors.service import VendorService

contracts = typer.Typer(help="Contracts and subscriptions: terms, deadlines, payments.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(contracts, name="contracts")
    app.command("upcoming")(upcoming_cmd)
    app.command("spend")(spend)


_NOTICE = re.compile(r"^\s*(\d{1,4})\s*(d|day|days|w|week|weeks|m|month|months)\s*$", re.I)


def parse_notice(text: str) -> tuple[int, str]:
    """'30 days', '1 month', '2w' -> (value, unit)."""
    m = _NOTICE.match(text)
    if not m:
        raise InvalidValue(f"a notice period looks like '30 days', '2 weeks' or '1 month', not {text!r}")
    unit = {"d": "days", "w": "weeks", "m": "months"}[m.group(2)[0].lower()]
    return int(m.group(1)), unit


def _today(value: str | None) -> date:
    return parse_date(value, "--today") if value else today_local()


TodayOpt = Annotated[
    str | None, typer.Option("--today", help="Compute as of this date (YYYY-MM-DD).", hidden=True)
]
ContractArg = Annotated[str, typer.Argument(help="The contract's id, as `vrm contracts list` shows it.")]


@contracts.command("add")
def contracts_add(
    ctx: typer.Context,
    vendor_id: Annotated[str, typer.Argument(help="The vendor's id (see `vrm vendors list`).")],
    plan: Annotated[str, typer.Option(help="Plan or product name.")],
    price: Annotated[str, typer.Option(help="Price per billing cycle, e.g. 15.99.")],
    start: Annotated[str, typer.Option(help="Start date, YYYY-MM-DD.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = "EUR",
    cycle: Annotated[str, typer.Option(help=f"Billing cycle: {', '.join(CYCLES)}.")] = "monthly",
    min_term: Annotated[int, typer.Option(min=0, max=120, help="Minimum term in months (0: none).")] = 0,
    renewal_term: Annotated[
        int, typer.Option(min=0, max=120, help="Each renewal's length in months (0: one billing cycle).")
    ] = 0,
    notice: Annotated[str, typer.Option(help="Notice period: '30 days', '2 weeks', '1 month'.")] = "0 days",
    auto_renew: Annotated[
        bool, typer.Option("--auto-renew/--no-auto-renew", help="Renews by itself?")
    ] = True,
    category: Annotated[str | None, typer.Option(help="e.g. telecom, energy, streaming.")] = None,
    variable: Annotated[bool, typer.Option(help="Bills vary (energy, phone usage).")] = False,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a contract or subscription; prints its cancellation deadline."""
    value, unit = parse_notice(notice)
    with unlocked(ctx) as uv:
        c = ContractService(uv).add(
            vendor_id,
            plan=plan,
            price=price,
            currency=currency,
            billing_cycle=cycle,
            start=start,
            minimum_term_months=min_term,
            renewal_term_months=renewal_term,
            notice_value=value,
            notice_unit=unit,
            auto_renewal=auto_renew,
            category=category,
            variable=variable,
        )
    data = c.to_json(_today(today))
    emit(as_json, data, lambda: _print_contract(data))


def _print_contract(d: dict[str, object]) -> None:
    out.print(
        Text.assemble(
            (str(d["plan"]), "bold"), f" ({d['id']}): {d['price']} {d['currency']} {d['billing_cycle']}"
        )
    )
    if d.get("cancellation_deadline"):
        out.print(f"cancel by {d['cancellation_deadline']} to end it on {d['ends_if_cancelled']}")
    if d.get("next_renewal"):
        out.print(f"renews on {d['next_renewal']}")
    if d.get("next_payment"):
        out.print(f"next payment {d['next_payment']}")
    if d.get("status") != "active":
        out.print(f"status: {d['status']}, ends {d.get('end_date')}")


@contracts.command("list")
def contracts_list(
    ctx: typer.Context,
    vendor: Annotated[str | None, typer.Option("--vendor", help="Only this vendor's contracts.")] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List contracts with their next deadline and monthly cost."""
    day = _today(today)
    with unlocked(ctx) as uv:
        items = [c.to_json(day) for c in ContractService(uv).list(vendor_id=vendor)]
        names = {v.id: v.name for v in VendorService(uv).list()}

    def text() -> None:
        if not items:
            out.print(
                "No contracts yet. Add one with `vrm contracts add VENDOR_ID --plan … --price … --start …`."
            )
            return
        table = id_table("vendor", "plan", "price", "cancel by", "per month", "status")
        for c in items:
            table.add_row(
                str(c["id"]),
                names.get(str(c["vendor_id"]), "?"),
                str(c["plan"]),
                f"{c['price']} {c['currency']}/{c['billing_cycle']}",
                str(c.get("cancellation_deadline") or "-"),
                f"{c['monthly_cost']} {c['currency']}",
                str(c["status"]) if c["active"] else "ended",
            )
        out.print(table)

    emit(as_json, items, text)


@contracts.command("show")
def contracts_show(
    ctx: typer.Context,
    contract_id: ContractArg,
    months: Annotated[int, typer.Option(min=1, max=60, help="Expected payments this many months ahead.")] = 3,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A contract with its deadlines and expected payments against the ones made."""
    from dateutil.relativedelta import relativedelta

    day = _today(today)
    with unlocked(ctx) as uv:
        svc = ContractService(uv)
        c = svc.get(contract_id)
        expected = svc.expected(contract_id, until=day + relativedelta(months=months), today=day)
    data = c.to_json(day) | {"expected_payments": [e.to_json() for e in expected]}

    def text() -> None:
        _print_contract(data)
        table = Table("due", "expected", "status", "paid")
        for e in expected:
            style = {"overdue": "red", "paid": "green"}.get(e.status, "")
            table.add_row(
                e.due_date.isoformat(),
                f"{e.expected} {e.currency}",
                Text(e.status, style),
                "" if e.paid is None else str(e.paid),
            )
        out.print(table)

    emit(as_json, data, text)


@contracts.command("pay")
def contracts_pay(
    ctx: typer.Context,
    contract_id: ContractArg,
    due: Annotated[
        str | None, typer.Option(help="The due date this pays, YYYY-MM-DD (default: the oldest unpaid).")
    ] = None,
    amount: Annotated[
        str | None, typer.Option(help="Amount paid, e.g. 42.17 (default: the expected amount).")
    ] = None,
    on: Annotated[str | None, typer.Option(help="Payment date, YYYY-MM-DD (default: today).")] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark an expected payment as paid (give --amount for variable bills)."""
    with unlocked(ctx) as uv:
        p = ContractService(uv).pay(contract_id, due_date=due, amount=amount, paid_on=on, today=_today(today))
    emit(as_json, p.to_json(), f"Paid {p.amount} {p.currency} for {p.due_date} on {p.paid_on}.")


@contracts.command("price")
def contracts_price(
    ctx: typer.Context,
    contract_id: ContractArg,
    price: Annotated[
        str, typer.Argument(help="The new price per billing cycle, in the contract's currency, e.g. 16.99.")
    ],
    effective: Annotated[str, typer.Option("--from", help="Date the new price applies from, YYYY-MM-DD.")],
    as_json: JsonOpt = False,
) -> None:
    """Record a price change (kept in the price history)."""
    with unlocked(ctx) as uv:
        c = ContractService(uv).set_price(contract_id, price, effective=effective)
    emit(as_json, c.to_json(), f"{c.plan}: {price} from {effective}.")


@contracts.command("cancel")
def contracts_cancel(
    ctx: typer.Context,
    contract_id: ContractArg,
    end: Annotated[
        str | None, typer.Option(help="End date agreed, YYYY-MM-DD (default: the earliest notice allows).")
    ] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark a contract as cancelled; it runs until its end date."""
    with unlocked(ctx) as uv:
        c = ContractService(uv).cancel(contract_id, today=_today(today), end=end)
    emit(as_json, c.to_json(_today(today)), f"{c.plan} cancelled; it ends on {c.end_date}.")


@contracts.command("costs")
def contracts_costs(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by vendor or category.")] = "vendor",
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What your active contracts cost per month and per year, by vendor or category."""
    with unlocked(ctx) as uv:
        lines = ContractService(uv).costs(by=by, today=_today(today))

    def text() -> None:
        if not lines:
            out.print("No active contracts.")
            return
        table = Table(by, "per month", "per year", "contracts")
        for line in lines:
            table.add_row(
                line.key,
                f"{line.monthly} {line.currency}",
                f"{line.yearly} {line.currency}",
                str(line.contracts),
            )
        out.print(table)

    emit(as_json, [line.to_json() for line in lines], text)


def upcoming_cmd(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=3660, help="How far ahead to look.")] = 60,
    ics: Annotated[
        Path | None, typer.Option(help="Also write the events to this iCalendar file ('-': stdout).")
    ] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancellation deadlines, renewals, payments and bills due, warranty ends; overdue payments first."""
    day = _today(today)
    with unlocked(ctx) as uv:
        events = upcoming(uv, today=day, days=days)
    if ics is not None:
        data = to_ics(events)
        if str(ics) == "-":
            sys.stdout.buffer.write(data)
            return
        ics.write_bytes(data)

    def text() -> None:
        if not events:
            out.print(f"Nothing in the next {days} days.")
        for e in events:
            style = "red" if e.kind.endswith("overdue") or e.kind == "cancellation-deadline" else ""
            amount = f"  {e.amount} {e.currency}" if e.amount is not None else ""
            label = EVENT_KINDS.get(e.kind, e.kind)
            line = f"{e.day.isoformat()}  {label:<20} {e.title}{amount}"
            out.print(line, style=style or None)

    emit(as_json, [e.to_json() for e in events], text)


upcoming_cmd.__name__ = "upcoming"


def spend(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by vendor, category or month.")] = "vendor",
    since: Annotated[str | None, typer.Option(help="From this date on, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date, YYYY-MM-DD.")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Totals of what you spent, per vendor, category or month (payments made and bills)."""
    first = parse_date(since, "--since") if since else None
    last = parse_date(until, "--until") if until else None
    if first and last and first > last:
        raise InvalidValue(f"--since {first} is after --until {last}")
    with unlocked(ctx) as uv:
        rows = spend_mod.totals(spend_mod.entries(uv), by=by, since=first, until=last)
    if csv:
        sys.stdout.write(spend_mod.to_csv(rows, by))
        return

    def text() -> None:
        if not rows:
            out.print("No spending in this period." if first or last else "No spending recorded yet.")
            return
        table = Table(by, "total", "items")
        for r in rows:
            table.add_row(r.key, f"{r.total:.2f} {r.currency}", str(r.count))
        out.print(table)

    emit(as_json, [r.to_json() for r in rows], text)
