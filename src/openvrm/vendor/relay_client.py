"""The vendor's side of an intent relay (docs/protocol.md section 12.2).

* :class:`RelayClient` talks to one relay for one vendor kit: discovery (``/.well-known/vrm-relay``),
  registration, subscriptions, the pull feed (its cursor kept in the vendor store) and sealed offers. Every
  request is signed with the vendor's key (RFC 9421), every write carries an ``Idempotency-Key``, and the
  relay URL goes through the SSRF guard (:mod:`openvrm.net`).
* :func:`handle_relay_hook` is the webhook receiver behind ``POST /vrm/relay-hook``: the request must be
  signed by the did:key of a relay we registered at (learned from its discovery document), it is
  de-duplicated on the delivery's ``Idempotency-Key`` and on the ``intent_id``, and the intent or decision
  is stored before the 2xx answer. The rules (:mod:`openvrm.vendor.rules`) run afterwards, outside the
  request (the vendor app schedules :func:`answer_intent` as a background task).
* Decisions mark a received intent ``accepted`` (our offer was chosen), ``declined`` (another was) or
  ``closed`` (withdrawn or expired); :func:`link_relationship` records which relationship came from which
  of our offers when the person's agent connects with a proffer carrying ``intent``.
* :class:`RelayRegistration` registers and subscribes a vendor lazily, with retries (the demo vendors).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from sqlalchemy import select

from openvrm.errors import InvalidValue, NotFound, OpenVRMError
from openvrm.net import UnsafeUrl, check_url, guarded_client
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import RequestVerifier, sign_httpx_request
from openvrm.protocol.identity import public_key_from_did
from openvrm.protocol.intents import check_decision, check_intent, make_offer, seal_offer
from openvrm.protocol.stores import StoredResponse, request_fingerprint
from openvrm.vendor.errors import PayloadTooLarge
from openvrm.vendor.kit import VendorKit
from openvrm.vendor.store import IntentLink, ReceivedIntent, Relationship, RelayRecord, SentOffer

log = logging.getLogger(__name__)

HOOK_PATH = "/vrm/relay-hook"
WELL_KNOWN = "/.well-known/vrm-relay"
MAX_RELAY_RESPONSE_BYTES = 2 * 1024 * 1024
STATES = ("open", "offered", "accepted", "declined", "closed")

ClientFactory = Callable[[], httpx.Client]


def _now() -> datetime:
    return datetime.now(UTC)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class RelayError(OpenVRMError):
    """The relay could not be reached or answered something unusable."""

    title = "The intent relay failed"
    status = 502
    code = "relay-failed"

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after = retry_after


class RelayRefused(RelayError):
    """The relay answered with a problem document (4xx)."""

    title = "The intent relay refused the request"
    code = "relay-refused"


@dataclass(frozen=True)
class IntentInfo:
    """A received intent as `vrm vendor relay intents` shows it."""

    intent_id: str
    relay: str
    category: str
    text: str
    state: str
    offer_id: str | None
    agreement_id: str | None
    expires_at: str
    received_at: datetime
    note: str | None
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "intent_id": self.intent_id,
            "relay": self.relay,
            "category": self.category,
            "text": self.text,
            "state": self.state,
            "offer_id": self.offer_id,
            "agreement_id": self.agreement_id,
            "expires_at": self.expires_at,
            "received_at": m.timestamp(self.received_at),
            "note": self.note,
            "intent": self.record,
        }


def _info(row: ReceivedIntent) -> IntentInfo:
    return IntentInfo(
        row.intent_id,
        row.relay,
        row.category,
        str(row.record.get("text", "")),
        row.state,
        row.offer_id,
        row.agreement_id,
        row.expires_at,
        row.received_at,
        row.note,
        dict(row.record),
    )


@dataclass
class PollResult:
    """One page of the relay's feed: the items, the new cursor, and what was stored from them."""

    items: list[dict[str, Any]]
    next: str | None
    intents: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": len(self.items),
            "next": self.next,
            "intents": [i["intent_id"] for i in self.intents],
            "decisions": [
                {"intent_id": d["intent_id"], "decision": d.get("decision")} for d in self.decisions
            ],
            "skipped": self.skipped,
        }


# -- storing what relays deliver (shared by the webhook and the feed) ------------------------------------


