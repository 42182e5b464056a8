"""The vendor kit's core: answer proffers, countersign agreements, keep the ledger, push to agents.

Pure of any web framework: :func:`openvrm.vendor.app.create_vendor_app` adapts HTTP requests to
:meth:`VendorKit.handle_write`, and the CLI calls the push and fetch methods directly. Every outbound
request goes to a URL the person's agent gave us, so it is checked by the SSRF guard
(:mod:`openvrm.net`) and sent through a guarded client unless a test injects its own ``client_factory``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openvrm.errors import Conflict, IntegrityError, InvalidValue, OpenVRMError
from openvrm.net import UnsafeUrl, check_url, guarded_client
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import RequestVerifier, did_key_resolver, sign_httpx_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.sealing import open_sealed_json
from openvrm.protocol.stores import (
    SqlIdempotencyStore,
    SqlNonceStore,
    StoredResponse,
    request_fingerprint,
)
from openvrm.storage.db import Database
from openvrm.vendor.config import VendorConfig, load_or_create_key
from openvrm.vendor.errors import (
    AgentError,
    AgentRefused,
    AgentUnreachable,
    NotAParty,
    PayloadTooLarge,
    UnknownRelationship,
)
from openvrm.vendor.store import (
    DataRequest,
    GrantRecord,
    LedgerEntry,
    PendingProffer,
    Relationship,
    VendorIdempotency,
    VendorNonce,
    open_store,
)

log = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 700 * 1024
MAX_AGENT_RESPONSE_BYTES = 2 * 1024 * 1024
MAX_IDEMPOTENCY_KEY = 64
JSON_MEDIA_TYPE = "application/json"
_AMOUNT = re.compile(r"^-?\d{1,12}(\.\d{1,4})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_IDEM_KEY = re.compile(r"^[A-Za-z0-9._~:-]{1,64}$")
NOTICE_KINDS = ("price-change", "terms-change", "service-end", "other")
GDPR_STATUSES = ("completed", "refused", "extended", "partial")

ClientFactory = Callable[[], httpx.Client]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PushResult:
    """Where one of our events stands after a push: ``acked``, ``delivered`` (queued), ``pending``."""

    event_id: str
    state: str
    event: dict[str, Any]
    ack: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "state": self.state, "ack": self.ack}


@dataclass(frozen=True)
class RelationshipInfo:
    agreement_id: str
    person: str
    status: str
    term: str
    ledger_url: str | None
    grants_url: str | None
    created_at: datetime
    events: int

    def to_json(self) -> dict[str, Any]:
        return {
            "agreement_id": self.agreement_id,
            "person": self.person,
            "status": self.status,
            "term": self.term,
            "ledger_url": self.ledger_url,
            "grants_url": self.grants_url,
            "created_at": m.timestamp(self.created_at),
            "events": self.events,
        }


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class VendorKit:
    """One vendor: its key, its store, and the protocol rules applied to every message."""

    def __init__(
        self,
        config: VendorConfig,
        *,
        key: KeyPair | None = None,
        db: Database | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.config = config
        self.key = key or load_or_create_key(config.key_file)
        self.db = db or open_store(config.store)
        self._client_factory = client_factory or (lambda: guarded_client(config.url_policy))
        self.nonces = SqlNonceStore(self.db, VendorNonce)
        self.idempotency = SqlIdempotencyStore(self.db, VendorIdempotency)
        self.verifier = RequestVerifier(
            did_key_resolver,
            self.nonces,
            max_age=timedelta(seconds=config.replay_window_seconds),
            max_body_bytes=config.max_body_bytes,
        )

    @property
    def did(self) -> str:
        return self.key.did

    def close(self) -> None:
        self.db.dispose()

    # -- discovery ---------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.config.base_url + path

    def discovery(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "vrm_versions": [m.VRM_VERSION],
            "name": self.config.name,
            "vendor": self.did,
            "keys": [{"kid": m.kid_of(self.did), "use": "sign"}],
            "endpoints": {
                "relationship": self.url("/vrm/relationship"),
                "ledger": self.url("/vrm/ledger"),
                "rbutton": self.url("/vrm/rbutton.js"),
            },
            "terms": [m.term_ref(t) for t in self.config.terms()],
            "replay_window_seconds": self.config.replay_window_seconds,
        }
        if self.config.privacy_contact:
            doc["privacy_contact"] = self.config.privacy_contact
        m.validate("discovery", doc)
        return doc

    # -- signed writes (the HTTP adapter calls this) ------------------------------------------------

    def handle_write(
        self, endpoint: str, method: str, url: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> StoredResponse:
        """Verify, de-duplicate and apply one signed write to ``relationship`` or ``ledger``.

        Raises an :class:`OpenVRMError` (401, 403, 404, 409, 413, 422) when refused; nothing is stored then.
        """
        if len(body) > self.config.max_body_bytes:
            raise PayloadTooLarge(f"the request body is larger than {self.config.max_body_bytes} bytes")
        verified = self.verifier.verify(method, url, headers, body)
        lowered = {k.lower(): v for k, v in headers.items()}
        idem = lowered.get("idempotency-key", "")
        if not _IDEM_KEY.match(idem):
            raise InvalidValue("the Idempotency-Key must be 1 to 64 URL-safe characters (a UUID)")
        fingerprint = request_fingerprint(method.upper(), path, body)
        stored = self.idempotency.lookup(verified.keyid, idem, fingerprint)
        if stored is not None:
            return stored
        try:
            record = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise m.ProtocolViolation("the request body is not JSON") from None
        if not isinstance(record, dict):
            raise m.ProtocolViolation("the request body must be a JSON object")
        result = self._dispatch(endpoint, record, verified.keyid)
        response = StoredResponse(200, JSON_MEDIA_TYPE, _json_bytes(result))
        self.idempotency.save(verified.keyid, idem, fingerprint, response)
        return response

    def _dispatch(self, endpoint: str, record: dict[str, Any], keyid: str) -> dict[str, Any]:
        kind = record.get("type")
        if endpoint == "relationship":
            if kind == "proffer":
                return self.answer_proffer(record, keyid)
            if kind == "agreement":
                return self.accept_agreement(record, keyid)
            raise m.ProtocolViolation("the relationship endpoint takes a proffer or an agreement")
        if endpoint == "ledger":
            return self.receive(record, keyid)
        raise InvalidValue(f"unknown endpoint {endpoint!r}")

    # -- relationship ------------------------------------------------------------------------------

    def _check_agent_urls(self, proffer: Mapping[str, Any]) -> tuple[str | None, str | None]:
        agent = proffer.get("agent")
        if not isinstance(agent, Mapping):
            return None, None
        urls = (str(agent["ledger"]), str(agent["grants"]))
        for u in urls:
            check_url(u, self.config.url_policy)
        return urls

    def answer_proffer(self, proffer: Any, signer_keyid: str) -> dict[str, Any]:
        """Check a proffer and answer it: accept the first acceptable term, else alternative or reject."""
        terms = m.check_proffer(proffer, vendor_did=self.did)
        if signer_keyid != proffer["person"]:
            raise NotAParty("the proffer must be sent by the person who signed it")
        self._check_agent_urls(proffer)
        with self.db.write() as s:
            existing = s.get(PendingProffer, proffer["proffer_id"])
            if existing is not None:
                if existing.proffer != proffer:
                    raise Conflict("a different proffer with this proffer_id was already answered")
                return dict(existing.answer)
        accepted = {t.id: t for t in self.config.terms()}
        chosen = next((t for t in terms if t.id in accepted and t == accepted[t.id]), None)
        if chosen is not None:
            answer = m.make_answer(self.key, proffer, "accept", chosen=chosen)
        else:
            proffered = {t.id for t in terms}
            other = next((t for t in self.config.terms() if t.id not in proffered), None)
            if self.config.alternative and other is not None:
                answer = m.make_answer(
                    self.key,
                    proffer,
                    "alternative",
                    chosen=other,
                    reason=f"{self.config.name} cannot accept the proffered terms; we propose {other.id}.",
                )
            else:
                answer = m.make_answer(
                    self.key,
                    proffer,
                    "reject",
                    reason=f"{self.config.name} accepts only: {', '.join(self.config.accepted_terms)}.",
                )
        with self.db.write() as s:
            if s.get(PendingProffer, proffer["proffer_id"]) is None:
                s.add(
                    PendingProffer(
                        proffer_id=proffer["proffer_id"],
                        proffer_hash=m.h(m.unsigned(proffer)),
                        person_did=proffer["person"],
                        proffer=proffer,
                        answer=answer,
                        decision=answer["decision"],
                        created_at=_now(),
                    )
                )
        return answer

    def accept_agreement(self, agreement: Any, signer_keyid: str) -> dict[str, Any]:
        """Check the person's agreement against our stored proffer and answer; countersign and store it."""
        if not isinstance(agreement, dict):
            raise m.ProtocolViolation("an agreement must be a JSON object")
        if signer_keyid != agreement.get("person"):
            raise NotAParty("the agreement must be sent by the person who signed it")
        if agreement.get("vendor") != self.did:
            raise m.ProtocolViolation("the agreement is for another vendor")
        if not isinstance(agreement.get("proffer_hash"), str) or not isinstance(
            agreement.get("agreement_id"), str
        ):
            raise m.ProtocolViolation("the agreement lacks its agreement_id or proffer_hash")
        with self.db.read() as s:
            existing = s.get(Relationship, str(agreement.get("agreement_id")))
            if existing is not None and existing.person_did == signer_keyid:
                if m.unsigned(existing.agreement) != m.unsigned(agreement):
                    raise Conflict("this agreement id is already stored with other content")
                return dict(existing.agreement)
            pending = s.scalars(
                select(PendingProffer).where(PendingProffer.proffer_hash == agreement.get("proffer_hash"))
            ).first()
        if pending is None:
            raise m.ProtocolViolation("the agreement names no proffer this vendor answered")
        m.check_agreement(agreement, proffer=pending.proffer, answer=pending.answer, signed_by_vendor=False)
        ledger_url, grants_url = self._check_agent_urls(pending.proffer)
        signed = m.countersign(self.key, agreement)
        term = agreement["term"]
        with self.db.write() as s:
            if s.get(Relationship, signed["agreement_id"]) is None:
                s.add(
                    Relationship(
                        agreement_id=signed["agreement_id"],
                        person_did=signed["person"],
                        status="active",
                        term_id=term["id"],
                        term_version=term["version"],
                        proffer=pending.proffer,
                        answer=pending.answer,
                        agreement=signed,
                        ledger_url=ledger_url,
                        grants_url=grants_url,
                        created_at=_now(),
                    )
                )
        return signed

    # -- receiving ledger records ------------------------------------------------------------------

    def _relationship(self, s: Session, agreement_id: Any) -> Relationship:
        rel = s.get(Relationship, str(agreement_id)) if isinstance(agreement_id, str) else None
        if rel is None:
            raise UnknownRelationship("no relationship with this agreement_id is known here")
        return rel

    @staticmethod
    def _next_position(s: Session, agreement_id: str) -> int:
        top = s.scalar(select(func.max(LedgerEntry.position)).where(LedgerEntry.agreement_id == agreement_id))
        return int(top or 0) + 1

    @staticmethod
    def _lane_head(s: Session, agreement_id: str, author: str) -> str | None:
        states = ("acked",) if author == "person" else ("acked", "pending", "delivered")
        return s.scalar(
            select(LedgerEntry.event_id)
            .where(
                LedgerEntry.agreement_id == agreement_id,
                LedgerEntry.author == author,
                LedgerEntry.state.in_(states),
            )
            .order_by(LedgerEntry.position.desc())
            .limit(1)
        )

    def receive(self, record: Any, signer_keyid: str) -> dict[str, Any]:
        """A record POSTed to our ledger: a person's event (answered with our signed ack) or a late ack."""
        if not isinstance(record, dict):
            raise m.ProtocolViolation("a ledger record must be a JSON object")
        kind = record.get("type")
        if kind not in ("event", "ack"):
            raise m.ProtocolViolation("the ledger endpoint takes an event or an ack")
        with self.db.read() as s:
            rel = self._relationship(s, record.get("agreement_id"))
        if signer_keyid != rel.person_did:
            raise NotAParty("only the relationship's person may write to its ledger")
        if kind == "ack":
            return self._receive_ack(record, rel)
        return self._receive_event(record, rel)

    def _receive_event(self, event: dict[str, Any], rel: Relationship) -> dict[str, Any]:
        m.validate("ledger-event", event)
        with self.db.write() as s:
            existing = s.get(LedgerEntry, event["event_id"])
            if existing is not None:
                if existing.record != event or existing.agreement_id != rel.agreement_id:
                    raise Conflict("an event with this event_id is already stored with other content")
                return dict(existing.ack or {})
            rel = self._relationship(s, rel.agreement_id)
            head = self._lane_head(s, rel.agreement_id, "person")
            m.check_event(event, rel.agreement, author=rel.person_did, previous_id=head)
            subtype = event["subtype"]
            if rel.status == "ended" and subtype not in m.AFTER_END:
                raise m.ProtocolViolation("the relationship has ended; only GDPR requests may follow")
            ack = m.make_ack(self.key, event)
            now = _now()
            s.add(
                LedgerEntry(
                    event_id=event["event_id"],
                    agreement_id=rel.agreement_id,
                    position=self._next_position(s, rel.agreement_id),
                    author="person",
                    subtype=subtype,
                    record=event,
                    ack=ack,
                    state="acked",
                    created_at=now,
                    updated_at=now,
                )
            )
            self._apply(s, rel, event, now)
        return ack

    def _apply(self, s: Session, rel: Relationship, event: dict[str, Any], now: datetime) -> None:
        """What a person's event changes beyond the ledger itself."""
        subtype, payload = event["subtype"], event["payload"]
        if subtype == "end-of-relationship":
            rel.status = "ended"
            rel.ended_at = now
        elif subtype == "data-request-answer":
            request = s.get(DataRequest, str(payload.get("request_id", "")))
            if (
                request is not None
                and request.agreement_id == rel.agreement_id
                and request.state == "pending"
            ):
                request.state = "approved" if _approves(payload) else "denied"
                request.answered_at = now
        elif subtype == "grant":
            grant_id = str(payload.get("grant_id", ""))[:64]
            if grant_id:
                fields = payload.get("fields")
                row = s.get(GrantRecord, grant_id)
                if row is None:
                    row = GrantRecord(grant_id=grant_id, agreement_id=rel.agreement_id)
                    s.add(row)
                if row.agreement_id == rel.agreement_id:
                    row.fields = [str(f) for f in fields] if isinstance(fields, list) else []
                    row.purpose = str(payload["purpose"])[:2048] if payload.get("purpose") else None
                    row.until = str(payload["until"])[:40] if payload.get("until") else None
                    row.state = "active"
                    row.event_id = event["event_id"]
                    row.updated_at = now
        elif subtype == "revocation":
            row = s.get(GrantRecord, str(payload.get("grant_id", "")))
            if row is not None and row.agreement_id == rel.agreement_id:
                revoked = payload.get("fields")
                remaining = [f for f in row.fields if isinstance(revoked, list) and f not in revoked]
                row.fields = remaining
                row.state = "active" if remaining else "revoked"
                row.event_id = event["event_id"]
                row.updated_at = now

    def _receive_ack(self, ack: dict[str, Any], rel: Relationship) -> dict[str, Any]:
        m.validate("acknowledgement", ack)
        with self.db.write() as s:
            entry = s.get(LedgerEntry, ack["event_id"])
            if entry is None or entry.agreement_id != rel.agreement_id or entry.author != "vendor":
                raise UnknownRelationship("the acknowledgement is for no event of ours in this relationship")
            m.check_ack(ack, entry.record, author=rel.person_did)
            if entry.ack is not None:
                if entry.ack != ack:
                    raise Conflict("this event already holds another acknowledgement")
            else:
                entry.ack = ack
                entry.state = "acked" if ack["status"] == "accepted" else "refused"
                entry.error = ack.get("reason") if ack["status"] != "accepted" else None
                entry.updated_at = _now()
        return {"status": "recorded", "event_id": ack["event_id"]}

    # -- pushing to the person's agent ---------------------------------------------------------------

    def push(self, agreement_id: str, subtype: str, payload: Mapping[str, Any]) -> PushResult:
        """Append our event to the relationship's ledger and deliver it (with any earlier undelivered ones).

        Returns the new event's state; raises :class:`AgentError` when it could not be delivered (it stays
        pending for :meth:`retry_pending`) or the agent refused it.
        """
        if subtype not in m.VENDOR_SUBTYPES:
            raise InvalidValue(f"a vendor cannot push a {subtype!r} event")
        with self.db.write() as s:
            rel = self._relationship(s, agreement_id)
            if rel.status == "ended" and subtype not in m.AFTER_END:
                raise InvalidValue("the relationship has ended; only a gdpr-response may follow")
            if not rel.ledger_url:
                raise InvalidValue("the person's agent gave no ledger URL for this relationship")
            previous = self._lane_head(s, agreement_id, "vendor")
            event = m.make_event(self.key, agreement_id, subtype, payload, previous)
            now = _now()
            s.add(
                LedgerEntry(
                    event_id=event["event_id"],
                    agreement_id=agreement_id,
                    position=self._next_position(s, agreement_id),
                    author="vendor",
                    subtype=subtype,
                    record=event,
                    ack=None,
                    state="pending",
                    created_at=now,
                    updated_at=now,
                )
            )
            if subtype == "data-request":
                s.add(
                    DataRequest(
                        request_id=str(payload["request_id"]),
                        agreement_id=agreement_id,
                        event_id=event["event_id"],
                        fields=list(payload["fields"]),
                        purpose=str(payload["purpose"]),
                        why=str(payload["why"]),
                        state="pending",
                        created_at=now,
                    )
                )
        results = self._deliver_pending(agreement_id, stop_at=event["event_id"])
        return results[event["event_id"]]

    def retry_pending(self, agreement_id: str | None = None) -> list[PushResult]:
        """Re-send every undelivered event of ours (oldest first, same idempotency key).

        A relationship whose oldest undelivered event fails again is left for later; the others go on.
        """
        with self.db.read() as s:
            query = select(LedgerEntry.agreement_id).where(
                LedgerEntry.author == "vendor", LedgerEntry.state == "pending"
            )
            if agreement_id is not None:
                query = query.where(LedgerEntry.agreement_id == agreement_id)
            agreements = sorted(set(s.scalars(query)))
        done: list[PushResult] = []
        for aid in agreements:
            try:
                done += self._deliver_pending(aid).values()
            except AgentError as exc:
                log.info("retry of %s stopped: %s", aid, type(exc).__name__)
        return done

    def _deliver_pending(self, agreement_id: str, stop_at: str | None = None) -> dict[str, PushResult]:
        with self.db.read() as s:
            rel = self._relationship(s, agreement_id)
            entries = list(
                s.scalars(
                    select(LedgerEntry)
                    .where(
                        LedgerEntry.agreement_id == agreement_id,
                        LedgerEntry.author == "vendor",
                        LedgerEntry.state == "pending",
                    )
                    .order_by(LedgerEntry.position)
                )
            )
        results: dict[str, PushResult] = {}
        for entry in entries:
            results[entry.event_id] = self._deliver(rel, entry.record)
            if entry.event_id == stop_at:
                break
        return results

    def _deliver(self, rel: Relationship, event: dict[str, Any]) -> PushResult:
        url = rel.ledger_url or ""
        check_url(url, self.config.url_policy)
        body = _json_bytes(event)
        headers = {
            "Content-Type": JSON_MEDIA_TYPE,
            "Accept": "application/json, application/problem+json",
            "Idempotency-Key": event["idempotency_key"],
        }
        status, data = self._send("POST", url, headers, body, event_id=event["event_id"])
        if status == 202:
            self._set_state(event["event_id"], "delivered", None)
            return PushResult(event["event_id"], "delivered", event)
        if status == 200:
            try:
                ack = json.loads(data)
                m.check_ack(ack, event, author=rel.person_did)
            except (ValueError, m.ProtocolViolation, SignatureError) as exc:
                raise AgentError(
                    f"the agent's acknowledgement of {event['event_id']} is not valid: {exc}",
                    event_id=event["event_id"],
                ) from None
            accepted = ack["status"] == "accepted"
            self._set_state(
                event["event_id"],
                "acked" if accepted else "refused",
                None if accepted else ack.get("reason"),
                ack,
            )
            if not accepted:
                raise AgentRefused(
                    f"the agent refused event {event['event_id']}: {ack.get('reason') or 'no reason given'}",
                    event_id=event["event_id"],
                    http_status=200,
                )
            return PushResult(event["event_id"], "acked", event, ack)
        detail = _problem_detail(data)
        if 400 <= status < 500 and status not in (408, 425, 429):
            self._set_state(event["event_id"], "refused", f"HTTP {status}: {detail}")
            raise AgentRefused(
                f"the agent refused event {event['event_id']} (HTTP {status}): {detail}",
                event_id=event["event_id"],
                http_status=status,
            )
        raise AgentError(
            f"the agent answered HTTP {status} for event {event['event_id']}; it stays pending: {detail}",
            event_id=event["event_id"],
            http_status=status,
        )

    def _set_state(
        self, event_id: str, state: str, error: str | None, ack: dict[str, Any] | None = None
    ) -> None:
        with self.db.write() as s:
            entry = s.get(LedgerEntry, event_id)
            if entry is None:
                return
            if entry.state == "acked" and state != "acked":
                return  # a late ack arrived meanwhile; keep it
            entry.state = state
            entry.error = error[:500] if error else None
            if ack is not None:
                entry.ack = ack
            entry.updated_at = _now()

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        event_id: str | None = None,
    ) -> tuple[int, bytes]:
        """One signed request to the agent; the status and (size-limited) body of its answer."""
        try:
            with self._client_factory() as client:
                request = client.build_request(method, url, headers=dict(headers), content=body)
                sign_httpx_request(request, self.key)
                response = client.send(request, stream=True)
                try:
                    data = bytearray()
                    for chunk in response.iter_bytes():
                        data += chunk
                        if len(data) > MAX_AGENT_RESPONSE_BYTES:
                            raise AgentError("the agent's answer is too large", event_id=event_id)
                finally:
                    response.close()
                return response.status_code, bytes(data)
        except (UnsafeUrl, AgentError):
            raise
        except OpenVRMError:
            raise
        except httpx.HTTPError as exc:
            raise AgentUnreachable(
                f"the person's agent at {url} could not be reached ({type(exc).__name__})",
                event_id=event_id,
            ) from None

    # -- convenience pushes ---------------------------------------------------------------------------

    def push_receipt(
        self,
        agreement_id: str,
        receipt_id: str,
        issued: str | date | None,
        total: str,
        currency: str,
        lines: Sequence[Mapping[str, Any]] | None = None,
        attachment: bytes | None = None,
        media_type: str = "application/pdf",
        profile: str | None = None,
    ) -> PushResult:
        """Push a receipt; an attached file (at most 700 KiB) travels inline, base64-encoded."""
        if not receipt_id.strip():
            raise InvalidValue("a receipt needs an id")
        payload: dict[str, Any] = {
            "receipt_id": receipt_id.strip(),
            "issued": _date_text(issued),
            "total": _amount(total, "total"),
            "currency": _currency(currency),
            "lines": [_line(line) for line in (lines or [])],
        }
        if attachment is not None:
            if len(attachment) > MAX_ATTACHMENT_BYTES:
                raise InvalidValue(f"an attachment is limited to {MAX_ATTACHMENT_BYTES // 1024} KiB")
            att: dict[str, Any] = {
                "media_type": media_type,
                "sha256": hashlib.sha256(attachment).hexdigest(),
                "size": len(attachment),
                "content": base64.b64encode(attachment).decode("ascii"),
            }
            if profile:
                att["profile"] = profile
            payload["attachment"] = att
        return self.push(agreement_id, "receipt", payload)

    def push_notice(
        self,
        agreement_id: str,
        notice: str,
        summary: str,
        effective: str | date | None,
        right_to_cancel_until: str | date | None = None,
    ) -> PushResult:
        if notice not in NOTICE_KINDS:
            raise InvalidValue(f"a notice is one of: {', '.join(NOTICE_KINDS)}")
        if not summary.strip():
            raise InvalidValue("a notice needs a summary")
        payload: dict[str, Any] = {
            "notice": notice,
            "effective": _date_text(effective),
            "summary": summary.strip()[:2000],
        }
        if right_to_cancel_until is not None:
            payload["right_to_cancel_until"] = _date_text(right_to_cancel_until)
        return self.push(agreement_id, "notice", payload)

    def request_data(self, agreement_id: str, fields: Sequence[str], purpose: str, why: str) -> str:
        """Ask the person for ``fields``; returns the request id (the answer comes as an event)."""
        clean = [f.strip() for f in fields if f.strip()]
        if not clean:
            raise InvalidValue("name at least one field to request")
        if not purpose.startswith(("https://", "http://", "urn:")):
            raise InvalidValue("the purpose is an IRI, e.g. https://w3id.org/dpv#ServiceProvision")
        if not why.strip():
            raise InvalidValue("say why you need the data")
        request_id = m.new_uuid()
        payload = {"request_id": request_id, "fields": clean, "purpose": purpose, "why": why.strip()[:1000]}
        self.push(agreement_id, "data-request", payload)
        return request_id

    def respond_gdpr(
        self,
        agreement_id: str,
        request_event_id: str,
        status: str,
        summary: str,
        *,
        attachment: bytes | None = None,
        media_type: str = "application/json",
    ) -> PushResult:
        """Answer a person's ``gdpr-request`` event (also allowed after the relationship ended)."""
        if status not in GDPR_STATUSES:
            raise InvalidValue(f"a GDPR response status is one of: {', '.join(GDPR_STATUSES)}")
        with self.db.read() as s:
            entry = s.get(LedgerEntry, request_event_id)
            if entry is None or entry.agreement_id != agreement_id or entry.subtype != "gdpr-request":
                raise InvalidValue("no GDPR request with this event id in this relationship")
        payload: dict[str, Any] = {
            "request_event_id": request_event_id,
            "status": status,
            "summary": summary.strip()[:2000],
            "answered": m.timestamp(_now()),
        }
        if attachment is not None:
            if len(attachment) > MAX_ATTACHMENT_BYTES:
                raise InvalidValue(f"an attachment is limited to {MAX_ATTACHMENT_BYTES // 1024} KiB")
            payload["attachment"] = {
                "media_type": media_type,
                "sha256": hashlib.sha256(attachment).hexdigest(),
                "size": len(attachment),
                "content": base64.b64encode(attachment).decode("ascii"),
            }
        return self.push(agreement_id, "gdpr-response", payload)

    # -- grants --------------------------------------------------------------------------------------

    def fetch_grants(self, agreement_id: str) -> list[dict[str, Any]]:
        """Fetch and open the data the person granted us (signed GET to the agent's grants URL).

        Each item is ``{"grant_id", "fields": {name: value}, "purpose", "term", "until", "issued_at"}``.
        The values are never logged.
        """
        with self.db.read() as s:
            rel = self._relationship(s, agreement_id)
        if not rel.grants_url:
            raise InvalidValue("the person's agent gave no grants URL for this relationship")
        check_url(rel.grants_url, self.config.url_policy)
        status, data = self._send("GET", rel.grants_url, {"Accept": "application/json"}, b"")
        if status != 200:
            detail = _problem_detail(data)
            cls = AgentRefused if 400 <= status < 500 else AgentError
            raise cls(f"the agent answered HTTP {status} for the grants: {detail}", http_status=status)
        try:
            doc = json.loads(data)
        except ValueError:
            raise AgentError("the agent's grants answer is not JSON") from None
        items = doc.get("grants") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise AgentError("the agent's grants answer has no 'grants' list")
        opened: list[dict[str, Any]] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("sealed"), dict):
                raise AgentError("a grant in the agent's answer has no sealed value")
            try:
                value = open_sealed_json(self.key, item["sealed"])
            except (InvalidValue, IntegrityError) as exc:
                raise AgentError(f"a granted value cannot be opened: {exc}") from None
            if not isinstance(value, dict) or value.get("grant_id") != item.get("grant_id"):
                raise AgentError("a sealed grant does not match the grant it is listed under")
            if not isinstance(value.get("fields"), dict):
                raise AgentError("a sealed grant holds no fields")
            value.setdefault("until", item.get("until"))
            opened.append(value)
        return opened

    # -- reading the store -------------------------------------------------------------------------

    def relationships(self) -> list[RelationshipInfo]:
        with self.db.read() as s:
            counts = dict(
                s.execute(
                    select(LedgerEntry.agreement_id, func.count()).group_by(LedgerEntry.agreement_id)
                ).all()
            )
            rows = list(s.scalars(select(Relationship).order_by(Relationship.created_at)))
        return [
            RelationshipInfo(
                r.agreement_id,
                r.person_did,
                r.status,
                f"{r.term_id}@{r.term_version}",
                r.ledger_url,
                r.grants_url,
                r.created_at,
                int(counts.get(r.agreement_id, 0)),
            )
            for r in rows
        ]

    def relationship(self, agreement_id: str) -> Relationship:
        with self.db.read() as s:
            return self._relationship(s, agreement_id)

    def events(self, agreement_id: str) -> list[LedgerEntry]:
        with self.db.read() as s:
            self._relationship(s, agreement_id)
            return list(
                s.scalars(
                    select(LedgerEntry)
                    .where(LedgerEntry.agreement_id == agreement_id)
                    .order_by(LedgerEntry.position)
                )
            )

    def data_requests(self, agreement_id: str | None = None) -> list[DataRequest]:
        with self.db.read() as s:
            query = select(DataRequest).order_by(DataRequest.created_at)
            if agreement_id is not None:
                query = query.where(DataRequest.agreement_id == agreement_id)
            return list(s.scalars(query))

    def grants(self, agreement_id: str) -> list[GrantRecord]:
        with self.db.read() as s:
            return list(s.scalars(select(GrantRecord).where(GrantRecord.agreement_id == agreement_id)))

    def verify_chain(self, agreement_id: str) -> m.ChainReport:
        """Check the stored agreement and ledger (refused events of ours are not part of it)."""
        rel = self.relationship(agreement_id)
        entries = [(e.record, e.ack) for e in self.events(agreement_id) if e.state != "refused"]
        return m.verify_chain(rel.agreement, entries)


