"""The person's intents on SQLite and PostgreSQL: drafts, fresh keys, sealing, savings, and the whole
publish → offers → compare → accept journey over real loopback HTTP (relay and vendors)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from openvrm.agent.service import AgentService
from openvrm.errors import Conflict, InvalidValue
from openvrm.intents.service import IntentService, parse_features
from openvrm.ledger.contracts import ContractService
from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_offer, seal_offer
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.intents.conftest import IntentWorld, send_offer, signed_post, subscribe

SECRET_TEXT = "Zorblax fibre wanted for the quiet flat"


def _new(service: IntentService, **kw: Any) -> Any:
    defaults: dict[str, Any] = {
        "price": {"amount": "40", "currency": "EUR", "per": "month"},
        "features": parse_features(["speed_mbps=500", "tv=yes"], ["speed_mbps"]),
        "contract_months_max": 12,
        "where": {"country": "FR"},
    }
    return service.create("telecom.broadband", kw.pop("text", SECRET_TEXT), **(defaults | kw))


# -- local: no relay needed ------------------------------------------------------------------------------


def test_drafts_are_created_and_edited(unlocked: UnlockedVault) -> None:
    svc = IntentService(unlocked, relay_url="https://relay.example")
    draft = _new(svc)
    assert draft.state == "draft" and draft.kind == "rfp" and draft.expires_in_days == 14
    assert draft.constraints["price_max"] == {"amount": "40", "currency": "EUR", "per": "month"}
    assert draft.constraints["features"][0] == {"name": "speed_mbps", "value": "500", "required": True}
    edited = svc.edit(draft.id, text="Faster fibre", contract_months_max=0, expires_in_days=30)
    assert edited.text == "Faster fibre" and edited.constraints["contract_months_max"] == 0
    assert svc.get(draft.id).expires_in_days == 30
    assert [i.id for i in svc.list()] == [draft.id]
    with pytest.raises(InvalidValue):
        svc.create("not.a.category", "x")
    with pytest.raises(InvalidValue):
        svc.create("telecom.mobile", "x", price={"amount": "ten", "currency": "EUR", "per": "month"})
    with pytest.raises(InvalidValue):
        svc.create("telecom.mobile", "x", expires_in_days=120)  # an rfp lasts at most 90 days
    interest = svc.create("mobility.bike", "Open to e-bike offers", kind="interest", expires_in_days=300)
    assert interest.kind == "interest" and interest.expires_in_days == 300
    with pytest.raises(InvalidValue):
        svc.create("mobility.bike", "x", kind="interest", expires_in_days=400)


def test_every_intent_has_its_own_fresh_key(unlocked: UnlockedVault) -> None:
    svc = IntentService(unlocked, relay_url="https://relay.example")
    a, b = _new(svc), _new(svc)
    assert a.author != b.author and a.intent_id != b.intent_id
    assert a.author.startswith("did:key:z6Mk")


def test_intents_are_sealed(unlocked: UnlockedVault, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    svc = IntentService(unlocked, relay_url="https://relay.example")
    _new(svc)
    settings = unlocked.vault.settings
    chunks: list[bytes] = []
    if settings.is_sqlite:
        chunks = [f.read_bytes() for f in sorted(Path(settings.home).rglob("*")) if f.is_file()]
    else:
        with unlocked.db.engine.connect() as conn:
            for t in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'select * from "{t}"')):  # noqa: S608
                    chunks += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    raw = b"\n".join(chunks)
    assert len(raw) > 500  # the scan really read the store
    for needle in (SECRET_TEXT.encode(), SECRET_TEXT.encode("utf-16-le"), b"Zorblax", b"speed_mbps"):
        assert needle not in raw
    assert "Zorblax" not in "\n".join(r.getMessage() for r in caplog.records)


def test_the_current_contract_in_the_category_is_found(unlocked: UnlockedVault) -> None:
    svc = IntentService(unlocked, relay_url="https://relay.example")
    vendor = VendorService(unlocked).add("Old Fibre")
    ContractService(unlocked).add(
        vendor.id, plan="Fibre 300", price="45.00", category="fibre", start=date(2025, 1, 1), notice_value=30
    )
    ContractService(unlocked).add(
        vendor.id, plan="Unrelated", price="9", category="gym", start=date(2025, 1, 1)
    )
    intent = _new(svc)
    found = svc.current_contract(intent, today=date(2026, 11, 22))
    assert found is not None and found.plan == "Fibre 300" and found.price == 45
    assert found.cancellation_deadline is not None and found.cancellation_deadline >= date(2026, 11, 22)
    mobile = svc.create("telecom.mobile", "a SIM")
    assert svc.current_contract(mobile) is None


# -- over real HTTP: a relay and vendors on loopback -----------------------------------------------------


def _subscribe(world: IntentWorld) -> None:
    """Vendors subscribe before the intent is published: the relay delivers it to them."""
    subscribe(world.relay, world.vendor_key("fibre"), "Fibre & Co", ["telecom"], world.discovery("fibre"))
    subscribe(
        world.relay,
        world.vendor_key("mobile"),
        "Mobile Max",
        ["telecom.broadband"],
        world.discovery("mobile"),
    )


def _offers(world: IntentWorld, intent: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    fibre, mobile = world.vendor_key("fibre"), world.vendor_key("mobile")
    cheap = send_offer(
        world.relay,
        fibre,
        intent,
        name="Fibre & Co",
        discovery=world.discovery("fibre"),
        amount="29.99",
        features=[{"name": "speed_mbps", "value": "1000"}, {"name": "tv", "value": "yes"}],
        contract_months=0,
    )
    over = send_offer(
        world.relay,
        mobile,
        intent,
        name="Mobile Max",
        discovery=world.discovery("mobile"),
        amount="49.00",
        features=[{"name": "speed_mbps", "value": "300"}],
        contract_months=24,
    )
    return cheap, over


def test_publish_fetch_compare_accept(intent_world: IntentWorld) -> None:
    svc = intent_world.service()
    vendor = VendorService(intent_world.unlocked).add("Old Fibre")
    ContractService(intent_world.unlocked).add(
        vendor.id, plan="Fibre 300", price="45.00", category="internet", start=date(2025, 1, 1)
    )
    draft = _new(svc)
    _subscribe(intent_world)
    published = svc.publish(draft.id)
    assert published.state == "published" and published.relay_url == intent_world.relay
    assert published.published is not None and published.published["author"] == draft.author
    assert published.expires_at is not None
    with pytest.raises(Conflict):
        svc.edit(draft.id, text="too late")
    signed = published.published
    cheap, over = _offers(intent_world, signed)
    # An offer signed by someone else inside a vendor's envelope: the relay cannot see it, the agent
    # keeps it, marked invalid.
    stray = make_offer(
        KeyPair.generate(),
        signed,
        vendor_name="Fibre & Co",
        discovery=intent_world.discovery("fibre"),
        price={"amount": "1", "currency": "EUR", "per": "month"},
        valid_until=m.now_utc() + timedelta(days=1),
    )
    misdirected = seal_offer(stray, signed) | {"vendor": intent_world.vendor_key("fibre").did}
    assert (
        signed_post(f"{intent_world.relay}/offers", intent_world.vendor_key("fibre"), misdirected).status_code
        == 201
    )
    new = svc.fetch(draft.id)
    assert new == 3
    assert svc.fetch(draft.id) == 0  # nothing new the second time
    comparison = svc.compare(draft.id)
    assert [v.record.offer_id for v in comparison.offers] == [cheap["offer_id"], over["offer_id"]]
    best, worst = comparison.offers
    assert best.score is not None and not best.score.violating
    assert worst.score is not None and set(worst.score.violations) == {
        "price",
        "feature:speed_mbps",
        "contract",
    }
    assert comparison.contract is not None and comparison.contract.plan == "Fibre 300"
    assert best.savings is not None and best.savings.amount == (45 - m_dec("29.99")) * 12
    assert [o.offer_id for o in comparison.invalid] == [stray["offer_id"]]
    assert comparison.invalid[0].reason

    result = svc.accept(draft.id, cheap["offer_id"], agent_base_url=intent_world.url, fields=["email"])
    assert result.intent.state == "accepted" and result.intent.accepted_offer == cheap["offer_id"]
    assert result.granted == ["email"]
    assert result.connection is not None and result.connection.connection is not None
    conn = result.connection.connection
    assert conn.term is not None and conn.term["id"] == "intent-only"
    assert conn.person_did != draft.author  # the intent's key never becomes the relationship's
    agent = AgentService(intent_world.unlocked)
    proffer = agent.agreement(conn.id)
    assert proffer["term"]["id"] == "intent-only"
    assert [g.fields for g in agent.grants(conn.id)] == [["email"]]
    states = {o.offer_id: o.state for o in svc.offers(draft.id)}
    assert states[cheap["offer_id"]] == "accepted" and states[over["offer_id"]] == "declined"
    assert result.intent.connection_id == conn.id
    with pytest.raises(Conflict):
        svc.accept(draft.id, over["offer_id"], agent_base_url=intent_world.url)
    # The vendor's side knows which offer the relationship came from.
    kit = intent_world.vendor_apps["fibre"].state.kit
    assert kit.did == cheap["vendor"]


def m_dec(text: str) -> Any:
    from decimal import Decimal

    return Decimal(text)


def test_blocked_vendors_are_excluded_and_keys_stay_apart(intent_world: IntentWorld) -> None:
    agent = AgentService(intent_world.unlocked)
    connected = agent.connect(
        intent_world.discovery("mobile"), agent_base_url=intent_world.url, terms=["service-delivery-only"]
    )
    assert connected.connection is not None
    agent.set_blocked(connected.connection.id, True)
    svc = intent_world.service()
    key = intent_world.vendor_key("mobile")
    subscribe(intent_world.relay, key, "Mobile Max", ["telecom"])
    a = svc.publish(_new(svc).id)
    b = svc.publish(_new(svc).id)
    assert a.published is not None and b.published is not None
    assert a.published["exclude"] == [intent_world.vendor_key("mobile").did]
    authors = {a.author, b.author}
    assert len(authors) == 2
    assert not authors & {c.person_did for c in agent.connections()}
    # A blocked vendor's offer is refused by the relay.
    offer = make_offer(
        key,
        a.published,
        vendor_name="Mobile Max",
        discovery=intent_world.discovery("mobile"),
        price={"amount": "1", "currency": "EUR", "per": "month"},
        valid_until=m.now_utc() + timedelta(days=1),
    )
    assert signed_post(f"{intent_world.relay}/offers", key, seal_offer(offer, a.published)).status_code >= 400


def test_withdraw_expire_and_mute(intent_world: IntentWorld) -> None:
    svc = intent_world.service()
    gone = svc.publish(_new(svc).id)
    assert svc.withdraw(gone.id).state == "withdrawn"
    with pytest.raises(Conflict):
        svc.withdraw(gone.id)
    with pytest.raises(Conflict):
        svc.fetch(gone.id)
    draft = _new(svc)
    assert svc.withdraw(draft.id).state == "withdrawn"  # a draft is closed locally

    short = svc.publish(_new(svc, expires_in_days=1).id)
    later = IntentService(
        intent_world.unlocked, relay_url=intent_world.relay, clock=lambda: m.now_utc() + timedelta(days=2)
    )
    assert {i.id: i.state for i in later.list()}[short.id] == "expired"
    assert svc.get(short.id).state == "expired"

    _subscribe(intent_world)
    interest = svc.publish(
        svc.create("telecom.broadband", "Open to fibre offers", kind="interest", expires_in_days=300).id
    )
    assert interest.state == "published" and interest.expires_at is not None
    assert interest.expires_at > m.now_utc() + timedelta(days=299)
    assert interest.published is not None
    _offers(intent_world, interest.published)
    muted = svc.set_muted(interest.id, True)
    assert muted.muted
    assert svc.fetch(interest.id) == 0  # not polled
    assert svc.compare(interest.id).offers == []
    svc.set_muted(interest.id, False)
    assert svc.fetch(interest.id) == 2
    assert len(svc.compare(interest.id).offers) == 2
    with pytest.raises(InvalidValue):
        svc.set_muted(gone.id, True)  # only interests are muted


def test_an_unreachable_relay_is_a_clear_error(unlocked: UnlockedVault) -> None:
    from openvrm.intents.service import RelayError

    svc = IntentService(unlocked, relay_url="https://relay.invalid")
    draft = _new(svc)
    with pytest.raises((RelayError, InvalidValue)):
        svc.publish(draft.id)
    assert svc.get(draft.id).state == "draft"
    assert KeyPair.generate().did != draft.author


def test_a_vendor_that_refuses_the_terms_leaves_the_offer_accepted_and_retryable(
    intent_world: IntentWorld,
) -> None:
    from openvrm.intents.service import RelayError

    svc = intent_world.service()
    key = intent_world.vendor_key("picky")
    subscribe(intent_world.relay, key, "Picky Shop", ["telecom"], intent_world.discovery("picky"))
    intent = svc.publish(_new(svc).id)
    assert intent.published is not None
    offer = send_offer(
        intent_world.relay,
        key,
        intent.published,
        name="Picky Shop",
        discovery=intent_world.discovery("picky"),
        amount="10",
    )
    assert svc.fetch(intent.id) == 1
    with pytest.raises(RelayError, match="connecting to the vendor failed"):
        svc.accept(intent.id, offer["offer_id"], agent_base_url=intent_world.url, fields=["email"])
    after = svc.get(intent.id)
    assert after.state == "accepted" and after.connection_id is None and after.connect_error
    assert AgentService(intent_world.unlocked).connections() == []
    with pytest.raises(RelayError):  # retrying connects again (and is refused again), no second decision
        svc.accept(intent.id, offer["offer_id"], agent_base_url=intent_world.url)


def test_an_offer_whose_discovery_belongs_to_another_vendor_is_refused(intent_world: IntentWorld) -> None:
    svc = intent_world.service()
    key = intent_world.vendor_key("fibre")
    subscribe(intent_world.relay, key, "Fibre & Co", ["telecom"], intent_world.discovery("fibre"))
    intent = svc.publish(_new(svc).id)
    assert intent.published is not None
    offer = send_offer(
        intent_world.relay,
        key,
        intent.published,
        name="Fibre & Co",
        discovery=intent_world.discovery("mobile"),
        amount="10",  # points at another vendor
    )
    svc.fetch(intent.id)
    with pytest.raises(Conflict, match="another vendor"):
        svc.accept(intent.id, offer["offer_id"], agent_base_url=intent_world.url)
    assert svc.get(intent.id).state == "published"  # nothing was decided
