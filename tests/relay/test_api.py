"""The relay API end to end through the ASGI app, with real signed requests (docs/protocol.md 12.2)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_decision, open_offer
from openvrm.relay import Relay, create_relay_app

from .conftest import BASE, Clock, business_rows, intent_for, make_relay, sealed_offer, signed

pytestmark = pytest.mark.anyio


async def register(api: httpx.AsyncClient, name: str = "Example Telco", **extra: Any) -> KeyPair:
    key = KeyPair.generate()
    r = await signed(api, key, "POST", "/vendors", {"name": name, **extra})
    assert r.status_code == 200, r.text
    return key


async def subscribe(api: httpx.AsyncClient, key: KeyPair, **filters: Any) -> str:
    r = await signed(api, key, "POST", "/subscriptions", {"categories": ["telecom"], **filters})
    assert r.status_code == 201, r.text
    return str(r.json()["subscription_id"])


async def publish(api: httpx.AsyncClient, author: KeyPair, intent: dict) -> httpx.Response:
    return await signed(api, author, "POST", "/intents", intent)


def is_problem(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == status


async def test_discovery(api: httpx.AsyncClient, relay: Relay) -> None:
    r = await api.get("/.well-known/vrm-relay")
    assert r.status_code == 200
    doc = r.json()
    assert doc["relay"] == relay.did and doc["name"] == "Test relay"
    assert doc["endpoints"]["intents"] == BASE + "/intents"
    assert doc["version"] and doc["limits"]["intents_per_hour_per_client"] == 60


async def test_publish_feed_offer_decision(api: httpx.AsyncClient, relay: Relay) -> None:
    telco, rival, blocked, off_topic = [await register(api) for _ in range(4)]
    for v in (telco, rival, blocked):
        await subscribe(api, v, regions=["FR"])
    await signed(api, off_topic, "POST", "/subscriptions", {"categories": ["energy"]})

    author = KeyPair.generate()
    intent = intent_for(author, exclude=(blocked.did,))
    r = await publish(api, author, intent)
    assert r.status_code == 201, r.text
    assert r.json() == {"intent_id": intent["intent_id"], "matched": 2}

    feed = (await signed(api, telco, "GET", "/feed?after=0&limit=10")).json()
    assert [i["kind"] for i in feed["items"]] == ["intent"]
    assert feed["items"][0]["intent"] == intent and feed["next"] == feed["items"][0]["cursor"]
    assert (await signed(api, telco, "GET", f"/feed?after={feed['next']}")).json()["items"] == []
    assert (await signed(api, blocked, "GET", "/feed")).json()["items"] == []
    assert (await signed(api, off_topic, "GET", "/feed")).json()["items"] == []

    envelope = sealed_offer(telco, intent)
    r = await signed(api, telco, "POST", "/offers", envelope)
    assert r.status_code == 201, r.text
    other = sealed_offer(rival, intent, price="14")
    assert (await signed(api, rival, "POST", "/offers", other)).status_code == 201

    r = await signed(api, author, "GET", f"/intents/{intent['intent_id']}/offers")
    assert r.status_code == 200
    page = r.json()
    assert [o["offer_id"] for o in page["offers"]] == [envelope["offer_id"], other["offer_id"]]
    opened = open_offer(page["offers"][0], author, intent)
    assert opened["price"]["amount"] == "12.99"
    r = await signed(api, author, "GET", f"/intents/{intent['intent_id']}/offers?after={page['next']}")
    assert r.json()["offers"] == []

    decision = make_decision(author, intent, "accepted", offer_id=envelope["offer_id"])
    r = await signed(api, author, "POST", f"/intents/{intent['intent_id']}/decision", decision)
    assert r.status_code == 200, r.text
    assert r.json() == {"intent_id": intent["intent_id"], "state": "accepted", "notified": 2}

    won = (await signed(api, telco, "GET", f"/feed?after={feed['next']}")).json()["items"]
    assert won[0]["kind"] == "decision" and won[0]["decision"] == decision
    lost = (await signed(api, rival, "GET", "/feed")).json()["items"]
    assert lost[-1]["kind"] == "decision"
    assert lost[-1]["decision"]["decision"] == "declined" and "offer_id" not in lost[-1]["decision"]
    assert (await signed(api, blocked, "GET", "/feed")).json()["items"] == []

    # Closed: no more offers, no second decision.
    late = sealed_offer(rival, intent)
    is_problem(await signed(api, rival, "POST", "/offers", late), 409)
    again = make_decision(author, intent, "withdrawn")
    is_problem(await signed(api, author, "POST", f"/intents/{intent['intent_id']}/decision", again), 409)
    stats = relay.stats()
    assert stats["intents"] == {"accepted": 1} and stats["offers"] == 2
    assert stats["deliveries"]["pull-only"] == 4


async def test_subscriptions_list_and_delete(api: httpx.AsyncClient) -> None:
    v, other = await register(api), await register(api)
    sub = await subscribe(api, v, keywords=["fibre"], price_min={"amount": "10", "currency": "EUR"})
    listed = (await signed(api, v, "GET", "/subscriptions")).json()["subscriptions"]
    assert listed[0]["subscription_id"] == sub and listed[0]["keywords"] == ["fibre"]
    assert (await signed(api, other, "GET", "/subscriptions")).json()["subscriptions"] == []
    is_problem(await signed(api, other, "DELETE", f"/subscriptions/{sub}"), 404)
    assert (await signed(api, v, "DELETE", f"/subscriptions/{sub}")).status_code == 200
    assert (await signed(api, v, "GET", "/subscriptions")).json()["subscriptions"] == []
    is_problem(await signed(api, v, "POST", "/subscriptions", {"categories": ["nope"]}), 422)
    for amount in ("1e999", "NaN", "-1", "1.234", "12\n", 12):
        body = {"categories": ["telecom"], "price_min": {"amount": amount, "currency": "EUR"}}
        is_problem(await signed(api, v, "POST", "/subscriptions", body), 422)


async def test_refused_requests_leave_no_rows(api: httpx.AsyncClient, relay: Relay, clock: Clock) -> None:
    telco, rival = await register(api), await register(api)
    await subscribe(api, telco)
    author = KeyPair.generate()
    intent = intent_for(author)
    assert (await publish(api, author, intent)).status_code == 201
    before = business_rows(relay)

    # Unsigned, signed by a stranger, by another intent key, by an unregistered vendor.
    is_problem(await signed(api, None, "POST", "/intents", intent_for(author)), 401)
    stranger = KeyPair.generate()
    is_problem(await publish(api, stranger, intent_for(author)), 401)
    is_problem(await signed(api, stranger, "POST", "/subscriptions", {"categories": ["telecom"]}), 401)
    is_problem(await signed(api, stranger, "GET", "/feed"), 401)
    is_problem(await signed(api, None, "GET", "/feed"), 401)
    # A rival that did not receive the intent, or that sends telco's offer, or reads its offers.
    is_problem(await signed(api, rival, "POST", "/offers", sealed_offer(rival, intent)), 403)
    is_problem(await signed(api, rival, "POST", "/offers", sealed_offer(telco, intent)), 403)
    is_problem(await signed(api, rival, "GET", f"/intents/{intent['intent_id']}/offers"), 401)
    is_problem(await signed(api, telco, "GET", f"/intents/{intent['intent_id']}/offers"), 401)
    is_problem(await signed(api, author, "GET", f"/intents/{uuid.uuid4()}/offers"), 404)
    # A decision signed by another key, an accepted decision for an unknown offer.
    fake = make_decision(stranger, {**intent, "author": stranger.did}, "withdrawn")
    is_problem(await signed(api, author, "POST", f"/intents/{intent['intent_id']}/decision", fake), 401)
    bogus = make_decision(author, intent, "accepted", offer_id=str(uuid.uuid4()))
    is_problem(await signed(api, author, "POST", f"/intents/{intent['intent_id']}/decision", bogus), 422)
    # Malformed bodies.
    is_problem(await signed(api, telco, "POST", "/offers", raw=b"{not json"), 422)
    is_problem(await signed(api, telco, "POST", "/offers", {"type": "sealed-offer"}), 422)
    is_problem(await publish(api, author, {**intent, "text": "altered"}), 401)  # bad record signature
    assert business_rows(relay) == before

    # An offer to an expired intent is refused; expiry closes it and tells the vendors.
    clock.advance(days=15)
    is_problem(await signed(api, telco, "POST", "/offers", sealed_offer(telco, intent)), 409)
    assert business_rows(relay) == before
    assert relay.expire_due() == 1 and relay.expire_due() == 0
    items = (await signed(api, telco, "GET", "/feed")).json()["items"]
    assert items[-1]["kind"] == "decision"
    assert items[-1]["decision"] == {
        "type": "relay-notice",
        "intent_id": intent["intent_id"],
        "decision": "expired",
        "reason": "expired",
    }
    assert relay.stats()["intents"] == {"expired": 1}


async def test_idempotency_and_dedupe(api: httpx.AsyncClient, relay: Relay) -> None:
    telco = await register(api)
    await subscribe(api, telco)
    author = KeyPair.generate()
    intent = intent_for(author)
    key = str(uuid.uuid4())
    first = await signed(api, author, "POST", "/intents", intent, idem=key)
    retry = await signed(api, author, "POST", "/intents", intent, idem=key)
    assert first.status_code == retry.status_code == 201 and first.content == retry.content
    other = intent_for(author)
    is_problem(await signed(api, author, "POST", "/intents", other, idem=key), 409)
    # The same intent under a new key: not stored twice, not delivered twice.
    assert (await publish(api, author, intent)).json()["matched"] == 1
    assert len((await signed(api, telco, "GET", "/feed")).json()["items"]) == 1
    # The same offer twice is stored once; another envelope under its id is refused.
    envelope = sealed_offer(telco, intent)
    assert (await signed(api, telco, "POST", "/offers", envelope)).status_code == 201
    assert (await signed(api, telco, "POST", "/offers", envelope)).status_code == 201
    changed = {**envelope, "sealed": sealed_offer(telco, intent)["sealed"]}
    is_problem(await signed(api, telco, "POST", "/offers", changed), 409)
    assert relay.stats()["offers"] == 1


async def test_rate_limits_answer_429_with_retry_after(tmp_path: Path, store_url: str) -> None:
    relay = make_relay(
        tmp_path, store_url, intents_per_hour_per_client=2, feed_polls_per_minute_per_vendor=3,
        offers_per_minute_per_vendor=1,
    )  # fmt: skip
    app = create_relay_app(relay.config, relay=relay)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as api:
            v = await register(api)
            await subscribe(api, v)
            intents = []
            for _ in range(2):
                author = KeyPair.generate()
                intents.append(intent_for(author))
                assert (await publish(api, author, intents[-1])).status_code == 201
            author = KeyPair.generate()
            r = await publish(api, author, intent_for(author))
            is_problem(r, 429)
            assert 1 <= int(r.headers["retry-after"]) <= 1800
            for _ in range(3):
                assert (await signed(api, v, "GET", "/feed")).status_code == 200
            r = await signed(api, v, "GET", "/feed")
            is_problem(r, 429)
            assert int(r.headers["retry-after"]) >= 1
            assert (await signed(api, v, "POST", "/offers", sealed_offer(v, intents[0]))).status_code == 201
            is_problem(await signed(api, v, "POST", "/offers", sealed_offer(v, intents[1])), 429)
            assert relay.stats()["intents"] == {"open": 2} and relay.stats()["offers"] == 1
    finally:
        relay.close()


async def test_sizes_and_garbage_never_500(api: httpx.AsyncClient, relay: Relay) -> None:
    v = await register(api)
    big = b'{"name": "' + b"x" * (400 * 1024) + b'"}'
    is_problem(await signed(api, v, "POST", "/vendors", raw=big), 413)
    author = KeyPair.generate()
    intent = intent_for(author)
    huge = {
        "type": "sealed-offer", "vrm": "0.1", "offer_id": str(uuid.uuid4()),
        "intent_id": intent["intent_id"], "vendor": v.did,
        "sealed": {"alg": "X25519-XSalsa20-Poly1305", "to": "x", "ciphertext": "A" * (270 * 1024)},
    }  # fmt: skip
    is_problem(await signed(api, v, "POST", "/offers", huge), 413)
    bodies: list[Any] = [None, [], "x", 1, {"name": ""}, {"name": "n", "webhook": "http://10.0.0.1/x"},
                         {"name": "n", "webhook": "file:///etc/passwd"}, {"name": ["x"]}]  # fmt: skip
    for body in bodies:
        r = await signed(api, v, "POST", "/vendors", raw=json.dumps(body).encode())
        assert r.status_code == 422, (body, r.text)
    for path in ("/feed?after=-1", "/feed?limit=abc", "/feed?after=99999999999999999999999"):
        assert (await signed(api, v, "GET", path)).status_code in (200, 422)
    for path in ("/intents/not-a-uuid/offers", "/intents/%00/offers"):
        assert (await signed(api, author, "GET", path)).status_code == 404
    r = await api.post("/intents", content=b"\xff\xfe", headers={"Idempotency-Key": "k"})
    is_problem(r, 401)  # unsigned comes first, whatever the body
    r = await api.get("/feed", headers={"Signature": "vrm=:AAAA:", "Signature-Input": "garbage"})
    is_problem(r, 401)
    is_problem(await api.get("/nothing"), 404)
    is_problem(await api.put("/intents"), 405)


async def test_mounted_in_the_person_server(tmp_path: Path) -> None:
    from openvrm.config import Settings
    from openvrm.server.app import create_app

    app = create_app(Settings.resolve(tmp_path / "home"), relay=True)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as c:
        doc = (await c.get("/relay/.well-known/vrm-relay")).json()
        assert doc["endpoints"]["vendors"] == "http://127.0.0.1:8765/relay/vendors"
        key = KeyPair.generate()
        r = await signed(c, key, "POST", "/relay/vendors", {"name": "Mounted"})
        assert r.status_code == 200, r.text
        r = await signed(c, key, "POST", "/relay/subscriptions", {"categories": ["energy"]})
        assert r.status_code == 201, r.text
    app.routes[-1].app.state.workers.stop()  # type: ignore[attr-defined]
