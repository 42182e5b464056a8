"""What the rights, moves and outbox routes share: delivery, the mail check, and page contexts.

Presentation only: the rules (states, deadlines, who holds an old value, what a letter says) live in
:mod:`openvrm.rights`, :mod:`openvrm.moves` and :mod:`openvrm.outbox`. Delivery from the web runs one at
a time per server (a lock on the app), so a run that finds a message still ``sending`` knows that no
other run of this server is handing it to the mail server right now.
"""

from __future__ import annotations

import asyncio
from datetime import date
from email.message import Message
from typing import Any

from starlette.requests import Request

from openvrm.errors import NotFound
from openvrm.moves.service import MOVABLE
from openvrm.outbox.service import DeliveryReport, Outbox
from openvrm.outbox.settings import has_mail_settings, load_mail_settings
from openvrm.outbox.transport import SmtpTransport
from openvrm.profile.fields import FieldValue, parse_key
from openvrm.profile.service import ProfileService
from openvrm.rights.letters import Letter
from openvrm.rights.service import MissingIdentity, RightsRequestRecord
from openvrm.server.problems import ProblemError
from openvrm.vault.core import UnlockedVault

SMTP_TIMEOUT = 30.0
CHANNEL_NAMES = {"email": "E-mail", "post": "Letter by post", "webform": "The vendor's web form"}
KIND_NAMES = {
    "access": "Access to my data (Art. 15)",
    "rectification": "Correct my data (Art. 16)",
    "erasure": "Erase my data (Art. 17)",
    "restriction": "Restrict processing (Art. 18)",
    "portability": "Data portability (Art. 20)",
    "objection": "Object to processing (Art. 21)",
}
LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German"}
NOTICE_NAMES = {
    "pending": "Pending",
    "sent": "Sent",
    "acknowledged": "Acknowledged",
    "failed": "Failed",
    "unconfirmed": "Unconfirmed",
    "to-post": "Letter to post",
    "no-contact": "No contact",
    "skipped": "Left out",
}
MOVABLE_NAMES = {
    "address": "Postal address",
    "email": "E-mail address",
    "phone": "Phone number",
    "name": "Full name",
    "given-name": "Given name",
    "family-name": "Family name",
    "iban": "Bank account (IBAN)",
}


def mail_not_set_up() -> ProblemError:
    return ProblemError(
        409,
        "mail-not-set-up",
        "no mail server is set up: add your SMTP settings on the Mail setup page "
        "(PUT /api/v1/mail/settings) before sending e-mail",
        title="Mail server not set up",
    )


def require_mail(uv: UnlockedVault) -> None:
    if not has_mail_settings(uv):
        raise mail_not_set_up()


def _delivery_lock(request: Request) -> asyncio.Lock:
    lock = getattr(request.app.state, "openvrm_delivery_lock", None)
    if not isinstance(lock, asyncio.Lock):
        lock = asyncio.Lock()
        request.app.state.openvrm_delivery_lock = lock
    return lock


async def deliver(request: Request, uv: UnlockedVault, *, limit: int | None = None) -> DeliveryReport:
    """Hand the due messages to the person's SMTP server now (each was confirmed when it was queued)."""
    require_mail(uv)
    transport = SmtpTransport(load_mail_settings(uv), timeout=SMTP_TIMEOUT)
    async with _delivery_lock(request):
        return await Outbox(uv).deliver(transport, limit=limit)


def missing_elements(error: Exception) -> list[str]:
    """The identity elements a refused request names, one per item (empty when it names none)."""
    return list(error.missing) if isinstance(error, MissingIdentity) else []


def recipient(rec: RightsRequestRecord) -> str:
    """Where the request goes on its channel, as one line."""
    contact = rec.contact
    value = {"email": contact.get("email"), "post": contact.get("address"), "webform": contact.get("webform")}
    return " ".join(str(value.get(rec.channel) or "").split())


def request_json(rec: RightsRequestRecord, letter: Letter, uv: UnlockedVault, today: date) -> dict[str, Any]:
    delivery = None
    if rec.outbox_id:
        try:
            delivery = Outbox(uv).get(rec.outbox_id).to_json()
        except NotFound:
            delivery = None
    return rec.to_json(today) | {
        "recipient": recipient(rec),
        "letter": letter.to_json(),
        "delivery": delivery,
    }


def message_text(message: Message) -> str:
    """The plain-text body of an outbox message (the first text part of a multipart one)."""
    part: Message = message
    if message.is_multipart():
        for sub in message.walk():
            if sub.get_content_type() == "text/plain":
                part = sub
                break
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return ""


def movable_fields(uv: UnlockedVault) -> list[tuple[str, str, FieldValue]]:
    """(key, label, value) for each profile field a move can change, in key order."""
    out: list[tuple[str, str, FieldValue]] = []
    for key, value in sorted(ProfileService(uv).current().items()):
        ftype, label = parse_key(key)
        if ftype.name in MOVABLE:
            name = MOVABLE_NAMES.get(ftype.name, ftype.name)
            out.append((key, f"{name} ({label})" if label else name, value))
    return out
