"""Webhook delivery to a real loopback receiver: signatures, retries with backoff, failure, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_decision
from openvrm.relay import DeliveryWorker, Relay
from openvrm.relay.store import Delivery
from openvrm.relay.worker import backoff, delivery_key

from .conftest import Clock, intent_for, make_relay, sealed_offer


def vendor(relay: Relay, webhook: str | None = None, categories: tuple[str, ...] = ("telecom",)) -> KeyPair:
    key = KeyPair.generate()
    body: dict[str, Any] = {"name": "V"}
    if webhook:
        body["webhook"] = webhook
    relay.register_vendor(key.did, body)
    relay.subscribe(key.did, {"categories": list(categories)})
    return key


def rows(relay: Relay) -> list[Delivery]:
    from sqlalchemy import select

    with relay.db.read() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(11).total_seconds() == 600 and backoff(40).total_seconds() == 600


def test_webhook_retried_after_500s_then_delivered(relay: Relay, clock: Clock, receiver_factory: Any) -> None:
    receiver = receiver_factory(relay.key, fail_first=2)
    hooked = vendor(relay, receiver.url)
    pulled = vendor(relay)
    author = KeyPair.generate()
    intent = intent_for(author)
    assert relay.publish(intent, author.did)["matched"] == 2
    worker = DeliveryWorker(relay)

    first = worker.run_once()
    assert (first.claimed, first.retried) == (1, 1)  # pull-only rows are never claimed
    assert worker.run_once().claimed == 0  # not due before its backoff
    clock.advance(seconds=1)
    assert worker.run_once().retried == 1
    clock.advance(seconds=1)
    assert worker.run_once().claimed == 0  # second backoff is 2 s
    clock.advance(seconds=1)
    assert worker.run_once().delivered == 1
    clock.advance(hours=1)
    assert worker.run_once().claimed == 0

    by_vendor = {r.vendor: r for r in rows(relay)}
    assert by_vendor[hooked.did].status == "delivered" and by_vendor[hooked.did].attempts == 3
    assert by_vendor[pulled.did].status == "pull-only"
    key = delivery_key(relay.did, by_vendor[hooked.did].id)
    assert receiver.attempts == {key: 3}  # the same Idempotency-Key on every retry
    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got["kind"] == "intent" and got["intent"] == intent and got["cursor"] == by_vendor[hooked.did].id

    # The decision goes the same way, to both vendors; the pull-only one reads it in its feed.
    envelope = sealed_offer(hooked, intent)
    relay.submit_offer(envelope, hooked.did)
    decision = make_decision(author, intent, "accepted", offer_id=envelope["offer_id"])
    assert relay.decide(decision, author.did)["notified"] == 2
    receiver.fail_first = 0
    assert worker.run_once().delivered == 1
    assert receiver.received[-1]["kind"] == "decision" and receiver.received[-1]["decision"] == decision
    notice = relay.feed(pulled.did)["items"][-1]
    assert notice["decision"]["decision"] == "declined"


def test_unreachable_webhook_fails_after_max_attempts(tmp_path: Path, store_url: str) -> None:
    clock = Clock()
    relay = make_relay(tmp_path, store_url, clock=clock, webhook_max_attempts=3)
    try:
        vendor(relay, "http://127.0.0.1:9/hook")  # discard port: connection refused
        author = KeyPair.generate()
        relay.publish(intent_for(author), author.did)
        worker = DeliveryWorker(relay)
        for _ in range(3):
            assert worker.run_once().claimed == 1
            clock.advance(minutes=10)
        assert worker.run_once().claimed == 0
        (row,) = rows(relay)
        assert row.status == "failed" and row.attempts == 3 and row.last_error
        assert relay.stats()["deliveries"]["failed"] == 1
        assert len(relay.feed(row.vendor)["items"]) == 1  # still in the pull feed
    finally:
        relay.close()


def test_a_vendor_webhook_must_pass_the_ssrf_guard(relay: Relay) -> None:
    from openvrm.net import UnsafeUrl

    relay.config.allow_loopback = False
    for url in ("http://127.0.0.1:8000/hook", "https://169.254.169.254/x", "https://10.1.2.3/hook"):
        with pytest.raises(UnsafeUrl):
            relay.register_vendor(KeyPair.generate().did, {"name": "V", "webhook": url})


def test_four_workers_never_deliver_a_row_twice(
    tmp_path: Path, pg_schema_url: str, receiver_factory: Any
) -> None:
    """On PostgreSQL, four workers with their own engines (like four processes) race over one queue."""
    relays = [make_relay(tmp_path, pg_schema_url) for _ in range(4)]
    try:
        main = relays[0]
        for r in relays[1:]:
            r.key = main.key
        receiver = receiver_factory(main.key)
        for _ in range(8):
            vendor(main, receiver.url)
        for _ in range(10):
            author = KeyPair.generate()
            main.publish(intent_for(author), author.did)
        total = 80
        done = threading.Event()
        errors: list[BaseException] = []

        def work(r: Relay) -> None:
            worker = DeliveryWorker(r)
            try:
                while not done.is_set():
                    if worker.run_once(batch=5).claimed == 0:
                        if r.stats()["deliveries"]["pending"] == 0:
                            return
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(r,)) for r in relays]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        done.set()
        assert not errors
        keys = [item["key"] for item in receiver.received]
        assert len(keys) == total and len(set(keys)) == total
        assert set(receiver.attempts.values()) == {1} and receiver.overlaps == 0
        assert main.stats()["deliveries"]["delivered"] == total
    finally:
        for r in relays:
            r.close()
