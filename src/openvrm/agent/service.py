"""The person's agent: protocol relationships ("connections") with vendors, their ledgers and grants.

A connection starts at a vendor's discovery document: the agent makes a fresh pairwise key, proffers the
person's terms, and on an accept both sign the agreement. From then on every exchange is a signed,
hash-chained ledger event (:mod:`openvrm.protocol.messages`), acknowledged by the other side.

* Person → vendor events (grants, revocations, profile updates, GDPR requests, end of relationship) are
  written to the ledger as ``pending`` in their own transaction before they are sent, then sent signed
  with the event's idempotency key; the vendor's signed acknowledgement marks them ``acked``. A failed
  send stays ``pending`` and :meth:`AgentService.deliver_pending` sends it again with the same key, so the
  ledger is the outbox and nothing is applied twice.
* Vendor → person events (receipts, notices, data requests, GDPR answers) arrive at the agent endpoints
  while the vault may be locked; the server checks the request signature, seals the event into the vault
  inbox, and :meth:`AgentService.receive` files it (with a signed acknowledgement) once the vault is open.
* Granted profile values are sealed to the vendor's key (:mod:`openvrm.protocol.sealing`) and kept in
  ``grants.vendor_box`` so the vendor can fetch them while the person is away; a revocation clears the box
  in the same transaction that records it, so it takes effect at once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import Connection as SAConnection
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from openvrm.errors import Conflict, InvalidValue, NotFound, OpenVRMError
from openvrm.net import UrlPolicy, check_url, guarded_client, policy_for
from openvrm.profile.fields import query_key
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.records import canonical_json
from openvrm.protocol.sealing import seal_json_for
from openvrm.protocol.terms import DPV, Term, term
from openvrm.records import get_row, insert, insert_core, payload_of, table_of, update
from openvrm.storage.models import Connection, ConnectionEvent, Grant, Vendor, utcnow
from openvrm.storage.prepared import Prepared, core
from openvrm.vault.core import UnlockedVault

DEFAULT_TERMS = ("service-delivery-only", "service-delivery-plus-portability")
DEFAULT_PURPOSE = DPV + "ServiceProvision"
MAX_PUSHED_FILE_BYTES = 700 * 1024
INBOX_KIND = "protocol-event"
ACK_SENDERS = 8  # acknowledgements in flight at once while the inbox is filed
_OPENED_CONNECTIONS = "opened-connections"  # UnlockedVault.caches: dropped when the vault locks
_OPENED_CONNECTIONS_KEPT = 256

_EVENTS = ConnectionEvent.__table__.c
# The author's chain head and the ledger's last position, one statement (two scalar subqueries, each an
# index walk however long the ledger).
_HEAD_AND_LAST = Prepared(
    select(
        select(_EVENTS.event_id)
        .where(_EVENTS.connection_id == bindparam("connection_id"), _EVENTS.author == bindparam("author"))
        .order_by(_EVENTS.position.desc())
        .limit(1)
        .scalar_subquery()
        .label("head"),
        select(func.max(_EVENTS.position))
        .where(_EVENTS.connection_id == bindparam("connection_id"))
        .scalar_subquery()
        .label("last"),
    )
)
_CONNECTIONS = Connection.__table__.c
_CONNECTION_FOR_FILING = select(_CONNECTIONS.status, _CONNECTIONS.vendor_did, _CONNECTIONS.sealed).where(
    _CONNECTIONS.id == bindparam("id")
)


class ConnectionForFiling(Protocol):
    """The columns of a connection that filing a received event reads (a row of ``connections``)."""

    @property
    def status(self) -> str: ...
    @property
    def vendor_did(self) -> str: ...
    @property
    def sealed(self) -> bytes: ...


_EVENT_BY_ID = select(_EVENTS.id).where(
    _EVENTS.connection_id == bindparam("connection_id"), _EVENTS.event_id == bindparam("event_id")
)


class PeerError(OpenVRMError):
    """The vendor's server could not be reached, or answered something we cannot accept."""

    status = 502
    code = "peer-error"
    title = "The vendor's server failed"


# -- records ---------------------------------------------------------------------------------------------


@dataclass
class ConnectionRecord:
    id: str
    handle: str
    status: str
    vendor_id: str | None
    vendor_did: str
    vendor_name: str
    person_did: str
    discovery_url: str
    endpoints: dict[str, str]
    term: dict[str, str] | None
    agreement_id: str | None
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "vendor_id": self.vendor_id,
            "vendor_did": self.vendor_did,
            "vendor_name": self.vendor_name,
            "person_did": self.person_did,
            "discovery_url": self.discovery_url,
            "endpoints": self.endpoints,
            "term": self.term,
            "agreement_id": self.agreement_id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass
class LedgerEntry:
    id: str
    position: int
    author: str
    state: str
    event: dict[str, Any]
    ack: dict[str, Any] | None
    note: dict[str, Any] = field(default_factory=dict)

    @property
    def subtype(self) -> str:
        return str(self.event.get("subtype", ""))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": self.position,
            "author": self.author,
            "state": self.state,
            "subtype": self.subtype,
            "event_id": self.event.get("event_id"),
            "created_at": self.event.get("created_at"),
            "payload": self.event.get("payload"),
            "acknowledged": self.ack is not None and self.ack.get("status") == "accepted",
            "note": self.note,
        }


