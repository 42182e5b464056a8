"""The durable outbox: every e-mail openvrm sends is a row first, delivered later.

Writing. A service that causes a message (a GDPR request marked sent, a move's notice to one vendor)
calls :meth:`Outbox.enqueue` with its own write session, so the change and the message commit together
or not at all. The idempotency key (record ids only, unique in the table) makes a second enqueue of the
same message return the first; the Message-ID is derived from it, so a vendor's server and the tests can
recognise a message whatever the attempt.

Delivering. :meth:`Outbox.deliver` takes due messages one at a time. Each message is marked ``sending``
in a committed transaction *before* it is handed to the SMTP server, and ``sent`` once the server answered
250 (in the same transaction that claims the next message, so a message costs one commit). A worker that
starts and finds a message still ``sending`` cannot know whether the server took it: it marks it
``unconfirmed`` and never sends it again on its own; the person confirms it arrived
(:meth:`Outbox.confirm`) or asks for it to be sent again (:meth:`Outbox.retry`). So a crash loses nothing
and sends nothing twice without the person asking.

Failures (a refused recipient, a server that is down) count an attempt and set the next one after an
exponential backoff; after ``max_attempts`` the message is ``failed`` with its last error kept (sealed,
since SMTP errors quote addresses).

Claiming uses ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers can share a queue;
SQLite serialises writers already (``BEGIN IMMEDIATE``).

States::

    pending ──claim──> sending ──250──> sent
       ^                  │ error        ^
       │ retry            v              │ confirm
       ├──────────── pending (backoff) / failed
       └──────────── unconfirmed <── found "sending" at start
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.encoders import encode_base64
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.outbox.settings import MailSettings
from openvrm.outbox.transport import DeliveryFailed, Transport
from openvrm.records import insert, payload_of
from openvrm.records import update as reseal
from openvrm.storage.models import OutboxMessage, utcnow
from openvrm.vault.core import UnlockedVault

STATUSES = ("pending", "sending", "sent", "failed", "unconfirmed", "cancelled")
MAX_ATTEMPTS = 5
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
MAX_ATTACHMENTS_BYTES = 10 * 1024 * 1024


def backoff(attempts: int) -> timedelta:
    """Wait before attempt ``attempts + 1``: 1, 2, 4, 8 ... minutes, at most six hours."""
    wait: timedelta = BACKOFF_BASE * (2 ** max(attempts - 1, 0))
    return min(wait, BACKOFF_CAP)


def message_id_for(vault_id: str, key: str, domain: str) -> str:
    """A stable Message-ID: the same idempotency key always gives the same id."""
    digest = hashlib.sha256(f"openvrm/v1/message-id:{vault_id}:{key}".encode()).hexdigest()[:40]
    return f"<{digest}@{domain}>"


@dataclass(frozen=True)
class Attachment:
    filename: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class OutboxEntry:
    id: str
    key: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    to: list[str]
    subject: str
    message_id: str
    origin: dict[str, Any]
    last_error: str | None
    attachments: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "status": self.status,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "created_at": self.created_at.isoformat(),
            "to": self.to,
            "subject": self.subject,
            "message_id": self.message_id,
            "origin": self.origin,
            "last_error": self.last_error,
            "attachments": self.attachments,
        }


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unconfirmed: int = 0  # found "sending" when the worker started
    errors: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "unconfirmed": self.unconfirmed,
            "errors": [{"id": i, "error": e} for i, e in self.errors],
        }


Progress = Callable[[int, int], None]

_DUE = (OutboxMessage.status == "pending") & (OutboxMessage.next_attempt_at <= bindparam("now"))
_CLAIM = (
    select(OutboxMessage.id, OutboxMessage.sealed)
    .where(_DUE)
    .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_MARK_SENDING = (
    update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("mid"))
    .values(status="sending", updated_at=bindparam("at"))
)
_MARK_SENT = (
    update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("mid"))
    .values(
        status="sent",
        attempts=OutboxMessage.attempts + 1,
        sent_at=bindparam("at"),
        updated_at=bindparam("at"),
        next_attempt_at=None,
    )
)


class Outbox:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault

    # -- writing -----------------------------------------------------------------------------------

    def enqueue(
        self,
        s: Session,
        *,
        key: str,
        to: Sequence[str],
        subject: str,
        body: str,
        mail: MailSettings,
        attachments: Sequence[Attachment] = (),
        origin: dict[str, Any] | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        now: datetime | None = None,
    ) -> str:
        """Add a message in the caller's transaction ``s``; return its id (the first one for a known key)."""
        if not key or len(key) > 200:
            raise InvalidValue("an outbox message needs an idempotency key of 1 to 200 characters")
        existing = s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key))
        if existing is not None:
            return existing
        if not to:
            raise InvalidValue("an outbox message needs at least one recipient")
        total = sum(len(a.data) for a in attachments)
        if total > MAX_ATTACHMENTS_BYTES:
            raise InvalidValue(f"attachments are limited to {MAX_ATTACHMENTS_BYTES // 2**20} MiB in all")
        when = now or utcnow()
        payload = {
            "to": list(to),
            "from": mail.from_addr,
            "from_name": mail.from_name,
            "subject": subject,
            "body": body,
            "attachments": [
                {
                    "filename": a.filename,
                    "media_type": a.media_type,
                    "data": base64.b64encode(a.data).decode("ascii"),
                }
                for a in attachments
            ],
            "message_id": message_id_for(self.vault.vault_id, key, mail.from_domain),
            "origin": origin or {},
            "last_error": None,
        }
        row = insert(
            self.vault,
            s,
            OutboxMessage,
            payload,
            idempotency_key=key,
            status="pending",
            attempts=0,
            max_attempts=max_attempts,
            next_attempt_at=when,
            sent_at=None,
            created_at=when,
        )
        try:
            s.flush()
        except SAIntegrityError:
            raise Conflict(f"another outbox message has the key {key!r}") from None
        return row.id

    # -- reading -----------------------------------------------------------------------------------

    def _entry(self, row: OutboxMessage) -> OutboxEntry:
        p = payload_of(self.vault, row)
        return OutboxEntry(
            id=row.id,
            key=row.idempotency_key,
            status=row.status,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            next_attempt_at=row.next_attempt_at,
            sent_at=row.sent_at,
            created_at=row.created_at,
            to=list(p["to"]),
            subject=p["subject"],
            message_id=p["message_id"],
            origin=p.get("origin") or {},
            last_error=p.get("last_error"),
            attachments=[a["filename"] for a in p.get("attachments", [])],
        )

    def list(self, *, status: str | None = None, key_prefix: str | None = None) -> list[OutboxEntry]:
        if status is not None and status not in STATUSES:
            raise InvalidValue(f"an outbox status is one of {', '.join(STATUSES)}, not {status!r}")
        with self.vault.db.read() as s:
            q = select(OutboxMessage).order_by(OutboxMessage.id)
            if status is not None:
                q = q.where(OutboxMessage.status == status)
            if key_prefix is not None:
                q = q.where(OutboxMessage.idempotency_key.startswith(key_prefix, autoescape=True))
            rows = list(s.scalars(q))
        return [self._entry(r) for r in rows]

    def get(self, message_id: str) -> OutboxEntry:
        with self.vault.db.read() as s:
            row = self._row(s, message_id)
        return self._entry(row)

    def statuses(self, key_prefix: str) -> dict[str, str]:
        """idempotency key -> status for keys starting with ``key_prefix`` (plain columns only)."""
        with self.vault.db.read() as s:
            rows = s.execute(
                select(OutboxMessage.idempotency_key, OutboxMessage.status).where(
                    OutboxMessage.idempotency_key.startswith(key_prefix, autoescape=True)
                )
            )
            return {k: v for k, v in rows}

    def counts(self) -> dict[str, int]:
        with self.vault.db.read() as s:
            rows = s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
            return {k: int(v) for k, v in rows}

    def due(self, now: datetime | None = None) -> int:
        with self.vault.db.read() as s:
            return int(s.scalar(self._due_query(now or utcnow(), count=True)) or 0)

    def message(self, message_id: str) -> Message:
        """The e-mail exactly as it would be handed to the server (for previews and tests)."""
        with self.vault.db.read() as s:
            row = self._row(s, message_id)
        return build_email(payload_of(self.vault, row))

    @staticmethod
    def _row(s: Session, message_id: str) -> OutboxMessage:
        row = s.get(OutboxMessage, message_id) if message_id else None
        if row is None:
            raise NotFound(f"no outbox message with id {message_id[:40]!r}")
        return row

    # -- the person's decisions ---------------------------------------------------------------------

    def retry(self, message_id: str, *, now: datetime | None = None) -> OutboxEntry:
        """Send a failed or unconfirmed message again (an explicit choice: it may arrive twice)."""
        with self.vault.db.write() as s:
            row = self._row(s, message_id)
            if row.status not in ("failed", "unconfirmed", "cancelled"):
                raise Conflict(
                    f"message {message_id} is {row.status}; only failed, unconfirmed or "
                    "cancelled messages can be sent again"
                )
            row.status = "pending"
            row.attempts = 0
            row.next_attempt_at = now or utcnow()
            row.updated_at = utcnow()
        return self.get(message_id)

    def confirm(self, message_id: str, *, now: datetime | None = None) -> OutboxEntry:
        """The person saw that an unconfirmed message did arrive: mark it sent."""
        with self.vault.db.write() as s:
            row = self._row(s, message_id)
            if row.status != "unconfirmed":
                raise Conflict(
                    f"message {message_id} is {row.status}; only unconfirmed messages are confirmed"
                )
            row.status = "sent"
            row.sent_at = now or utcnow()
            row.next_attempt_at = None
            row.updated_at = utcnow()
        return self.get(message_id)

    def cancel(self, message_id: str) -> OutboxEntry:
        with self.vault.db.write() as s:
            row = self._row(s, message_id)
            if row.status in ("sent", "sending"):
                raise Conflict(f"message {message_id} is {row.status} and cannot be cancelled")
            row.status = "cancelled"
            row.next_attempt_at = None
            row.updated_at = utcnow()
        return self.get(message_id)

    def recover(self) -> int:
        """Mark every message left ``sending`` (a worker died after claiming it) ``unconfirmed``."""
        with self.vault.db.write() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "sending")
                .values(status="unconfirmed", next_attempt_at=None, updated_at=utcnow())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- delivering --------------------------------------------------------------------------------

    @staticmethod
    def _due_query(now: datetime, *, count: bool = False) -> Any:
        cond = (OutboxMessage.status == "pending") & (OutboxMessage.next_attempt_at <= now)
        if count:
            return select(func.count()).select_from(OutboxMessage).where(cond)
        return (
            select(OutboxMessage)
            .where(cond)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )

    def _claim(self, s: Session, now: datetime) -> tuple[str, dict[str, Any]] | None:
        # Runs once per message: prepared Core statements on the session's connection, no ORM objects.
        conn = s.connection()
        found = conn.execute(_CLAIM, {"now": now}).first()
        if found is None:
            return None
        message_id, sealed = found
        conn.execute(_MARK_SENDING, {"mid": message_id, "at": utcnow()})
        return message_id, self.vault.open(OutboxMessage.__tablename__, message_id, sealed)

    def _record(
        self, s: Session, message_id: str, error: str | None, now: datetime, report: DeliveryReport
    ) -> None:
        if error is None:
            # The hot path: one prepared UPDATE, no ORM object, no payload to reseal.
            s.connection().execute(_MARK_SENT, {"mid": message_id, "at": utcnow()})
            report.sent += 1
            return
        row = self._row(s, message_id)
        row.attempts += 1
        row.updated_at = utcnow()
        p = payload_of(self.vault, row)
        p["last_error"] = error[:1000]
        reseal(self.vault, row, p)
        report.errors.append((row.id, error[:1000]))
        if row.attempts >= row.max_attempts:
            row.status = "failed"
            row.next_attempt_at = None
            report.failed += 1
        else:
            row.status = "pending"
            row.next_attempt_at = now + backoff(row.attempts)
            report.retrying += 1

    def _fail_all_due(self, error: str, now: datetime, report: DeliveryReport, limit: int | None) -> int:
        """The server cannot be reached: every due message counts one failed attempt."""
        done = 0
        with self.vault.db.write() as s:
            while limit is None or done < limit:
                claimed = self._claim(s, now)
                if claimed is None:
                    break
                self._record(s, claimed[0], error, now, report)
                s.flush()
                done += 1
        return done

    def _step(
        self, done_id: str | None, error: str | None, now: datetime, report: DeliveryReport, claim: bool
    ) -> tuple[str, dict[str, Any]] | None:
        """Record the outcome of ``done_id`` and claim the next due message, in one transaction."""
        with self.vault.db.write() as s:
            if done_id is not None:
                self._record(s, done_id, error, now, report)
                s.flush()
            return self._claim(s, now) if claim else None

    async def deliver(
        self,
        transport: Transport | Sequence[Transport],
        *,
        now: datetime | None = None,
        limit: int | None = None,
        recover: bool = True,
        progress: Progress | None = None,
    ) -> DeliveryReport:
        """Deliver every due message (at most ``limit``); see the module docstring.

        Given several transports (connections), each runs the same one-message-at-a-time protocol and
        the database work runs in threads, so one connection's round trip overlaps another's commit.
        """
        transports = [transport] if not isinstance(transport, Sequence) else list(transport)
        now = now or utcnow()
        report = DeliveryReport()
        if recover:
            report.unconfirmed = self.recover()
        total = self.due(now) if limit is None else min(limit, self.due(now))
        if total == 0:
            return report
        budget = [total]
        done = [0]

        def take() -> bool:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

        def tick() -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

        async def run(t: Transport) -> str | None:
            try:
                await t.open()
            except DeliveryFailed as exc:
                return str(exc)
            try:
                claimed = await asyncio.to_thread(self._step, None, None, now, report, take())
                while claimed is not None:
                    message_id, payload = claimed
                    error: str | None = None
                    try:
                        await t.send(build_email(payload), payload["from"], payload["to"])
                    except DeliveryFailed as exc:
                        error = str(exc)
                    tick()
                    if error is not None and not t.connected:
                        try:
                            await t.open()
                        except DeliveryFailed as exc:
                            await asyncio.to_thread(self._step, message_id, error, now, report, False)
                            return str(exc)
                    claimed = await asyncio.to_thread(self._step, message_id, error, now, report, take())
            finally:
                await t.close()
            return None

        outcomes = await asyncio.gather(*(run(t) for t in transports))
        if all(o is not None for o in outcomes) and budget[0] > 0:
            # No connection works: every message still due counts one failed attempt.
            failed = self._fail_all_due(str(outcomes[0]), now, report, budget[0])
            for _ in range(failed):
                tick()
        return report

    def deliver_now(self, transport: Transport | Sequence[Transport], **kw: Any) -> DeliveryReport:
        """:meth:`deliver` for synchronous callers (the CLI, services)."""
        return asyncio.run(self.deliver(transport, **kw))


def build_email(payload: dict[str, Any]) -> Message:
    """The MIME message (built with the light ``email.mime`` classes: header parsing dominated sending)."""
    text = MIMEText(payload["body"], "plain", "utf-8")
    msg: Message
    if payload.get("attachments"):
        msg = MIMEMultipart()
        msg.attach(text)
        for a in payload["attachments"]:
            maintype, _, subtype = str(a["media_type"]).partition("/")
            part = MIMEBase(maintype or "application", subtype or "octet-stream")
            part.set_payload(base64.b64decode(a["data"]))
            encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=a["filename"])
            msg.attach(part)
    else:
        msg = text
    msg["From"] = formataddr((payload.get("from_name") or "", payload["from"]), charset="utf-8")
    msg["To"] = ", ".join(payload["to"])
    subject: str = payload["subject"]
    msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = payload["message_id"]
    msg["Auto-Submitted"] = "no"
    return msg
