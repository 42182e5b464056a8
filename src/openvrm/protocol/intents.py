"""Intents, offers and decisions: the signed records of intentcasting (docs/protocol.md section 12).

* An **intent** is signed with a key made for that intent only, so nothing links it to the person or to
  their other intents. It names a taxonomy category, free text, constraints (price ceiling, features,
  quantity, contract length), where and when, the terms it carries (``intent-only`` by default), the
  vendors that must not receive it, and an expiry.
* An **offer** is signed by the vendor, then sealed to the intent's key (:mod:`openvrm.protocol.sealing`):
  the relay carries it without being able to read it.
* A **decision** (accepted, withdrawn, expired) is signed with the intent's key, so only the person who
  published the intent can close it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from openvrm.errors import InvalidValue
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.sealing import open_sealed_json, seal_json_for
from openvrm.protocol.terms import Term, term

MAX_INTENT_DAYS = 90
MAX_INTEREST_DAYS = 366
MAX_OFFER_DAYS = 90


def _expiry_limit(kind: str) -> timedelta:
    return timedelta(days=MAX_INTEREST_DAYS if kind == "interest" else MAX_INTENT_DAYS)


def make_intent(
    key: KeyPair,
    *,
    category: str,
    text: str = "",
    constraints: Mapping[str, Any] | None = None,
    where: Mapping[str, Any] | None = None,
    when: Mapping[str, Any] | None = None,
    terms: Iterable[Term] | None = None,
    exclude: Sequence[str] = (),
    kind: str = "rfp",
    expires_at: datetime,
    intent_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A signed intent; ``key`` must be fresh for this intent (the agent makes one each time)."""
    from openvrm.intents.taxonomy import category as known_category

    known_category(category)
    moment = now or m.now_utc()
    if not moment < expires_at <= moment + _expiry_limit(kind):
        raise InvalidValue(f"an {kind} expires in the future, within {_expiry_limit(kind).days} days")
    record: dict[str, Any] = {
        "type": "intent",
        "vrm": m.VRM_VERSION,
        "intent_id": intent_id or m.new_uuid(),
        "kind": kind,
        "author": key.did,
        "category": category,
        "text": text.strip(),
        "constraints": dict(constraints or {}),
        "terms": [m.term_ref(t) for t in (terms or [term("intent-only")])],
        "created_at": m.timestamp(moment),
        "expires_at": m.timestamp(expires_at),
    }
    if where:
        record["where"] = dict(where)
    if when:
        record["when"] = dict(when)
    if exclude:
        record["exclude"] = sorted(set(exclude))
    out = m.sign(record, key)
    m.validate("intent", out)
    return out


def check_intent(intent: Any, *, now: datetime | None = None) -> None:
    """Schema, signature by its own author key, known category and terms, and not expired."""
    from openvrm.intents.taxonomy import categories

    m.validate("intent", intent)
    m.verify_signers(intent, [intent["author"]])
    if intent["category"] not in categories():
        raise m.ProtocolViolation(f"{intent['category']!r} is not a category of the taxonomy")
    for ref in intent["terms"]:
        m.roster_term(ref)
    created = m.parse_time(intent["created_at"])
    expires = m.parse_time(intent["expires_at"])
    if expires <= created or expires - created > _expiry_limit(intent["kind"]) + timedelta(minutes=5):
        raise m.ProtocolViolation("the intent's expiry is out of range")
    moment = now or m.now_utc()
    if expires <= moment:
        raise m.ProtocolViolation("the intent has expired")
    if created > moment + timedelta(minutes=5):
        raise m.ProtocolViolation("the intent is dated in the future")


def make_offer(
    vendor: KeyPair,
    intent: Mapping[str, Any],
    *,
    vendor_name: str,
    discovery: str,
    price: Mapping[str, str],
    includes: Sequence[str] = (),
    features: Sequence[Mapping[str, Any]] = (),
    conditions: str = "",
    contract_months: int | None = None,
    valid_until: datetime,
    terms: Sequence[Mapping[str, Any]] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The vendor's signed offer (not yet sealed; see :func:`seal_offer`)."""
    record: dict[str, Any] = {
        "type": "offer",
        "vrm": m.VRM_VERSION,
        "offer_id": m.new_uuid(),
        "intent_id": intent["intent_id"],
        "vendor": vendor.did,
        "vendor_name": vendor_name,
        "discovery": discovery,
        "price": dict(price),
        "includes": list(includes),
        "terms": [dict(t) for t in (terms if terms is not None else intent["terms"])],
        "valid_until": m.timestamp(valid_until),
        "created_at": m.timestamp(now or m.now_utc()),
    }
    if features:
        record["features"] = [dict(f) for f in features]
    if conditions:
        record["conditions"] = conditions
    if contract_months is not None:
        record["contract_months"] = contract_months
    out = m.sign(record, vendor)
    m.validate("offer", out)
    return out


def seal_offer(offer: Mapping[str, Any], intent: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope the relay carries: ids in the clear, the signed offer sealed to the intent's key."""
    return {
        "type": "sealed-offer",
        "vrm": m.VRM_VERSION,
        "offer_id": offer["offer_id"],
        "intent_id": intent["intent_id"],
        "vendor": offer["vendor"],
        "sealed": seal_json_for(intent["author"], dict(offer)),
    }


def open_offer(envelope: Mapping[str, Any], intent_key: KeyPair, intent: Mapping[str, Any]) -> dict[str, Any]:
    """Open and check an offer envelope addressed to our intent; raise if anything does not hold."""
    if not isinstance(envelope, Mapping) or envelope.get("type") != "sealed-offer":
        raise m.ProtocolViolation("not a sealed offer")
    offer = open_sealed_json(intent_key, envelope.get("sealed"))
    m.validate("offer", offer)
    if offer["intent_id"] != intent["intent_id"] or envelope.get("intent_id") != intent["intent_id"]:
        raise m.ProtocolViolation("the offer answers another intent")
    if offer["vendor"] != envelope.get("vendor") or offer["offer_id"] != envelope.get("offer_id"):
        raise m.ProtocolViolation("the envelope does not match the offer inside")
    m.verify_signers(offer, [offer["vendor"]])
    for ref in offer["terms"]:
        m.roster_term(ref)
    if not any(ref in intent["terms"] for ref in offer["terms"]):
        raise m.ProtocolViolation("the offer accepts none of the intent's terms")
    return dict(offer)


def make_decision(
    key: KeyPair,
    intent: Mapping[str, Any],
    decision: str,
    *,
    offer_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    if key.did != intent["author"]:
        raise InvalidValue("a decision is signed with the intent's own key")
    if (decision == "accepted") != (offer_id is not None):
        raise InvalidValue("an accepted decision names the offer, and only it does")
    record: dict[str, Any] = {
        "type": "decision",
        "vrm": m.VRM_VERSION,
        "intent_id": intent["intent_id"],
        "author": key.did,
        "decision": decision,
        "created_at": m.timestamp(now or m.now_utc()),
    }
    if offer_id is not None:
        record["offer_id"] = offer_id
    out = m.sign(record, key)
    m.validate("decision", out)
    return out


def check_decision(decision: Any, intent_author: str) -> None:
    m.validate("decision", decision)
    if decision["author"] != intent_author:
        raise SignatureError("the decision is not signed with the intent's key")
    m.verify_signers(decision, [intent_author])
