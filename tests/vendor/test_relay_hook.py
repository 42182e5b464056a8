"""The webhook a relay delivers intents and decisions to: signatures, de-duplication, rules, decisions, links.

The relay's side is played by a key and an ``httpx.MockTransport`` (its discovery document and its
``/offers``); the end-to-end tests with a real relay over loopback HTTP are in test_relay_e2e.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_decision, make_intent, open_offer
from openvrm.protocol.terms import term
from openvrm.vendor import VendorConfig, VendorKit, create_vendor_app
from openvrm.vendor.relay_client import (
    RelayClient,
    intent_links,
    intent_state,
    received_intents,
)
from openvrm.vendor.rules import rules_document
from tests.vendor.helpers import BASE, config, signed_request
from tests.vendor.test_relay_rules import TELCO_RULE

RELAY = "http://127.0.0.1:9100/relay"
HOOK = "/vrm/relay-hook"


class FakeRelay:
    """The relay's discovery document and offer box, behind an httpx.MockTransport."""

    def __init__(self) -> None:
        self.key = KeyPair.generate()
        self.offers: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/relay")
        if path == "/.well-known/vrm-relay":
            return httpx.Response(200, json={"name": "fake", "relay": self.key.did, "endpoints": {}})
        if "signature" not in request.headers:
            return httpx.Response(401, json={"title": "unsigned"})
        if path == "/vendors":
            return httpx.Response(200, json={"ok": True})
        if path == "/offers":
            self.offers.append(json.loads(request.content))
            return httpx.Response(201, json={"offer_id": self.offers[-1]["offer_id"]})
        if path == "/subscriptions" and request.method == "POST":
            return httpx.Response(201, json={"subscription_id": "sub-1"})
        if path == "/subscriptions":
            return httpx.Response(200, json={"subscriptions": []})
        return httpx.Response(404, json={"title": "no"})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


@pytest.fixture
def vendor_config(tmp_path: Path) -> VendorConfig:
    cfg = config(tmp_path, accepted_terms=("service-delivery-only", "intent-only"))
    cfg.rules_file.parent.mkdir(parents=True, exist_ok=True)
    cfg.rules_file.write_text(rules_document([TELCO_RULE]))
    return cfg


@pytest.fixture
def relay() -> FakeRelay:
    return FakeRelay()


@pytest.fixture
def registered(kit: VendorKit, relay: FakeRelay) -> RelayClient:
    client = RelayClient(kit, RELAY, client_factory=relay.client)
    client.register(webhook=True)
    return client


@pytest.fixture
def app(vendor_config: VendorConfig, kit: VendorKit, relay: FakeRelay) -> FastAPI:
    vendor_app = create_vendor_app(vendor_config, kit=kit)
    vendor_app.state.relay_client_factory = relay.client
    return vendor_app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def new_intent(price: str = "15", **kw: Any) -> tuple[KeyPair, dict[str, Any]]:
    key = KeyPair.generate()
    record = make_intent(
        key,
        category=kw.pop("category", "telecom.mobile"),
        text="A mobile plan with 50 GB",
        constraints={"price_max": {"amount": price, "currency": "EUR", "per": "month"}},
        where={"country": "FR"},
        expires_at=m.now_utc() + timedelta(days=5),
        **kw,
    )
    return key, record


def test_registration_learns_the_relay_key(kit: VendorKit, relay: FakeRelay, registered: RelayClient) -> None:
    posted = [r for r in relay.requests if r.url.path == "/relay/vendors"]
    assert len(posted) == 1 and "idempotency-key" in posted[0].headers
    body = json.loads(posted[0].content)
    assert body == {
        "name": kit.config.name,
        "discovery": f"{BASE}/.well-known/vrm",
        "webhook": f"{BASE}{HOOK}",
    }
    assert posted[0].headers["signature-input"].count(kit.did) == 1
    assert registered.subscribe(["telecom.mobile"], regions=["fr"]) == "sub-1"
    sub = json.loads(relay.requests[-1].content)
    assert sub == {"categories": ["telecom.mobile"], "regions": ["FR"]}


