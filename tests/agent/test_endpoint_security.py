"""The agent's vendor-facing endpoints refuse every bad request with a problem document and record nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.agent.conftest import World
from tests.conftest import PASSPHRASE

from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.server.prechecks import CheckWorkers
from openvrm.storage.models import ConnectionEvent, InboxItem, ProtocolIdempotency


@pytest.fixture(autouse=True, params=["checked in the server", "checked in a worker"])
def where_checked(world: World, request: pytest.FixtureRequest) -> Iterator[CheckWorkers]:
    """Every test here runs twice: pushes checked in the server's own process, and each push checked in a
    check worker process (openvrm.server.prechecks), which must give the very same answers."""
    checks = world.app.state.openvrm.checks
    assert isinstance(checks, CheckWorkers)
    if request.param == "checked in a worker":
        checks.size, checks.always = 1, True
    else:
        checks.size = 0
    yield checks
    if checks.always and "grants_fetch" not in request.node.name:  # every other test here pushes
        assert checks.checked > 0, "no push was checked in a worker"


def _setup(world: World) -> tuple[str, str, str, KeyPair]:
    result = world.agent.connect(world.vendor_url("telco"), agent_base_url=world.url)
    assert result.connection is not None
    kit = world.vendors["telco"]
    aid = result.connection.agreement_id
    assert aid is not None
    rel = kit.relationship(aid)
    assert rel.ledger_url and rel.grants_url
    return aid, rel.ledger_url, rel.grants_url, kit.key


def _signed_post(url: str, record: dict[str, Any], key: KeyPair, **options: Any) -> httpx.Response:
    body = m.canonical_json(record)
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()},
        body,
        key,
        **options,
    )
    return httpx.post(url, content=body, headers=headers)


def _traces(world: World) -> tuple[int, int]:
    with world.unlocked.db.read() as s:
        events = s.scalar(select(func.count()).select_from(ConnectionEvent)) or 0
        inbox = s.scalar(select(func.count()).select_from(InboxItem)) or 0
    return int(events), int(inbox)


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["detail"]
    return dict(body)


def _notice(aid: str, key: KeyPair) -> dict[str, Any]:
    return m.make_event(key, aid, "notice", {"notice": "other", "summary": "hello"}, None)


BadRequest = Callable[[str, dict[str, Any], KeyPair], httpx.Response]


def _unsigned(url: str, record: dict[str, Any], key: KeyPair) -> httpx.Response:
    return httpx.post(url, content=m.canonical_json(record), headers={"Content-Type": "application/json"})


def _wrong_key(url: str, record: dict[str, Any], key: KeyPair) -> httpx.Response:
    return _signed_post(url, record, KeyPair.generate())


def _expired(url: str, record: dict[str, Any], key: KeyPair) -> httpx.Response:
    return _signed_post(url, record, key, created=datetime.now(UTC) - timedelta(minutes=10))


def _future(url: str, record: dict[str, Any], key: KeyPair) -> httpx.Response:
    return _signed_post(url, record, key, created=datetime.now(UTC) + timedelta(minutes=10))


def _altered_body(url: str, record: dict[str, Any], key: KeyPair) -> httpx.Response:
    body = m.canonical_json(record)
    headers = sign_request(
        "POST", url, {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}, body, key
    )
    return httpx.post(url, content=body.replace(b"hello", b"HELLO"), headers=headers)


def _no_idempotency_key(url: str, record: dict[str, Any], key: KeyPair) -> httpx.Response:
    body = m.canonical_json(record)
    headers = sign_request("GET", url, {"Content-Type": "application/json"}, body, key)
    return httpx.post(url, content=body, headers=headers)


@pytest.mark.parametrize(
    "send",
    [_unsigned, _wrong_key, _expired, _future, _altered_body, _no_idempotency_key],
    ids=lambda f: f.__name__,
)
def test_bad_signatures_get_401_and_leave_no_trace(world: World, send: BadRequest) -> None:
    aid, ledger_url, _, key = _setup(world)
    before = _traces(world)
    _problem(send(ledger_url, _notice(aid, key), key), 401)
    assert _traces(world) == before
    assert world.agent.process_inbox() == (0, 0)
    assert world.agent.ledger(world.agent.connections()[0].id) == []


def test_a_replayed_request_is_refused(world: World) -> None:
    aid, ledger_url, _, key = _setup(world)
    body = m.canonical_json(_notice(aid, key))
    headers = sign_request(
        "POST", ledger_url, {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}, body, key
    )
    assert httpx.post(ledger_url, content=body, headers=headers).status_code == 202
    body_problem = _problem(httpx.post(ledger_url, content=body, headers=headers), 401)
    assert "replayed" in body_problem["detail"]
    assert _traces(world) == (0, 1)


def test_a_retry_with_the_same_idempotency_key_is_applied_once(world: World) -> None:
    aid, ledger_url, _, key = _setup(world)
    record = _notice(aid, key)
    body = m.canonical_json(record)
    idem = m.new_uuid()
    first = httpx.post(
        ledger_url,
        content=body,
        headers=sign_request(
            "POST", ledger_url, {"Content-Type": "application/json", "Idempotency-Key": idem}, body, key
        ),
    )
    again = httpx.post(
        ledger_url,
        content=body,
        headers=sign_request(
            "POST", ledger_url, {"Content-Type": "application/json", "Idempotency-Key": idem}, body, key
        ),
    )
    assert (first.status_code, again.status_code) == (202, 202) and first.content == again.content
    assert _traces(world) == (0, 1)
    other = m.canonical_json(m.make_event(key, aid, "notice", {"notice": "other", "summary": "x"}, None))
    conflict = httpx.post(
        ledger_url,
        content=other,
        headers=sign_request(
            "POST", ledger_url, {"Content-Type": "application/json", "Idempotency-Key": idem}, other, key
        ),
    )
    _problem(conflict, 409)
    assert world.agent.process_inbox() == (1, 0)


def test_one_vendor_cannot_use_another_vendors_address(world: World) -> None:
    aid, ledger_url, grants_url, _ = _setup(world)
    world.agent.grant(world.agent.connections()[0].id, ["email"])
    energy = world.agent.connect(world.vendor_url("energy"), agent_base_url=world.url)
    assert energy.connection is not None
    intruder = world.vendors["energy"].key
    _problem(_signed_post(ledger_url, _notice(aid, intruder), intruder), 401)
    headers = sign_request("GET", grants_url, {}, b"", intruder)
    _problem(httpx.get(grants_url, headers=headers), 401)
    assert _traces(world) == (1, 0), "only the person's own grant event"


def test_unknown_handles_oversized_bodies_and_garbage(world: World) -> None:
    aid, ledger_url, _, key = _setup(world)
    unknown = ledger_url.replace("/vrm/p/", "/vrm/p/x").replace("/ledger", "/ledger")
    _problem(_signed_post(unknown, _notice(aid, key), key), 404)
    huge = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    headers = sign_request(
        "POST", ledger_url, {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}, huge, key
    )
    _problem(httpx.post(ledger_url, content=huge, headers=headers), 413)
    for body in (
        b"not json",
        b"[]",
        b'{"type": "event"}',
        m.canonical_json(m.make_ack(key, _notice(aid, key))),
    ):
        headers = sign_request(
            "POST",
            ledger_url,
            {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()},
            body,
            key,
        )
        _problem(httpx.post(ledger_url, content=body, headers=headers), 422)
    # An event signed by another key than the request's, or claiming another author, is refused.
    forged = _notice(aid, KeyPair.generate())
    _problem(_signed_post(ledger_url, forged, key), 422)
    assert _traces(world) == (0, 0)


def test_grants_fetch_needs_a_signed_get_without_body(world: World) -> None:
    _, _, grants_url, key = _setup(world)
    _problem(httpx.get(grants_url), 401)
    signed = sign_request("GET", grants_url, {}, b"", key)
    ok = httpx.get(grants_url, headers=signed)
    assert ok.status_code == 200 and ok.json() == {"grants": []}
    assert ok.headers["cache-control"] == "no-store"
    _problem(httpx.get(grants_url, headers=signed), 401)  # the same signature twice is a replay


def _retryable(ledger_url: str, aid: str, key: KeyPair) -> tuple[bytes, Callable[[], dict[str, str]]]:
    """One notice's body, and a signer of its request headers: the same Idempotency-Key on every call (a
    retry), a new nonce each time."""
    body = m.canonical_json(_notice(aid, key))
    idem = m.new_uuid()

    def headers() -> dict[str, str]:
        return sign_request(
            "POST", ledger_url, {"Content-Type": "application/json", "Idempotency-Key": idem}, body, key
        )

    return body, headers


def test_a_replayed_retry_is_refused_too(world: World) -> None:
    """A retry (same Idempotency-Key, new nonce) gets the first answer; replaying that retry is refused."""
    aid, ledger_url, _, key = _setup(world)
    body, headers = _retryable(ledger_url, aid, key)

    first = httpx.post(ledger_url, content=body, headers=headers())
    retry_headers = headers()
    retry = httpx.post(ledger_url, content=body, headers=retry_headers)
    assert (first.status_code, retry.status_code) == (202, 202) and first.content == retry.content
    _problem(httpx.post(ledger_url, content=body, headers=retry_headers), 401)
    assert _traces(world) == (0, 1)


# -- with a session open: the nonce, the ledger entry and the idempotency record in one transaction ----------


def _idempotency_records(world: World) -> int:
    with world.unlocked.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(ProtocolIdempotency)) or 0)


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.post(url, content=body, headers=headers)


def test_with_a_session_a_replay_and_a_retry_file_the_event_once(world: World) -> None:
    aid, ledger_url, _, key = _setup(world)
    cid = world.agent.connections()[0].id
    body, headers = _retryable(ledger_url, aid, key)

    with httpx.Client(base_url=world.url) as client:
        assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        first_headers = headers()
        first = _post(client, ledger_url, body, first_headers)
        assert first.status_code == 200, first.text
        m.check_ack(first.json(), json.loads(body), author=world.agent.get(cid).person_did)
        assert "replayed" in _problem(_post(client, ledger_url, body, first_headers), 401)["detail"]
        retry_headers = headers()
        retry = _post(client, ledger_url, body, retry_headers)
        assert (retry.status_code, retry.content) == (200, first.content)
        assert "replayed" in _problem(_post(client, ledger_url, body, retry_headers), 401)["detail"]
    assert len(world.agent.ledger(cid)) == 1 and _traces(world) == (1, 0)
    assert _idempotency_records(world) == 1


def test_with_a_session_an_event_resent_under_a_new_key_gets_its_first_acknowledgement(world: World) -> None:
    """The same event pushed again with a new Idempotency-Key (not a retry): filed once, the same ack."""
    aid, ledger_url, _, key = _setup(world)
    cid = world.agent.connections()[0].id
    record = _notice(aid, key)
    with httpx.Client(base_url=world.url) as client:
        assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        first = _signed_post(ledger_url, record, key)
        assert first.status_code == 200, first.text
        later = m.make_event(key, aid, "notice", {"notice": "other", "summary": "later"}, record["event_id"])
        assert _signed_post(ledger_url, later, key).status_code == 200
        again = _signed_post(ledger_url, record, key)  # a new Idempotency-Key, once the head moved on
        assert (again.status_code, again.json()) == (200, first.json())
    assert len(world.agent.ledger(cid)) == 2 and _traces(world) == (2, 0)
    assert _idempotency_records(world) == 3


def test_with_a_session_a_refused_filing_adds_nothing_but_spends_its_nonce(world: World) -> None:
    aid, ledger_url, _, key = _setup(world)
    cid = world.agent.connections()[0].id
    first = m.make_event(key, aid, "notice", {"notice": "other", "summary": "first"}, None)
    fork = m.make_event(key, aid, "notice", {"notice": "other", "summary": "fork"}, None)
    with httpx.Client(base_url=world.url) as client:
        assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        assert _signed_post(ledger_url, first, key).status_code == 200
        before = (_traces(world), _idempotency_records(world))
        body = m.canonical_json(fork)
        fresh = {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}
        headers = sign_request("POST", ledger_url, fresh, body, key)
        assert "previous_id" in _problem(_post(client, ledger_url, body, headers), 422)["detail"]
        assert (_traces(world), _idempotency_records(world)) == before
        # The refused request's signature cannot be sent again, even to a ledger that would now take it.
        assert "replayed" in _problem(_post(client, ledger_url, body, headers), 401)["detail"]
    assert [e.event["payload"]["summary"] for e in world.agent.ledger(cid)] == ["first"]


def test_with_a_session_an_expired_idempotency_record_is_replaced(world: World) -> None:
    aid, ledger_url, _, key = _setup(world)
    cid = world.agent.connections()[0].id
    body = m.canonical_json(_notice(aid, key))
    idem = m.new_uuid()
    with world.unlocked.db.write() as s:  # an old record under the same key, past its 24 hours
        s.add(
            ProtocolIdempotency(
                keyid=key.did,
                key=idem,
                request_hash="0" * 64,
                status_code=202,
                media_type="application/json",
                response=b"{}",
                expires_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
    with httpx.Client(base_url=world.url) as client:
        assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        headers = sign_request(
            "POST", ledger_url, {"Content-Type": "application/json", "Idempotency-Key": idem}, body, key
        )
        r = _post(client, ledger_url, body, headers)
        assert r.status_code == 200, r.text
    assert len(world.agent.ledger(cid)) == 1 and _idempotency_records(world) == 1


@pytest.mark.parametrize("session", [False, True], ids=["locked", "session"])
def test_a_block_applies_to_the_very_next_push_and_lifting_it_too(world: World, session: bool) -> None:
    """The connection row is read in each request's own transaction (nothing about it is kept between
    requests), so blocking or unblocking a vendor takes effect on its next request."""
    from openvrm.vendors.service import VendorService

    aid, ledger_url, _, key = _setup(world)
    conn = world.agent.connections()[0]
    assert conn.vendor_id is not None
    vendors = VendorService(world.unlocked)
    rel = vendors.relate(conn.vendor_id)
    expected = 200 if session else 202
    with httpx.Client(base_url=world.url) as client:
        if session:
            assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        first = m.make_event(key, aid, "notice", {"notice": "other", "summary": "one"}, None)
        assert _signed_post(ledger_url, first, key).status_code == expected
        vendors.edit_relationship(rel.id, stance="blocked")
        second = m.make_event(key, aid, "notice", {"notice": "other", "summary": "two"}, first["event_id"])
        before = (_traces(world), _idempotency_records(world))
        assert _problem(_signed_post(ledger_url, second, key), 403)["detail"]
        assert (_traces(world), _idempotency_records(world)) == before
        vendors.edit_relationship(rel.id, stance="neutral")
        assert _signed_post(ledger_url, second, key).status_code == expected


@pytest.mark.parametrize("session", [False, True], ids=["locked", "session"])
def test_a_push_refused_in_its_transaction_spends_nothing_and_can_be_sent_again(
    world: World, session: bool
) -> None:
    """The connection is read, the nonce spent and the push recorded in one write transaction: a push
    refused there (blocked, or a valid signature by a key that is not this relationship's vendor) is rolled
    back whole, nonce included, so the very same signed request is taken once the block is lifted."""
    from openvrm.vendors.service import VendorService

    aid, ledger_url, _, key = _setup(world)
    conn = world.agent.connections()[0]
    assert conn.vendor_id is not None
    vendors = VendorService(world.unlocked)
    rel = vendors.relate(conn.vendor_id)
    stranger = KeyPair.generate()
    own = m.canonical_json(_notice(aid, stranger))  # the stranger's own, well-formed, signed event
    with httpx.Client(base_url=world.url) as client:
        if session:
            assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        fresh = {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}
        headers = sign_request("POST", ledger_url, fresh, own, stranger)
        assert "not known" in _problem(_post(client, ledger_url, own, headers), 401)["detail"]
        body = m.canonical_json(_notice(aid, key))
        fresh = {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}
        headers = sign_request("POST", ledger_url, fresh, body, key)
        vendors.edit_relationship(rel.id, stance="blocked")
        _problem(_post(client, ledger_url, body, headers), 403)
        assert _traces(world) == (0, 0) and _idempotency_records(world) == 0
        vendors.edit_relationship(rel.id, stance="neutral")
        r = _post(client, ledger_url, body, headers)
        assert r.status_code == (200 if session else 202), r.text
        assert "replayed" in _problem(_post(client, ledger_url, body, headers), 401)["detail"]
    assert _traces(world) == ((1, 0) if session else (0, 1)) and _idempotency_records(world) == 1


@pytest.mark.parametrize("session", [False, True], ids=["locked", "session"])
def test_after_the_end_a_retry_gets_its_first_answer_and_a_new_push_is_refused(
    world: World, session: bool
) -> None:
    aid, ledger_url, _, key = _setup(world)
    cid = world.agent.connections()[0].id
    body, headers = _retryable(ledger_url, aid, key)

    with httpx.Client(base_url=world.url) as client:
        if session:
            assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        first = _post(client, ledger_url, body, headers())
        assert first.status_code == (200 if session else 202), first.text
        world.agent.end(cid, reason="moving to another provider")
        before = (_traces(world), _idempotency_records(world))
        retry_headers = headers()
        retry = _post(client, ledger_url, body, retry_headers)
        assert (retry.status_code, retry.content) == (first.status_code, first.content)
        assert "replayed" in _problem(_post(client, ledger_url, body, retry_headers), 401)["detail"]
        later = m.make_event(key, aid, "notice", {"notice": "other", "summary": "later"}, None)
        assert "ended" in _problem(_signed_post(ledger_url, later, key), 403)["detail"]
        assert (_traces(world), _idempotency_records(world)) == before
