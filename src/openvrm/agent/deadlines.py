"""Protocol dates in `vrm upcoming` and the calendar feed.

Registered with :func:`openvrm.ledger.upcoming.register_source` when this module is imported (it is listed
in ``SOURCE_MODULES``):

* a vendor's notice that gives a right to cancel until a date (a price or terms change) shows that date;
* a notice's effective date (the change itself, or the end of a service);
* a GDPR request sent through a connection shows the date its answer is due, until the vendor answers;
* a grant that ends on a date shows the day it ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from openvrm.agent.service import AgentService
from openvrm.ledger.upcoming import KINDS, Event, register_source
from openvrm.vault.core import UnlockedVault

KINDS.setdefault("notice-cancel-by", "Right to cancel ends")
KINDS.setdefault("notice-effective", "Vendor notice takes effect")
KINDS.setdefault("protocol-gdpr-due", "GDPR answer due (connection)")
KINDS.setdefault("grant-ends", "A grant ends")


@dataclass(frozen=True)
class ProtocolEvent(Event):
    ref: str = ""

    @property
    def uid(self) -> str:
        return f"{self.kind}-{self.ref[-24:]}-{self.day.isoformat()}@openvrm"


def _day(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


@register_source
def protocol_events(uv: UnlockedVault, today: date, until: date) -> Iterable[Event]:
    agent = AgentService(uv)
    for c in agent.connections():
        entries = agent.ledger(c.id)
        answered = {
            e.event["payload"].get("request_event_id") for e in entries if e.subtype == "gdpr-response"
        }
        for e in entries:
            p = e.event["payload"]
            ref = str(e.event.get("event_id", e.id))
            if e.subtype == "notice":
                summary = str(p.get("summary", ""))[:200]
                cancel_by = _day(p.get("right_to_cancel_until"))
                if cancel_by and today <= cancel_by <= until:
                    yield ProtocolEvent(
                        cancel_by,
                        "notice-cancel-by",
                        f"Last day to cancel: {c.vendor_name}",
                        detail=summary,
                        vendor_id=c.vendor_id,
                        vendor=c.vendor_name,
                        ref=ref,
                    )
                effective = _day(p.get("effective"))
                if effective and today <= effective <= until:
                    yield ProtocolEvent(
                        effective,
                        "notice-effective",
                        f"{c.vendor_name}: {p.get('notice', 'notice')}",
                        detail=summary,
                        vendor_id=c.vendor_id,
                        vendor=c.vendor_name,
                        ref=ref,
                    )
            elif e.subtype == "gdpr-request" and ref not in answered:
                due = _day(p.get("respond_by"))
                if due and due <= until and (today - due).days <= 366:
                    yield ProtocolEvent(
                        due,
                        "protocol-gdpr-due",
                        f"GDPR answer due: {c.vendor_name} ({p.get('right')})",
                        detail=str(p.get("article", "")),
                        vendor_id=c.vendor_id,
                        vendor=c.vendor_name,
                        ref=ref,
                    )
    for g in agent.grants():
        if g.active and g.until:
            ends = datetime.fromisoformat(g.until).date()
            if today <= ends <= until:
                yield ProtocolEvent(
                    ends, "grant-ends", f"Grant of {', '.join(g.fields)} ends", detail=g.purpose, ref=g.id
                )