# -- helpers -----------------------------------------------------------------------------------------------


def _approves(payload: Mapping[str, Any]) -> bool:
    if payload.get("approved") is True:
        return True
    decision = str(payload.get("decision", payload.get("answer", ""))).lower()
    return decision in ("approve", "approved", "accept", "accepted", "yes", "granted", "grant")


def _problem_detail(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        return "no problem document"
    if isinstance(doc, dict):
        return str(doc.get("detail") or doc.get("title") or "no detail")[:300]
    return "no detail"


def _date_text(value: str | date | None) -> str:
    if value is None:
        return date.today().isoformat()  # noqa: DTZ011 - a calendar date for the person
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidValue(f"{value!r} is not a date like 2026-11-21") from None


def _amount(value: str, what: str) -> str:
    text = str(value).strip()
    if not _AMOUNT.match(text):
        raise InvalidValue(f"the {what} is an amount like 19.99, not {value!r}")
    return text


def _currency(value: str) -> str:
    text = value.strip().upper()
    if not _CURRENCY.match(text):
        raise InvalidValue(f"the currency is an ISO 4217 code like EUR, not {value!r}")
    return text


def _line(line: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(line, Mapping) or not str(line.get("description", "")).strip():
        raise InvalidValue("each receipt line has a description and an amount")
    out = {
        "description": str(line["description"]).strip()[:500],
        "amount": _amount(str(line.get("amount")), "amount"),
    }
    return out
