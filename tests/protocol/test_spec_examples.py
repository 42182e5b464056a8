"""docs/protocol.md is tested: its schemas are valid; every worked example passes its schema and hashes.

Each example is a fenced ```json block preceded by ``<!-- schema: NAME -->``; NAME is the file
``docs/protocol/schemas/NAME.schema.json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jsonschema import Draft202012Validator, FormatChecker

from openvrm.protocol.terms import term

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
SCHEMAS = ROOT / "docs" / "protocol" / "schemas"
EXAMPLE = re.compile(r"<!-- schema: ([a-z-]+) -->\n```json\n(.*?)\n```", flags=re.S)
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _schemas() -> dict[str, dict[str, Any]]:
    return {p.name.removesuffix(".schema.json"): json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}


def _examples() -> list[tuple[str, dict[str, Any]]]:
    return [(name, json.loads(body)) for name, body in EXAMPLE.findall(DOC.read_text())]


def _jcs(value: object) -> bytes:
    # RFC 8785 for the values the examples use (strings, integers, booleans, null; no floats).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _h(value: object) -> str:
    return "sha256:" + hashlib.sha256(_jcs(value)).hexdigest()


def _unsigned(record: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("signatures", *drop)}


def _b64u(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _did_key(did: str) -> Ed25519PublicKey:
    n = 0
    for ch in did.removeprefix("did:key:z"):
        n = n * 58 + B58.index(ch)
    raw = n.to_bytes(34, "big")
    assert raw[:2] == b"\xed\x01", "not an Ed25519 did:key"
    return Ed25519PublicKey.from_public_bytes(raw[2:])


def _verify(record: dict[str, Any]) -> list[str]:
    """Check every detached JWS of a record; return the signers' DIDs."""
    payload = base64.urlsafe_b64encode(_jcs(_unsigned(record))).rstrip(b"=").decode()
    signers = []
    for sig in record["signatures"]:
        header_b64, empty, sig_b64 = sig["jws"].split(".")
        assert empty == ""
        header = json.loads(_b64u(header_b64))
        assert header == {"alg": "Ed25519", "kid": sig["kid"]}
        did = sig["kid"].split("#")[0]
        _did_key(did).verify(_b64u(sig_b64), f"{header_b64}.{payload}".encode())
        signers.append(did)
    return signers


def test_the_document_is_marked_as_a_draft() -> None:
    text = DOC.read_text()
    assert "version 0.1 (DRAFT)" in text.splitlines()[0]
    assert "## 13. Not specified yet" in text


@pytest.mark.parametrize("name", sorted(_schemas()))
def test_every_schema_is_valid(name: str) -> None:
    schema = _schemas()[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_schema_has_an_example_and_every_example_a_schema() -> None:
    named = {name for name, _ in _examples()}
    assert named == set(_schemas())
    assert set(_schemas()) == {
        "discovery",
        "proffer",
        "answer",
        "agreement",
        "ledger-event",
        "acknowledgement",
        "intent",
        "offer",
        "decision",
    }


@pytest.mark.parametrize(("name", "example"), _examples(), ids=[n for n, _ in _examples()])
def test_every_example_validates(name: str, example: dict[str, Any]) -> None:
    validator = Draft202012Validator(_schemas()[name], format_checker=FormatChecker())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(example)]
    assert errors == []


def test_schemas_refuse_what_the_text_forbids() -> None:
    schemas = _schemas()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, ex in _examples():
        by_name.setdefault(name, []).append(ex)
    answer = Draft202012Validator(schemas["answer"])
    accept = next(a for a in by_name["answer"] if a["decision"] == "accept")
    assert not answer.is_valid(_unsigned(accept, "term") | {"signatures": accept["signatures"]})
    assert not answer.is_valid(accept | {"decision": "reject"})
    event = Draft202012Validator(schemas["ledger-event"])
    assert not event.is_valid(by_name["ledger-event"][0] | {"subtype": "receipt"})  # a permission event
    assert not event.is_valid(by_name["ledger-event"][0] | {"event_id": "sha256:abc"})
    agreement = Draft202012Validator(schemas["agreement"])
    only_one = by_name["agreement"][0] | {"signatures": by_name["agreement"][0]["signatures"][:1]}
    assert not agreement.is_valid(only_one)


