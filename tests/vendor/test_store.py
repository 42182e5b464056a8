"""The vendor store on SQLite and PostgreSQL: the whole relationship flow, replay and idempotency."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from openvrm.errors import Conflict
from openvrm.protocol import messages as m
from openvrm.protocol.stores import StoredResponse
from openvrm.vendor import UnknownRelationship, VendorKit
from openvrm.vendor.store import open_store
from tests.vendor.helpers import Person, config


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'vendor.sqlite3'}"
    return str(request.getfixturevalue("pg_schema_url"))


def test_store_creates_its_tables_idempotently(store_url: str) -> None:
    db = open_store(store_url)
    open_store(store_url).dispose()  # opening again is harmless
    names = set(inspect(db.engine).get_table_names())
    assert {
        "vendor_relationships",
        "vendor_proffers",
        "vendor_events",
        "vendor_data_requests",
        "vendor_grants",
        "vendor_protocol_nonces",
        "vendor_protocol_idempotency",
    } <= names
    db.dispose()


def test_relationship_flow_on_backend(store_url: str, tmp_path: Path) -> None:
    kit = VendorKit(config(tmp_path, store_url=store_url))
    try:
        person = Person()
        proffer = person.proffer(kit.did, "service-delivery-only")
        answer = kit.answer_proffer(proffer, person.key.did)
        assert kit.answer_proffer(proffer, person.key.did) == answer  # a retried proffer, same answer
        agreement = kit.accept_agreement(m.make_agreement(person.key, proffer, answer), person.key.did)
        person.agreement = agreement
        aid = agreement["agreement_id"]
        grant = person.event(
            "grant", {"grant_id": "g-1", "fields": ["email"], "until": "2027-01-01T00:00:00Z"}
        )
        ack = kit.receive(grant, person.key.did)
        assert kit.receive(grant, person.key.did) == ack  # the same event again: the same ack, stored once
        person.head = grant["event_id"]
        with pytest.raises(m.ProtocolViolation):
            kit.receive(
                person.event("revocation", {"grant_id": "g-1"}, previous="sha256:" + "3" * 64), person.key.did
            )
        end = person.event("end-of-relationship", {"reason": "done"})
        kit.receive(end, person.key.did)
        [info] = kit.relationships()
        assert info.status == "ended" and info.events == 2
        assert kit.grants(aid)[0].until == "2027-01-01T00:00:00Z"
        assert kit.verify_chain(aid).ok
        with pytest.raises(UnknownRelationship):
            kit.receive({**grant, "agreement_id": "sha256:" + "4" * 64}, person.key.did)
    finally:
        kit.close()


def test_nonces_and_idempotency_on_backend(store_url: str, tmp_path: Path) -> None:
    kit = VendorKit(config(tmp_path, store_url=store_url))
    try:
        now = m.now_utc()
        assert kit.nonces.remember("did:key:zA", "n1", now + timedelta(minutes=5), now)
        assert not kit.nonces.remember("did:key:zA", "n1", now + timedelta(minutes=5), now)
        assert kit.nonces.remember("did:key:zB", "n1", now + timedelta(minutes=5), now)
        key = str(uuid.uuid4())
        assert kit.idempotency.lookup("did:key:zA", key, "f1") is None
        kit.idempotency.save("did:key:zA", key, "f1", StoredResponse(200, "application/json", b"{}"))
        assert kit.idempotency.lookup("did:key:zA", key, "f1") == StoredResponse(
            200, "application/json", b"{}"
        )
        with pytest.raises(Conflict):
            kit.idempotency.lookup("did:key:zA", key, "f2")
    finally:
        kit.close()
