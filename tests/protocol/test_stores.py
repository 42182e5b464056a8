"""The database nonce and idempotency stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from openvrm.errors import Conflict
from openvrm.protocol.stores import SqlIdempotencyStore, SqlNonceStore, StoredResponse, request_fingerprint
from openvrm.storage.models import ProtocolIdempotency, ProtocolNonce
from openvrm.vault.core import UnlockedVault

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_a_nonce_is_accepted_once_until_it_expires(unlocked: UnlockedVault) -> None:
    store = SqlNonceStore(unlocked.db, ProtocolNonce)
    until = NOW + timedelta(minutes=10)
    assert store.remember("did:key:zA", "n1", until, NOW)
    assert not store.remember("did:key:zA", "n1", until, NOW + timedelta(minutes=5))
    assert store.remember("did:key:zB", "n1", until, NOW), "nonces are per key"
    assert store.remember("did:key:zA", "n1", until + timedelta(minutes=10), until + timedelta(seconds=1))
    assert not store.remember("x" * 201, "n", until, NOW), "over-long key ids are refused, not stored"


def test_concurrent_replays_let_exactly_one_through(unlocked: UnlockedVault) -> None:
    store = SqlNonceStore(unlocked.db, ProtocolNonce)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        results.append(store.remember("did:key:zC", "same", NOW + timedelta(minutes=10), NOW))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_idempotency_replays_the_first_response(unlocked: UnlockedVault) -> None:
    clock = [NOW]
    store = SqlIdempotencyStore(unlocked.db, ProtocolIdempotency, clock=lambda: clock[0])
    fp = request_fingerprint("POST", "/vrm/p/h/ledger", b'{"a":1}')
    assert store.lookup("did:key:zA", "k1", fp) is None
    first = StoredResponse(200, "application/json", b'{"ack":1}')
    store.save("did:key:zA", "k1", fp, first)
    store.save("did:key:zA", "k1", fp, StoredResponse(200, "application/json", b'{"ack":2}'))
    assert store.lookup("did:key:zA", "k1", fp) == first
    other = request_fingerprint("POST", "/vrm/p/h/ledger", b'{"a":2}')
    with pytest.raises(Conflict, match="different request"):
        store.lookup("did:key:zA", "k1", other)
    assert store.lookup("did:key:zB", "k1", other) is None, "keys are per signer"
    clock[0] = NOW + timedelta(hours=25)
    assert store.lookup("did:key:zA", "k1", other) is None, "forgotten after 24 hours"
    store.save("did:key:zA", "k1", other, StoredResponse(202, "application/json", b"{}"))
    assert store.lookup("did:key:zA", "k1", other) == StoredResponse(202, "application/json", b"{}")
    assert store.count() == 1