def test_example_hashes_signatures_and_chain_hold() -> None:
    examples = _examples()
    (proffer,) = [ex for n, ex in examples if n == "proffer"]
    answers = [ex for n, ex in examples if n == "answer"]
    (agreement,) = [ex for n, ex in examples if n == "agreement"]
    events = sorted((ex for n, ex in examples if n == "ledger-event"), key=lambda e: e["created_at"])
    acks = [ex for n, ex in examples if n == "acknowledgement"]

    assert _verify(proffer) == [proffer["person"]]
    for ref in proffer["terms"]:
        assert term(ref["id"], ref["version"]).legal_sha256 == ref["legal_sha256"]
    for answer in answers:
        assert answer["proffer_hash"] == _h(_unsigned(proffer))
        assert _verify(answer) == [answer["vendor"]]
    (accept,) = [a for a in answers if a["decision"] == "accept"]
    assert accept["term"] in proffer["terms"]

    assert agreement["agreement_id"] == _h(_unsigned(agreement, "agreement_id"))
    assert agreement["answer_hash"] == _h(_unsigned(accept))
    assert agreement["term"] == accept["term"]
    assert _verify(agreement) == [agreement["person"], agreement["vendor"]]

    heads: dict[str, str | None] = {agreement["person"]: None, agreement["vendor"]: None}
    for event in events:  # each author's events chain on that author's previous one (ADR 0006)
        assert event["agreement_id"] == agreement["agreement_id"]
        assert event["payload_hash"] == _h(event["payload"])
        previous = heads[event["author"]]
        assert event["previous_id"] == previous
        expected = _h([event["agreement_id"], event["payload_hash"], previous, event["created_at"]])
        assert event["event_id"] == expected
        assert _verify(event) == [event["author"]]
        heads[event["author"]] = event["event_id"]
    assert all(heads.values()), "both parties author events in the examples"

    ids = {e["event_id"]: e for e in events}
    for ack in acks:
        acked = ids[ack["event_id"]]
        assert ack["author"] != acked["author"], "the other side acknowledges"
        assert _verify(ack) == [ack["author"]]


def test_examples_are_what_the_protocol_code_derives() -> None:
    """Keys, hashes, chains and signatures in the document are those openvrm.protocol computes."""
    from tests.protocol.spec_examples import derive

    text = DOC.read_text()
    assert derive(text) == text, "run: python -m tests.protocol.spec_examples --write"


def test_the_real_code_accepts_the_examples_end_to_end() -> None:
    from openvrm.protocol import messages as m

    examples = _examples()
    (proffer,) = [ex for n, ex in examples if n == "proffer"]
    (agreement,) = [ex for n, ex in examples if n == "agreement"]
    answers = [ex for n, ex in examples if n == "answer"]
    accept = next(a for a in answers if a["decision"] == "accept")
    (discovery,) = [ex for n, ex in examples if n == "discovery"]
    m.validate("discovery", discovery)
    m.check_agreement(agreement, proffer=proffer, answer=accept)
    for answer in answers:
        m.check_answer(answer, proffer)
    events = sorted((ex for n, ex in examples if n == "ledger-event"), key=lambda e: e["created_at"])
    acks = {a["event_id"]: a for n, a in examples if n == "acknowledgement"}
    report = m.verify_chain(agreement, [(e, acks.get(e["event_id"])) for e in events])
    assert report.ok, report
    assert (report.events, report.acknowledged) == (len(events), len(acks))


def test_the_intent_examples_pass_the_real_checks() -> None:
    from openvrm.protocol import intents
    from openvrm.protocol import messages as m

    examples = _examples()
    (intent,) = [ex for n, ex in examples if n == "intent"]
    (offer,) = [ex for n, ex in examples if n == "offer"]
    (decision,) = [ex for n, ex in examples if n == "decision"]
    from datetime import UTC, datetime

    intents.check_intent(intent, now=datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    m.verify_signers(offer, [offer["vendor"]])
    assert offer["intent_id"] == intent["intent_id"] and offer["terms"] == intent["terms"]
    intents.check_decision(decision, intent["author"])
    assert intent["author"] != next(ex for n, ex in examples if n == "proffer")["person"], "a fresh key"
