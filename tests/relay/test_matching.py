"""Subscriptions, the filter indexes and matching, on SQLite and PostgreSQL; indexed == naive."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from openvrm.errors import InvalidValue
from openvrm.protocol.identity import KeyPair
from openvrm.relay import IntentFacts, Relay
from openvrm.relay.matching import words
from openvrm.relay.store import RelayBase, Vendor

from .conftest import intent_for, make_relay


def vendor(relay: Relay, name: str = "V") -> str:
    did = KeyPair.generate().did
    relay.register_vendor(did, {"name": name})
    return did


def matched(relay: Relay, intent: dict) -> set[str]:
    got = {v for _, v in relay.match(intent)}
    assert got == {v for _, v in relay.naive_match(intent)}
    return got


def test_categories_cover_their_children(relay: Relay) -> None:
    parent, child, other = vendor(relay), vendor(relay), vendor(relay)
    relay.subscribe(parent, {"categories": ["telecom"]})
    relay.subscribe(child, {"categories": ["telecom.mobile"]})
    relay.subscribe(other, {"categories": ["telecom.broadband", "energy"]})
    assert matched(relay, intent_for(KeyPair.generate(), "telecom.mobile")) == {parent, child}
    assert matched(relay, intent_for(KeyPair.generate(), "telecom")) == {parent}
    assert matched(relay, intent_for(KeyPair.generate(), "energy.gas")) == {other}


def test_regions_prices_and_keywords(relay: Relay) -> None:
    anywhere, fr, ara, de = (vendor(relay) for _ in range(4))
    relay.subscribe(anywhere, {"categories": ["telecom"]})
    relay.subscribe(fr, {"categories": ["telecom"], "regions": ["FR"]})
    relay.subscribe(ara, {"categories": ["telecom"], "regions": ["fr-ara"]})
    relay.subscribe(de, {"categories": ["telecom"], "regions": ["DE"]})
    key = KeyPair.generate
    assert matched(relay, intent_for(key(), country="FR")) == {anywhere, fr}
    assert matched(relay, intent_for(key(), country="FR", region="ARA")) == {anywhere, fr, ara}
    assert matched(relay, intent_for(key(), country="FR", region="FR-ARA")) == {anywhere, fr, ara}
    assert matched(relay, intent_for(key(), country=None)) == {anywhere}

    cheap, dear, usd, capped = (vendor(relay) for _ in range(4))
    relay.subscribe(cheap, {"categories": ["energy"], "price_min": {"amount": "10", "currency": "EUR"}})
    relay.subscribe(dear, {"categories": ["energy"], "price_min": {"amount": "30.50", "currency": "EUR"}})
    relay.subscribe(usd, {"categories": ["energy"], "price_min": {"amount": "99", "currency": "USD"}})
    relay.subscribe(capped, {"categories": ["energy"], "price_max": {"amount": "5", "currency": "EUR"}})
    assert matched(relay, intent_for(key(), "energy", price="20")) == {cheap, usd, capped}
    assert matched(relay, intent_for(key(), "energy", price="30.50")) == {cheap, dear, usd, capped}
    assert matched(relay, intent_for(key(), "energy", price=None)) == {cheap, dear, usd, capped}
    assert matched(relay, intent_for(key(), "energy", price="5", currency="USD")) == {cheap, dear, capped}

    esim, bike = vendor(relay), vendor(relay)
    relay.subscribe(esim, {"categories": ["mobility"], "keywords": ["eSIM", "Électrique"]})
    relay.subscribe(bike, {"categories": ["mobility"], "keywords": ["cargo"]})
    assert matched(relay, intent_for(key(), "mobility.bike", text="Un vélo ELECTRIQUE, svp")) == {esim}
    assert matched(relay, intent_for(key(), "mobility.bike", text="A cargo-bike")) == {bike}
    assert matched(relay, intent_for(key(), "mobility.bike", text="")) == set()


def test_an_excluded_vendor_never_matches(relay: Relay) -> None:
    blocked, other = vendor(relay), vendor(relay)
    for v in (blocked, other):
        relay.subscribe(v, {"categories": ["telecom"]})
    intent = intent_for(KeyPair.generate(), exclude=(blocked,))
    assert matched(relay, intent) == {other}
    assert relay.publish(intent, intent["author"])["matched"] == 1
    assert relay.feed(blocked)["items"] == []
    assert [i["intent"]["intent_id"] for i in relay.feed(other)["items"]] == [intent["intent_id"]]


def test_subscription_validation_limits_and_deletion(tmp_path: Path, store_url: str) -> None:
    relay = make_relay(tmp_path, store_url, max_subscriptions_per_vendor=2)
    try:
        v = vendor(relay)
        for bad in (
            {},
            {"categories": []},
            {"categories": ["nope"]},
            {"categories": ["telecom"], "regions": ["France"]},
            {"categories": ["telecom"], "keywords": ["two words"]},
            {"categories": ["telecom"], "price_min": {"amount": "1.234", "currency": "EUR"}},
            {
                "categories": ["telecom"],
                "price_min": {"amount": "9", "currency": "EUR"},
                "price_max": {"amount": "5", "currency": "EUR"},
            },  # fmt: skip
            {"categories": ["telecom"], "colour": "red"},
        ):
            with pytest.raises(InvalidValue):
                relay.subscribe(v, bad)
        first = relay.subscribe(v, {"categories": ["telecom"], "keywords": ["fibre"]})
        relay.subscribe(v, {"categories": ["energy"]})
        with pytest.raises(Exception, match="at most 2"):
            relay.subscribe(v, {"categories": ["media"]})
        assert [s["subscription_id"] for s in relay.list_subscriptions(v)][0] == first
        relay.delete_subscription(v, first)
        assert len(relay.list_subscriptions(v)) == 1
        assert matched(relay, intent_for(KeyPair.generate(), text="fibre")) == set()
    finally:
        relay.close()


def test_words_fold_case_and_accents() -> None:
    assert words("Vélo ÉLECTRIQUE, cargo-bike!") == ["velo", "electrique", "cargo", "bike"]


# -- indexed == naive, on random data -----------------------------------------------------------------

CATS = ["telecom", "telecom.mobile", "telecom.broadband", "energy", "energy.gas", "mobility.bike"]
REGIONS = ["FR", "FR-ARA", "FR-IDF", "DE", "DE-BY"]
WORDS = ["fibre", "esim", "cargo", "green", "cheap"]
CURRENCIES = ["EUR", "USD"]
VENDORS = [KeyPair.generate().did for _ in range(5)]

subscriptions = st.lists(
    st.fixed_dictionaries(
        {
            "vendor": st.sampled_from(VENDORS),
            "categories": st.lists(st.sampled_from(CATS), min_size=1, max_size=3, unique=True),
            "regions": st.lists(st.sampled_from(REGIONS), max_size=2, unique=True),
            "keywords": st.lists(st.sampled_from(WORDS), max_size=2, unique=True),
            "price_min": st.none() | st.tuples(st.integers(0, 40), st.sampled_from(CURRENCIES)),
        }
    ),
    max_size=12,
)
intents = st.builds(
    IntentFacts,
    category=st.sampled_from(CATS),
    regions=st.sampled_from([(), ("FR",), ("FR", "FR-ARA"), ("DE", "DE-BY"), ("IT",)]),
    price_max=st.none() | st.integers(0, 4000),
    currency=st.sampled_from(CURRENCIES),
    words=st.lists(st.sampled_from([*WORDS, "other"]), max_size=3, unique=True).map(tuple),
    exclude=st.lists(st.sampled_from(VENDORS), max_size=2, unique=True).map(tuple),
)


def _load(relay: Relay, subs: list[dict]) -> None:
    with relay.db.write() as s:
        for table in reversed(RelayBase.metadata.sorted_tables):
            s.execute(delete(table))
        s.add_all(Vendor(did=v, name="v", created_at=relay.clock()) for v in VENDORS)
    for sub in subs:
        body: dict = {"categories": sub["categories"], "regions": sub["regions"], "keywords": sub["keywords"]}
        if sub["price_min"] is not None:
            body["price_min"] = {"amount": str(sub["price_min"][0]), "currency": sub["price_min"][1]}
        relay.subscribe(sub["vendor"], body)


def _check_property(relay: Relay, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(subs=subscriptions, facts=st.lists(intents, min_size=1, max_size=4))
    def prop(subs: list[dict], facts: list[IntentFacts]) -> None:
        _load(relay, subs)
        for f in facts:
            assert set(relay.match(f)) == set(relay.naive_match(f))

    prop()


def test_indexed_matching_equals_naive(relay: Relay, backend: str) -> None:
    _check_property(relay, 60 if backend == "sqlite" else 25)


def test_matching_uses_the_category_index(tmp_path: Path) -> None:
    """The plan of the matching query looks subscriptions up by category, it does not scan them all."""
    relay = make_relay(tmp_path, f"sqlite:///{tmp_path / secrets.token_hex(4)}.db")
    try:
        v = vendor(relay)
        for i in range(50):
            relay.subscribe(v, {"categories": [CATS[i % len(CATS)]]})
        from sqlalchemy import text

        from openvrm.relay import matching

        captured: list[str] = []
        with relay.db.read() as s:
            conn = s.connection()
            from sqlalchemy import event

            def grab(conn_: object, cursor: object, statement: str, *args: object) -> None:
                captured.append(statement)

            event.listen(conn, "before_cursor_execute", grab)
            matching.match(s, IntentFacts("telecom.mobile", ("FR",), 1000, "EUR", ("fibre",)))
            event.remove(conn, "before_cursor_execute", grab)
            assert len(captured) == 1  # one query per intent
            compiled = captured[0]
        with relay.db.read() as s:
            sql = compiled.replace("?", "'x'")
            plan = " ".join(str(r) for r in s.execute(text("EXPLAIN QUERY PLAN " + sql)))
        assert "ix_relay_subscription_categories_category" in plan or "sqlite_autoindex" in plan
    finally:
        relay.close()
