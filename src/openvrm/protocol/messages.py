"""The protocol's signed records: proffer, answer, agreement, ledger event and acknowledgement.

Both sides (the person's agent and the vendor kit) build and check records with these functions, so the
rules of docs/protocol.md live in one place:

* every record is checked against its JSON Schema (bundled in :mod:`openvrm.protocol.schemas`);
* a record is signed with a compact JWS (``alg: Ed25519``, RFC 9864) over the RFC 8785 form of the
  record without its ``signatures`` member, with the payload detached (``header..signature``);
* hashes are ``sha256:<hex>`` of the RFC 8785 form;
* an agreement's id is the hash of the agreement without ``agreement_id`` and ``signatures``;
* a ledger event's id is ``H([agreement_id, payload_hash, previous_id, created_at])``; each author's events
  form their own chain under the agreement (``previous_id`` is the author's previous event), see ADR 0006.

Every check raises :class:`ProtocolViolation` (a 422 problem, code ``protocol-violation``) or
:class:`~openvrm.protocol.errors.SignatureError` (401) saying exactly what is wrong.
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import jsonschema_rs
from cryptography.exceptions import InvalidSignature
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import OKPKey
from jsonschema import Draft202012Validator, FormatChecker

from openvrm.errors import InvalidValue, NotFound
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair, public_key_from_did, verify_ed25519
from openvrm.protocol.records import canonical_json, record_hash
from openvrm.protocol.terms import Term, term

VRM_VERSION = "0.1"
JWS_ALG = "Ed25519"
PROFFER_TTL = timedelta(days=7)
MAX_PROFFER_TERMS = 5

SUBTYPES: dict[str, frozenset[str]] = {
    "data": frozenset({"receipt", "invoice", "profile-update", "granted-data"}),
    "permission": frozenset({"grant", "revocation", "data-request", "data-request-answer"}),
    "status": frozenset({"notice", "end-of-relationship", "gdpr-request", "gdpr-response"}),
}
PERSON_SUBTYPES = frozenset(
    {
        "profile-update",
        "granted-data",
        "grant",
        "revocation",
        "data-request-answer",
        "end-of-relationship",
        "gdpr-request",
    }
)
VENDOR_SUBTYPES = frozenset({"receipt", "invoice", "data-request", "notice", "gdpr-response"})
AFTER_END = frozenset({"gdpr-response", "gdpr-request"})
"""What may still follow an end-of-relationship event."""


class ProtocolViolation(InvalidValue):
    """A record that breaks the specification (schema, hashes, chain, or what the agreement allows)."""

    code = "protocol-violation"
    title = "The message breaks the openvrm protocol"


# -- basics ----------------------------------------------------------------------------------------------


def h(value: Any) -> str:
    """``sha256:<hex>`` of the RFC 8785 form of ``value``."""
    return "sha256:" + record_hash(value)


def now_utc() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` and whole seconds, as every record writes times."""
    if moment.tzinfo is None:
        raise InvalidValue("protocol times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise ProtocolViolation(f"{value!r} is not a UTC time like 2026-11-20T09:15:02Z") from None


def new_uuid() -> str:
    return str(uuid.uuid4())


def unsigned(record: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("signatures", *drop)}


def kid_of(did: str) -> str:
    """The verification method id of a did:key: ``did:key:z...#z...``."""
    return f"{did}#{did.removeprefix('did:key:')}"


def did_of_kid(kid: str) -> str:
    return kid.partition("#")[0]


def term_ref(t: Term) -> dict[str, str]:
    return {"id": t.id, "version": t.version, "legal_sha256": t.legal_sha256}


def roster_term(ref: Mapping[str, Any]) -> Term:
    """The roster term a reference names, refusing a version or legal hash we do not know."""
    try:
        found = term(str(ref["id"]), str(ref["version"]))
    except (KeyError, NotFound, InvalidValue):
        raise ProtocolViolation(
            f"the term {ref.get('id')!r} at {ref.get('version')!r} is not in the roster"
        ) from None
    if found.legal_sha256 != ref.get("legal_sha256"):
        raise ProtocolViolation(f"the legal text hash of term {found.id} does not match the roster")
    return found


# -- schemas ---------------------------------------------------------------------------------------------

SCHEMA_NAMES = (
    "discovery",
    "proffer",
    "answer",
    "agreement",
    "ledger-event",
    "acknowledgement",
    "intent",
    "offer",
    "decision",
)


@functools.cache
def schema(name: str) -> dict[str, Any]:
    if name not in SCHEMA_NAMES:
        raise NotImplementedError(name)
    text = resources.files("openvrm.protocol.schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    value: dict[str, Any] = json.loads(text)
    return value


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    """The reference validator (python-jsonschema): it words the error of a record that fails."""
    return Draft202012Validator(schema(name), format_checker=FormatChecker())


def _formats_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["format"]} if isinstance(node.get("format"), str) else set()
        for value in node.values():
            found |= _formats_in(value)
        return found
    if isinstance(node, list):
        return set().union(*(_formats_in(v) for v in node)) if node else set()
    return set()


@functools.cache
def _fast_validator(name: str) -> jsonschema_rs.Validator:
    """The same schema compiled once by jsonschema-rs, for the common case of a valid record.

    Its ``format`` checks are python-jsonschema's own (every format the schema names is handed to
    :class:`FormatChecker`, which passes formats it has no checker for), so the two validators judge
    formats alike; no network retrieval of references (the bundled schemas only use local ``$ref``).
    """
    checker = FormatChecker()

    def check(fmt: str) -> Any:
        return lambda value: checker.conforms(value, fmt)

    formats = {fmt: check(fmt) for fmt in _formats_in(schema(name))}
    return jsonschema_rs.Draft202012Validator(
        schema(name), formats=formats, validate_formats=True, ignore_unknown_formats=False, offline=True
    )


def validate(name: str, record: Any) -> None:
    """Check ``record`` against the named schema; the error names the first failing place.

    A record passes only if the compiled validator (jsonschema-rs) accepts it; a record it refuses is
    described by python-jsonschema's first error, and stays refused even if that one finds nothing.
    """
    if not isinstance(record, dict):
        raise ProtocolViolation(f"a {name} must be a JSON object")
    try:
        fast = _fast_validator(name)
        if fast.is_valid(record):  # the common case: compiled, no error list to build
            return
        found = next(iter(fast.iter_errors(record)), None)
        fast_error = "does not match the schema"
        if found is not None:
            where = "/".join(str(p) for p in found.instance_path) or "(top level)"
            fast_error = f"at {where}: {found.message[:200]}"
    except ValueError as exc:  # a value jsonschema-rs cannot take as JSON: let the reference decide
        fast_error = f"(not JSON: {str(exc)[:200]})"
        if _validator(name).is_valid(record):
            return
    errors = sorted(_validator(name).iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ProtocolViolation(f"the {name} is invalid at {where}: {first.message[:200]}")
    raise ProtocolViolation(f"the {name} is invalid {fast_error}")


# -- detached JWS signatures -----------------------------------------------------------------------------


class _Ed25519(JWSAlgModel):
    """joserfc's own ``Ed25519`` algorithm (its name, key checks and signing), with the signature checked by
    libsodium (:func:`~openvrm.protocol.identity.verify_ed25519`); joserfc takes such an algorithm object in
    a registry of its own."""

    def __init__(self, base: JWSAlgModel) -> None:
        self._base = base
        self.name = base.name
        self.description = base.description
        self.recommended = base.recommended
        self.key_type = base.key_type
        self.algorithm_security = base.algorithm_security

    def check_key(self, key: Any) -> None:
        self._base.check_key(key)

    def sign(self, msg: bytes, key: Any) -> bytes:
        return self._base.sign(msg, key)

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        try:
            verify_ed25519(key.get_op_key("verify"), sig, msg)
        except InvalidSignature:
            return False
        return True


class _Registry(jws.JWSRegistry):
    # joserfc refuses payloads over 128 kB by default; a record may carry an inline attachment up to the
    # 1 MiB request limit, so the limit here follows the protocol's own.
    max_payload_length = 2 * 1024 * 1024
    algorithms = {**jws.JWSRegistry.algorithms, JWS_ALG: _Ed25519(jws.JWSRegistry.algorithms[JWS_ALG])}


_REGISTRY = _Registry(algorithms=[JWS_ALG])


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signature_over(record: Mapping[str, Any], key: KeyPair) -> dict[str, str]:
    """A ``{"kid", "jws"}`` signature of ``record`` (without its signatures) by ``key``."""
    kid = kid_of(key.did)
    header = {"alg": JWS_ALG, "kid": kid}
    token = jws.serialize_compact(header, canonical_json(unsigned(record)), key.jws_key, registry=_REGISTRY)
    head, _payload, sig = token.split(".")
    return {"kid": kid, "jws": f"{head}..{sig}"}


def sign(record: Mapping[str, Any], key: KeyPair) -> dict[str, Any]:
    """``record`` with ``key``'s signature appended to its ``signatures``."""
    out = dict(record)
    out["signatures"] = [*record.get("signatures", []), signature_over(record, key)]
    return out


@functools.lru_cache(maxsize=4096)
def _jws_key(did: str) -> OKPKey:
    """The joserfc key of a did:key (kept like the decoded key itself: the identifier is the key, so an
    entry never goes stale; a refused identifier raises and is not kept). A kept key object also keeps
    the JWK form joserfc derives from it to check the key on every verification."""
    return OKPKey.import_key(public_key_from_did(did))


def verify_signature(record: Mapping[str, Any], signature: Mapping[str, Any], did: str) -> None:
    """Check one detached signature of ``record`` by ``did``; raise :class:`SignatureError` if it fails."""
    kid = signature.get("kid")
    token = signature.get("jws")
    if not isinstance(kid, str) or did_of_kid(kid) != did or not isinstance(token, str):
        raise SignatureError(f"the record is not signed by {did}")
    parts = token.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise SignatureError("the signature is not a detached compact JWS")
    try:
        public = _jws_key(did)
    except InvalidValue as exc:
        raise SignatureError(str(exc)) from None
    attached = f"{parts[0]}.{_b64u(canonical_json(unsigned(record)))}.{parts[2]}"
    try:
        result = jws.deserialize_compact(attached, public, registry=_REGISTRY)
    except JoseError as exc:
        raise SignatureError(f"the record's signature by {did} does not verify ({exc.error})") from None
    except (ValueError, TypeError):
        raise SignatureError("the record's signature is malformed") from None
    header = result.headers()
    if header != {"alg": JWS_ALG, "kid": kid}:
        raise SignatureError("the signature's protected header must be exactly alg=Ed25519 and kid")


def verify_signers(record: Mapping[str, Any], dids: Sequence[str]) -> None:
    """The record carries exactly one valid signature by each of ``dids``, in that order, and no other."""
    sigs = record.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != len(dids):
        raise SignatureError(f"the record must carry {len(dids)} signature(s)")
    for sig, did in zip(sigs, dids, strict=True):
        if not isinstance(sig, dict):
            raise SignatureError("a signature must be an object")
        verify_signature(record, sig, did)


# -- proffer, answer, agreement ----------------------------------------------------------------------------


def make_proffer(
    person: KeyPair,
    vendor_did: str,
    terms: Iterable[Term],
    *,
    agent: Mapping[str, str] | None = None,
    intent: Mapping[str, str] | None = None,
    now: datetime | None = None,
    ttl: timedelta = PROFFER_TTL,
) -> dict[str, Any]:
    """The person's signed proffer of ``terms`` (most preferred first) to the vendor."""
    refs = [term_ref(t) for t in terms]
    if not 1 <= len(refs) <= MAX_PROFFER_TERMS:
        raise InvalidValue(f"a proffer names 1 to {MAX_PROFFER_TERMS} terms")
    if len({r["id"] for r in refs}) != len(refs):
        raise InvalidValue("a proffer names each term once")
    moment = now or now_utc()
    record: dict[str, Any] = {
        "type": "proffer",
        "vrm": VRM_VERSION,
        "proffer_id": new_uuid(),
        "person": person.did,
        "vendor": vendor_did,
        "terms": refs,
        "created_at": timestamp(moment),
        "expires_at": timestamp(moment + ttl),
    }
    if agent is not None:
        record["agent"] = dict(agent)
    if intent is not None:
        record["intent"] = {"intent_id": intent["intent_id"], "offer_id": intent["offer_id"]}
    out = sign(record, person)
    validate("proffer", out)
    return out


def check_proffer(proffer: Any, *, vendor_did: str, now: datetime | None = None) -> list[Term]:
    """Check a proffer received by ``vendor_did``; return its terms, most preferred first."""
    validate("proffer", proffer)
    if proffer["vendor"] != vendor_did:
        raise ProtocolViolation("the proffer is addressed to another vendor")
    verify_signers(proffer, [proffer["person"]])
    moment = now or now_utc()
    if "expires_at" in proffer and parse_time(proffer["expires_at"]) < moment:
        raise ProtocolViolation("the proffer has expired")
    if parse_time(proffer["created_at"]) > moment + timedelta(minutes=5):
        raise ProtocolViolation("the proffer is dated in the future")
    terms = [roster_term(ref) for ref in proffer["terms"]]
    if len({t.id for t in terms}) != len(terms):
        raise ProtocolViolation("the proffer names a term twice")
    return terms


def make_answer(
    vendor: KeyPair,
    proffer: Mapping[str, Any],
    decision: str,
    *,
    chosen: Term | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The vendor's signed answer: ``accept`` (a proffered term), ``alternative`` or ``reject``."""
    refs = [dict(r) for r in proffer["terms"]]
    if decision == "accept":
        if chosen is None or term_ref(chosen) not in refs:
            raise InvalidValue("an accept must name one of the proffered terms")
    elif decision == "alternative":
        if chosen is None or term_ref(chosen) in refs:
            raise InvalidValue("an alternative must name a roster term that was not proffered")
    elif decision == "reject":
        if chosen is not None:
            raise InvalidValue("a rejection names no term")
    else:
        raise InvalidValue("the decision is accept, alternative or reject")
    record: dict[str, Any] = {
        "type": "answer",
        "vrm": VRM_VERSION,
        "proffer_id": proffer["proffer_id"],
        "proffer_hash": h(unsigned(proffer)),
        "vendor": vendor.did,
        "decision": decision,
        "created_at": timestamp(now or now_utc()),
    }
    if chosen is not None:
        record["term"] = term_ref(chosen)
    if reason:
        record["reason"] = reason[:500]
    out = sign(record, vendor)
    validate("answer", out)
    return out


def check_answer(answer: Any, proffer: Mapping[str, Any]) -> Term | None:
    """Check the vendor's answer to our proffer; return the term it names (``None`` for a rejection)."""
    validate("answer", answer)
    if answer["vendor"] != proffer["vendor"]:
        raise ProtocolViolation("the answer comes from another vendor than the one proffered to")
    if answer["proffer_id"] != proffer["proffer_id"] or answer["proffer_hash"] != h(unsigned(proffer)):
        raise ProtocolViolation("the answer does not answer this proffer")
    verify_signers(answer, [proffer["vendor"]])
    if answer["decision"] == "reject":
        return None
    chosen = roster_term(answer["term"])
    proffered = answer["term"] in proffer["terms"]
    if answer["decision"] == "accept" and not proffered:
        raise ProtocolViolation("the vendor accepted a term that was not proffered")
    if answer["decision"] == "alternative" and proffered:
        raise ProtocolViolation("an alternative must be a term that was not proffered")
    return chosen


def agreement_id_of(agreement: Mapping[str, Any]) -> str:
    return h(unsigned(agreement, "agreement_id"))


def make_agreement(
    person: KeyPair, proffer: Mapping[str, Any], answer: Mapping[str, Any], *, now: datetime | None = None
) -> dict[str, Any]:
    """The agreement after an accept, signed by the person (the vendor countersigns)."""
    if answer.get("decision") != "accept":
        raise InvalidValue("only an accepted proffer makes an agreement")
    body: dict[str, Any] = {
        "type": "agreement",
        "vrm": VRM_VERSION,
        "person": proffer["person"],
        "vendor": proffer["vendor"],
        "term": dict(answer["term"]),
        "proffer_hash": h(unsigned(proffer)),
        "answer_hash": h(unsigned(answer)),
        "effective_at": timestamp(now or now_utc()),
    }
    record = {"type": "agreement", "vrm": VRM_VERSION, "agreement_id": h(body), **body}
    return sign(record, person)


def check_agreement(
    agreement: Any,
    *,
    proffer: Mapping[str, Any] | None = None,
    answer: Mapping[str, Any] | None = None,
    signed_by_vendor: bool = True,
) -> None:
    """Check an agreement: its id, its term, the proffer and answer it names, and its signatures."""
    if not isinstance(agreement, dict):
        raise ProtocolViolation("an agreement must be a JSON object")
    if signed_by_vendor:
        validate("agreement", agreement)
    if agreement.get("agreement_id") != agreement_id_of(agreement):
        raise ProtocolViolation("the agreement id is not the hash of the agreement")
    roster_term(agreement.get("term") or {})
    if proffer is not None:
        if agreement.get("proffer_hash") != h(unsigned(proffer)):
            raise ProtocolViolation("the agreement names another proffer")
        if agreement.get("person") != proffer["person"] or agreement.get("vendor") != proffer["vendor"]:
            raise ProtocolViolation("the agreement's parties are not the proffer's")
    if answer is not None:
        if agreement.get("answer_hash") != h(unsigned(answer)) or answer.get("decision") != "accept":
            raise ProtocolViolation("the agreement does not rest on an accepting answer")
        if agreement.get("term") != answer.get("term"):
            raise ProtocolViolation("the agreement's term is not the accepted term")
    dids = [agreement["person"], agreement["vendor"]] if signed_by_vendor else [agreement["person"]]
    verify_signers(agreement, dids)


def countersign(vendor: KeyPair, agreement: Mapping[str, Any]) -> dict[str, Any]:
    """The vendor's countersignature on an agreement the person signed."""
    if agreement.get("vendor") != vendor.did:
        raise ProtocolViolation("the agreement is for another vendor")
    out = sign(agreement, vendor)
    validate("agreement", out)
    return out


# -- ledger events and acknowledgements ------------------------------------------------------------------


def event_id_of(agreement_id: str, payload_hash: str, previous_id: str | None, created_at: str) -> str:
    return h([agreement_id, payload_hash, previous_id, created_at])


def kind_of(subtype: str) -> str:
    for kind, subtypes in SUBTYPES.items():
        if subtype in subtypes:
            return kind
    raise InvalidValue(f"{subtype!r} is not an event subtype of protocol {VRM_VERSION}")


def make_event(
    author: KeyPair,
    agreement_id: str,
    subtype: str,
    payload: Mapping[str, Any],
    previous_id: str | None,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A signed ledger event by ``author``, chained after the author's own ``previous_id``."""
    created_at = timestamp(now or now_utc())
    payload_hash = h(dict(payload))
    record: dict[str, Any] = {
        "type": "event",
        "vrm": VRM_VERSION,
        "event_id": event_id_of(agreement_id, payload_hash, previous_id, created_at),
        "agreement_id": agreement_id,
        "kind": kind_of(subtype),
        "subtype": subtype,
        "author": author.did,
        "payload": dict(payload),
        "payload_hash": payload_hash,
        "previous_id": previous_id,
        "created_at": created_at,
        "idempotency_key": idempotency_key or new_uuid(),
    }
    out = sign(record, author)
    validate("ledger-event", out)
    return out


def check_event(
    event: Any,
    agreement: Mapping[str, Any],
    *,
    author: str,
    previous_id: str | None,
    prechecked: bool = False,
) -> None:
    """Check an event from ``author`` under ``agreement``; ``previous_id`` is the author's head we hold.

    ``prechecked``: the caller has already run :func:`validate`, :func:`check_event_hashes` and
    :func:`verify_signers` (by ``author``) on this very record, so they are not run a second time; every
    other check here still is.
    """
    if not prechecked:
        validate("ledger-event", event)
    if event["agreement_id"] != agreement["agreement_id"]:
        raise ProtocolViolation("the event belongs to another agreement")
    if event["author"] != author:
        raise ProtocolViolation("the event's author is not the party that sent it")
    allowed = PERSON_SUBTYPES if author == agreement["person"] else VENDOR_SUBTYPES
    if event["subtype"] not in allowed:
        raise ProtocolViolation(f"a {event['subtype']} event cannot come from this party")
    if not prechecked:
        check_event_hashes(event)
    if event["previous_id"] != previous_id:
        raise ProtocolViolation(
            f"the event does not follow the chain head we hold (previous_id should be {previous_id})"
        )
    if not prechecked:
        verify_signers(event, [author])


def check_event_hashes(event: Mapping[str, Any]) -> None:
    if event["payload_hash"] != h(event["payload"]):
        raise ProtocolViolation("the event's payload_hash does not match its payload")
    expected = event_id_of(
        event["agreement_id"], event["payload_hash"], event["previous_id"], event["created_at"]
    )
    if event["event_id"] != expected:
        raise ProtocolViolation("the event_id is not the hash of agreement, payload, previous and time")


def make_ack(
    author: KeyPair,
    event: Mapping[str, Any],
    *,
    accepted: bool = True,
    reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "ack",
        "vrm": VRM_VERSION,
        "event_id": event["event_id"],
        "agreement_id": event["agreement_id"],
        "author": author.did,
        "status": "accepted" if accepted else "refused",
        "received_at": timestamp(now or now_utc()),
    }
    if reason:
        record["reason"] = reason[:500]
    out = sign(record, author)
    validate("acknowledgement", out)
    return out


def check_ack(ack: Any, event: Mapping[str, Any], *, author: str) -> None:
    validate("acknowledgement", ack)
    if ack["event_id"] != event["event_id"] or ack["agreement_id"] != event["agreement_id"]:
        raise ProtocolViolation("the acknowledgement is for another event")
    if ack["author"] != author or author == event["author"]:
        raise ProtocolViolation("the acknowledgement must come from the other party")
    verify_signers(ack, [author])


# -- whole chains ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    """The result of checking an agreement and its events; ``broken`` names the first bad link."""

    agreement_id: str
    events: int
    acknowledged: int
    broken_at: int | None = None
    broken_event: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        return {
            "agreement_id": self.agreement_id,
            "ok": self.ok,
            "events": self.events,
            "acknowledged": self.acknowledged,
            "broken_at": self.broken_at,
            "broken_event": self.broken_event,
            "reason": self.reason,
        }


def verify_chain(
    agreement: Mapping[str, Any],
    entries: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
) -> ChainReport:
    """Check an agreement and its ``(event, ack)`` entries in the order they were recorded.

    Each author's events must chain on that author's previous event, carry valid hashes and signatures,
    and every acknowledgement present must be the other party's valid signature over that event. The
    report names the first broken link (its position, starting at 1, and event id) and why.
    """
    aid = str(agreement.get("agreement_id", "?"))
    try:
        check_agreement(agreement)
    except (ProtocolViolation, SignatureError) as exc:
        return ChainReport(aid, len(entries), 0, 0, None, f"the agreement itself: {exc}")
    heads: dict[str, str | None] = {agreement["person"]: None, agreement["vendor"]: None}
    seen: set[str] = set()
    acked = 0
    ended = False
    for position, (event, ack) in enumerate(entries, start=1):
        eid = str(event.get("event_id")) if isinstance(event, Mapping) else None
        try:
            author = event.get("author")
            if author not in heads:
                raise ProtocolViolation("the event's author is not a party to the agreement")
            if eid in seen:
                raise ProtocolViolation("the event appears twice")
            if ended and event.get("subtype") not in AFTER_END:
                raise ProtocolViolation("only GDPR events may follow the end of the relationship")
            check_event(event, agreement, author=str(author), previous_id=heads[str(author)])
            if ack is not None:
                other = agreement["vendor"] if author == agreement["person"] else agreement["person"]
                check_ack(ack, event, author=other)
                acked += 1
        except (ProtocolViolation, SignatureError) as exc:
            return ChainReport(aid, len(entries), acked, position, eid, str(exc))
        heads[str(author)] = str(eid)
        seen.add(str(eid))
        if event.get("subtype") == "end-of-relationship" and (ack is None or ack.get("status") == "accepted"):
            ended = True
    return ChainReport(aid, len(entries), acked)