def store_intent(kit: VendorKit, relay_url: str, intent: Any) -> tuple[dict[str, Any], bool]:
    """Check and store a delivered intent; ``(intent, new)``. Raises when the intent is not valid."""
    check_intent(intent)
    if kit.did in (intent.get("exclude") or []):
        raise m.ProtocolViolation("this vendor is excluded from the intent")
    now = _now()
    with kit.db.write() as s:
        row = s.get(ReceivedIntent, intent["intent_id"])
        if row is not None:
            if row.record.get("author") != intent["author"]:
                raise m.ProtocolViolation("another intent with this intent_id was already received")
            return dict(row.record), False
        s.add(
            ReceivedIntent(
                intent_id=intent["intent_id"],
                relay=relay_url,
                record=intent,
                state="open",
                category=intent["category"],
                expires_at=intent["expires_at"],
                received_at=now,
                updated_at=now,
            )
        )
    return dict(intent), True


def store_decision(kit: VendorKit, decision: Any) -> str | None:
    """Apply a delivered decision to the intent it closes; the intent's new state (``None``: unknown).

    A decision signed with the intent's key is checked and kept; ``accepted`` with the id of an offer we
    sent makes the intent ``accepted``, another offer ``declined``. A relay's notice without the person's
    signature (the vendors whose offer was not chosen may get one) can only decline or close an intent.
    """
    if not isinstance(decision, Mapping) or not isinstance(decision.get("intent_id"), str):
        raise m.ProtocolViolation("a decision names its intent_id")
    with kit.db.write() as s:
        row = s.get(ReceivedIntent, decision["intent_id"])
        if row is None:
            return None
        verified = True
        try:
            check_decision(decision, str(row.record.get("author")))
        except (m.ProtocolViolation, SignatureError, InvalidValue):
            if decision.get("signatures"):
                raise m.ProtocolViolation("the decision is not signed with the intent's key") from None
            verified = False
        kind = decision.get("decision")
        offer_id = decision.get("offer_id")
        ours = offer_id is not None and s.get(SentOffer, str(offer_id)) is not None
        if kind == "accepted" and ours and verified:
            state = "accepted"
        elif kind == "accepted" or kind == "declined":
            state = "declined"
        elif kind in ("withdrawn", "expired", "closed"):
            state = "closed"
        else:
            raise m.ProtocolViolation(f"unknown decision {kind!r}")
        if row.state != "accepted":  # an accepted intent stays accepted (a replayed notice cannot undo it)
            row.state = state
        row.decision = dict(decision)
        row.updated_at = _now()
        return row.state


def ingest_item(kit: VendorKit, relay_url: str, item: Any) -> tuple[str, dict[str, Any], bool]:
    """Store one delivery (a feed item ``{"kind", "intent"|"decision"}`` or a bare record).

    Returns ``(kind, record, new)``: ``new`` is true for an intent stored for the first time.
    """
    if not isinstance(item, Mapping):
        raise m.ProtocolViolation("a relay delivery is a JSON object")
    kind = item.get("kind") or item.get("type")
    inner = item.get(kind) if isinstance(kind, str) else None
    record: Mapping[str, Any] = inner if isinstance(inner, Mapping) else item
    if kind == "intent":
        intent, new = store_intent(kit, relay_url, record)
        return "intent", intent, new
    if kind == "decision":
        store_decision(kit, record)
        return "decision", dict(record), False
    raise m.ProtocolViolation("a relay delivery holds an intent or a decision")


def intent_state(kit: VendorKit, intent_id: str) -> str | None:
    with kit.db.read() as s:
        row = s.get(ReceivedIntent, intent_id)
        return row.state if row is not None else None


def received_intents(kit: VendorKit, state: str | None = None) -> list[IntentInfo]:
    with kit.db.read() as s:
        query = select(ReceivedIntent).order_by(ReceivedIntent.received_at)
        if state is not None:
            query = query.where(ReceivedIntent.state == state)
        return [_info(r) for r in s.scalars(query)]


def received_intent(kit: VendorKit, intent_id: str) -> IntentInfo:
    text = intent_id.strip()
    with kit.db.read() as s:
        row = s.get(ReceivedIntent, text)
        if row is None and len(text) >= 6:
            found = list(s.scalars(select(ReceivedIntent).where(ReceivedIntent.intent_id.startswith(text))))
            row = found[0] if len(found) == 1 else None
        if row is None:
            raise NotFound(f"no received intent {intent_id!r}: see `vrm vendor relay intents`")
        return _info(row)


