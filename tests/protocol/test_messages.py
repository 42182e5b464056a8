"""Signed protocol records: building, checking, tampering, and whole-chain verification."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from openvrm.errors import InvalidValue
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.terms import term

NOW = datetime(2026, 11, 20, 9, 15, 2, tzinfo=UTC)
AGENT = {"ledger": "https://agent.example/vrm/p/h/ledger", "grants": "https://agent.example/vrm/p/h/grants"}


@pytest.fixture
def parties() -> tuple[KeyPair, KeyPair]:
    return KeyPair.generate(), KeyPair.generate()


def _agreement(person: KeyPair, vendor: KeyPair) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    proffer = m.make_proffer(
        person,
        vendor.did,
        [term("goods-and-services-only"), term("service-delivery-only")],
        agent=AGENT,
        now=NOW,
    )
    answer = m.make_answer(vendor, proffer, "accept", chosen=term("service-delivery-only"), now=NOW)
    agreement = m.countersign(vendor, m.make_agreement(person, proffer, answer, now=NOW))
    return proffer, answer, agreement


def test_a_full_exchange_checks_out(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    proffer, answer, agreement = _agreement(person, vendor)
    assert [t.id for t in m.check_proffer(proffer, vendor_did=vendor.did, now=NOW)] == [
        "goods-and-services-only",
        "service-delivery-only",
    ]
    assert m.check_answer(answer, proffer).id == "service-delivery-only"  # type: ignore[union-attr]
    m.check_agreement(agreement, proffer=proffer, answer=answer)
    assert agreement["agreement_id"] == m.h(m.unsigned(agreement, "agreement_id"))
    assert [s["kid"].split("#")[0] for s in agreement["signatures"]] == [person.did, vendor.did]


def test_signatures_are_detached_ed25519_jws(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    proffer, _, _ = _agreement(person, vendor)
    (sig,) = proffer["signatures"]
    head, payload, _ = sig["jws"].split(".")
    assert payload == ""
    import base64
    import json

    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "Ed25519", "kid": sig["kid"]}


def test_signatures_interoperate_with_joserfcs_own_ed25519(parties: tuple[KeyPair, KeyPair]) -> None:
    """The registry checks signatures with libsodium; a token is the same as joserfc's own, both ways."""
    from joserfc import jws
    from joserfc.errors import BadSignatureError
    from joserfc.jwk import OKPKey

    person, _ = parties
    key = OKPKey.import_key(person.private_key)
    token = jws.serialize_compact({"alg": "Ed25519"}, b"payload", key, algorithms=["Ed25519"])
    assert jws.deserialize_compact(token, key, registry=m._REGISTRY).payload == b"payload"
    ours = jws.serialize_compact({"alg": "Ed25519"}, b"payload", key, registry=m._REGISTRY)
    assert ours == token  # Ed25519 signatures are deterministic
    assert jws.deserialize_compact(ours, key, algorithms=["Ed25519"]).payload == b"payload"
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(tampered, key, registry=m._REGISTRY)
    assert isinstance(m._REGISTRY.get_alg("Ed25519"), m._Ed25519)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("terms", 0, "legal_sha256"), "0" * 64),
        (("person",), "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH"),
        (("created_at",), "2026-11-20T09:15:03Z"),
        (("agent", "ledger"), "https://evil.example/steal"),
    ],
)
def test_any_change_to_a_signed_proffer_is_refused(
    parties: tuple[KeyPair, KeyPair], path: tuple[Any, ...], value: Any
) -> None:
    person, vendor = parties
    proffer, _, _ = _agreement(person, vendor)
    changed = copy.deepcopy(proffer)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises((SignatureError, m.ProtocolViolation)):
        m.check_proffer(changed, vendor_did=vendor.did, now=NOW)


