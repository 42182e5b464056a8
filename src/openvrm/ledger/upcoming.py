"""What is coming up: cancellation deadlines, renewals, payments and bills due, warranty ends.

Events come from sources: functions that read the vault and yield :class:`Event`. The ledger registers
its own here; later capabilities (GDPR requests with their legal deadlines) register theirs with
:func:`register_source`, and both `vrm upcoming` and the calendar feed show them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from icalendar import Alarm, Calendar
from icalendar import Event as IcsEvent

from openvrm import __version__
from openvrm.documents.service import DocumentService
from openvrm.ledger.contracts import ContractService
from openvrm.ledger.terms import ContractTerms, deadlines, term_ends
from openvrm.storage.models import utcnow
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

KINDS = {
    "cancellation-deadline": "Last day to cancel",
    "renewal": "Renews",
    "payment-due": "Payment due",
    "payment-overdue": "Payment overdue",
    "bill-due": "Bill due",
    "warranty-end": "Warranty ends",
}


@dataclass(frozen=True)
class Event:
    day: date
    kind: str
    title: str
    vendor_id: str | None = None
    vendor: str | None = None
    contract_id: str | None = None
    document_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    detail: str = ""

    @property
    def uid(self) -> str:
        ref = self.contract_id or self.document_id or "vault"
        return f"{self.kind}-{ref}-{self.day.isoformat()}@openvrm"

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "kind": self.kind,
            "title": self.title,
            "vendor_id": self.vendor_id,
            "vendor": self.vendor,
            "contract_id": self.contract_id,
            "document_id": self.document_id,
            "amount": str(self.amount) if self.amount is not None else None,
            "currency": self.currency,
            "detail": self.detail,
        }


Source = Callable[[UnlockedVault, date, date], Iterable[Event]]
_SOURCES: list[Source] = []


def register_source(source: Source) -> Source:
    _SOURCES.append(source)
    return source


def _vendor_names(uv: UnlockedVault) -> dict[str, str]:
    return {v.id: v.name for v in VendorService(uv).list()}


def _locks_in(t: ContractTerms, term_end: date | None) -> bool:
    if not t.auto_renewal:  # it ends by itself: no deadline to miss
        return False
    first_term_end = next(term_ends(t), None)
    if t.minimum_term_months and term_end is not None and term_end == first_term_end:
        return True
    months = t.renewal_term_months or {"quarterly": 3, "semiannual": 6, "yearly": 12}.get(t.billing_cycle, 0)
    return months >= 2


@register_source
def contract_events(uv: UnlockedVault, today: date, until: date) -> Iterable[Event]:
    names = _vendor_names(uv)
    svc = ContractService(uv)
    for c in svc.list():
        dl = deadlines(c.terms(), today)
        if not dl.active:
            continue
        vendor = names.get(c.vendor_id)
        label = f"{vendor or 'vendor'}: {c.plan}"
        # A rolling monthly contract can be left any month: its deadlines and renewals are not news.
        # A deadline matters when missing it locks the person in for longer: a minimum term still
        # running, or renewals of two months or more.
        matters = _locks_in(c.terms(), dl.term_end)
        if matters and dl.cancellation_deadline and today <= dl.cancellation_deadline <= until:
            yield Event(
                dl.cancellation_deadline,
                "cancellation-deadline",
                f"Last day to cancel {label}",
                detail=f"Notice given by then ends it on {dl.ends_if_cancelled}.",
                vendor_id=c.vendor_id,
                vendor=vendor,
                contract_id=c.id,
            )
        if matters and dl.next_renewal and today <= dl.next_renewal <= until:
            yield Event(
                dl.next_renewal,
                "renewal",
                f"{label} renews",
                vendor_id=c.vendor_id,
                vendor=vendor,
                contract_id=c.id,
            )
        for e in svc.expected(c.id, until=until, today=today):
            if e.status == "overdue" and (today - e.due_date).days <= 366:
                yield Event(
                    e.due_date,
                    "payment-overdue",
                    f"Overdue: {label}",
                    amount=e.expected,
                    currency=e.currency,
                    vendor_id=c.vendor_id,
                    vendor=vendor,
                    contract_id=c.id,
                )
            elif e.status in ("due", "upcoming") and e.due_date >= today:
                yield Event(
                    e.due_date,
                    "payment-due",
                    f"Payment: {label}",
                    amount=e.expected,
                    currency=e.currency,
                    vendor_id=c.vendor_id,
                    vendor=vendor,
                    contract_id=c.id,
                )


@register_source
def document_events(uv: UnlockedVault, today: date, until: date) -> Iterable[Event]:
    names = _vendor_names(uv)
    for d in DocumentService(uv).list():
        vendor = names.get(d.vendor_id) if d.vendor_id else None
        due = d.fields.get("due_date")
        if (
            due
            and today.isoformat() <= due <= until.isoformat()
            and d.fields.get("document_type") != "credit_note"
        ):
            amount = d.fields.get("due_total") or d.fields.get("gross_total")
            yield Event(
                date.fromisoformat(due),
                "bill-due",
                f"Bill due: {vendor or d.title}",
                vendor_id=d.vendor_id,
                vendor=vendor,
                document_id=d.id,
                amount=Decimal(amount) if amount else None,
                currency=d.fields.get("currency"),
                detail=f"Invoice {d.fields.get('invoice_number') or d.title}",
            )
        if d.warranty_until and today.isoformat() <= d.warranty_until <= until.isoformat():
            yield Event(
                date.fromisoformat(d.warranty_until),
                "warranty-end",
                f"Warranty ends: {d.title}",
                vendor_id=d.vendor_id,
                vendor=vendor,
                document_id=d.id,
            )


# Modules of later capabilities that register sources; imported on first use, so every front end (CLI,
# server, a script) sees the same events without having to remember to import them.
SOURCE_MODULES = ("openvrm.rights.deadlines", "openvrm.agent.deadlines")


def upcoming(uv: UnlockedVault, *, today: date, days: int = 60) -> list[Event]:
    """Every event from ``today`` to ``today + days`` (and overdue payments of the past year)."""
    import importlib

    for module in SOURCE_MODULES:
        importlib.import_module(module)
    until = today + timedelta(days=days)
    events = [e for source in _SOURCES for e in source(uv, today, until)]
    return sorted(events, key=lambda e: (e.day, e.kind, e.title))


def to_ics(events: list[Event], *, name: str = "openvrm") -> bytes:
    """An iCalendar file of all-day events, with a reminder a week before each cancellation deadline."""
    cal = Calendar()
    cal.add("prodid", f"-//openvrm//openvrm {__version__}//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    stamp: datetime = utcnow()
    for e in events:
        ev = IcsEvent()
        ev.add("uid", e.uid)
        ev.add("dtstamp", stamp)
        ev.add("dtstart", e.day)
        ev.add("dtend", e.day + timedelta(days=1))
        ev.add("summary", e.title + (f" ({e.amount} {e.currency})" if e.amount is not None else ""))
        if e.detail:
            ev.add("description", e.detail)
        ev.add("categories", [KINDS.get(e.kind, e.kind)])
        if e.kind == "cancellation-deadline":
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("description", e.title)
            alarm.add("trigger", timedelta(days=-7))
            ev.add_component(alarm)
        cal.add_component(ev)
    return bytes(cal.to_ical())