def relays(kit: VendorKit) -> list[RelayRecord]:
    with kit.db.read() as s:
        return list(s.scalars(select(RelayRecord)))


# -- the webhook --------------------------------------------------------------------------------------------


def _relay_resolver(kit: VendorKit) -> Callable[[str], Any]:
    def resolve(keyid: str) -> Any:
        with kit.db.read() as s:
            known = s.scalars(select(RelayRecord.relay_did).where(RelayRecord.relay_did == keyid)).first()
        if known is None:
            return None
        try:
            return public_key_from_did(keyid)
        except InvalidValue:
            return None

    return resolve


@dataclass(frozen=True)
class HookResult:
    response: StoredResponse
    relay_url: str | None = None
    intent: dict[str, Any] | None = None  # a new intent, for the rules to answer after the response


def handle_relay_hook(
    kit: VendorKit, url: str, path: str, headers: Mapping[str, str], body: bytes
) -> HookResult:
    """Verify, de-duplicate and store one webhook delivery; nothing is stored when it is refused.

    Raises :class:`SignatureError` (401) for an unsigned request, a key that is not a registered relay's
    or a replay; 409 for a reused Idempotency-Key with another body; 422 for a delivery that is not valid.
    """
    if len(body) > kit.config.max_body_bytes:
        raise PayloadTooLarge(f"the request body is larger than {kit.config.max_body_bytes} bytes")
    verifier = RequestVerifier(
        _relay_resolver(kit),
        kit.nonces,
        max_age=timedelta(seconds=kit.config.replay_window_seconds),
        max_body_bytes=kit.config.max_body_bytes,
    )
    verified = verifier.verify("POST", url, headers, body)
    idem = {k.lower(): v for k, v in headers.items()}.get("idempotency-key", "")
    if not 0 < len(idem) <= 64:
        raise InvalidValue("the Idempotency-Key must be 1 to 64 characters (a UUID)")
    fingerprint = request_fingerprint("POST", path, body)
    stored = kit.idempotency.lookup(verified.keyid, idem, fingerprint)
    if stored is not None:
        return HookResult(stored)
    try:
        item = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise m.ProtocolViolation("the request body is not JSON") from None
    with kit.db.read() as s:
        relay_url = s.scalars(
            select(RelayRecord.relay_url).where(RelayRecord.relay_did == verified.keyid)
        ).first()
    relay_url = relay_url or verified.keyid
    kind, record, new = ingest_item(kit, relay_url, item)
    answer: dict[str, Any] = {"received": kind, "intent_id": record.get("intent_id")}
    answer["state"] = intent_state(kit, str(record.get("intent_id")))
    response = StoredResponse(202, "application/json", _json_bytes(answer))
    kit.idempotency.save(verified.keyid, idem, fingerprint, response)
    return HookResult(response, relay_url, record if kind == "intent" and new else None)


def answer_intent(
    kit: VendorKit,
    relay_url: str,
    intent: Mapping[str, Any],
    client_factory: ClientFactory | None = None,
) -> dict[str, Any]:
    """Apply the vendor's rules to a received intent; never raises (the outcome is noted on the intent)."""
    from openvrm.vendor.rules import apply_rules

    try:
        client = RelayClient(kit, relay_url, client_factory=client_factory)
        outcome = apply_rules(kit, client, intent)
        result = outcome.to_json()
    except Exception as exc:  # noqa: BLE001 - a background task: record why, never crash the server
        log.warning(
            "relay.rules_failed", extra={"intent_id": intent.get("intent_id"), "error": type(exc).__name__}
        )
        result = {"offer_id": None, "reason": f"the rules failed: {exc}"}
    if result["offer_id"] is None:
        with kit.db.write() as s:
            row = s.get(ReceivedIntent, str(intent.get("intent_id")))
            if row is not None:
                row.note = str(result["reason"])[:1000]
    return result


# -- links from accepted offers to relationships ------------------------------------------------------------


