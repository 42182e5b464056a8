"""The relay's core, without a web framework: vendors, subscriptions, intents, offers and decisions.

:class:`Relay` applies the rules of docs/protocol.md section 12; :meth:`Relay.handle` is the whole signed
HTTP call (signature, idempotency, rate limits, dispatch) on plain values, so the FastAPI app
(:mod:`openvrm.relay.app`) only adapts requests. Deliveries are rows of ``relay_deliveries``: the
:class:`~openvrm.relay.worker.DeliveryWorker` posts them to webhooks, and every vendor can pull them from
its feed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.intents.taxonomy import categories
from openvrm.net import check_url
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import RequestVerifier, VerifiedRequest, did_key_resolver
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import check_decision, check_intent
from openvrm.protocol.sealing import SEAL_ALG
from openvrm.protocol.stores import (
    SqlIdempotencyStore,
    SqlNonceStore,
    StoredResponse,
    request_fingerprint,
)
from openvrm.relay import matching
from openvrm.relay.config import MAX_OFFER_BYTES, RelayConfig
from openvrm.relay.errors import (
    Forbidden,
    IntentClosed,
    LimitReached,
    PayloadTooLarge,
    UnknownIntent,
    UnknownSubscription,
)
from openvrm.relay.ratelimit import RateLimiter
from openvrm.relay.store import (
    Delivery,
    Intent,
    Offer,
    RelayIdempotency,
    RelayNonce,
    Subscription,
    SubscriptionCategory,
    SubscriptionKeyword,
    SubscriptionRegion,
    Vendor,
    open_store,
)
from openvrm.storage.db import Database

JSON_MEDIA_TYPE = "application/json"
_IDEM_KEY = re.compile(r"^[A-Za-z0-9._~:-]{1,64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DID = re.compile(r"^did:key:z[1-9A-HJ-NP-Za-km-z]{1,190}$")
_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_FEED_LIMIT = 500
DEFAULT_FEED_LIMIT = 100
MAX_LIST = 50
MAX_REGIONS = 100
STATES = {"accepted": "accepted", "withdrawn": "withdrawn", "expired": "expired"}

#: The calls of :meth:`Relay.handle`: name -> (HTTP method, who signs).
CALLS: dict[str, tuple[str, str]] = {
    "register": ("POST", "anyone"),
    "subscribe": ("POST", "vendor"),
    "subscriptions": ("GET", "vendor"),
    "unsubscribe": ("DELETE", "vendor"),
    "feed": ("GET", "vendor"),
    "offer": ("POST", "vendor"),
    "publish": ("POST", "author"),
    "offers": ("GET", "intent"),
    "decision": ("POST", "intent"),
}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,18}", raw):
        raise InvalidValue(f"{name} must be a whole number")
    return max(lo, min(hi, int(raw)))


def _string(body: Mapping[str, Any], name: str, *, limit: int, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidValue(f"{name} must be a non-empty string of at most {limit} characters")
    return value.strip()


def _string_list(body: Mapping[str, Any], name: str, limit: int) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) for v in value):
        raise InvalidValue(f"{name} must be a list of at most {limit} strings")
    return list(dict.fromkeys(value))


def _money(body: Mapping[str, Any], name: str) -> tuple[int, str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"amount", "currency", "per"}:
        raise InvalidValue(f'{name} is {{"amount": "12.50", "currency": "EUR"}}')
    currency = value.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise InvalidValue(f"{name}.currency is a three-letter ISO 4217 code")
    return matching.cents(value.get("amount")), currency


class Relay:
    """One relay: its key, its store, its limits."""

    def __init__(
        self,
        config: RelayConfig,
        *,
        key: KeyPair | None = None,
        db: Database | None = None,
        clock: Callable[[], datetime] = m.now_utc,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.key = key or config.load_key()
        self.db = db or open_store(config.store)
        self.clock = clock
        self.limiter = limiter or RateLimiter()
        self.nonces = SqlNonceStore(self.db, RelayNonce)
        self.idempotency = SqlIdempotencyStore(self.db, RelayIdempotency)

    @property
    def did(self) -> str:
        return self.key.did

    @property
    def limits(self) -> Any:
        return self.config.limits

    def close(self) -> None:
        self.db.dispose()

    # -- discovery ---------------------------------------------------------------------------------

    def discovery(self, base_url: str | None = None) -> dict[str, Any]:
        """The ``/.well-known/vrm-relay`` document; ``base_url`` overrides the configured one."""
        base = (base_url or self.config.base_url).rstrip("/")
        return {
            "name": self.config.name,
            "relay": self.did,
            "vrm_versions": [m.VRM_VERSION],
            "endpoints": {
                "vendors": base + "/vendors",
                "subscriptions": base + "/subscriptions",
                "feed": base + "/feed",
                "offers": base + "/offers",
                "intents": base + "/intents",
            },
            "version": _taxonomy_version(),
            "limits": asdict(self.config.limits),
            "replay_window_seconds": self.config.replay_window_seconds,
        }

    # -- vendors and subscriptions -----------------------------------------------------------------

    def register_vendor(self, did: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Register (or update) the vendor ``did``: ``{"name", "webhook"?, "discovery"?}``."""
        if not _DID.match(did):
            raise InvalidValue("a vendor is an Ed25519 did:key")
        if set(body) - {"name", "webhook", "discovery"}:
            raise InvalidValue("a vendor registration has name, webhook and discovery only")
        name = _string(body, "name", limit=200, required=True)
        webhook = _string(body, "webhook", limit=2048)
        discovery = _string(body, "discovery", limit=2048)
        for url in (webhook, discovery):
            if url is not None:
                check_url(url, self.config.url_policy)
        now = self.clock()
        with self.db.write() as s:
            row = s.get(Vendor, did)
            if row is None:
                s.add(Vendor(did=did, name=name, webhook=webhook, discovery=discovery, created_at=now))
            else:
                row.name, row.webhook, row.discovery = str(name), webhook, discovery
        return {"vendor": did, "name": name, "webhook": webhook, "discovery": discovery}

    def is_vendor(self, did: str) -> bool:
        with self.db.read() as s:
            return s.get(Vendor, did) is not None

    def subscribe(self, vendor: str, filters: Mapping[str, Any]) -> str:
        """Add a subscription for a registered vendor; returns its id."""
        allowed = {"categories", "regions", "price_min", "price_max", "keywords"}
        if set(filters) - allowed:
            raise InvalidValue(f"a subscription has only {', '.join(sorted(allowed))}")
        cats = _string_list(filters, "categories", MAX_LIST)
        if not cats:
            raise InvalidValue("a subscription names at least one category")
        unknown = [c for c in cats if c not in categories()]
        if unknown:
            raise InvalidValue(f"{unknown[0]!r} is not a category of the taxonomy")
        regions = [r.upper() for r in _string_list(filters, "regions", MAX_REGIONS)]
        bad = [r for r in regions if not _REGION.match(r)]
        if bad:
            raise InvalidValue(f"{bad[0]!r} is not a region: use FR or FR-ARA (ISO 3166)")
        keywords: list[str] = []
        for kw in _string_list(filters, "keywords", MAX_LIST):
            folded = matching.words(kw)
            if len(folded) != 1 or len(folded[0]) > 60:
                raise InvalidValue(f"the keyword {kw!r} must be one word (letters and digits)")
            keywords.append(folded[0])
        keywords = list(dict.fromkeys(keywords))
        low, high = _money(filters, "price_min"), _money(filters, "price_max")
        currencies = {p[1] for p in (low, high) if p is not None}
        if len(currencies) > 1:
            raise InvalidValue("price_min and price_max are in the same currency")
        if low is not None and high is not None and low[0] > high[0]:
            raise InvalidValue("price_min is at most price_max")
        sub_id = m.new_uuid()
        now = self.clock()
        with self.db.write() as s:
            if s.get(Vendor, vendor) is None:
                raise Forbidden("register the vendor first (POST /vendors)")
            count = s.scalar(
                select(func.count()).select_from(Subscription).where(Subscription.vendor == vendor)
            )
            if (count or 0) >= self.config.limits.max_subscriptions_per_vendor:
                raise LimitReached(
                    f"a vendor has at most {self.config.limits.max_subscriptions_per_vendor} subscriptions"
                )
            s.add(
                Subscription(
                    id=sub_id,
                    vendor=vendor,
                    active=True,
                    price_min=low[0] if low else None,
                    price_max=high[0] if high else None,
                    currency=next(iter(currencies), None),
                    any_region=not regions,
                    any_keyword=not keywords,
                    filters={k: filters[k] for k in allowed if k in filters},
                    created_at=now,
                )
            )
            s.add_all(SubscriptionCategory(category=c, subscription_id=sub_id) for c in cats)
            s.add_all(SubscriptionRegion(region=r, subscription_id=sub_id) for r in dict.fromkeys(regions))
            s.add_all(SubscriptionKeyword(keyword=k, subscription_id=sub_id) for k in keywords)
        return sub_id

    def list_subscriptions(self, vendor: str) -> list[dict[str, Any]]:
        with self.db.read() as s:
            rows = s.scalars(
                select(Subscription).where(Subscription.vendor == vendor).order_by(Subscription.created_at)
            )
            return [
                {
                    "subscription_id": r.id,
                    "active": r.active,
                    **r.filters,
                    "created_at": m.timestamp(r.created_at),
                }
                for r in rows
            ]

    def delete_subscription(self, vendor: str, subscription_id: str) -> None:
        with self.db.write() as s:
            row = s.get(Subscription, subscription_id)
            if row is None or row.vendor != vendor:
                raise UnknownSubscription("the vendor has no subscription with this id")
            for model in (SubscriptionCategory, SubscriptionRegion, SubscriptionKeyword):
                s.execute(delete(model).where(model.subscription_id == subscription_id))
            s.delete(row)

    # -- matching ----------------------------------------------------------------------------------

    def match(self, intent: Mapping[str, Any] | matching.IntentFacts) -> list[tuple[str, str]]:
        """``(subscription_id, vendor)`` pairs the intent reaches (indexed query)."""
        with self.db.read() as s:
            return matching.match(s, intent)

    def naive_match(self, intent: Mapping[str, Any] | matching.IntentFacts) -> list[tuple[str, str]]:
        """The same by testing every subscription: for the benchmark and the property test only."""
        with self.db.read() as s:
            return matching.naive_match(s, intent)

    # -- publishing --------------------------------------------------------------------------------

    def _webhooks(self, s: Session, vendors: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for i in range(0, len(vendors), 500):
            rows = s.execute(select(Vendor.did, Vendor.webhook).where(Vendor.did.in_(vendors[i : i + 500])))
            out.update({str(d): w for d, w in rows})
        return out

    def _enqueue(
        self, s: Session, intent_id: str, kind: str, payloads: Mapping[str, dict[str, Any] | None]
    ) -> int:
        """One delivery per vendor (skipping any that exists); pull-only for vendors without a webhook."""
        vendors = list(payloads)
        if not vendors:
            return 0
        existing = set(
            s.scalars(select(Delivery.vendor).where(Delivery.intent_id == intent_id, Delivery.kind == kind))
        )
        hooks = self._webhooks(s, vendors)
        now = self.clock()
        added = 0
        for vendor in vendors:
            if vendor in existing:
                continue
            s.add(
                Delivery(
                    vendor=vendor,
                    intent_id=intent_id,
                    kind=kind,
                    payload=payloads[vendor],
                    status="pending" if hooks.get(vendor) else "pull-only",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            added += 1
        return added

    def publish(self, intent: Any, signer_keyid: str) -> dict[str, Any]:
        """Check, store and match an intent; queue one delivery per matched vendor."""
        now = self.clock()
        check_intent(intent, now=now)
        if signer_keyid != intent["author"]:
            raise Forbidden("an intent is published by its own key (the request's keyid is not its author)")
        facts = matching.IntentFacts.of(intent)
        where = intent.get("where") or {}
        with self.db.write() as s:
            existing = s.get(Intent, intent["intent_id"])
            if existing is not None:
                if existing.record != intent:
                    raise Conflict("another intent with this intent_id was already published")
                count = s.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.intent_id == existing.intent_id, Delivery.kind == "intent")
                )
                return {"intent_id": existing.intent_id, "matched": int(count or 0)}
            s.add(
                Intent(
                    intent_id=intent["intent_id"],
                    author=intent["author"],
                    category=intent["category"],
                    country=where.get("country"),
                    region=where.get("region"),
                    price_max=facts.price_max,
                    currency=facts.currency,
                    record=dict(intent),
                    state="open",
                    decision=None,
                    expires_at=m.parse_time(intent["expires_at"]),
                    created_at=now,
                )
            )
            vendors = list(dict.fromkeys(vendor for _, vendor in matching.match(s, facts)))
            self._enqueue(s, intent["intent_id"], "intent", dict.fromkeys(vendors))
        return {"intent_id": intent["intent_id"], "matched": len(vendors)}

    # -- feed --------------------------------------------------------------------------------------

    @staticmethod
    def message(delivery: Delivery, record: Mapping[str, Any] | None) -> dict[str, Any]:
        """What a vendor receives for a delivery (webhook body and feed item, without the cursor)."""
        if delivery.kind == "intent":
            return {"kind": "intent", "intent": record}
        return dict(delivery.payload or {})

    def feed(self, vendor: str, after: int = 0, limit: int = DEFAULT_FEED_LIMIT) -> dict[str, Any]:
        """The vendor's deliveries after ``after``, oldest first: ``{"items", "next"}``."""
        limit = max(1, min(MAX_FEED_LIMIT, limit))
        with self.db.read() as s:
            rows = s.execute(
                select(Delivery, Intent.record)
                .join(Intent, Intent.intent_id == Delivery.intent_id)
                .where(Delivery.vendor == vendor, Delivery.id > after)
                .order_by(Delivery.id)
                .limit(limit)
            ).all()
        items = [{"cursor": d.id, **self.message(d, record)} for d, record in rows]
        return {"items": items, "next": items[-1]["cursor"] if items else after}

    # -- offers ------------------------------------------------------------------------------------

    def submit_offer(self, envelope: Any, vendor: str) -> dict[str, Any]:
        """Store a sealed-offer envelope for an open intent the vendor received."""
        if not isinstance(envelope, dict):
            raise m.ProtocolViolation("a sealed offer is a JSON object")
        if len(_json_bytes(envelope)) > MAX_OFFER_BYTES:
            raise PayloadTooLarge(f"a sealed offer is at most {MAX_OFFER_BYTES} bytes")
        _check_envelope(envelope)
        if envelope["vendor"] != vendor:
            raise Forbidden("a vendor sends only its own offers")
        now = self.clock()
        with self.db.write() as s:
            intent = s.get(Intent, envelope["intent_id"])
            received = s.scalar(
                select(Delivery.id).where(
                    Delivery.vendor == vendor,
                    Delivery.intent_id == envelope["intent_id"],
                    Delivery.kind == "intent",
                )
            )
            if intent is None or received is None:
                raise Forbidden("the vendor did not receive this intent")
            if intent.state != "open" or intent.expires_at <= now:
                raise IntentClosed(f"the intent is {_state(intent, now)}: it takes no more offers")
            if envelope["sealed"].get("to") != m.kid_of(intent.author):
                raise m.ProtocolViolation("the offer is not sealed to the intent's key")
            existing = s.scalar(select(Offer).where(Offer.offer_id == envelope["offer_id"]))
            if existing is not None:
                if existing.envelope != envelope:
                    raise Conflict("another offer with this offer_id was already sent")
                return {"offer_id": existing.offer_id, "intent_id": existing.intent_id}
            s.add(
                Offer(
                    offer_id=envelope["offer_id"],
                    intent_id=envelope["intent_id"],
                    vendor=vendor,
                    envelope=dict(envelope),
                    created_at=now,
                )
            )
        return {"offer_id": envelope["offer_id"], "intent_id": envelope["intent_id"]}

    def _intent(self, s: Session, intent_id: str) -> Intent:
        row = s.get(Intent, intent_id) if _UUID.match(intent_id) else None
        if row is None:
            raise UnknownIntent("no intent with this id on this relay")
        return row

    def author_of(self, intent_id: str) -> str:
        with self.db.read() as s:
            return self._intent(s, intent_id).author

    def offers_for(
        self, intent_id: str, signer: str, after: int = 0, limit: int = DEFAULT_FEED_LIMIT
    ) -> dict[str, Any]:
        """The envelopes sent for an intent, for its author only: ``{"offers", "next"}``."""
        limit = max(1, min(MAX_FEED_LIMIT, limit))
        with self.db.read() as s:
            intent = self._intent(s, intent_id)
            if signer != intent.author:
                raise Forbidden("only the intent's author reads its offers")
            rows = list(
                s.scalars(
                    select(Offer)
                    .where(Offer.intent_id == intent_id, Offer.seq > after)
                    .order_by(Offer.seq)
                    .limit(limit)
                )
            )
        return {"offers": [r.envelope for r in rows], "next": rows[-1].seq if rows else after}

    # -- decisions and expiry ----------------------------------------------------------------------

    def decide(self, decision: Any, signer: str, intent_id: str | None = None) -> dict[str, Any]:
        """Close an intent with its author's decision and tell every vendor that received it."""
        if not isinstance(decision, dict):
            raise m.ProtocolViolation("a decision is a JSON object")
        m.validate("decision", decision)
        if intent_id is not None and decision["intent_id"] != intent_id:
            raise m.ProtocolViolation("the decision is about another intent")
        now = self.clock()
        with self.db.write() as s:
            intent = self._intent(s, decision["intent_id"])
            check_decision(decision, intent.author)
            if signer != intent.author:
                raise Forbidden("only the intent's author decides")
            if intent.state != "open":
                if intent.decision == decision:
                    return {"intent_id": intent.intent_id, "state": intent.state, "notified": None}
                raise IntentClosed(f"the intent is already {intent.state}")
            if intent.expires_at <= now:
                raise IntentClosed("the intent has expired")
            winner: str | None = None
            if decision["decision"] == "accepted":
                offer = s.scalar(
                    select(Offer).where(
                        Offer.intent_id == intent.intent_id, Offer.offer_id == decision["offer_id"]
                    )
                )
                if offer is None:
                    raise m.ProtocolViolation("the accepted offer was not sent for this intent")
                winner = offer.vendor
            state = STATES[decision["decision"]]
            changed = s.execute(
                update(Intent)
                .where(Intent.intent_id == intent.intent_id, Intent.state == "open")
                .values(state=state, decision=decision)
            )
            if getattr(changed, "rowcount", 1) != 1:
                raise IntentClosed("the intent was closed meanwhile")
            payloads: dict[str, dict[str, Any] | None] = {}
            for vendor in self._receivers(s, intent.intent_id):
                if winner is None or vendor == winner:
                    payloads[vendor] = {"kind": "decision", "decision": decision}
                else:
                    payloads[vendor] = _closed(intent.intent_id, "another-offer-chosen")
            notified = self._enqueue(s, intent.intent_id, "decision", payloads)
        return {"intent_id": decision["intent_id"], "state": state, "notified": notified}

    @staticmethod
    def _receivers(s: Session, intent_id: str) -> list[str]:
        return list(
            s.scalars(
                select(Delivery.vendor)
                .where(Delivery.intent_id == intent_id, Delivery.kind == "intent")
                .order_by(Delivery.id)
            )
        )

    def expire_due(self, batch: int = 200) -> int:
        """Close the open intents past their expiry and tell their vendors; returns how many closed."""
        now = self.clock()
        with self.db.read() as s:
            due = list(
                s.scalars(
                    select(Intent.intent_id)
                    .where(Intent.state == "open", Intent.expires_at <= now)
                    .order_by(Intent.expires_at)
                    .limit(batch)
                )
            )
        closed = 0
        for intent_id in due:
            with self.db.write() as s:
                changed = s.execute(
                    update(Intent)
                    .where(Intent.intent_id == intent_id, Intent.state == "open")
                    .values(state="expired")
                )
                if getattr(changed, "rowcount", 0) != 1:
                    continue  # another worker closed it
                payload = _closed(intent_id, "expired")
                self._enqueue(s, intent_id, "decision", dict.fromkeys(self._receivers(s, intent_id), payload))
                closed += 1
        return closed

    # -- statistics --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self.db.read() as s:
            vendors = s.scalar(select(func.count()).select_from(Vendor)) or 0
            subs = s.scalar(select(func.count()).select_from(Subscription)) or 0
            by_state = dict(s.execute(select(Intent.state, func.count()).group_by(Intent.state)).all())
            by_status = dict(s.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
            offers = s.scalar(select(func.count()).select_from(Offer)) or 0
        return {
            "vendors": int(vendors),
            "subscriptions": int(subs),
            "open_intents": int(by_state.get("open", 0)),
            "intents": {str(k): int(v) for k, v in by_state.items()},
            "offers": int(offers),
            "deliveries": {
                status: int(by_status.get(status, 0))
                for status in ("pending", "delivered", "failed", "pull-only")
            },
        }

    # -- the signed HTTP call ----------------------------------------------------------------------

    def handle(
        self,
        call: str,
        method: str,
        url: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        params: Mapping[str, str] | None = None,
        client: str | None = None,
    ) -> StoredResponse:
        """Verify, rate-limit, de-duplicate and apply one signed call of :data:`CALLS`.

        Raises an :class:`~openvrm.errors.OpenVRMError` (401, 403, 404, 409, 413, 422, 429) when refused;
        a refused call stores nothing but, once its signature verified, its nonce.
        """
        params = dict(params or {})
        expected, signer_kind = CALLS[call]
        if method.upper() != expected:
            raise InvalidValue(f"{call} is a {expected}")
        if len(body) > self.config.max_body_bytes:
            raise PayloadTooLarge(f"the request body is larger than {self.config.max_body_bytes} bytes")
        names = {name.lower() for name in headers}
        if "signature" not in names or "signature-input" not in names:
            raise SignatureError("the request is not signed")
        record: Any = None
        if method.upper() == "POST":
            try:
                record = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise m.ProtocolViolation("the request body is not JSON") from None
            if not isinstance(record, dict):
                raise m.ProtocolViolation("the request body must be a JSON object")
        if call == "publish":
            self.limiter.take(
                "intent", client or "unknown", self.config.limits.intents_per_hour_per_client, 3600
            )
        allow = self._signers(signer_kind, record, params)
        verified = self._verify(method, url, headers, body, allow)
        if call == "offer":
            self.limiter.take("offer", verified.keyid, self.config.limits.offers_per_minute_per_vendor, 60)
        if call == "feed":
            self.limiter.take("feed", verified.keyid, self.config.limits.feed_polls_per_minute_per_vendor, 60)
        if method.upper() == "GET":
            status, result = self._dispatch(call, record, verified.keyid, params)
            return StoredResponse(status, JSON_MEDIA_TYPE, _json_bytes(result))
        idem = {k.lower(): v for k, v in headers.items()}.get("idempotency-key", "")
        if not _IDEM_KEY.match(idem):
            raise InvalidValue("the Idempotency-Key must be 1 to 64 URL-safe characters (a UUID)")
        fingerprint = request_fingerprint(method.upper(), path, body)
        stored = self.idempotency.lookup(verified.keyid, idem, fingerprint)
        if stored is not None:
            return stored
        status, result = self._dispatch(call, record, verified.keyid, params)
        response = StoredResponse(status, JSON_MEDIA_TYPE, _json_bytes(result))
        self.idempotency.save(verified.keyid, idem, fingerprint, response)
        return response

    def _signers(self, kind: str, record: Any, params: Mapping[str, str]) -> Callable[[str], bool]:
        """Which ``keyid`` may sign this call (any other is refused as an unknown key: 401)."""
        if kind == "anyone":
            return lambda keyid: True
        if kind == "vendor":
            return self.is_vendor
        if kind == "author":
            author = record.get("author") if isinstance(record, dict) else None
            if not isinstance(author, str):
                raise m.ProtocolViolation("an intent names its author")
            return lambda keyid: keyid == author
        author = self.author_of(params.get("intent_id", ""))
        return lambda keyid: keyid == author

    def _verify(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        allow: Callable[[str], bool],
    ) -> VerifiedRequest:
        verifier = RequestVerifier(
            lambda keyid: did_key_resolver(keyid) if _DID.match(keyid) and allow(keyid) else None,
            self.nonces,
            max_age=timedelta(seconds=self.config.replay_window_seconds),
            max_body_bytes=self.config.max_body_bytes,
        )
        return verifier.verify(method, url, headers, body)

    def _dispatch(self, call: str, record: Any, keyid: str, params: Mapping[str, str]) -> tuple[int, Any]:
        if call == "register":
            return 200, self.register_vendor(keyid, record)
        if call == "subscribe":
            return 201, {"subscription_id": self.subscribe(keyid, record)}
        if call == "subscriptions":
            return 200, {"subscriptions": self.list_subscriptions(keyid)}
        if call == "unsubscribe":
            self.delete_subscription(keyid, params.get("subscription_id", ""))
            return 200, {"deleted": params.get("subscription_id")}
        if call == "feed":
            after = _int_param(params, "after", 0, 0, 2**62)
            limit = _int_param(params, "limit", DEFAULT_FEED_LIMIT, 1, MAX_FEED_LIMIT)
            return 200, self.feed(keyid, after, limit)
        if call == "offer":
            return 201, self.submit_offer(record, keyid)
        if call == "publish":
            return 201, self.publish(record, keyid)
        if call == "offers":
            after = _int_param(params, "after", 0, 0, 2**62)
            limit = _int_param(params, "limit", DEFAULT_FEED_LIMIT, 1, MAX_FEED_LIMIT)
            return 200, self.offers_for(params.get("intent_id", ""), keyid, after, limit)
        if call == "decision":
            return 200, self.decide(record, keyid, params.get("intent_id"))
        raise NotFound(f"unknown relay call {call!r}")


def _closed(intent_id: str, reason: str) -> dict[str, Any]:
    """The relay's own closing notice, in a ``decision`` item but not signed (see docs/relay.md).

    ``decision`` is ``declined`` (another offer was chosen: the winner's offer_id is not revealed) or
    ``expired``; without the intent key's signature it can only tell a vendor the intent is closed.
    """
    notice = {
        "type": "relay-notice",
        "intent_id": intent_id,
        "decision": "declined" if reason == "another-offer-chosen" else "expired",
        "reason": reason,
    }
    return {"kind": "decision", "decision": notice}


def _state(intent: Intent, now: datetime) -> str:
    return "expired" if intent.state == "open" and intent.expires_at <= now else intent.state


def _check_envelope(envelope: Mapping[str, Any]) -> None:
    """The shape of a sealed-offer envelope (the relay cannot read the offer inside)."""
    if set(envelope) != {"type", "vrm", "offer_id", "intent_id", "vendor", "sealed"}:
        raise m.ProtocolViolation(
            "a sealed offer has exactly type, vrm, offer_id, intent_id, vendor and sealed"
        )
    if envelope["type"] != "sealed-offer" or envelope["vrm"] != m.VRM_VERSION:
        raise m.ProtocolViolation(f"not a sealed offer of protocol {m.VRM_VERSION}")
    for name in ("offer_id", "intent_id"):
        if not isinstance(envelope[name], str) or not _UUID.match(envelope[name]):
            raise m.ProtocolViolation(f"{name} is a lowercase UUID")
    if not isinstance(envelope["vendor"], str) or not _DID.match(envelope["vendor"]):
        raise m.ProtocolViolation("vendor is the vendor's did:key")
    sealed = envelope["sealed"]
    if (
        not isinstance(sealed, dict)
        or set(sealed) != {"alg", "to", "ciphertext"}
        or sealed["alg"] != SEAL_ALG
        or not isinstance(sealed["to"], str)
        or not isinstance(sealed["ciphertext"], str)
        or not re.fullmatch(r"[A-Za-z0-9_-]+", sealed["ciphertext"])
    ):
        raise m.ProtocolViolation(f"sealed is {{alg: {SEAL_ALG}, to, ciphertext}}")


def _taxonomy_version() -> str:
    from importlib import resources

    raw = json.loads(resources.files("openvrm.intents").joinpath("taxonomy.json").read_text("utf-8"))
    return str(raw.get("version", ""))
