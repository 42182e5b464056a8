"""The gateway's decisions, without an SMTP server: who may receive, what a message becomes, the spool.

The SMTP adapter (:mod:`openvrm.server.smtp_gateway`) asks :meth:`Gateway.recipient` at each RCPT and
hands the whole message to :meth:`Gateway.accept` at DATA. The gateway answers 250 only after one
transaction has stored everything the message owes: a sealed inbox item for the person (box key) and, when
it is to be forwarded, a spool row (mail key). :class:`Spool` then delivers spooled mail downstream with
retries and backoff, so a downstream server that is down loses nothing.

Never an open relay: a recipient is accepted only if it is a known, active alias on the gateway's
domains, or a reverse alias written to by the person's own address.
"""

from __future__ import annotations

import asyncio
import base64
import quopri
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header
from email.utils import formataddr, formatdate
from typing import Any

from sqlalchemy import delete, select, update

from openvrm.errors import InvalidValue, NotFound
from openvrm.mail import analysis as an
from openvrm.mail.auth import AuthResults, Resolver, authenticate, org_domain
from openvrm.mail.keys import MailKeys, normalise_address
from openvrm.mail.routing import Alias, GatewayConfig, ReverseAlias, Routes, alias_generation
from openvrm.outbox.transport import DeliveryFailed, Transport
from openvrm.storage.models import InboxItem, MailSpool, new_id, utcnow
from openvrm.vault.core import Vault

INBOX_KIND = "mail"
SPOOL_MAX_ATTEMPTS = 12
SPOOL_BACKOFF = timedelta(seconds=30)
SPOOL_BACKOFF_CAP = timedelta(hours=4)
SPOOL_LEASE = timedelta(minutes=5)  # a claimed row is not due again before then
ALIAS_TTL = 2.0
"""Seconds the gateway routes with a cached alias. A change made in this process applies at once; one
made by another process (the CLI beside `vrm mail serve`) applies within this bound."""
_CACHE_MAX = 10_000
DEFAULT_CLAIM = 200
# Headers the forwarded copy drops: they name the sender's own routing or would be trusted wrongly.
_DROP_IN = {
    b"from",
    b"reply-to",
    b"sender",
    b"return-path",
    b"authentication-results",
    b"arc-seal",
    b"arc-message-signature",
    b"arc-authentication-results",
}
# The only headers of the person's reply that go on to the vendor: anything else (Received, DKIM-Signature,
# Autocrypt keys, X-Google-*, X-MS-Exchange-*, user agents, Cc …) may name their real mailbox or provider.
_KEEP_OUT = {
    b"subject",
    b"date",
    b"mime-version",
    b"in-reply-to",
    b"references",
    b"content-type",
    b"content-transfer-encoding",
    b"content-disposition",
    b"content-language",
}


def _drop_openvrm(name: bytes) -> bool:
    return name.startswith(b"x-openvrm-")


