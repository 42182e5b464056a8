"""The person's agent on the web: protocol endpoints for vendors, and owner routes for connections.

Vendor-facing (``/vrm/p/{handle}/...``): every request must carry an RFC 9421 signature by the vendor's
did:key recorded for that connection, with a fresh nonce inside the replay window; writes carry an
``Idempotency-Key``. These routes work while the vault is locked: a pushed event is checked (signature,
hashes, author) and sealed into the vault inbox (202), or filed at once with a signed acknowledgement (200)
when the person has a live session. Granted values are served sealed to the vendor's key. A refused
request leaves nothing in the ledger.

Owner-facing (``/api/v1/connections``, ``/api/v1/grants``, ...): connect to a vendor, grant and revoke
fields, answer data requests, send GDPR requests, end a relationship, verify the ledger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection as SAConnection
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from openvrm.agent.service import INBOX_KIND, AgentService
from openvrm.errors import Conflict, NotFound, OpenVRMError
from openvrm.net import policy_for
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import NonceStore, RequestVerifier, known_keys
from openvrm.protocol.identity import public_key_from_did
from openvrm.protocol.stores import SqlIdempotencyStore, SqlNonceStore, StoredResponse, request_fingerprint
from openvrm.server.prechecks import MAX_PROTOCOL_BODY, CheckedPush, DeferredNonces, check_push
from openvrm.server.problems import ProblemError, problem_responses
from openvrm.server.security import Principal, owner
from openvrm.server.state import ServerState, state_of
from openvrm.storage.models import Connection, Grant, InboxItem, ProtocolIdempotency, ProtocolNonce, utcnow
from openvrm.storage.prepared import Prepared, core
from openvrm.vault.core import Vault

PUSH_THREADS = 16
"""Threads that run pushed events' checks and transactions (writes take turns behind the write lock)."""
# A plain executor for the push path: starlette's run_in_threadpool (anyio's worker threads, capacity
# limiter and cancel scopes) cost ≈ 80-130 µs of CPU per call here, this ≈ 35-50 µs, on every push.
_push_threads = ThreadPoolExecutor(max_workers=PUSH_THREADS, thread_name_prefix="openvrm-push")

protocol_router = APIRouter(
    prefix="/vrm/p",
    tags=["protocol"],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)
router = APIRouter(prefix="/api/v1", tags=["connections"], responses=problem_responses(401, 404, 409, 422))
Owner = Annotated[Principal, Depends(owner)]