def link_relationship(kit: VendorKit, agreement_id: str) -> IntentLink | None:
    """Record that a relationship came from an offer (its proffer's ``intent``); the link, or ``None``."""
    with kit.db.write() as s:
        rel = s.get(Relationship, agreement_id)
        if rel is None:
            return None
        ref = rel.proffer.get("intent") if isinstance(rel.proffer, Mapping) else None
        if not isinstance(ref, Mapping):
            return None
        existing = s.get(IntentLink, agreement_id)
        if existing is not None:
            return existing
        offer = s.get(SentOffer, str(ref.get("offer_id")))
        ours = offer is not None and offer.intent_id == ref.get("intent_id")
        link = IntentLink(
            agreement_id=agreement_id,
            intent_id=str(ref.get("intent_id")),
            offer_id=str(ref.get("offer_id")),
            ours=ours,
            linked_at=_now(),
        )
        s.add(link)
        if ours:
            row = s.get(ReceivedIntent, link.intent_id)
            if row is not None:
                row.agreement_id = agreement_id
                row.updated_at = _now()
        return link


def intent_links(kit: VendorKit) -> dict[str, dict[str, Any]]:
    """``agreement_id -> {"intent_id", "offer_id", "ours"}`` for relationships that came from offers."""
    with kit.db.read() as s:
        missing = [
            r.agreement_id
            for r in s.scalars(select(Relationship))
            if isinstance(r.proffer, Mapping)
            and "intent" in r.proffer
            and s.get(IntentLink, r.agreement_id) is None
        ]
    for agreement_id in missing:
        link_relationship(kit, agreement_id)
    with kit.db.read() as s:
        return {
            link.agreement_id: {"intent_id": link.intent_id, "offer_id": link.offer_id, "ours": link.ours}
            for link in s.scalars(select(IntentLink))
        }


# -- the client ---------------------------------------------------------------------------------------------


