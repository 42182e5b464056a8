"""GDPR deadlines in `vrm upcoming` and the calendar feed.

Registered with :func:`openvrm.ledger.upcoming.register_source` when :mod:`openvrm.rights` is imported.
A sent request shows its legal deadline; a week before it, a reminder to chase the vendor; once it has
passed, the overdue request stays listed (for a year) until it is answered, escalated or closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from openvrm.ledger.upcoming import KINDS, Event, register_source
from openvrm.rights.letters import right_name
from openvrm.rights.service import OPEN_STATES, RightsService
from openvrm.vault.core import UnlockedVault

REMINDER_DAYS = 7
KINDS.setdefault("rights-reminder", "GDPR answer due soon")
KINDS.setdefault("rights-deadline", "GDPR answer due")
KINDS.setdefault("rights-overdue", "GDPR answer overdue")


@dataclass(frozen=True)
class RightsEvent(Event):
    request_id: str = ""

    @property
    def uid(self) -> str:
        return f"{self.kind}-{self.request_id}-{self.day.isoformat()}@openvrm"


@register_source
def rights_events(uv: UnlockedVault, today: date, until: date) -> Iterable[Event]:
    for r in RightsService(uv).list():
        deadline = r.deadline
        if r.stored_status not in OPEN_STATES or deadline is None:
            continue
        what = right_name(r.kind, "en").replace("Request for ", "").replace("Request to ", "")
        detail = f"GDPR Art. {r.article} request {r.id}, sent {r.sent_on}" + (
            " (deadline extended)" if r.extended else ""
        )
        if deadline < today:
            if (today - deadline).days <= 366:
                yield RightsEvent(
                    deadline,
                    "rights-overdue",
                    f"Overdue GDPR answer: {r.vendor_name} ({what})",
                    vendor_id=r.vendor_id,
                    vendor=r.vendor_name,
                    detail=detail,
                    request_id=r.id,
                )
            continue
        if deadline <= until:
            yield RightsEvent(
                deadline,
                "rights-deadline",
                f"GDPR answer due: {r.vendor_name} ({what})",
                vendor_id=r.vendor_id,
                vendor=r.vendor_name,
                detail=detail,
                request_id=r.id,
            )
        remind = deadline - timedelta(days=REMINDER_DAYS)
        if today <= remind <= until:
            yield RightsEvent(
                remind,
                "rights-reminder",
                f"Chase {r.vendor_name}: GDPR answer due in a week",
                vendor_id=r.vendor_id,
                vendor=r.vendor_name,
                detail=detail,
                request_id=r.id,
            )