# -- vendor-facing ---------------------------------------------------------------------------------------


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_PROTOCOL_BODY:
        raise ProblemError(413, "too-large", f"a protocol request is limited to {MAX_PROTOCOL_BODY} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_PROTOCOL_BODY:
            raise ProblemError(
                413, "too-large", f"a protocol request is limited to {MAX_PROTOCOL_BODY} bytes"
            )
    return bytes(data)


@dataclass(frozen=True)
class _Peer:
    """What a vendor-facing request needs of its connection row: read fresh in each request's own
    transaction (never cached), so a block or an end takes effect on the very next request."""

    id: str
    vendor_did: str
    status: str
    sealed: bytes = field(repr=False)


# The statements of the push path, built once: plain Core on the tables (no ORM objects to build, track
# and flush for rows that are only read once or inserted once).
_CONNECTIONS = cast(Table, Connection.__table__)
_NONCES = cast(Table, ProtocolNonce.__table__)
_PEER_BY_HANDLE = Prepared(
    select(_CONNECTIONS.c.id, _CONNECTIONS.c.vendor_did, _CONNECTIONS.c.status, _CONNECTIONS.c.sealed).where(
        _CONNECTIONS.c.handle == bindparam("handle")
    )
)
_NONCE_EXPIRY = select(_NONCES.c.expires_at).where(
    _NONCES.c.keyid == bindparam("keyid"), _NONCES.c.nonce == bindparam("nonce")
)
_INSERT_NONCE = Prepared(insert(_NONCES))
_INSERT_INBOX_ITEM = Prepared(insert(cast(Table, InboxItem.__table__)))


def _peer_in(s: Session | SAConnection, handle: str) -> _Peer:
    row = _PEER_BY_HANDLE.first(core(s), {"handle": handle})
    if row is None:
        raise NotFound("no relationship at this address")
    conn_id, vendor_did, status, sealed = row
    return _Peer(conn_id, vendor_did, status, bytes(sealed))


def _connection(vault: Vault, handle: str) -> _Peer:
    with vault.db.read() as s:
        return _peer_in(s, handle)


def _insert_nonces(s: Session | SAConnection, nonces: DeferredNonces) -> None:
    """Insert the request's nonces; the primary key refuses a replay (IntegrityError)."""
    for keyid, nonce, until in nonces.seen:
        _INSERT_NONCE.execute(core(s), {"keyid": keyid, "nonce": nonce, "expires_at": until})


def _verify(
    conn: _Peer, method: str, url: str, headers: Mapping[str, str], body: bytes, nonces: NonceStore
) -> str:
    verifier = RequestVerifier(
        known_keys({conn.vendor_did: public_key_from_did(conn.vendor_did)}),
        nonces,
        max_body_bytes=MAX_PROTOCOL_BODY,
    )
    verified = verifier.verify(method, url, headers, body)
    if conn.status == "blocked":
        raise ProblemError(403, "blocked", "the person has blocked this vendor")
    return verified.keyid


def _replayed() -> SignatureError:
    return SignatureError(
        "the request signature was refused: the request nonce was already used (replayed request)"
    )


def _spend(vault: Vault, nonces: DeferredNonces) -> None:
    """Record the request's nonce in a transaction of its own; a concurrent replay loses here."""
    try:
        with vault.db.write() as s:
            _insert_nonces(s, nonces)
    except Conflict:
        raise _replayed() from None


class _KeyTaken(Exception):
    """The idempotency record's key was taken (by a concurrent retry, or by an expired record)."""


def _pushing_peer(s: Session | SAConnection, handle: str, keyid: str) -> _Peer:
    """The relationship a push is for, read in the push's own write transaction: it must exist, its vendor
    must be the request's signer, and it must not be blocked (a block applies to the very next request)."""
    conn = _peer_in(s, handle)
    if keyid != conn.vendor_did:
        raise SignatureError("the request signature was refused: the signing key is not known")
    if conn.status == "blocked":
        raise ProblemError(403, "blocked", "the person has blocked this vendor")
    return conn


def _spend_nonce_in(s: Session | SAConnection, nonces: DeferredNonces) -> None:
    """Insert the request's nonce first thing in its write transaction: a replay is refused there, before
    anything else (even a stored first answer), and adds nothing."""
    try:
        _insert_nonces(s, nonces)
    except SAIntegrityError:
        raise _replayed() from None


def _check_author(conn: _Peer, record: dict[str, Any]) -> None:
    """The event must be the vendor's own (the caller checked its signature when it is)."""
    if record["author"] != conn.vendor_did:
        raise m.ProtocolViolation("the event's author is not the vendor that signed the request")


def _ended_for(conn: _Peer, record: dict[str, Any]) -> bool:
    """After the end of a relationship only the subtypes the protocol allows then are taken."""
    return conn.status == "ended" and record["subtype"] not in m.AFTER_END


def _file_now(
    vault: Vault,
    agent: AgentService,
    handle: str,
    record: dict[str, Any],
    nonces: DeferredNonces,
    store: SqlIdempotencyStore,
    key: tuple[str, str, str],
    now: datetime,
    *,
    again: bool = True,
) -> tuple[StoredResponse, bool]:
    """File a checked event with a session open, in one write transaction: the connection is read and
    checked, the nonce spent, then either a retry's stored first answer given back, or the ledger entry
    (with our signed acknowledgement) and the idempotency record written, so a replay adds nothing.

    Returns the answer and ``True`` once filed, or the stored first answer and ``False`` for a retry.
    A refused filing (the chain head moved, the relationship ended) still spends the request's nonce, in a
    transaction of its own, as it did when the nonce was spent before filing.
    """
    keyid, idem_key, fingerprint = key
    filing = False
    try:
        with vault.db.write_connection() as s:
            conn = _pushing_peer(s, handle, keyid)
            _spend_nonce_in(s, nonces)
            stored = store.lookup_in(s, keyid, idem_key, fingerprint)
            if stored is not None:  # a retry: its own nonce is spent (committed), the first answer given
                return stored, False
            _check_author(conn, record)
            if _ended_for(conn, record):
                raise ProblemError(403, "ended", "this relationship has ended")
            filing = True
            # Core statements only: the entry's own clashes are raised here, and count as a refused
            # filing, not as a taken key.
            ack = agent.receive_in(s, conn.id, record, prechecked=True, connection=conn)
            filing = False
            response = StoredResponse(200, "application/json", json.dumps(ack).encode())
            try:
                store.insert_in(s, keyid, idem_key, fingerprint, response, now)
            except SAIntegrityError:
                raise _KeyTaken() from None
            store.purge_sometimes(s, now)
    except _KeyTaken:
        stored = store.lookup(keyid, idem_key, fingerprint)
        if stored is not None:
            _spend(vault, nonces)  # as for any retry, its own nonce is spent too
            return stored, False
        if not again:
            raise _replayed() from None
        store.drop_expired(keyid, idem_key, now)  # an expired record in the way: gone, then try once more
        return _file_now(vault, agent, handle, record, nonces, store, key, now, again=False)
    except Exception:
        if filing:
            _spend(vault, nonces)
        raise
    return response, True


def _push(
    state: ServerState,
    handle: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    checked: CheckedPush | None = None,
) -> Response:
    """One pushed event: checked, then sealed into the inbox (locked) or filed at once (a session is open).

    Everything that needs no database is checked first, outside any transaction, by
    :func:`~openvrm.server.prechecks.check_push` (here, or already by a check worker: ``checked``): the
    request signature (by the key its ``keyid`` names), the body's schema, hashes and signature by that
    same key. Then one write
    transaction reads the connection (its vendor must be the signer; blocked or ended refuse), spends the
    nonce (a replay is refused there, before a stored answer is given), gives a retry its first answer, or
    writes the sealed inbox item (or the filed ledger entry) and the idempotency record. A replay or any
    failure adds nothing.
    """
    vault = state.require_vault()
    idem_key = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), "")
    store = SqlIdempotencyStore(vault.db, ProtocolIdempotency)
    fingerprint = request_fingerprint("POST", url, body)
    now = utcnow()
    if checked is None:
        checked = check_push(url, headers, body)
    keyid, record, nonces = checked.keyid, checked.record, checked.nonces
    unlocked = state.sessions.any_unlocked()
    if unlocked is not None:
        agent = AgentService(unlocked, policy=policy_for(state.settings))
        response, filed = _file_now(
            vault, agent, handle, record, nonces, store, (keyid, idem_key, fingerprint), now
        )
        if filed and isinstance(record["payload"].get("attachment"), dict):
            # Only an event with a file has anything to import; import_received reads every received
            # entry, so calling it on every push made each push slower than the last.
            agent.import_received()
        return Response(response.body, response.status_code, media_type=response.media_type)
    queued = {"status": "queued", "event_id": record["event_id"]}
    response = StoredResponse(202, "application/json", json.dumps(queued).encode())
    try:
        with vault.db.write_connection() as s:
            conn = _pushing_peer(s, handle, keyid)
            _spend_nonce_in(s, nonces)
            if _ended_for(conn, record):
                # Refused, unless this is a retry of a push taken before the end: it gets its first answer.
                stored = store.lookup_in(s, keyid, idem_key, fingerprint)
                if stored is None:
                    raise ProblemError(403, "ended", "this relationship has ended")
                return Response(stored.body, stored.status_code, media_type=stored.media_type)
            _check_author(conn, record)
            item = vault.inbox_values({"kind": INBOX_KIND, "connection_id": conn.id, "record": record})
            _INSERT_INBOX_ITEM.execute(s, item)
            # Inserted, not looked up first: a retry (rare) clashes on the key, and everything here is
            # rolled back, its nonce too (spent below, once the stored first answer is found).
            store.insert_in(s, keyid, idem_key, fingerprint, response, now)
            store.purge_sometimes(s, now)
    except Conflict:
        # A retry, or a concurrent one that won; or the key was used for another body (the look-up says
        # so, 409). Nothing was added here.
        stored = store.lookup(keyid, idem_key, fingerprint)
        if stored is None:
            raise _replayed() from None
        _spend(vault, nonces)  # a retry's own nonce is spent too, before its first answer is given
        return Response(stored.body, stored.status_code, media_type=stored.media_type)
    return Response(response.body, response.status_code, media_type=response.media_type)