class RelayClient:
    """One vendor kit's calls to one relay (``relay_url``, else the configured or only known relay)."""

    def __init__(
        self,
        kit: VendorKit,
        relay_url: str | None = None,
        *,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.kit = kit
        url = relay_url or kit.config.relay_url
        if url is None:
            known = relays(kit)
            if len(known) != 1:
                raise InvalidValue("name the relay: `vrm vendor relay register RELAY_URL` first")
            url = known[0].relay_url
        self.relay_url = url.rstrip("/")
        check_url(self.relay_url, kit.config.url_policy)
        self._client_factory = client_factory or (lambda: guarded_client(kit.config.url_policy))

    # -- transport --------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        signed: bool = True,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[int, Any]:
        url = self.relay_url + path
        if params:
            query = {k: v for k, v in params.items() if v is not None}
            if query:
                url += "?" + urlencode(query)
        content = b"" if body is None else _json_bytes(body)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
            headers["Idempotency-Key"] = str(uuid.uuid4())
        try:
            with self._client_factory() as client:
                request = client.build_request(method, url, headers=headers, content=content)
                if signed:
                    sign_httpx_request(request, self.kit.key)
                response = client.send(request)
                data = response.content
        except UnsafeUrl:
            raise
        except OpenVRMError as exc:
            raise RelayError(f"the relay at {self.relay_url} failed: {exc}") from None
        except httpx.HTTPError as exc:
            raise RelayError(
                f"the relay at {self.relay_url} could not be reached ({type(exc).__name__})"
            ) from None
        if len(data) > MAX_RELAY_RESPONSE_BYTES:
            raise RelayError("the relay's answer is too large")
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        status = response.status_code
        if status >= 400:
            detail = (doc.get("detail") or doc.get("title")) if isinstance(doc, dict) else None
            cls = RelayRefused if status < 500 and status != 429 else RelayError
            raise cls(
                f"the relay answered HTTP {status} to {method} {path}: {detail or 'no detail'}",
                http_status=status,
                retry_after=response.headers.get("retry-after"),
            )
        return status, doc

    # -- calls ------------------------------------------------------------------------------------

    def discover(self) -> dict[str, Any]:
        """Fetch the relay's ``/.well-known/vrm-relay`` and remember its did:key (it signs the webhooks)."""
        _, doc = self._request("GET", WELL_KNOWN)
        if not isinstance(doc, dict) or not isinstance(doc.get("relay"), str):
            raise RelayError("the relay's discovery document names no relay key")
        try:
            public_key_from_did(doc["relay"])
        except InvalidValue as exc:
            raise RelayError(f"the relay's key is not a did:key: {exc}") from None
        with self.kit.db.write() as s:
            row = s.get(RelayRecord, self.relay_url)
            if row is None:
                s.add(
                    RelayRecord(
                        relay_url=self.relay_url,
                        relay_did=doc["relay"],
                        document=doc,
                        registered=False,
                        updated_at=_now(),
                    )
                )
            else:
                row.relay_did = doc["relay"]
                row.document = doc
                row.updated_at = _now()
        return doc

    def register(
        self, name: str | None = None, *, webhook: str | bool | None = None, discovery: str | None = None
    ) -> dict[str, Any]:
        """Register (or update) the vendor; ``webhook=True`` means our own ``/vrm/relay-hook``."""
        self.discover()
        hook = self.kit.url(HOOK_PATH) if webhook is True else (webhook or None)
        body: dict[str, Any] = {
            "name": name or self.kit.config.name,
            "discovery": discovery or self.kit.url("/.well-known/vrm"),
        }
        if hook:
            body["webhook"] = hook
        _, doc = self._request("POST", "/vendors", body)
        with self.kit.db.write() as s:
            row = s.get(RelayRecord, self.relay_url)
            if row is not None:
                row.webhook = hook
                row.registered = True
                row.updated_at = _now()
        return doc if isinstance(doc, dict) else {}

    def subscribe(
        self,
        categories: Sequence[str],
        *,
        regions: Sequence[str] = (),
        price_min: Mapping[str, Any] | None = None,
        price_max: Mapping[str, Any] | None = None,
        keywords: Sequence[str] = (),
    ) -> str:
        """Subscribe to intents of ``categories`` (taxonomy ids); the subscription id."""
        from openvrm.intents.taxonomy import category

        if not categories:
            raise InvalidValue("subscribe to at least one category")
        for c in categories:
            category(c)
        body: dict[str, Any] = {"categories": list(categories)}
        if regions:
            body["regions"] = [r.upper() for r in regions]
        if price_min is not None:
            body["price_min"] = dict(price_min)
        if price_max is not None:
            body["price_max"] = dict(price_max)
        if keywords:
            body["keywords"] = list(keywords)
        _, doc = self._request("POST", "/subscriptions", body)
        if not isinstance(doc, dict) or not isinstance(doc.get("subscription_id"), str):
            raise RelayError("the relay answered no subscription_id")
        return str(doc["subscription_id"])

    def subscriptions(self) -> list[dict[str, Any]]:
        _, doc = self._request("GET", "/subscriptions")
        items = doc.get("subscriptions") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise RelayError("the relay's subscriptions answer is not a list")
        return [dict(i) for i in items if isinstance(i, Mapping)]

    def unsubscribe(self, subscription_id: str) -> None:
        self._request("DELETE", f"/subscriptions/{quote(subscription_id, safe='')}")

    def cursor(self) -> str | None:
        with self.kit.db.read() as s:
            row = s.get(RelayRecord, self.relay_url)
            return row.cursor if row is not None else None

    def poll(self, after: str | None = None, *, limit: int = 100) -> PollResult:
        """One page of the feed after ``after`` (default: the stored cursor); stores what it holds."""
        _, doc = self._request("GET", "/feed", params={"after": after or self.cursor(), "limit": limit})
        if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
            raise RelayError("the relay's feed answer has no items")
        result = PollResult([dict(i) for i in doc["items"] if isinstance(i, Mapping)], doc.get("next"))
        for item in result.items:
            try:
                kind, record, new = ingest_item(self.kit, self.relay_url, item)
            except (m.ProtocolViolation, SignatureError, InvalidValue) as exc:
                result.skipped.append(f"{item.get('cursor')}: {exc}")
                continue
            if kind == "intent" and new:
                result.intents.append(record)
            elif kind == "decision":
                result.decisions.append(record)
        nxt = result.next or (
            str(result.items[-1]["cursor"]) if result.items and "cursor" in result.items[-1] else None
        )
        if nxt is not None:
            with self.kit.db.write() as s:
                row = s.get(RelayRecord, self.relay_url)
                if row is None:
                    s.add(
                        RelayRecord(
                            relay_url=self.relay_url,
                            relay_did="",
                            document={},
                            registered=False,
                            cursor=str(nxt),
                            updated_at=_now(),
                        )
                    )
                else:
                    row.cursor = str(nxt)
                    row.updated_at = _now()
            result.next = str(nxt)
        return result

    def intent_state(self, intent_id: str) -> str | None:
        return intent_state(self.kit, intent_id)

    def send_offer(
        self,
        intent: Mapping[str, Any],
        *,
        price: Mapping[str, str],
        includes: Sequence[str] = (),
        features: Sequence[Mapping[str, Any]] = (),
        conditions: str = "",
        contract_months: int | None = None,
        valid_until: datetime | None = None,
        terms: Iterable[Mapping[str, Any]] | None = None,
        rule: int | None = None,
    ) -> dict[str, Any]:
        """Sign an offer for ``intent``, seal it to the intent's key and post it; the signed offer."""
        check_intent(intent)
        expires = m.parse_time(str(intent["expires_at"]))
        until = valid_until or min(_now() + timedelta(days=7), expires)
        offer = make_offer(
            self.kit.key,
            intent,
            vendor_name=self.kit.config.name,
            discovery=self.kit.url("/.well-known/vrm"),
            price=price,
            includes=includes,
            features=features,
            conditions=conditions,
            contract_months=contract_months,
            valid_until=until,
            terms=list(terms) if terms is not None else None,
        )
        self._request("POST", "/offers", seal_offer(offer, intent))
        now = _now()
        with self.kit.db.write() as s:
            s.add(
                SentOffer(
                    offer_id=offer["offer_id"],
                    intent_id=intent["intent_id"],
                    relay=self.relay_url,
                    offer=offer,
                    rule=rule,
                    sent_at=now,
                )
            )
            row = s.get(ReceivedIntent, intent["intent_id"])
            if row is None:
                s.add(
                    ReceivedIntent(
                        intent_id=intent["intent_id"],
                        relay=self.relay_url,
                        record=dict(intent),
                        state="offered",
                        category=intent["category"],
                        expires_at=intent["expires_at"],
                        offer_id=offer["offer_id"],
                        received_at=now,
                        updated_at=now,
                    )
                )
            elif row.state in ("open", "offered"):
                row.state = "offered"
                row.offer_id = offer["offer_id"]
                row.note = None
                row.updated_at = now
        return offer

    def answer(self, intent: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the rules to ``intent`` (see :func:`answer_intent`)."""
        return answer_intent(self.kit, self.relay_url, intent, self._client_factory)


# -- lazy registration (the demo vendors) -------------------------------------------------------------------


@dataclass
class RelayRegistration:
    """Register a vendor at a relay and make its subscriptions, once, when the relay answers.

    Mounted Starlette sub-apps get no lifespan events, so the demo starts :meth:`start` (a daemon thread
    that retries with backoff) and tests call :meth:`ensure` to do it now, deterministically.
    ``subscriptions`` are keyword arguments of :meth:`RelayClient.subscribe`; one already at the relay
    (same categories and regions) is not made twice.
    """

    kit: VendorKit
    relay_url: str
    subscriptions: Sequence[Mapping[str, Any]] = ()
    webhook: bool = True
    client_factory: ClientFactory | None = None
    done: bool = False
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def ensure(self) -> bool:
        with self._lock:
            if self.done:
                return True
            try:
                client = RelayClient(self.kit, self.relay_url, client_factory=self.client_factory)
                client.register(webhook=self.webhook)
                existing = {
                    (tuple(sub.get("categories") or ()), tuple(sub.get("regions") or ()))
                    for sub in client.subscriptions()
                }
                for sub in self.subscriptions:
                    mark = (
                        tuple(sub.get("categories") or ()),
                        tuple(r.upper() for r in sub.get("regions") or ()),
                    )
                    if mark not in existing:
                        client.subscribe(**sub)
            except (OpenVRMError, httpx.HTTPError) as exc:
                self.error = str(exc)
                return False
            self.done = True
            self.error = None
            return True

    def start(self, delays: Sequence[float] = (0.5, 1, 2, 4, 8, 15, 30, 60, 120)) -> threading.Thread:
        """Try in a daemon thread, after each delay in turn, until registered (or the delays run out)."""

        def run() -> None:
            for delay in delays:
                time.sleep(delay)
                if self.ensure():
                    return
            log.warning("relay.registration_failed", extra={"relay": self.relay_url, "error": self.error})

        if self._thread is None:
            self._thread = threading.Thread(
                target=run, name=f"relay-registration-{self.kit.config.name}", daemon=True
            )
            self._thread.start()
        return self._thread