def test_proffer_rules(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    proffer, _, _ = _agreement(person, vendor)
    with pytest.raises(m.ProtocolViolation, match="another vendor"):
        m.check_proffer(proffer, vendor_did=KeyPair.generate().did, now=NOW)
    with pytest.raises(m.ProtocolViolation, match="expired"):
        m.check_proffer(proffer, vendor_did=vendor.did, now=NOW + timedelta(days=8))
    with pytest.raises(InvalidValue, match="each term once"):
        m.make_proffer(person, vendor.did, [term("no-ai-training")] * 2)
    with pytest.raises(InvalidValue, match="1 to 5"):
        m.make_proffer(person, vendor.did, [])
    signed_by_other = m.sign(m.unsigned(proffer), vendor)
    with pytest.raises(SignatureError):
        m.check_proffer(signed_by_other, vendor_did=vendor.did, now=NOW)


def test_answer_rules(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    proffer, _, _ = _agreement(person, vendor)
    with pytest.raises(InvalidValue):
        m.make_answer(vendor, proffer, "accept", chosen=term("no-ai-training"))
    with pytest.raises(InvalidValue):
        m.make_answer(vendor, proffer, "alternative", chosen=term("service-delivery-only"))
    with pytest.raises(InvalidValue):
        m.make_answer(vendor, proffer, "maybe")
    alternative = m.make_answer(vendor, proffer, "alternative", chosen=term("no-ai-training"), reason="x")
    assert m.check_answer(alternative, proffer).id == "no-ai-training"  # type: ignore[union-attr]
    reject = m.make_answer(vendor, proffer, "reject", reason="no")
    assert m.check_answer(reject, proffer) is None
    # An answer made by someone else, or to another proffer, is refused.
    impostor = m.make_answer(KeyPair.generate(), proffer, "reject")
    with pytest.raises(m.ProtocolViolation):
        m.check_answer(impostor, proffer)
    other = m.make_proffer(person, vendor.did, [term("no-ai-training")])
    with pytest.raises(m.ProtocolViolation, match="does not answer"):
        m.check_answer(reject, other)


def test_agreement_rules(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    proffer, answer, agreement = _agreement(person, vendor)
    forged = copy.deepcopy(agreement)
    forged["term"] = m.term_ref(term("no-ai-training"))
    with pytest.raises(m.ProtocolViolation, match="not the hash"):
        m.check_agreement(forged, proffer=proffer, answer=answer)
    one_signature = agreement | {"signatures": agreement["signatures"][:1]}
    with pytest.raises((SignatureError, m.ProtocolViolation)):
        m.check_agreement(one_signature)
    with pytest.raises(m.ProtocolViolation, match="another vendor"):
        m.countersign(KeyPair.generate(), m.make_agreement(person, proffer, answer))
    reject = m.make_answer(vendor, proffer, "reject")
    with pytest.raises(InvalidValue):
        m.make_agreement(person, proffer, reject)


def _events(
    person: KeyPair, vendor: KeyPair, agreement: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    aid = agreement["agreement_id"]
    grant = m.make_event(person, aid, "grant", {"grant_id": "g1", "fields": ["email"]}, None, now=NOW)
    receipt = m.make_event(vendor, aid, "receipt", {"total": "9.99", "currency": "EUR"}, None, now=NOW)
    revoke = m.make_event(person, aid, "revocation", {"grant_id": "g1"}, grant["event_id"], now=NOW)
    return [
        (grant, m.make_ack(vendor, grant, now=NOW)),
        (receipt, m.make_ack(person, receipt, now=NOW)),
        (revoke, m.make_ack(vendor, revoke, now=NOW)),
    ]


def test_events_chain_per_author_and_verify(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    _, _, agreement = _agreement(person, vendor)
    entries = _events(person, vendor, agreement)
    report = m.verify_chain(agreement, entries)
    assert report.ok and (report.events, report.acknowledged) == (3, 3)
    assert report.to_json()["ok"] is True


@pytest.mark.parametrize(
    ("position", "break_it", "reason"),
    [
        (2, lambda e, a: e["payload"].update(total="0.01"), "payload_hash"),
        (3, lambda e, a: e.update(previous_id=None), "event_id"),
        (1, lambda e, a: e.update(created_at="2026-11-20T09:15:09Z"), "event_id"),
        (3, lambda e, a: a.update(status="refused"), "acknowledgement"),
        (3, lambda e, a: a.update(received_at="2026-11-20T09:16:00Z"), "does not verify"),
        (2, lambda e, a: e["signatures"][0].update(jws=e["signatures"][0]["jws"][:-4] + "AAAA"), ""),
    ],
)
def test_verify_names_the_first_broken_link(
    parties: tuple[KeyPair, KeyPair], position: int, break_it: Any, reason: str
) -> None:
    person, vendor = parties
    _, _, agreement = _agreement(person, vendor)
    entries = _events(person, vendor, agreement)
    event, ack = entries[position - 1]
    break_it(event, ack)
    report = m.verify_chain(agreement, entries)
    assert not report.ok
    assert report.broken_at == position
    assert reason in (report.reason or "")


def test_a_well_formed_event_off_the_head_is_refused(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    _, _, agreement = _agreement(person, vendor)
    entries = _events(person, vendor, agreement)
    fork = m.make_event(person, agreement["agreement_id"], "revocation", {"grant_id": "g1"}, None, now=NOW)
    report = m.verify_chain(agreement, [entries[0], entries[1], (fork, None)])
    assert (report.broken_at, report.broken_event) == (3, fork["event_id"])
    assert "chain head" in (report.reason or "")


def test_a_dropped_event_breaks_the_chain(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    _, _, agreement = _agreement(person, vendor)
    entries = _events(person, vendor, agreement)
    report = m.verify_chain(agreement, [entries[1], entries[2]])
    assert (report.ok, report.broken_at) == (False, 2)


def test_wrong_author_subtypes_and_after_end(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    _, _, agreement = _agreement(person, vendor)
    aid = agreement["agreement_id"]
    vendor_grant = m.make_event(vendor, aid, "grant", {"fields": ["email"]}, None, now=NOW)
    with pytest.raises(m.ProtocolViolation, match="cannot come from"):
        m.check_event(vendor_grant, agreement, author=vendor.did, previous_id=None)
    end = m.make_event(person, aid, "end-of-relationship", {"reason": "moving"}, None, now=NOW)
    after = m.make_event(vendor, aid, "receipt", {"total": "1.00"}, None, now=NOW)
    gdpr = m.make_event(vendor, aid, "gdpr-response", {"status": "done"}, None, now=NOW)
    assert m.verify_chain(agreement, [(end, None), (gdpr, None)]).ok
    report = m.verify_chain(agreement, [(end, None), (after, None)])
    assert report.broken_at == 2 and "end of the relationship" in (report.reason or "")


def test_ack_rules(parties: tuple[KeyPair, KeyPair]) -> None:
    person, vendor = parties
    _, _, agreement = _agreement(person, vendor)
    (grant, ack), *_ = _events(person, vendor, agreement)
    m.check_ack(ack, grant, author=vendor.did)
    with pytest.raises(m.ProtocolViolation, match="other party"):
        m.check_ack(m.make_ack(person, grant), grant, author=person.did)
    refused = m.make_ack(vendor, grant, accepted=False, reason="bad")
    assert refused["status"] == "refused" and refused["reason"] == "bad"


def test_schema_errors_name_the_place() -> None:
    person, vendor = KeyPair.generate(), KeyPair.generate()
    proffer = m.make_proffer(person, vendor.did, [term("no-ai-training")])
    with pytest.raises(m.ProtocolViolation, match="at terms"):
        m.validate("proffer", proffer | {"terms": "all"})
    with pytest.raises(m.ProtocolViolation, match="JSON object"):
        m.validate("answer", ["not", "an", "object"])


def test_times_are_utc_seconds() -> None:
    assert m.timestamp(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert m.parse_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(m.ProtocolViolation):
        m.parse_time("2026-01-02 03:04")
    with pytest.raises(InvalidValue):
        m.timestamp(datetime(2026, 1, 2))  # noqa: DTZ001 - the naive value is the point


def test_packaged_schemas_are_the_documented_ones() -> None:
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "protocol" / "schemas"
    for name in m.SCHEMA_NAMES:
        assert m.schema(name) == __import__("json").loads((docs / f"{name}.schema.json").read_text())