@protocol_router.post(
    "/{handle}/ledger",
    summary="A vendor pushes a signed ledger event (receipt, notice, data request, GDPR answer)",
    responses={200: {"description": "the person's signed acknowledgement"}, 202: {"description": "queued"}},
)
async def push_event(handle: str, request: Request) -> Response:
    body = await _body(request)
    headers = dict(request.headers)
    state, url = state_of(request), str(request.url)
    async with state.checks.push():
        # Checked by a worker process when pushes overlap (None: checked in the push's own thread).
        checked = await state.checks.check(url, headers, body)
        return await asyncio.get_running_loop().run_in_executor(
            _push_threads, _push, state, handle, url, headers, body, checked
        )


def _grants(state: ServerState, handle: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
    vault = state.require_vault()
    conn = _connection(vault, handle)
    _verify(conn, "GET", url, headers, b"", SqlNonceStore(vault.db, ProtocolNonce))
    if conn.status != "active":
        raise ProblemError(403, conn.status, f"this relationship is {conn.status}")
    now = utcnow()
    with vault.db.read() as s:
        rows = list(
            s.scalars(
                select(Grant)
                .where(
                    Grant.connection_id == conn.id, Grant.revoked_at.is_(None), Grant.vendor_box.is_not(None)
                )
                .order_by(Grant.created_at, Grant.id)
            )
        )
    out = []
    for g in rows:
        if g.until is not None and g.until <= now:
            continue
        out.append(
            {
                "grant_id": g.id,
                "until": m.timestamp(g.until) if g.until else None,
                "sealed": json.loads(g.vendor_box or b"{}"),
            }
        )
    return {"grants": out}


@protocol_router.get(
    "/{handle}/grants",
    summary="A vendor fetches the data granted to it, sealed to its own key",
)
async def fetch_grants(handle: str, request: Request) -> JSONResponse:
    body = await _body(request)
    if body:
        raise ProblemError(422, "unexpected-body", "a grants fetch has no body")
    result = await run_in_threadpool(
        _grants, state_of(request), handle, str(request.url), dict(request.headers)
    )
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


# -- owner-facing ----------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectIn(_In):
    url: str = Field(min_length=8, max_length=2048, description="the vendor's site or its /.well-known/vrm")
    terms: list[str] | None = Field(
        default=None, max_length=5, description="roster term ids, preferred first"
    )
    vendor_id: str | None = Field(default=None, max_length=32)


class GrantIn(_In):
    fields: list[str] = Field(min_length=1, max_length=20)
    purpose: str = Field(default="https://w3id.org/dpv#ServiceProvision", max_length=300)
    until: date | None = None


class DecisionIn(_In):
    approve: bool
    until: date | None = None
    fields: list[str] | None = Field(default=None, max_length=20)


class EndIn(_In):
    reason: str = Field(default="", max_length=300)
    effective: date | None = None


class GdprIn(_In):
    right: str = Field(pattern="^(access|rectification|erasure|restriction|portability|objection)$")
    scope: str = Field(default="all personal data you hold about me under this relationship", max_length=500)


class BlockIn(_In):
    blocked: bool


def agent_for(request: Request, principal: Principal) -> AgentService:
    return AgentService(principal.unlocked, policy=policy_for(state_of(request).settings))


def _detail(agent: AgentService, connection_id: str) -> dict[str, Any]:
    return {
        "connection": agent.get(connection_id).to_json(),
        "ledger": [e.to_json() for e in agent.ledger(connection_id)],
        "grants": [g.to_json() for g in agent.grants(connection_id)],
    }


@router.get("/connections", summary="Protocol connections with vendors")
async def list_connections(request: Request, principal: Owner) -> list[dict[str, Any]]:
    agent = agent_for(request, principal)
    return [c.to_json() for c in await run_in_threadpool(agent.connections)]


@router.post("/connections", summary="Connect to a vendor: proffer terms, sign the agreement")
async def connect(body: ConnectIn, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    base = str(request.base_url).rstrip("/")
    result = await run_in_threadpool(
        lambda: agent.connect(body.url, agent_base_url=base, terms=body.terms, vendor_id=body.vendor_id)
    )
    return result.to_json()


@router.get("/connections/{connection_id}", summary="A connection, its ledger and its grants")
async def show_connection(connection_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    return await run_in_threadpool(_detail, agent, connection_id)


@router.get("/connections/{connection_id}/verify", summary="Check the agreement and the whole hash chain")
async def verify_connection(connection_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    (report,) = await run_in_threadpool(agent.verify, connection_id)
    return report.to_json()


@router.post("/connections/{connection_id}/grants", status_code=201, summary="Grant profile fields")
async def grant(connection_id: str, body: GrantIn, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    record = await run_in_threadpool(
        lambda: agent.grant(connection_id, body.fields, purpose=body.purpose, until=body.until)
    )
    return record.to_json()


@router.post("/grants/{grant_id}/revoke", summary="Revoke a grant at once and tell the vendor")
async def revoke(grant_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    return (await run_in_threadpool(agent.revoke, grant_id)).to_json()


@router.get("/grants/{grant_id}/receipt", summary="The grant as a Kantara Consent Receipt v1.1")
async def receipt(grant_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    return await run_in_threadpool(agent.kantara_receipt, grant_id)


@router.get("/holders", summary="Who holds my data: active grants per field")
async def holders(
    request: Request, principal: Owner, field: Annotated[str | None, Query(max_length=100)] = None
) -> list[dict[str, Any]]:
    agent = agent_for(request, principal)
    return [h.to_json() for h in await run_in_threadpool(agent.holders, field)]


@router.get("/data-requests", summary="Vendors' requests for data, waiting for a decision")
async def data_requests(request: Request, principal: Owner) -> list[dict[str, Any]]:
    agent = agent_for(request, principal)
    pairs = await run_in_threadpool(agent.data_requests)
    return [{"connection": c.to_json(), "entry": e.to_json()} for c, e in pairs]


@router.post("/data-requests/{entry_id}", summary="Approve (maybe until a date) or deny a data request")
async def decide(entry_id: str, body: DecisionIn, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    entry = await run_in_threadpool(
        lambda: agent.answer_data_request(
            entry_id, approve=body.approve, until=body.until, fields=body.fields
        )
    )
    return entry.to_json()


@router.post("/connections/{connection_id}/end", summary="End the relationship (the vendor acknowledges)")
async def end(connection_id: str, body: EndIn, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    entry = await run_in_threadpool(
        lambda: agent.end(
            connection_id, reason=body.reason or "ended by the person", effective=body.effective
        )
    )
    return entry.to_json()


@router.post("/connections/{connection_id}/gdpr", summary="Send a GDPR request through the protocol")
async def gdpr(connection_id: str, body: GdprIn, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    entry = await run_in_threadpool(lambda: agent.gdpr_request(connection_id, body.right, scope=body.scope))
    return entry.to_json()


@router.post("/connections/{connection_id}/block", summary="Block or unblock a vendor's connection")
async def block(connection_id: str, body: BlockIn, request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    return (await run_in_threadpool(agent.set_blocked, connection_id, body.blocked)).to_json()


@router.post("/agent/inbox", summary="File protocol events that arrived while the vault was locked")
async def process_inbox(request: Request, principal: Owner) -> dict[str, Any]:
    agent = agent_for(request, principal)
    filed, refused = await run_in_threadpool(agent.process_inbox)
    delivered = await run_in_threadpool(agent.deliver_pending)
    return {"filed": filed, "refused": refused, "delivered": delivered}


__all__ = ["OpenVRMError", "SignatureError", "protocol_router", "router"]