@dataclass
class GrantRecord:
    id: str
    connection_id: str
    fields: list[str]
    purpose: str
    term: str
    until: str | None
    revoked_at: str | None
    consent: list[dict[str, Any]]
    created_at: datetime | None = None

    @property
    def active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.until is None or datetime.fromisoformat(self.until) > datetime.now(UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "connection_id": self.connection_id,
            "fields": self.fields,
            "purpose": self.purpose,
            "term": self.term,
            "until": self.until,
            "revoked_at": self.revoked_at,
            "active": self.active,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass(frozen=True)
class ConnectResult:
    decision: str
    connection: ConnectionRecord | None
    term: dict[str, str] | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "connection": self.connection.to_json() if self.connection else None,
            "term": self.term,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Holder:
    field: str
    connection_id: str
    vendor_name: str
    grant_id: str
    purpose: str
    until: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "connection_id": self.connection_id,
            "vendor_name": self.vendor_name,
            "grant_id": self.grant_id,
            "purpose": self.purpose,
            "until": self.until,
        }


def agent_urls(base_url: str, handle: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {"ledger": f"{base}/vrm/p/{handle}/ledger", "grants": f"{base}/vrm/p/{handle}/grants"}


def discovery_url_of(url: str) -> str:
    """Accept a vendor's site, or its discovery URL; return the discovery URL."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        raise InvalidValue(f"{url!r} is not an absolute URL (like https://vendor.example)")
    path = parts.path.rstrip("/")
    if not path.endswith("/.well-known/vrm"):
        path = path + "/.well-known/vrm"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _json_body(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PeerError(f"the vendor's {what} answer is not JSON") from None
    if not isinstance(body, dict):
        raise PeerError(f"the vendor's {what} answer is not a JSON object")
    return body


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("detail") or body.get("title") or response.reason_phrase)[:300]
    except ValueError:
        pass
    return response.reason_phrase


# -- the service -----------------------------------------------------------------------------------------


class AgentService:
    """The person's side of the protocol, for one unlocked vault."""

    def __init__(
        self,
        vault: UnlockedVault,
        *,
        policy: UrlPolicy | None = None,
        client_factory: Callable[[], httpx.Client] | None = None,
        clock: Callable[[], datetime] = m.now_utc,
    ) -> None:
        self.vault = vault
        self.policy = policy or policy_for(vault.vault.settings)
        self._client_factory = client_factory or (lambda: guarded_client(self.policy))
        self.clock = clock

    # -- HTTP ------------------------------------------------------------------------------------------

    @contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        client = self._client_factory()
        try:
            yield client
        finally:
            client.close()

    def _post(
        self, client: httpx.Client, url: str, record: dict[str, Any], key: KeyPair, idem: str
    ) -> httpx.Response:
        check_url(url, self.policy)
        body = canonical_json(record)
        headers = {"Content-Type": "application/json", "Idempotency-Key": idem}
        signed = sign_request("POST", url, headers, body, key)
        try:
            return client.post(url, content=body, headers=signed)
        except httpx.HTTPError as exc:
            raise PeerError(
                f"could not reach the vendor at {urlsplit(url).netloc}: {type(exc).__name__}"
            ) from None

    def discover(self, url: str) -> dict[str, Any]:
        """Fetch and check a vendor's discovery document."""
        target = discovery_url_of(url)
        check_url(target, self.policy)
        with self._client() as client:
            try:
                response = client.get(target, headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise PeerError(f"could not fetch {target}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise PeerError(f"{target} answered {response.status_code}")
        doc = _json_body(response, "discovery")
        m.validate("discovery", doc)
        if m.VRM_VERSION not in doc["vrm_versions"]:
            raise PeerError(f"the vendor does not speak protocol {m.VRM_VERSION}")
        for name, endpoint in doc["endpoints"].items():
            try:
                check_url(endpoint, self.policy)
            except InvalidValue as exc:
                raise PeerError(f"the vendor's {name} endpoint is refused: {exc}") from None
        return doc

    # -- connecting ------------------------------------------------------------------------------------

    def connect(
        self,
        url: str,
        *,
        agent_base_url: str,
        terms: Sequence[str] | None = None,
        vendor_id: str | None = None,
        intent: Mapping[str, str] | None = None,
    ) -> ConnectResult:
        """Proffer terms to the vendor at ``url``; on an accept, sign the agreement, keep the connection."""
        doc = self.discover(url)
        wanted = [term(t) for t in (terms or DEFAULT_TERMS)]
        with self.vault.db.read() as s:
            for row in s.scalars(select(Connection).where(Connection.vendor_did == doc["vendor"])):
                if row.status in ("active", "blocked"):
                    raise Conflict(f"there is already a connection with {doc['name']} ({row.id})")
        key = KeyPair.generate()
        handle = secrets.token_urlsafe(24)
        urls = agent_urls(agent_base_url, handle)
        proffer = m.make_proffer(key, doc["vendor"], wanted, agent=urls, intent=intent, now=self.clock())
        endpoint = doc["endpoints"]["relationship"]
        with self._client() as client:
            response = self._post(client, endpoint, proffer, key, m.new_uuid())
            if response.status_code != 200:
                raise PeerError(f"the vendor refused the proffer: {_problem_text(response)}")
            answer = _json_body(response, "proffer")
            chosen = self._checked(lambda: m.check_answer(answer, proffer))
            if answer["decision"] != "accept" or chosen is None:
                return ConnectResult(answer["decision"], None, answer.get("term"), answer.get("reason"))
            agreement = m.make_agreement(key, proffer, answer, now=self.clock())
            response = self._post(client, endpoint, agreement, key, m.new_uuid())
            if response.status_code != 200:
                raise PeerError(f"the vendor did not countersign: {_problem_text(response)}")
            signed = _json_body(response, "agreement")
            self._checked(lambda: m.check_agreement(signed, proffer=proffer, answer=answer))
            if m.unsigned(signed) != m.unsigned(agreement):
                raise PeerError("the vendor countersigned a different agreement")
        vendor_id = vendor_id or self._vendor_for(doc, url)
        payload = {
            "vendor_name": doc["name"],
            "discovery_url": discovery_url_of(url),
            "discovery": doc,
            "endpoints": doc["endpoints"],
            "person_seed": base64.b64encode(key.private_bytes).decode(),
            "person_did": key.did,
            "proffer": proffer,
            "answer": answer,
            "agreement": signed,
        }
        now = utcnow()
        with self.vault.db.write() as s:
            row = insert(
                self.vault,
                s,
                Connection,
                payload,
                handle=handle,
                vendor_did=doc["vendor"],
                status="active",
                vendor_id=vendor_id,
                created_at=now,
            )
        from openvrm.mail.service import MailService

        MailService(self.vault).ensure_alias(vendor_id)
        return ConnectResult("accept", self._record(row, payload), signed["term"])

    def _checked(self, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except (m.ProtocolViolation, SignatureError) as exc:
            raise PeerError(f"the vendor's answer is not valid: {exc}") from None

    def _vendor_for(self, doc: dict[str, Any], url: str) -> str:
        """The vendor record for this connection: one with the same domain, or a new one."""
        from openvrm.vendors.service import VendorService

        host = (urlsplit(url).hostname or "").lower()
        vendors = VendorService(self.vault)
        for v in vendors.list():
            if v.name == doc["name"] or (host and host in (v.domains or [])):
                return v.id
        kw: dict[str, Any] = {"website": urlunsplit(urlsplit(discovery_url_of(url))._replace(path="/"))}
        if doc.get("privacy_contact") and "@" in str(doc["privacy_contact"]):
            kw["privacy_email"] = doc["privacy_contact"]
        try:
            created = vendors.add(doc["name"], **kw)
        except (InvalidValue, TypeError):
            created = vendors.add(doc["name"])
        return created.id

    # -- reading ---------------------------------------------------------------------------------------

    def _record(self, row: Connection, p: dict[str, Any]) -> ConnectionRecord:
        agreement = p.get("agreement") or {}
        return ConnectionRecord(
            row.id,
            row.handle,
            row.status,
            row.vendor_id,
            row.vendor_did,
            p["vendor_name"],
            p["person_did"],
            p["discovery_url"],
            p["endpoints"],
            agreement.get("term"),
            agreement.get("agreement_id"),
            row.created_at,
        )

    def connections(self) -> list[ConnectionRecord]:
        with self.vault.db.read() as s:
            rows = list(s.scalars(select(Connection).order_by(Connection.created_at, Connection.id)))
        return [self._record(r, payload_of(self.vault, r)) for r in rows]

    def get(self, connection_id: str) -> ConnectionRecord:
        with self.vault.db.read() as s:
            row = get_row(s, Connection, connection_id, "connection")
        return self._record(row, payload_of(self.vault, row))

    def agreement(self, connection_id: str) -> dict[str, Any]:
        """The agreement both sides signed, exactly as kept."""
        with self.vault.db.read() as s:
            _row, p, _key = self._load(s, connection_id)
        return dict(p["agreement"])

    def _load(self, s: Session, connection_id: str) -> tuple[Connection, dict[str, Any], KeyPair]:
        row = get_row(s, Connection, connection_id, "connection")
        p = payload_of(self.vault, row)
        return row, p, KeyPair.from_private_bytes(base64.b64decode(p["person_seed"]))

    def ledger(self, connection_id: str) -> list[LedgerEntry]:
        with self.vault.db.read() as s:
            get_row(s, Connection, connection_id, "connection")
            rows = list(
                s.scalars(
                    select(ConnectionEvent)
                    .where(ConnectionEvent.connection_id == connection_id)
                    .order_by(ConnectionEvent.position)
                )
            )
        out = []
        for r in rows:
            p = payload_of(self.vault, r)
            out.append(
                LedgerEntry(r.id, r.position, r.author, r.state, p["event"], p.get("ack"), p.get("note", {}))
            )
        return out

    def verify(self, connection_id: str | None = None) -> list[m.ChainReport]:
        """Check the agreement and the whole chain of each connection (or one)."""
        ids = [connection_id] if connection_id else [c.id for c in self.connections()]
        reports = []
        for cid in ids:
            with self.vault.db.read() as s:
                _row, p, _key = self._load(s, cid)
            entries = [(e.event, e.ack) for e in self.ledger(cid)]
            reports.append(m.verify_chain(p["agreement"], entries))
        return reports

    # -- writing events --------------------------------------------------------------------------------

    def _head(self, s: Session | SAConnection, connection_id: str, author: str) -> tuple[str | None, int]:
        """The author's chain head and the next position: two index walks, however long the ledger."""
        # A plain Core statement, built once (column reads, no ORM objects).
        row = _HEAD_AND_LAST.first(core(s), {"connection_id": connection_id, "author": author})
        head, last = row or (None, None)
        return head, int(last or 0) + 1

    def _append(
        self,
        s: Session,
        connection_id: str,
        event: dict[str, Any],
        author: str,
        state: str,
        *,
        ack: dict[str, Any] | None = None,
        note: dict[str, Any] | None = None,
        position: int | None = None,
    ) -> ConnectionEvent:
        if position is None:  # the caller may have read the head in this transaction already
            _head, position = self._head(s, connection_id, author)
        return insert(
            self.vault,
            s,
            ConnectionEvent,
            {"event": event, "ack": ack, "note": note or {}},
            connection_id=connection_id,
            position=position,
            event_id=event["event_id"],
            author=author,
            state=state,
        )

    def _write_event(
        self,
        s: Session,
        connection_id: str,
        subtype: str,
        payload: dict[str, Any],
        *,
        note: dict[str, Any] | None = None,
    ) -> tuple[ConnectionEvent, dict[str, Any]]:
        row, p, key = self._load(s, connection_id)
        if row.status == "ended" and subtype not in m.AFTER_END:
            raise Conflict("this connection has ended")
        previous, _ = self._head(s, connection_id, "person")
        event = m.make_event(
            key, p["agreement"]["agreement_id"], subtype, payload, previous, now=self.clock()
        )
        return self._append(s, connection_id, event, "person", "pending", note=note), p

    def send(self, connection_id: str, subtype: str, payload: dict[str, Any]) -> LedgerEntry:
        """Record a person → vendor event, then deliver it."""
        with self.vault.db.write() as s:
            row, _p = self._write_event(s, connection_id, subtype, payload)
            entry_id = row.id
        return self._deliver(entry_id)

    def _deliver(self, entry_id: str) -> LedgerEntry:
        with self.vault.db.read() as s:
            erow = get_row(s, ConnectionEvent, entry_id, "ledger entry")
            conn, p, key = self._load(s, erow.connection_id)
            ep = payload_of(self.vault, erow)
        event = ep["event"]
        url = p["endpoints"]["ledger"]
        error: str | None = None
        ack: dict[str, Any] | None = None
        try:
            with self._client() as client:
                response = self._post(client, url, event, key, event["idempotency_key"])
            if response.status_code == 200:
                ack = _json_body(response, "ledger")
                self._checked(lambda: m.check_ack(ack, event, author=conn.vendor_did))
            else:
                error = f"{response.status_code}: {_problem_text(response)}"
        except (PeerError, InvalidValue) as exc:
            error = str(exc)
        with self.vault.db.write() as s:
            erow = get_row(s, ConnectionEvent, entry_id, "ledger entry")
            ep = payload_of(self.vault, erow)
            if ack is not None:
                ep["ack"] = ack
                erow.state = "acked" if ack["status"] == "accepted" else "refused"
                ep["note"].pop("error", None)
                if event["subtype"] == "end-of-relationship" and ack["status"] == "accepted":
                    crow = get_row(s, Connection, erow.connection_id, "connection")
                    crow.status = "ended"
                    crow.updated_at = utcnow()
            else:
                ep["note"]["error"] = error
                ep["note"]["attempts"] = int(ep["note"].get("attempts", 0)) + 1
            update(self.vault, erow, ep)
            state = erow.state
            result = LedgerEntry(
                erow.id, erow.position, erow.author, state, ep["event"], ep.get("ack"), ep["note"]
            )
        return result

    def deliver_pending(self) -> int:
        """Re-send every unacknowledged person event (same idempotency key); return how many are acked."""
        with self.vault.db.read() as s:
            ids = list(
                s.scalars(
                    select(ConnectionEvent.id)
                    .where(ConnectionEvent.state == "pending", ConnectionEvent.author == "person")
                    .order_by(ConnectionEvent.position)
                )
            )
        return sum(1 for i in ids if self._deliver(i).state == "acked")

    # -- grants ----------------------------------------------------------------------------------------

    def _grant_record(self, row: Grant) -> GrantRecord:
        p = payload_of(self.vault, row)
        return GrantRecord(
            row.id,
            row.connection_id,
            p["fields"],
            p["purpose"],
            p["term"],
            p.get("until"),
            row.revoked_at.isoformat() if row.revoked_at else None,
            p.get("consent", []),
            row.created_at,
        )

    def grants(self, connection_id: str | None = None) -> list[GrantRecord]:
        with self.vault.db.read() as s:
            q = select(Grant).order_by(Grant.created_at, Grant.id)
            if connection_id:
                q = q.where(Grant.connection_id == connection_id)
            rows = list(s.scalars(q))
        return [self._grant_record(r) for r in rows]

    def get_grant(self, grant_id: str) -> GrantRecord:
        with self.vault.db.read() as s:
            return self._grant_record(get_row(s, Grant, grant_id, "grant"))

    def _values(self, fields: Sequence[str]) -> dict[str, Any]:
        from openvrm.profile.fields import normalise_key
        from openvrm.profile.service import ProfileService

        current = ProfileService(self.vault).current()
        values: dict[str, Any] = {}
        for f in fields:
            key = normalise_key(f)
            if key not in current:
                raise InvalidValue(f"your profile has no {key!r} to grant; set it with `vrm profile set`")
            values[key] = current[key]
        return values

    def _box(self, vendor_did: str, grant_id: str, values: dict[str, Any], p: dict[str, Any]) -> bytes:
        sealed = seal_json_for(
            vendor_did,
            {
                "grant_id": grant_id,
                "fields": values,
                "purpose": p["purpose"],
                "term": p["term"],
                "until": p.get("until"),
                "issued_at": m.timestamp(self.clock()),
            },
        )
        return json.dumps(sealed).encode()

    def grant(
        self,
        connection_id: str,
        fields: Sequence[str],
        *,
        purpose: str = DEFAULT_PURPOSE,
        until: date | None = None,
    ) -> GrantRecord:
        """Grant profile fields to a connection for a purpose, under its agreement's term, maybe until."""
        keys = sorted(dict.fromkeys(fields))
        if not keys:
            raise InvalidValue("name at least one profile field to grant")
        if not purpose.startswith(("https://", "urn:")):
            raise InvalidValue("the purpose is an IRI, e.g. https://w3id.org/dpv#ServiceProvision")
        values = self._values(keys)
        keys = sorted(values)
        until_at = datetime.combine(until, time(23, 59, 59), UTC) if until else None
        if until_at is not None and until_at <= self.clock():
            raise InvalidValue("the grant would end in the past")
        from openvrm.storage.models import new_id

        grant_id = new_id()
        with self.vault.db.write() as s:
            conn, p, _key = self._load(s, connection_id)
            if conn.status != "active":
                raise Conflict(f"the connection is {conn.status}; grants need an active connection")
            term_ref = p["agreement"]["term"]
            gp: dict[str, Any] = {
                "fields": keys,
                "purpose": purpose,
                "term": f"{term_ref['id']}@{term_ref['version']}",
                "until": until_at.isoformat() if until_at else None,
                "consent": [],
            }
            event_payload = {
                "grant_id": grant_id,
                "fields": keys,
                "purpose": purpose,
                "term": gp["term"],
                "sealed_to": m.kid_of(conn.vendor_did),
            }
            if until_at:
                event_payload["until"] = m.timestamp(until_at)
            erow, _ = self._write_event(s, connection_id, "grant", event_payload, note={"grant_id": grant_id})
            gp["consent"].append(self._consent(p, conn, gp, "given", erow.event_id))
            insert(
                self.vault,
                s,
                Grant,
                gp,
                record_id=grant_id,
                connection_id=connection_id,
                until=until_at,
                vendor_box=self._box(conn.vendor_did, grant_id, values, gp),
            )
            entry_id = erow.id
        self._deliver(entry_id)
        return self.get_grant(grant_id)

    def revoke(self, grant_id: str) -> GrantRecord:
        """Withdraw a grant: the sealed values are gone in this transaction; the vendor is then told."""
        with self.vault.db.write() as s:
            grow = get_row(s, Grant, grant_id, "grant")
            if grow.revoked_at is not None:
                return self._grant_record(grow)
            gp = payload_of(self.vault, grow)
            now = utcnow()
            grow.revoked_at = now
            grow.vendor_box = None
            conn, p, _key = self._load(s, grow.connection_id)
            entry_id: str | None = None
            if conn.status != "ended":
                erow, _ = self._write_event(
                    s,
                    grow.connection_id,
                    "revocation",
                    {"grant_id": grant_id, "fields": gp["fields"]},
                    note={"grant_id": grant_id},
                )
                entry_id = erow.id
                gp["consent"].append(self._consent(p, conn, gp, "withdrawn", erow.event_id))
            update(self.vault, grow, gp)
        if entry_id:
            self._deliver(entry_id)
        return self.get_grant(grant_id)

    def reseal_field(self, field_key: str) -> dict[str, LedgerEntry]:
        """After a profile change: re-seal every active grant holding the field and tell each vendor.

        Returns the profile-update entry sent, per vendor id (connections without a vendor are keyed by
        connection id).
        """
        from openvrm.profile.fields import normalise_key

        key = normalise_key(field_key)
        entries: list[tuple[str, str]] = []
        from openvrm.profile.service import ProfileService

        current = ProfileService(self.vault).current()
        with self.vault.db.write() as s:
            rows = list(
                s.scalars(select(Grant).where(Grant.revoked_at.is_(None), Grant.vendor_box.is_not(None)))
            )
            for g in rows:
                gp = payload_of(self.vault, g)
                if key not in gp["fields"] or (g.until is not None and g.until <= utcnow()):
                    continue
                conn = get_row(s, Connection, g.connection_id, "connection")
                if conn.status != "active":
                    continue
                values = {f: current[f] for f in gp["fields"] if f in current}
                if key not in values:
                    continue
                g.vendor_box = self._box(conn.vendor_did, g.id, values, gp)
                g.updated_at = utcnow()
                sealed = seal_json_for(conn.vendor_did, {key: values[key]})
                erow, _ = self._write_event(
                    s,
                    g.connection_id,
                    "profile-update",
                    {"grant_id": g.id, "changed": [key], "sealed": sealed},
                    note={"grant_id": g.id},
                )
                entries.append((conn.vendor_id or conn.id, erow.id))
        return {owner: self._deliver(entry_id) for owner, entry_id in entries}

    def holders(self, field_key: str | None = None) -> list[Holder]:
        """Who holds my ...? Every active grant, per field (or for one field)."""
        if field_key is not None:
            field_key = query_key(field_key)
        names = {c.id: c.vendor_name for c in self.connections()}
        out = []
        for g in self.grants():
            if not g.active:
                continue
            for f in g.fields:
                if field_key is None or f == field_key or f.startswith(field_key + "."):
                    out.append(
                        Holder(f, g.connection_id, names.get(g.connection_id, "?"), g.id, g.purpose, g.until)
                    )
        return sorted(out, key=lambda h: (h.field, h.vendor_name))

    # -- consent records -------------------------------------------------------------------------------

    def _consent(
        self, p: dict[str, Any], conn: Connection, gp: dict[str, Any], status: str, event_id: str
    ) -> dict[str, Any]:
        """A consent record shaped after ISO/IEC TS 27560, in DPV terms."""
        t = term(*gp["term"].split("@"))
        return {
            "record_id": m.new_uuid(),
            "schema": "ISO/IEC TS 27560:2023 (shape), W3C DPV terms",
            "status": "dpv:ConsentGiven" if status == "given" else "dpv:ConsentWithdrawn",
            "timestamp": m.timestamp(self.clock()),
            "data_subject": p["person_did"],
            "controller": {"name": p["vendor_name"], "id": conn.vendor_did},
            "purposes": [gp["purpose"]],
            "personal_data": list(gp["fields"]),
            "processing": [DPV + "Use", DPV + "Store"],
            "legal_basis": DPV + "Consent",
            "expiry": gp.get("until"),
            "notice": {"term": gp["term"], "legal_sha256": t.legal_sha256},
            "agreement_id": p["agreement"]["agreement_id"],
            "ledger_event": event_id,
        }

    def kantara_receipt(self, grant_id: str) -> dict[str, Any]:
        """The grant as a Kantara Initiative Consent Receipt v1.1 JSON object."""
        g = self.get_grant(grant_id)
        c = self.get(g.connection_id)
        t = term(*g.term.split("@"))
        given = g.consent[0] if g.consent else {}
        ts = (
            int(datetime.fromisoformat(given["timestamp"].replace("Z", "+00:00")).timestamp()) if given else 0
        )
        return {
            "version": "KI-CR-v1.1.0",
            "jurisdiction": "EU",
            "consentTimestamp": ts,
            "collectionMethod": "openvrm agent grant (signed ledger event)",
            "consentReceiptID": given.get("record_id", g.id),
            "publicKey": c.person_did,
            "language": "en",
            "piiPrincipalId": c.person_did,
            "piiControllers": [
                {
                    "piiController": c.vendor_name,
                    "onBehalf": False,
                    "contact": c.vendor_name,
                    "address": {"did": c.vendor_did},
                    "email": "",
                    "phone": "",
                    "piiControllerUrl": c.discovery_url,
                }
            ],
            "policyUrl": f"urn:openvrm:term:{t.id}@{t.version}#sha256={t.legal_sha256}",
            "services": [
                {
                    "service": c.vendor_name,
                    "purposes": [
                        {
                            "purpose": g.purpose,
                            "purposeCategory": [g.purpose.rsplit("#", 1)[-1]],
                            "consentType": "EXPLICIT",
                            "piiCategory": list(g.fields),
                            "primaryPurpose": True,
                            "termination": g.until or "end of relationship or revocation",
                            "thirdPartyDisclosure": False,
                        }
                    ],
                }
            ],
            "sensitive": False,
            "spiCat": [],
            "revoked": g.revoked_at is not None,
        }

    # -- other person → vendor events ------------------------------------------------------------------

    def end(
        self, connection_id: str, *, reason: str, effective: date | None = None, erase_after: str = "P30D"
    ) -> LedgerEntry:
        payload = {"reason": reason[:300] or "ended by the person", "erase_after": erase_after}
        if effective:
            payload["effective"] = effective.isoformat()
        with self.vault.db.write() as s:
            erow, p = self._write_event(s, connection_id, "end-of-relationship", payload)
            conn = get_row(s, Connection, connection_id, "connection")
            # Every grant ends with the relationship, at once and with its consent record, even if the
            # vendor is unreachable now (the end event then stays pending and is sent again).
            for g in s.scalars(
                select(Grant).where(Grant.connection_id == connection_id, Grant.revoked_at.is_(None))
            ):
                gp = payload_of(self.vault, g)
                g.revoked_at = utcnow()
                g.vendor_box = None
                gp["consent"].append(self._consent(p, conn, gp, "withdrawn", erow.event_id))
                update(self.vault, g, gp)
            entry_id = erow.id
        return self._deliver(entry_id)

    def gdpr_request(
        self, connection_id: str, right: str, *, scope: str, respond_by: date | None = None
    ) -> LedgerEntry:
        articles = {
            "access": "GDPR Art. 15",
            "rectification": "GDPR Art. 16",
            "erasure": "GDPR Art. 17",
            "restriction": "GDPR Art. 18",
            "portability": "GDPR Art. 20",
            "objection": "GDPR Art. 21",
        }
        if right not in articles:
            raise InvalidValue(f"the right is one of {', '.join(articles)}")
        due = respond_by or (self.clock().date() + timedelta(days=30))
        payload = {
            "right": right,
            "article": articles[right],
            "scope": scope[:500],
            "respond_by": due.isoformat(),
        }
        return self.send(connection_id, "gdpr-request", payload)

    # -- vendor → person -------------------------------------------------------------------------------

    def receive(self, connection_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """File a vendor's event (checked against the chain) and return our signed acknowledgement."""
        with self.vault.db.write() as s:
            return self.receive_in(s, connection_id, event)

    def receive_in(
        self,
        s: Session | SAConnection,
        connection_id: str,
        event: dict[str, Any],
        *,
        prechecked: bool = False,
        connection: ConnectionForFiling | None = None,
    ) -> dict[str, Any]:
        """:meth:`receive` inside the caller's write transaction.

        ``prechecked`` says the caller has just checked this very record's schema, hashes and signature by
        the connection's vendor (as the push endpoint does before anything else), so
        :func:`~openvrm.protocol.messages.check_event` does the rest (agreement, author, subtype, chain head)
        without doing those three again. ``connection`` is the connection's row as the caller has just read
        it in this same transaction (status, vendor_did, sealed), so it is not read twice. ``s`` may be the
        transaction's ORM session or its Core connection.
        """
        c = core(s)
        found_conn = connection
        if found_conn is None:
            found_conn = c.execute(_CONNECTION_FOR_FILING, {"id": connection_id}).first()
        if found_conn is None:
            raise NotFound(f"no connection with id {connection_id[:40]!r}")
        conn = found_conn  # status and vendor_did, read in this transaction; the rest is sealed
        p, key = self._opened_connection(connection_id, bytes(found_conn.sealed))
        previous, position = self._head(c, connection_id, "vendor")
        # A resent event (already filed) gets its acknowledgement again. It cannot follow the head we hold:
        # its event_id hashes its previous_id, and filing it moved the head past that. So the ledger is only
        # searched for it when an event does not follow the head (one statement fewer on every new event).
        if event.get("previous_id") != previous:
            found = c.execute(
                _EVENT_BY_ID, {"connection_id": connection_id, "event_id": event.get("event_id")}
            ).first()
            if found is not None:  # load the entry (a rare case) to give its ack again
                with contextlib.nullcontext(s) if isinstance(s, Session) else Session(bind=c) as orm:
                    ep = payload_of(self.vault, get_row(orm, ConnectionEvent, found.id, "ledger entry"))
                if ep.get("ack"):
                    return dict(ep["ack"])
        if conn.status == "blocked":
            raise SignatureError("this vendor is blocked")
        if conn.status == "ended" and event.get("subtype") not in m.AFTER_END:
            raise Conflict("this connection has ended")
        m.check_event(
            event, p["agreement"], author=conn.vendor_did, previous_id=previous, prechecked=prechecked
        )
        note = self._file(s, event)
        ack = m.make_ack(key, event, now=self.clock())
        state = "pending-decision" if event["subtype"] == "data-request" else "received"
        insert_core(
            self.vault,
            s,
            ConnectionEvent,
            {"event": event, "ack": ack, "note": note},
            connection_id=connection_id,
            position=position,
            event_id=event["event_id"],
            author="vendor",
            state=state,
        )
        return ack

    def _opened_connection(self, connection_id: str, sealed: bytes) -> tuple[dict[str, Any], KeyPair]:
        """The sealed part of a connection row (agreement, our pairwise key) as just read, opened.

        Opening it (decryption, JSON, deriving the key pair) is kept for the length of the unlock, keyed by
        the connection and its exact sealed bytes: the row itself is read in every transaction (a block
        or an end applies at once) and a changed sealed part is opened again. Read-only for the caller.
        """
        memo: dict[tuple[str, bytes], tuple[dict[str, Any], KeyPair]]
        memo = self.vault.caches.setdefault(_OPENED_CONNECTIONS, {})
        slot = (connection_id, sealed)
        hit = memo.get(slot)
        if hit is None:
            p = self.vault.open(table_of(Connection), connection_id, sealed)
            hit = (p, KeyPair.from_private_bytes(base64.b64decode(p["person_seed"])))
            if len(memo) >= _OPENED_CONNECTIONS_KEPT:
                memo.clear()
            memo[slot] = hit
        return hit

    def _file(self, s: Session | SAConnection, event: dict[str, Any]) -> dict[str, Any]:
        """What receiving an event does besides recording it; returns a note kept with the entry."""
        payload = event["payload"]
        note: dict[str, Any] = {}
        if event["subtype"] in ("receipt", "invoice"):
            attachment = payload.get("attachment")
            if isinstance(attachment, dict) and isinstance(attachment.get("content"), str):
                note["attachment"] = self._store_attachment(attachment, payload)
        return note

    def _store_attachment(self, attachment: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        try:
            data = base64.b64decode(attachment["content"], validate=True)
        except (binascii.Error, ValueError):
            raise m.ProtocolViolation("the attachment content is not base64") from None
        if len(data) > MAX_PUSHED_FILE_BYTES:
            raise m.ProtocolViolation("the attachment is too large")
        if attachment.get("sha256") and attachment["sha256"] != hashlib.sha256(data).hexdigest():
            raise m.ProtocolViolation("the attachment does not match its sha256")
        address, _new = self.vault.put_file(data)
        return {
            "blob": address,
            "size": len(data),
            "media_type": str(attachment.get("media_type", "application/octet-stream"))[:100],
            "filename": f"{str(payload.get('receipt_id') or 'receipt')[:80]}.{_ext(attachment)}",
            "imported": False,
        }

    def import_received(self) -> int:
        """Import the files of received receipts into the documents ledger (once each)."""
        from openvrm.documents.importer import ImportService

        done = 0
        with self.vault.db.read() as s:
            rows = list(
                s.scalars(
                    select(ConnectionEvent).where(
                        ConnectionEvent.author == "vendor", ConnectionEvent.state == "received"
                    )
                )
            )
        for row in rows:
            with self.vault.db.read() as s:
                ep = payload_of(self.vault, get_row(s, ConnectionEvent, row.id, "ledger entry"))
                conn = get_row(s, Connection, row.connection_id, "connection")
            att = ep.get("note", {}).get("attachment")
            if not att or att.get("imported"):
                continue
            data = self.vault.get_file(att["blob"])
            outcomes = ImportService(self.vault).import_bytes(
                data,
                filename=att["filename"],
                media_type=att["media_type"],
                vendor_id=conn.vendor_id,
                vendor_is_sender=conn.vendor_id is not None,
            )
            with self.vault.db.write() as s:
                erow = get_row(s, ConnectionEvent, row.id, "ledger entry")
                ep = payload_of(self.vault, erow)
                ep["note"]["attachment"]["imported"] = True
                ep["note"]["attachment"]["document_ids"] = [o.document_id for o in outcomes if o.document_id]
                update(self.vault, erow, ep)
            done += 1
        return done

    def data_requests(self, *, pending_only: bool = True) -> list[tuple[ConnectionRecord, LedgerEntry]]:
        """Vendors' data requests (by default only those waiting for a decision), oldest first."""
        q = select(ConnectionEvent).where(ConnectionEvent.author == "vendor")
        if pending_only:
            q = q.where(ConnectionEvent.state == "pending-decision")
        with self.vault.db.read() as s:
            rows = list(s.scalars(q.order_by(ConnectionEvent.created_at, ConnectionEvent.id)))
        records: dict[str, ConnectionRecord] = {}
        out = []
        for r in rows:
            ep = payload_of(self.vault, r)
            if ep["event"].get("subtype") != "data-request":
                continue
            if r.connection_id not in records:
                records[r.connection_id] = self.get(r.connection_id)
            entry = LedgerEntry(
                r.id, r.position, r.author, r.state, ep["event"], ep.get("ack"), ep.get("note", {})
            )
            out.append((records[r.connection_id], entry))
        return out

    def answer_data_request(
        self, entry_id: str, *, approve: bool, until: date | None = None, fields: Sequence[str] | None = None
    ) -> LedgerEntry:
        """Approve (as a grant, maybe until a date) or deny a vendor's data request."""
        with self.vault.db.read() as s:
            erow = get_row(s, ConnectionEvent, entry_id, "ledger entry")
            ep = payload_of(self.vault, erow)
        if ep["event"]["subtype"] != "data-request" or erow.state != "pending-decision":
            raise Conflict("this is not a data request waiting for your decision")
        req = ep["event"]["payload"]
        grant: GrantRecord | None = None
        if approve:
            asked = [str(f) for f in req.get("fields", [])]
            chosen = list(fields) if fields else asked
            if not set(chosen) <= set(asked):
                raise InvalidValue("you can only approve fields the vendor asked for")
            grant = self.grant(
                erow.connection_id, chosen, purpose=str(req.get("purpose") or DEFAULT_PURPOSE), until=until
            )
        answer = {"request_id": req.get("request_id"), "decision": "approved" if approve else "denied"}
        if grant is not None:
            answer["grant_id"] = grant.id
        if until is not None and approve:
            answer["until"] = until.isoformat()
        sent = self.send(erow.connection_id, "data-request-answer", answer)
        with self.vault.db.write() as s:
            erow = get_row(s, ConnectionEvent, entry_id, "ledger entry")
            ep = payload_of(self.vault, erow)
            erow.state = "approved" if approve else "denied"
            ep["note"]["decision"] = answer
            update(self.vault, erow, ep)
        return sent

    # -- the inbox (events that arrived while locked) -------------------------------------------------

    def process_inbox(self) -> tuple[int, int]:
        """File the protocol events deposited while the vault was locked; deliver their acks.

        Returns ``(filed, refused)``. A refused event is dropped from the inbox (it never enters the ledger)
        and the vendor is told with a signed ``refused`` acknowledgement.

        Events are filed one by one, in the order they came; their acknowledgements go out over one HTTP
        client, up to :data:`ACK_SENDERS` at a time, so a long absence is not paid for with one round trip
        to a vendor per event. An event leaves the inbox once its acknowledgement has been tried; should
        this stop before that, the event is filed again next time (filing is idempotent) and its
        acknowledgement sent again.
        """
        filed = refused = 0
        targets: dict[str, tuple[str, KeyPair] | None] = {}
        sending: deque[tuple[str, Future[bool]]] = deque()

        def settle_oldest() -> None:
            item_id, sent = sending.popleft()
            sent.result()
            self.vault.remove_inbox_item(item_id)

        with (
            self._client() as client,
            ThreadPoolExecutor(max_workers=ACK_SENDERS, thread_name_prefix="openvrm-acks") as pool,
        ):
            try:
                for item in self.vault.inbox_entries():
                    if item.item.get("kind") != INBOX_KIND:
                        continue
                    connection_id = str(item.item.get("connection_id"))
                    event = item.item.get("record")
                    ack: dict[str, Any] | None
                    try:
                        ack = self.receive(connection_id, event if isinstance(event, dict) else {})
                        filed += 1
                    except (OpenVRMError, KeyError, TypeError) as exc:
                        refused += 1
                        ack = self._refusal(connection_id, event, str(exc))
                    target = self._ack_target(connection_id, targets) if ack is not None else None
                    if ack is None or target is None:
                        self.vault.remove_inbox_item(item.id)
                        continue
                    sending.append((item.id, pool.submit(self._post_ack, client, target, ack)))
                    if len(sending) >= 4 * ACK_SENDERS:
                        settle_oldest()
                while sending:
                    settle_oldest()
            finally:
                for _item_id, sent in sending:
                    sent.cancel()
        if filed:
            self.import_received()
        return filed, refused

    def _refusal(self, connection_id: str, event: Any, reason: str) -> dict[str, Any] | None:
        try:
            with self.vault.db.read() as s:
                _row, _p, key = self._load(s, connection_id)
            return m.make_ack(key, event, accepted=False, reason=reason, now=self.clock())
        except (OpenVRMError, KeyError, TypeError):
            return None

    def _ack_target(
        self, connection_id: str, known: dict[str, tuple[str, KeyPair] | None]
    ) -> tuple[str, KeyPair] | None:
        """Where a connection's acknowledgements go and the key that signs them (looked up once a run)."""
        if connection_id not in known:
            try:
                with self.vault.db.read() as s:
                    _row, p, key = self._load(s, connection_id)
                known[connection_id] = (str(p["endpoints"]["ledger"]), key)
            except (OpenVRMError, KeyError, TypeError):
                known[connection_id] = None
        return known[connection_id]

    def _post_ack(self, client: httpx.Client, target: tuple[str, KeyPair], ack: dict[str, Any]) -> bool:
        url, key = target
        try:
            response = self._post(client, url, ack, key, m.new_uuid())
            return response.status_code in (200, 202, 204)
        except (PeerError, InvalidValue):
            return False

    # -- blocking --------------------------------------------------------------------------------------

    def set_blocked(self, connection_id: str, blocked: bool) -> ConnectionRecord:
        with self.vault.db.write() as s:
            row = get_row(s, Connection, connection_id, "connection")
            if row.status == "ended":
                raise Conflict("this connection has ended")
            row.status = "blocked" if blocked else "active"
            row.updated_at = utcnow()
        return self.get(connection_id)


def _ext(attachment: dict[str, Any]) -> str:
    media = str(attachment.get("media_type", ""))
    return {"application/pdf": "pdf", "application/xml": "xml", "text/xml": "xml"}.get(media, "bin")


def sync_vendor_stance(s: Session, vendor_id: str, stance: str) -> None:
    """Keep connection status in step with the person's stance on the vendor (blocked or not)."""
    for row in s.scalars(select(Connection).where(Connection.vendor_id == vendor_id)):
        if row.status == "ended":
            continue
        row.status = "blocked" if stance == "blocked" else "active"
        row.updated_at = utcnow()


def count_connections(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(Connection)) or 0)


def vendor_name_of(s: Session, vault: UnlockedVault, vendor_id: str | None) -> str | None:
    if vendor_id is None:
        return None
    row = s.get(Vendor, vendor_id)
    return str(payload_of(vault, row)["name"]) if row is not None else None


__all__ = [
    "AgentService",
    "ConnectResult",
    "ConnectionRecord",
    "GrantRecord",
    "Holder",
    "LedgerEntry",
    "PeerError",
    "Term",
    "agent_urls",
    "discovery_url_of",
    "sync_vendor_stance",
]