def split_message(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields as (lower-case name, whole field bytes with folding) and the body, bytes untouched."""
    m = re.search(rb"\r?\n\r?\n", raw)
    head, body = (raw[: m.start()], raw[m.end() :]) if m else (raw, b"")
    fields: list[tuple[bytes, bytes]] = []
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif line:
            name = line.split(b":", 1)[0].strip().lower()
            fields.append((name, line))
    return fields, body


def _field(name: str, value: str) -> bytes:
    """One header field, RFC 2047-encoded when it is not ASCII, folded for SMTP."""
    try:
        value.encode("ascii")
        text = value
    except UnicodeEncodeError:
        text = Header(value, "utf-8").encode()
    return f"{name}: {text}".encode("ascii", "replace")


def _mailbox(display: str, address: str) -> str:
    try:
        display.encode("ascii")
        return formataddr((display, address))
    except UnicodeEncodeError:
        return formataddr((Header(display, "utf-8").encode(), address))


def rewrite_headers(raw: bytes, keep: Callable[[bytes], bool], new: list[bytes]) -> bytes:
    """``new`` header fields, then the fields whose lower-case name ``keep`` accepts, then the body as is."""
    fields, body = split_message(raw)
    kept = [f for n, f in fields if keep(n)]
    return b"\r\n".join([*new, *kept]) + b"\r\n\r\n" + body


def _check_reply_sender(cfg: GatewayConfig, msg: Any, auth: AuthResults) -> None:
    """A reply through a reverse alias must be the person's, proved by their domain's own mail auth.

    The header From must be their real address, and DMARC must pass for its domain; where that domain
    publishes no DMARC record, a DKIM signature of the domain or SPF for it must pass. A DNS failure is a
    451 (the person's server tries again); anything else is refused.
    """
    sender = an.from_address(msg)
    try:
        sender = normalise_address(sender) if sender else ""
    except InvalidValue:
        sender = ""
    if sender != cfg.forward_to:
        raise an.Refused(550, "5.7.1 a reply through this address must come from the alias owner")
    domain = org_domain(cfg.forward_to.rpartition("@")[2])
    if auth.dmarc == "pass":
        return
    if "temperror" in (auth.dmarc, auth.spf) or any(d.result == "temperror" for d in auth.dkim):
        raise an.Refused(451, "4.7.0 cannot check the sender right now, try again later")
    aligned_dkim = any(d.result == "pass" and org_domain(d.domain) == domain for d in auth.dkim)
    aligned_spf = auth.spf == "pass" and org_domain(auth.spf_domain or "") == domain
    if auth.dmarc == "none" and (aligned_dkim or aligned_spf):
        return
    raise an.Refused(550, "5.7.1 the reply is not authenticated as coming from the alias owner's domain")


class CacheMiss(Exception):  # noqa: N818 - not an error: "ask again, with the database"
    """:meth:`Gateway.recipient` with ``cached_only`` needs the database for this answer."""


@dataclass(frozen=True)
class Recipient:
    """A recipient the gateway accepted: to an alias (``reverse`` None) or a reply through a reverse alias."""

    address: str
    alias: Alias
    reverse: ReverseAlias | None = None


@dataclass
class Envelope:
    peer_ip: str | None
    helo: str
    mail_from: str
    recipients: list[Recipient] = field(default_factory=list)


@dataclass(frozen=True)
class Accepted:
    inbox_ids: list[str]
    spooled: int
    outcomes: list[dict[str, Any]]
    # Spooled rows written already under this process's lease, for its own deliverer (see Gateway.handoff).
    handed: list[Handed] = field(default_factory=list)


@dataclass(frozen=True)
class Handed:
    """A spool row the gateway wrote leased to its own deliverer, with what the deliverer needs to send it:
    no claim transaction, no read. ``until`` is the lease exactly as stored (``next_attempt_at``)."""

    id: str
    payload: dict[str, Any]
    until: datetime


class Gateway:
    """Routing and acceptance; holds the mail key, never the vault key."""

    def __init__(
        self,
        vault: Vault,
        keys: MailKeys,
        resolver: Resolver,
        *,
        clock: Callable[[], datetime] = utcnow,
        config_ttl: float = 5.0,
        alias_ttl: float = ALIAS_TTL,
    ) -> None:
        self.vault = vault
        self.routes = Routes(vault.db, keys)
        self.keys = keys
        self.resolver = resolver
        self.clock = clock
        self._config: GatewayConfig | None = None
        self._config_at: datetime | None = None
        self._ttl = timedelta(seconds=config_ttl)
        self._group = _GroupCommit(vault.db)
        # Set by the SMTP server: asked before a message's spool rows are made, True when this process's
        # deliverer will send them straight away, and then they are written already leased to it.
        self.handoff: Callable[[], bool] | None = None
        # Addresses that accept mail, and reverse aliases, as found in the database: (expiry, the alias
        # change counter when they were read, what was found). Refusals are never cached.
        self._alias_ttl = timedelta(seconds=alias_ttl)
        self._found: dict[str, tuple[datetime, int, Alias | tuple[ReverseAlias, Alias]]] = {}
        self._reverse: dict[tuple[str, str], tuple[datetime, int, ReverseAlias]] = {}

    def config(self, *, cached_only: bool = False) -> GatewayConfig:
        now = self.clock()
        if self._config is None or self._config_at is None or now - self._config_at > self._ttl:
            if cached_only:
                raise CacheMiss
            self._config = self.routes.require_config()
            self._config_at = now
        return self._config

    # -- the alias cache -------------------------------------------------------------------------------

    def _find(self, addr: str, *, cached_only: bool) -> Alias | tuple[ReverseAlias, Alias] | None:
        """``Routes.find`` through the cache. An entry serves while it is younger than ``alias_ttl`` and
        no alias change committed in this process since it was read (the counter is read *before* the
        database, so a change committing meanwhile makes the entry stale at once)."""
        gen = alias_generation(self.vault.db)
        now = self.clock()
        hit = self._found.get(addr)
        if hit is not None and hit[0] > now and hit[1] == gen:
            return hit[2]
        if cached_only:
            raise CacheMiss
        found = self.routes.find(addr)
        alias = found if isinstance(found, Alias) else found[1] if found is not None else None
        if found is not None and alias is not None and alias.accepts_mail:
            if len(self._found) >= _CACHE_MAX:
                self._found.clear()
            self._found[addr] = (now + self._alias_ttl, gen, found)
        return found

    def _reverse_for(self, alias: Alias, contact: str) -> ReverseAlias:
        """``Routes.reverse_for`` through the cache (a reverse alias never changes; it goes with its
        alias, and deleting an alias is a change the cache hears of)."""
        key = (alias.id, normalise_address(contact))
        gen = alias_generation(self.vault.db)
        now = self.clock()
        hit = self._reverse.get(key)
        if hit is not None and hit[0] > now and hit[1] == gen:
            return hit[2]
        reverse = self.routes.reverse_for(alias, contact)
        if len(self._reverse) >= _CACHE_MAX:
            self._reverse.clear()
        self._reverse[key] = (now + self._alias_ttl, gen, reverse)
        return reverse

    # -- RCPT ------------------------------------------------------------------------------------------

    def recipient(self, envelope: Envelope, address: str, *, cached_only: bool = False) -> Recipient:
        """Accept ``address`` for this envelope or raise :class:`~.analysis.Refused` with the SMTP reply.

        With ``cached_only`` it decides without the database (the SMTP server's event loop asks so first)
        or raises :class:`CacheMiss`, and then it must be asked again without."""
        cfg = self.config(cached_only=cached_only)
        try:
            addr = normalise_address(address)
        except InvalidValue:
            raise an.Refused(501, "5.1.3 bad recipient address syntax") from None
        if addr.rpartition("@")[2] not in cfg.domains:
            raise an.Refused(550, "5.7.1 relaying denied: this server only accepts mail for its aliases")
        if any(r.address == addr for r in envelope.recipients):
            raise an.Refused(452, "4.5.3 this recipient is already given")
        if len(envelope.recipients) >= cfg.max_recipients:
            raise an.Refused(452, "4.5.3 too many recipients")
        found = self._find(addr, cached_only=cached_only)
        if found is None:
            raise an.Refused(550, "5.1.1 no such address here")
        if isinstance(found, Alias):
            if found.state != "active":
                raise an.Refused(550, "5.1.1 this address is disabled")
            if found.blocked:
                raise an.Refused(550, "5.7.1 the recipient does not accept mail from you")
            if any(r.reverse is not None for r in envelope.recipients):
                raise an.Refused(452, "4.5.3 send replies and new mail separately")
            return Recipient(addr, found)
        reverse, alias = found
        try:
            sender = normalise_address(envelope.mail_from) if envelope.mail_from else ""
        except InvalidValue:
            sender = ""
        if sender != cfg.forward_to:
            raise an.Refused(
                550, "5.7.1 relaying denied: only the alias owner may write through this address"
            )
        if not alias.accepts_mail:
            raise an.Refused(550, "5.7.1 this alias is disabled")
        if any(r.reverse is None for r in envelope.recipients):
            raise an.Refused(452, "4.5.3 send replies and new mail separately")
        return Recipient(addr, alias, reverse)

    # -- DATA ------------------------------------------------------------------------------------------

    def accept(self, envelope: Envelope, raw: bytes) -> Accepted:
        """Check, record and (maybe) spool one message; raise :class:`~.analysis.Refused` to refuse it."""
        cfg = self.config()
        if not envelope.recipients:
            raise an.Refused(503, "5.5.1 no valid recipients")
        if len(raw) > cfg.max_message_bytes:
            raise an.Refused(552, "5.3.4 message too big")
        msg = an.parse(raw)
        an.check_structure(msg)
        if envelope.recipients[0].reverse is not None:
            return self._accept_reply(envelope, raw, msg)
        auth = authenticate(
            self.resolver, raw, ip=envelope.peer_ip, helo=envelope.helo, mail_from=envelope.mail_from
        )
        bills = an.bills_in(msg)
        kind = an.classify(msg, bills)
        summary = an.summarise(msg, len(raw), kind)
        from_addr = an.from_address(msg)
        rows: list[Any] = []
        outcomes: list[dict[str, Any]] = []
        spooled = 0
        handed: list[Handed] = []
        for rcpt in envelope.recipients:
            alias = rcpt.alias
            verdict = an.judge_sender(
                [*alias.vendor_domains, *alias.learned_domains], from_addr, auth, envelope.mail_from
            )
            bounce = not envelope.mail_from
            forward = self._should_forward(alias, kind, bounce) and cfg.downstream is not None
            reverse = None
            if forward and from_addr and not bounce:
                try:
                    reverse = self._reverse_for(alias, from_addr)
                except InvalidValue:
                    reverse = None  # a From that is no address: forwarded, but not repliable
            item: dict[str, Any] = {
                "kind": INBOX_KIND,
                "direction": "in",
                "alias_id": alias.id,
                "alias": alias.address,
                "vendor_id": alias.vendor_id,
                "relationship_id": alias.relationship_id,
                "envelope": {
                    "mail_from": envelope.mail_from,
                    "helo": envelope.helo,
                    "peer_ip": envelope.peer_ip,
                },
                "summary": summary.to_json(),
                "auth": auth.to_json(),
                "leak": verdict.to_json(),
                "forwarded": forward,
                "reply_to": reverse.address if reverse else None,
                "received_at": self.clock().isoformat(),
                # The person keeps what is not forwarded, and every bill (the importer needs the file).
                "raw": base64.b64encode(raw).decode() if (not forward or bills) else None,
            }
            rows.append(self.vault.inbox_row(item, limit=_inbox_limit(cfg)))
            if forward:
                data = self._forward_copy(raw, alias, auth, verdict, kind, summary, reverse, cfg)
                rows.append(
                    self._spool_row(alias.address, [cfg.forward_to], data, {"alias_id": alias.id}, handed)
                )
                spooled += 1
            if verdict.learned:
                self.routes.learn_domain(alias.id, verdict.learned)
            outcomes.append(
                {"alias": alias.address, "forwarded": forward, "leak": verdict.leaked, "kind": kind}
            )
        self._group.write(rows)
        return Accepted([r.id for r in rows if isinstance(r, InboxItem)], spooled, outcomes, handed)

    @staticmethod
    def _should_forward(alias: Alias, kind: str, bounce: bool) -> bool:
        if bounce or alias.deliver == "vault":
            return False
        if alias.mode == "mute_promotions":
            return kind != "promotion"
        if alias.mode == "transactional_only":
            return kind == "transactional"
        return True

    def _forward_copy(
        self,
        raw: bytes,
        alias: Alias,
        auth: AuthResults,
        verdict: an.LeakVerdict,
        kind: str,
        summary: an.Summary,
        reverse: ReverseAlias | None,
        cfg: GatewayConfig,
    ) -> bytes:
        name, from_addr = summary.from_name, summary.from_addr
        shown = f"{name} ({from_addr})" if name else (from_addr or "unknown sender")
        via = reverse.address if reverse else alias.address
        new = [
            _field("From", _mailbox(f"{shown} via {alias.vendor_name}", via)),
            _field("Reply-To", via),
            _field("X-Openvrm-Original-From", from_addr or "<>"),
            _field("X-Openvrm-Vendor", alias.vendor_name),
            _field("X-Openvrm-Vendor-Id", alias.vendor_id or "none"),
            _field("X-Openvrm-Relationship", alias.relationship_id or "none"),
            _field("X-Openvrm-Alias", alias.address),
            _field("X-Openvrm-Kind", kind),
            _field("Authentication-Results", auth.header_value(cfg.hostname)),
        ]
        if verdict.leaked:
            new.append(_field("X-Openvrm-Leak", f"this address reached {verdict.reached}: {verdict.reason}"))
        return rewrite_headers(raw, lambda n: n not in _DROP_IN and not _drop_openvrm(n), new)

    def _accept_reply(self, envelope: Envelope, raw: bytes, msg: Any) -> Accepted:
        cfg = self.config()
        auth = authenticate(
            self.resolver, raw, ip=envelope.peer_ip, helo=envelope.helo, mail_from=envelope.mail_from
        )
        _check_reply_sender(cfg, msg, auth)
        rows: list[Any] = []
        handed: list[Handed] = []
        summary = an.summarise(msg, len(raw), "reply")
        for rcpt in envelope.recipients:
            assert rcpt.reverse is not None  # noqa: S101 - recipient() keeps replies apart
            alias, contact = rcpt.alias, rcpt.reverse.contact
            domain = alias.address.rpartition("@")[2]
            new = [
                _field("From", alias.address),
                _field("To", contact),
                _field("Message-ID", f"<{secrets.token_hex(16)}@{domain}>"),
            ]
            if not an.header(msg, "Date"):
                new.append(_field("Date", formatdate(localtime=False)))
            data = scrub(rewrite_headers(raw, _KEEP_OUT.__contains__, new), cfg.forward_to, alias.address)
            rows.append(
                self._spool_row(alias.address, [contact], data, {"alias_id": alias.id, "reply": True}, handed)
            )
            rows.append(
                self.vault.inbox_row(
                    {
                        "kind": INBOX_KIND,
                        "direction": "out",
                        "alias_id": alias.id,
                        "alias": alias.address,
                        "vendor_id": alias.vendor_id,
                        "to": contact,
                        "summary": {**summary.to_json(), "from": alias.address, "to": [contact]},
                        "received_at": self.clock().isoformat(),
                        "raw": None,
                    }
                )
            )
        self._group.write(rows)
        return Accepted(
            [r.id for r in rows if isinstance(r, InboxItem)],
            len(envelope.recipients),
            [
                {"alias": r.alias.address, "reply_to": r.reverse.contact if r.reverse else None}
                for r in envelope.recipients
            ],
            handed,
        )

    def _spool_row(
        self, sender: str, recipients: list[str], data: bytes, meta: dict[str, Any], handed: list[Handed]
    ) -> MailSpool:
        now = self.clock()
        lease = self.handoff is not None and self.handoff()
        row, payload = Spool.entry(self.keys, sender, recipients, data, meta, now, leased=lease)
        if lease:
            handed.append(Handed(row.id, payload, row.next_attempt_at))
        return row


class _GroupCommit:
    """Group commit: the rows of messages accepted at the same time are written in one transaction.

    Each caller hands its rows to :meth:`write`, which returns only once they are committed, or raises
    (and then none of that caller's rows were stored: the gateway answers 451 and the sender keeps the
    message). While one batch is being written, the callers that arrive queue up; when it is done, one of
    them writes everything queued in one transaction. A lone message costs one transaction as before; N
    concurrent messages cost about one instead of N. If a batch fails, each message in it is written again
    on its own, so one bad message never fails the others.
    """

    def __init__(self, db: Any) -> None:
        self.db = db
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    def write(self, rows: list[Any]) -> None:
        me = _Pending(rows)
        batch: list[_Pending] = []
        with self._cond:
            self._queue.append(me)
            while not me.finished:
                if not self._writing:
                    self._writing = True
                    batch, self._queue = self._queue, []
                    break
                self._cond.wait()
        if batch:
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
        if me.error is not None:
            raise me.error

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self.db.write() as s:
                for p in batch:
                    s.add_all(p.rows)
        except BaseException as exc:
            if len(batch) == 1 or not isinstance(exc, Exception):
                for p in batch:
                    p.error = exc
                    p.finished = True
                return
            for p in batch:
                self._commit([p])
            return
        for p in batch:
            p.finished = True


class _Pending:
    __slots__ = ("error", "finished", "rows")

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.finished = False
        self.error: BaseException | None = None


def _inbox_limit(cfg: GatewayConfig) -> int:
    """A kept message travels base64-encoded in its inbox item, beside its summary and checks."""
    return cfg.max_message_bytes * 4 // 3 + 256 * 1024


_ASCII_UNSAFE = ("utf-16", "utf-32", "utf_16", "utf_32", "cp037", "cp500", "cp1026", "cp273", "ebcdic")


def scrub(raw: bytes, real: str, alias: str) -> bytes:
    """Replace every spelling of the person's real address with the alias (quoted replies carry it).

    Plain bytes first (headers, 7- and 8-bit bodies), then every text part whose transfer encoding
    (base64, quoted-printable) hides the address: decoded, rewritten and encoded again, part by part. A
    part that cannot be checked (a charset that is not ASCII-compatible and does not decode, a message the
    library cannot write back) refuses the reply, so it is never sent half-scrubbed.
    """
    needle = re.compile(re.escape(real.encode()), re.IGNORECASE)
    raw = needle.sub(alias.encode(), raw)
    try:
        msg = an.parse(raw)
        changed = False
        for part in msg.walk():
            if part.get_content_maintype() != "text" or part.is_multipart():
                continue
            cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
            if cte not in ("base64", "quoted-printable"):
                continue
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes):
                continue
            charset = (part.get_content_charset() or "us-ascii").lower()
            if charset.startswith(_ASCII_UNSAFE):
                text = data.decode(charset)
                fixed = re.sub(re.escape(real), alias, text, flags=re.IGNORECASE).encode(charset)
            else:
                fixed = needle.sub(alias.encode(), data)
            if fixed != data:
                encoded = base64.encodebytes(fixed) if cte == "base64" else quopri.encodestring(fixed)
                part.set_payload(encoded.decode("ascii"))
                changed = True
        return msg.as_bytes() if changed else raw
    except (LookupError, UnicodeError, ValueError, TypeError) as exc:
        raise an.Refused(
            554, f"5.6.0 this reply cannot be checked for your address ({type(exc).__name__}); not sent"
        ) from None


# -- the spool ---------------------------------------------------------------------------------------------


def spool_backoff(attempts: int) -> timedelta:
    wait: timedelta = SPOOL_BACKOFF * (2 ** max(attempts - 1, 0))
    return min(wait, SPOOL_BACKOFF_CAP)


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    state: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sender: str
    recipients: list[str]
    size: int
    last_error: str | None
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "sender": self.sender,
            "recipients": self.recipients,
            "size": self.size,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class SpoolReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Spool:
    """Mail the gateway owes downstream. Rows are sealed by the mail key and deleted once delivered.

    Delivery is at least once: a worker that stops between the downstream 250 and the delete sends that
    message again at its next start (a duplicate in the person's mailbox, never a loss).
    """

    def __init__(self, db: Any, keys: MailKeys, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock

    @staticmethod
    def row(
        keys: MailKeys, sender: str, recipients: list[str], data: bytes, meta: dict[str, Any], now: datetime
    ) -> MailSpool:
        return Spool.entry(keys, sender, recipients, data, meta, now)[0]

    @staticmethod
    def entry(
        keys: MailKeys,
        sender: str,
        recipients: list[str],
        data: bytes,
        meta: dict[str, Any],
        now: datetime,
        *,
        leased: bool = False,
    ) -> tuple[MailSpool, dict[str, Any]]:
        """A sealed spool row and its payload. ``leased``: written already claimed (due only once
        :data:`SPOOL_LEASE` is over), for the deliverer of the process that writes it."""
        rid = new_id()
        payload = {
            "sender": sender,
            "recipients": recipients,
            "data": base64.b64encode(data).decode(),
            "meta": meta,
            "last_error": None,
        }
        row = MailSpool(
            id=rid,
            state="queued",
            attempts=0,
            next_attempt_at=now + SPOOL_LEASE if leased else now,
            created_at=now,
            updated_at=now,
            sealed=keys.seal(MailSpool.__tablename__, rid, payload),
        )
        return row, payload

    def _open(self, row: MailSpool) -> dict[str, Any]:
        return self.keys.open(MailSpool.__tablename__, row.id, row.sealed)

    def entries(self) -> list[SpoolEntry]:
        with self.db.read() as s:
            rows = list(s.scalars(select(MailSpool).order_by(MailSpool.id)))
            out = []
            for r in rows:
                p = self._open(r)
                out.append(
                    SpoolEntry(
                        r.id,
                        r.state,
                        r.attempts,
                        r.next_attempt_at,
                        r.created_at,
                        p["sender"],
                        p["recipients"],
                        len(base64.b64decode(p["data"])),
                        p.get("last_error"),
                        p.get("meta", {}),
                    )
                )
            return out

    def retry(self, entry_id: str) -> None:
        with self.db.write() as s:
            row = s.get(MailSpool, entry_id)
            if row is None:
                raise NotFound(f"no spooled message with id {entry_id[:40]!r}")
            row.state, row.next_attempt_at, row.updated_at = "queued", self.clock(), self.clock()

    async def deliver(
        self,
        transport: Transport,
        *,
        limit: int | None = None,
        more: Callable[[], bool] | None = None,
    ) -> SpoolReport:
        """Send due messages over one downstream connection; failures back off, nothing is lost.

        One batch of at most ``limit`` rows; with ``more`` (asked after each batch), further batches while
        rows are due, each claimed in the same transaction that deletes what the batch before delivered.
        A message is deleted only after the downstream server took it (at least once); a crash before the
        delete sends it again once its lease ends.
        """
        sent = retrying = failed = 0
        errors: list[str] = []
        # The database work runs in a worker thread: the gateway's event loop keeps serving SMTP meanwhile.
        due = await asyncio.to_thread(self._claim, limit)
        delivered: list[str] = []
        try:
            while due:
                unreachable = False
                for rid, p in due:
                    outcome = await self._send(transport, rid, p, errors)
                    if outcome == "sent":
                        delivered.append(rid)
                        sent += 1
                        continue
                    failed += outcome == "failed"
                    retrying += outcome == "retrying"
                    if not transport.connected:
                        # The server is unreachable: the rest waits for the next round, untouched.
                        unreachable = True
                        break
                if unreachable or more is None or not more():
                    break
                done, delivered = delivered, []
                due = await asyncio.to_thread(self._settle, done, limit)
        finally:
            await asyncio.to_thread(self._delete, delivered)
        return SpoolReport(sent, retrying, failed, errors)

    async def deliver_handed(
        self, transport: Transport, handed: list[Handed], *, sent_ids: list[str] | None = None
    ) -> SpoolReport:
        """Send rows the gateway wrote leased to this deliverer (:class:`Handed`), without claiming them.

        One whose lease is half over is left alone: it comes due in the database and a claim takes it.
        What was delivered is deleted in one transaction (at least once, as :meth:`deliver`), or, with
        ``sent_ids``, added to that list for the caller to delete (:meth:`forget`) while the rows are
        still leased; a failure backs off as there; if the server is unreachable, the rest stay leased
        and come due later.
        """
        sent = retrying = failed = 0
        errors: list[str] = []
        delivered: list[str] = []
        try:
            for h in handed:
                if self.clock() >= h.until - SPOOL_LEASE / 2:
                    continue
                outcome = await self._send(transport, h.id, h.payload, errors)
                if outcome == "sent":
                    delivered.append(h.id)
                    sent += 1
                    continue
                failed += outcome == "failed"
                retrying += outcome == "retrying"
                if not transport.connected:
                    break
        finally:
            if sent_ids is None:
                await asyncio.to_thread(self._delete, delivered)
            else:
                sent_ids.extend(delivered)
        return SpoolReport(sent, retrying, failed, errors)

    async def _send(self, transport: Transport, rid: str, p: dict[str, Any], errors: list[str]) -> str:
        """Hand one spooled message to the downstream server: ``sent``, or how its failure was recorded
        (``failed`` for good, or ``retrying`` later, with backoff)."""
        try:
            await transport.send(base64.b64decode(p["data"]), p["sender"], list(p["recipients"]))
        except DeliveryFailed as exc:
            state = await asyncio.to_thread(self._failed, rid, p, str(exc))
            errors.append(f"{rid}: {exc}")
            return "failed" if state == "failed" else "retrying"
        return "sent"

    def forget(self, ids: list[str]) -> None:
        """Delete delivered rows (what :meth:`deliver_handed` left to its caller)."""
        self._delete(ids)

    def release(self, handed: list[Handed]) -> None:
        """Make leased rows due now (a stopping gateway's unsent ones), unless claimed again since."""
        now = self.clock()
        with self.db.write() as s:
            for h in handed:
                s.execute(
                    update(MailSpool)
                    .where(MailSpool.id == h.id, MailSpool.next_attempt_at == h.until)
                    .values(next_attempt_at=now)
                )

    def _claim(self, limit: int | None) -> list[tuple[str, dict[str, Any]]]:
        """Take due rows for this round under a lease (their next attempt moves :data:`SPOOL_LEASE` ahead).

        Another deliverer (a second gateway, `vrm mail deliver`) skips them meanwhile, so a message is not
        sent twice by two deliverers; a deliverer that dies leaves rows that come due again when the
        lease ends. PostgreSQL skips rows another claim holds (``FOR UPDATE SKIP LOCKED``).
        """
        return self._settle([], limit)

    def _settle(self, delivered: list[str], limit: int | None) -> list[tuple[str, dict[str, Any]]]:
        """Delete the ``delivered`` rows and claim the next due ones (see :meth:`_claim`), one transaction."""
        now = self.clock()
        with self.db.write() as s:
            if delivered:
                s.execute(delete(MailSpool).where(MailSpool.id.in_(delivered)))
            q = (
                select(MailSpool.id, MailSpool.sealed)
                .where(MailSpool.state == "queued", MailSpool.next_attempt_at <= now)
                .order_by(MailSpool.next_attempt_at, MailSpool.id)
                .limit(limit or DEFAULT_CLAIM)
                .with_for_update(skip_locked=True)
            )
            rows = list(s.execute(q))
            if rows:
                s.execute(
                    update(MailSpool)
                    .where(MailSpool.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=now + SPOOL_LEASE)
                )
            return [(r.id, self.keys.open(MailSpool.__tablename__, r.id, r.sealed)) for r in rows]

    def _delete(self, ids: list[str]) -> None:
        if not ids:
            return
        with self.db.write() as s:
            s.execute(delete(MailSpool).where(MailSpool.id.in_(ids)))

    def _failed(self, rid: str, payload: dict[str, Any], error: str) -> str:
        with self.db.write() as s:
            row = s.get(MailSpool, rid)
            if row is None:
                return "gone"
            row.attempts += 1
            row.state = "failed" if row.attempts >= SPOOL_MAX_ATTEMPTS else "queued"
            row.next_attempt_at = self.clock() + spool_backoff(row.attempts)
            row.updated_at = self.clock()
            row.sealed = self.keys.seal(MailSpool.__tablename__, rid, {**payload, "last_error": error[:500]})
            return str(row.state)


__all__ = [
    "INBOX_KIND",
    "Accepted",
    "CacheMiss",
    "Envelope",
    "Gateway",
    "Handed",
    "Recipient",
    "Spool",
    "SpoolEntry",
    "SpoolReport",
    "scrub",
]