@pytest.mark.anyio
async def test_unsigned_wrong_key_and_replayed_deliveries_are_refused(
    client: httpx.AsyncClient, kit: VendorKit, relay: FakeRelay, registered: RelayClient
) -> None:
    _, intent = new_intent()
    item = {"cursor": 1, "kind": "intent", "intent": intent}
    unsigned = await client.post(HOOK, json=item, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert unsigned.status_code == 401
    assert unsigned.headers["content-type"].startswith("application/problem+json")
    stranger = await client.send(signed_request(client, KeyPair.generate(), HOOK, item))
    assert stranger.status_code == 401 and "not known" in stranger.json()["detail"]
    assert received_intents(kit) == []
    request = signed_request(client, relay.key, HOOK, item)
    first = await client.send(request)
    assert first.status_code == 202, first.text
    replay = await client.send(signed_request(client, relay.key, HOOK, item))  # new nonce, new key: fine
    assert replay.status_code == 202
    again = await client.send(request)  # the very same signed request
    assert again.status_code == 401 and "replayed" in again.json()["detail"]
    assert len(received_intents(kit)) == 1


@pytest.mark.anyio
async def test_deliveries_are_deduplicated_and_the_rules_answer(
    client: httpx.AsyncClient, kit: VendorKit, relay: FakeRelay, registered: RelayClient
) -> None:
    key, intent = new_intent()
    item = {"cursor": 7, "kind": "intent", "intent": intent}
    idem = str(uuid.uuid4())
    r1 = await client.send(signed_request(client, relay.key, HOOK, item, idem=idem))
    assert r1.status_code == 202 and r1.json()["received"] == "intent"
    # The same delivery again (a retry) gets the first answer; the rules do not run twice.
    r2 = await client.send(signed_request(client, relay.key, HOOK, item, idem=idem))
    assert r2.status_code == 202 and r2.content == r1.content
    # Another delivery of the same intent (another key) is stored once.
    r3 = await client.send(signed_request(client, relay.key, HOOK, item))
    assert r3.status_code == 202
    # The same key with another body is a conflict.
    r4 = await client.send(signed_request(client, relay.key, HOOK, {"kind": "intent"}, idem=idem))
    assert r4.status_code == 409
    assert len(received_intents(kit)) == 1
    assert len(relay.offers) == 1  # the background task ran once (ASGITransport waits for it)
    envelope = relay.offers[0]
    offer = open_offer(envelope, key, intent)
    assert offer["price"] == {"amount": "12.99", "currency": "EUR", "per": "month"}
    assert offer["terms"] == [m.term_ref(term("intent-only"))]
    assert offer["discovery"] == f"{BASE}/.well-known/vrm"
    assert intent_state(kit, intent["intent_id"]) == "offered"
    # Its decision marks it accepted.
    decision = make_decision(key, intent, "accepted", offer_id=offer["offer_id"])
    d = await client.send(signed_request(client, relay.key, HOOK, {"kind": "decision", "decision": decision}))
    assert d.status_code == 202 and d.json()["state"] == "accepted"


@pytest.mark.anyio
async def test_rules_refusals_are_noted_and_notices_close(
    client: httpx.AsyncClient, kit: VendorKit, relay: FakeRelay, registered: RelayClient
) -> None:
    key, cheap = new_intent(price="9")
    r = await client.send(signed_request(client, relay.key, HOOK, {"kind": "intent", "intent": cheap}))
    assert r.status_code == 202
    assert relay.offers == []
    (info,) = received_intents(kit)
    assert info.state == "open" and info.note and "below 10" in info.note
    notice = {"type": "relay-notice", "intent_id": cheap["intent_id"], "decision": "declined"}
    r = await client.send(signed_request(client, relay.key, HOOK, {"kind": "decision", "decision": notice}))
    assert r.json()["state"] == "declined"
    # A decision signed by another key than the intent's is refused and changes nothing.
    _, other = new_intent()
    r = await client.send(signed_request(client, relay.key, HOOK, {"kind": "intent", "intent": other}))
    assert intent_state(kit, other["intent_id"]) == "offered"
    stranger = KeyPair.generate()
    fake = make_decision(stranger, {**other, "author": stranger.did}, "withdrawn")
    r = await client.send(signed_request(client, relay.key, HOOK, {"kind": "decision", "decision": fake}))
    assert r.status_code == 422
    assert intent_state(kit, other["intent_id"]) == "offered"
    # A tampered intent (its signature no longer holds) is refused with nothing stored.
    tampered = dict(other, intent_id=str(uuid.uuid4()), text="changed")
    r = await client.send(signed_request(client, relay.key, HOOK, {"kind": "intent", "intent": tampered}))
    assert r.status_code in (401, 422)
    assert len(received_intents(kit)) == 2
    assert key.did == cheap["author"]


@pytest.mark.anyio
async def test_an_accepted_offer_links_the_relationship(
    client: httpx.AsyncClient, kit: VendorKit, relay: FakeRelay, registered: RelayClient, tmp_path: Path
) -> None:
    key, intent = new_intent()
    await client.send(signed_request(client, relay.key, HOOK, {"kind": "intent", "intent": intent}))
    offer = open_offer(relay.offers[0], key, intent)
    decision = make_decision(key, intent, "accepted", offer_id=offer["offer_id"])
    await client.send(signed_request(client, relay.key, HOOK, {"kind": "decision", "decision": decision}))
    person = KeyPair.generate()
    proffer = m.make_proffer(
        person,
        kit.did,
        [term("intent-only")],
        agent={"ledger": "http://127.0.0.1:9/agent/ledger", "grants": "http://127.0.0.1:9/agent/grants"},
        intent={"intent_id": intent["intent_id"], "offer_id": offer["offer_id"]},
    )
    r = await client.send(signed_request(client, person, "/vrm/relationship", proffer))
    assert r.status_code == 200 and r.json()["decision"] == "accept", r.text
    agreement = m.make_agreement(person, proffer, r.json())
    r = await client.send(signed_request(client, person, "/vrm/relationship", agreement))
    assert r.status_code == 200, r.text
    agreement_id = r.json()["agreement_id"]
    links = intent_links(kit)
    assert links == {
        agreement_id: {"intent_id": intent["intent_id"], "offer_id": offer["offer_id"], "ours": True}
    }
    (info,) = received_intents(kit)
    assert info.state == "accepted" and info.agreement_id == agreement_id

    from openvrm.cli.main import app as cli

    runner = CliRunner()
    store = str(kit.config.store_dir)
    kit.config.save()
    result = runner.invoke(cli, ["vendor", "relationships", "--store", store, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["intent"]["offer_id"] == offer["offer_id"]
    result = runner.invoke(cli, ["vendor", "relay", "intents", "--store", store, "--json"])
    assert result.exit_code == 0, result.output
    assert [i["state"] for i in json.loads(result.stdout)] == ["accepted"]
    result = runner.invoke(cli, ["vendor", "relay", "rules", "--store", store])
    assert result.exit_code == 0 and "telecom.mobile in FR -> 12.99 EUR/month" in result.stdout


def test_demo_vendors_get_rules_and_a_lazy_registration(tmp_path: Path) -> None:
    from openvrm.vendor.demo import ensure_relay_registration, mount_reference_vendors
    from openvrm.vendor.rules import load_rules

    mounted = mount_reference_vendors(
        "http://127.0.0.1:9", tmp_path, relay_url="http://127.0.0.1:9/relay", register_in_background=False
    )
    try:
        apps = [a for _, a in mounted]
        by_name = {a.state.kit.config.name: a for a in apps}
        assert len(load_rules(by_name["Example Telco"].state.kit.config.rules_file)) == 2
        assert len(load_rules(by_name["Example Energy"].state.kit.config.rules_file)) == 2
        assert len(load_rules(by_name["Example Books"].state.kit.config.rules_file)) == 0
        assert by_name["Example Books"].state.relay_registration.webhook is False
        # Nothing listens on port 9: registration fails cleanly and can be retried.
        assert ensure_relay_registration(apps) == dict.fromkeys(by_name, False)
        assert by_name["Example Telco"].state.relay_registration.error
    finally:
        for _, a in mounted:
            a.state.kit.close()
