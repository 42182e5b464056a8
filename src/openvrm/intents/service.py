"""The person's intents: write, publish to a relay, collect offers, compare them, accept one.

An intent is written as a **draft** (edited freely), then **published**: the agent makes a signed intent
(:func:`openvrm.protocol.intents.make_intent`) with the key made for this intent only, whose seed stays
sealed in the vault, and posts it to a relay (docs/protocol.md section 12.2). Nothing else about the
person leaves the vault: the intent names no one, and the vendors the person blocked are listed in its
``exclude`` so the relay never sends it to them.

Offers are fetched from the relay with a request signed by the intent's key, opened
(:func:`~openvrm.protocol.intents.open_offer`) and kept sealed; an offer that cannot be opened or checked
is kept too, marked ``invalid`` with the reason. :mod:`openvrm.intents.ranking` scores them, and when the
person has a contract in the same category each offer shows what it would save over a year.

Accepting an offer posts the signed ``accepted`` decision, then connects to the vendor (section 5) under the
intent's terms with a proffer that names the intent and the offer, and grants only the fields the person
chose. The other offers are declined. A published intent past its expiry is marked ``expired`` the next
time it is read. Standing interests (``kind`` ``interest``) may be muted: not polled, offers hidden.
"""

from __future__ import annotations

import base64
import builtins
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from openvrm.agent.service import AgentService, ConnectResult
from openvrm.errors import Conflict, IntegrityError, InvalidValue, NotFound, OpenVRMError
from openvrm.intents import ranking
from openvrm.intents.taxonomy import category, category_for, covers
from openvrm.net import UrlPolicy, check_url, guarded_client, policy_for
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import (
    MAX_INTENT_DAYS,
    MAX_INTEREST_DAYS,
    make_decision,
    make_intent,
    open_offer,
)
from openvrm.protocol.records import canonical_json
from openvrm.protocol.terms import term
from openvrm.records import get_row, insert, payload_of, update
from openvrm.storage.models import Connection, Intent, IntentOffer
from openvrm.vault.core import UnlockedVault

KINDS = ("rfp", "interest")
PERIODS = ("month", "year", "once")
STATES = ("draft", "published", "accepted", "withdrawn", "expired")
DEFAULT_EXPIRY_DAYS = 14
MAX_TEXT = 2000
MAX_FEATURES = 20
MAX_OFFERS_PER_FETCH = 20
DEFAULT_RELAY_PATH = "/relay"


class RelayError(OpenVRMError):
    """The relay could not be reached, or answered something we cannot accept."""

    status = 502
    code = "relay-error"
    title = "The relay failed"


def default_relay_url() -> str:
    """``$OPENVRM_RELAY_URL``, else the relay mounted in your own server (``$OPENVRM_PUBLIC_URL/relay``)."""
    explicit = os.environ.get("OPENVRM_RELAY_URL")
    if explicit:
        return explicit.rstrip("/")
    base = os.environ.get("OPENVRM_PUBLIC_URL") or "http://127.0.0.1:8765"
    return base.rstrip("/") + DEFAULT_RELAY_PATH


# -- records ---------------------------------------------------------------------------------------------


@dataclass
class IntentRecord:
    id: str
    intent_id: str
    state: str
    kind: str
    category: str
    text: str
    constraints: dict[str, Any]
    where: dict[str, Any]
    when: dict[str, Any]
    terms: list[str]
    expires_in_days: int
    expires_at: datetime | None
    author: str
    muted: bool = False
    relay_url: str | None = None
    matched: int | None = None
    published: dict[str, Any] | None = None
    accepted_offer: str | None = None
    connection_id: str | None = None
    connect_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def category_label(self) -> str:
        try:
            return category(self.category).label
        except InvalidValue:
            return self.category

    @property
    def editable(self) -> bool:
        return self.state == "draft"

    @property
    def open(self) -> bool:
        return self.state == "published"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "intent_id": self.intent_id,
            "state": self.state,
            "kind": self.kind,
            "category": self.category,
            "category_label": self.category_label,
            "text": self.text,
            "constraints": self.constraints,
            "where": self.where,
            "when": self.when,
            "terms": self.terms,
            "expires_in_days": self.expires_in_days,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "author": self.author,
            "muted": self.muted,
            "relay_url": self.relay_url,
            "matched": self.matched,
            "published": self.published,
            "accepted_offer": self.accepted_offer,
            "connection_id": self.connection_id,
            "connect_error": self.connect_error,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass
class OfferRecord:
    id: str
    offer_id: str
    state: str
    vendor: str
    offer: dict[str, Any] | None
    reason: str | None = None
    received_at: datetime | None = None

    @property
    def vendor_name(self) -> str:
        return str((self.offer or {}).get("vendor_name") or self.vendor)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "offer_id": self.offer_id,
            "state": self.state,
            "vendor": self.vendor,
            "vendor_name": self.vendor_name,
            "offer": self.offer,
            "reason": self.reason,
            "received_at": self.received_at.isoformat() if self.received_at else None,
        }


@dataclass(frozen=True)
class CurrentContract:
    """The person's active contract in the intent's category, to compare offers with."""

    id: str
    plan: str
    price: Decimal
    currency: str
    billing_cycle: str
    cancellation_deadline: date | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "plan": self.plan,
            "price": str(self.price),
            "currency": self.currency,
            "billing_cycle": self.billing_cycle,
            "cancellation_deadline": self.cancellation_deadline.isoformat()
            if self.cancellation_deadline
            else None,
        }


@dataclass
class OfferView:
    """One row of the side-by-side comparison."""

    record: OfferRecord
    score: ranking.Score | None
    savings: ranking.Savings | None = None

    def to_json(self) -> dict[str, Any]:
        return self.record.to_json() | {
            "score": self.score.to_json() if self.score else None,
            "savings": self.savings.to_json() if self.savings else None,
        }


@dataclass
class Comparison:
    intent: IntentRecord
    offers: list[OfferView]
    contract: CurrentContract | None = None
    invalid: list[OfferRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "intent": self.intent.to_json(),
            "contract": self.contract.to_json() if self.contract else None,
            "offers": [o.to_json() for o in self.offers],
            "invalid": [o.to_json() for o in self.invalid],
        }


@dataclass(frozen=True)
class AcceptResult:
    intent: IntentRecord
    connection: ConnectResult | None
    granted: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "intent": self.intent.to_json(),
            "connection": self.connection.to_json() if self.connection else None,
            "granted": self.granted,
        }


# -- validation of what the person writes ---------------------------------------------------------------


def price_max(amount: Any, currency: str | None = "EUR", per: str | None = "month") -> dict[str, str]:
    value = ranking.decimal_of(amount)
    if value is None or value < 0:
        raise InvalidValue(f"the price ceiling is an amount like 15 or 15.50, not {str(amount)[:20]!r}")
    cur = (currency or "EUR").strip().upper()
    if len(cur) != 3 or not cur.isalpha():
        raise InvalidValue(f"the currency is a three-letter code like EUR, not {cur[:10]!r}")
    p = (per or "month").strip().lower()
    if p not in PERIODS:
        raise InvalidValue(f"the price is per {', '.join(PERIODS)}, not {p[:10]!r}")
    return {"amount": format(value.normalize(), "f"), "currency": cur, "per": p}


def feature(name: str, value: Any = "", *, required: bool = False) -> dict[str, Any]:
    n = str(name).strip()
    if not n or len(n) > 60:
        raise InvalidValue("a feature has a name of 1 to 60 characters")
    return {"name": n, "value": str(value).strip()[:200], "required": bool(required)}


def parse_features(specs: Sequence[str], required: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``["data_gb=50", "esim"]`` and ``required=["data_gb"]`` → feature constraints."""
    out: list[dict[str, Any]] = []
    names = set()
    for spec in specs:
        name, _, value = spec.partition("=")
        out.append(feature(name, value, required=name.strip() in required))
        names.add(name.strip())
    for name in required:
        if name.strip() not in names:
            out.append(feature(name, "", required=True))
    return out


def _where(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    country = str(raw.get("country") or "").strip().upper()
    if country:
        if len(country) != 2 or not country.isalpha():
            raise InvalidValue(f"the country is a two-letter code like FR, not {country[:10]!r}")
        out["country"] = country
    for name, limit in (("region", 100), ("postal_code", 20)):
        value = str(raw.get(name) or "").strip()
        if value:
            if len(value) > limit:
                raise InvalidValue(f"the {name.replace('_', ' ')} is at most {limit} characters")
            out[name] = value
    radius = raw.get("radius_km")
    if radius not in (None, ""):
        try:
            km = int(str(radius))
        except ValueError:
            raise InvalidValue(
                f"the radius is a whole number of kilometres, not {str(radius)[:10]!r}"
            ) from None
        if not 1 <= km <= 1000:
            raise InvalidValue("the radius is 1 to 1000 km")
        out["radius_km"] = km
    return out


def _check_expiry(kind: str, days: int) -> int:
    limit = MAX_INTEREST_DAYS if kind == "interest" else MAX_INTENT_DAYS
    if not isinstance(days, int) or not 1 <= days <= limit:
        raise InvalidValue(f"an {kind} expires in 1 to {limit} days")
    return days


# -- the service -----------------------------------------------------------------------------------------


class IntentService:
    """The person's intents and offers, for one unlocked vault."""

    def __init__(
        self,
        vault: UnlockedVault,
        *,
        policy: UrlPolicy | None = None,
        client_factory: Callable[[], httpx.Client] | None = None,
        clock: Callable[[], datetime] = m.now_utc,
        relay_url: str | None = None,
    ) -> None:
        self.vault = vault
        self.policy = policy or policy_for(vault.vault.settings)
        self._client_factory = client_factory or (lambda: guarded_client(self.policy))
        self.clock = clock
        self.relay_url = (relay_url or default_relay_url()).rstrip("/")

    # -- HTTP to the relay -------------------------------------------------------------------------------

    @contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        client = self._client_factory()
        try:
            yield client
        finally:
            client.close()

    def _send(
        self, method: str, url: str, key: KeyPair, record: dict[str, Any] | None = None
    ) -> httpx.Response:
        try:
            check_url(url, self.policy)
        except InvalidValue as exc:
            raise InvalidValue(f"the relay address is refused: {exc}") from None
        body = canonical_json(record) if record is not None else b""
        headers = {"Accept": "application/json"}
        if record is not None:
            headers |= {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}
        signed = sign_request(method, url, headers, body, key)
        with self._client() as client:
            try:
                return client.request(method, url, content=body, headers=signed)
            except httpx.HTTPError as exc:
                raise RelayError(
                    f"could not reach the relay at {urlsplit(url).netloc}: {type(exc).__name__}"
                ) from None

    @staticmethod
    def _answer(response: httpx.Response, what: str, ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
        if response.status_code not in ok:
            detail = response.reason_phrase
            try:
                body = response.json()
                if isinstance(body, dict):
                    detail = str(body.get("detail") or body.get("title") or detail)[:300]
            except ValueError:
                pass
            raise RelayError(f"the relay refused {what} ({response.status_code}): {detail}")
        try:
            body = response.json() if response.content else {}
        except ValueError:
            raise RelayError(f"the relay's answer to {what} is not JSON") from None
        if not isinstance(body, dict):
            raise RelayError(f"the relay's answer to {what} is not a JSON object")
        return body

    # -- reading ---------------------------------------------------------------------------------------

    def _record(self, row: Intent, p: dict[str, Any]) -> IntentRecord:
        return IntentRecord(
            id=row.id,
            intent_id=p["intent_id"],
            state=row.state,
            kind=p["kind"],
            category=p["category"],
            text=p.get("text", ""),
            constraints=p.get("constraints") or {},
            where=p.get("where") or {},
            when=p.get("when") or {},
            terms=list(p.get("terms") or ["intent-only"]),
            expires_in_days=int(p.get("expires_in_days", DEFAULT_EXPIRY_DAYS)),
            expires_at=row.expires_at,
            author=p["author"],
            muted=bool(p.get("muted")),
            relay_url=p.get("relay_url"),
            matched=p.get("matched"),
            published=p.get("published"),
            accepted_offer=p.get("accepted_offer"),
            connection_id=p.get("connection_id"),
            connect_error=p.get("connect_error"),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _expire(self, s: Session) -> None:
        """Published intents past their expiry close themselves."""
        now = self.clock()
        rows = s.scalars(select(Intent).where(Intent.state == "published", Intent.expires_at <= now))
        for row in rows:
            p = payload_of(self.vault, row)
            row.state = "expired"
            update(self.vault, row, p)

    def list(self, *, kind: str | None = None) -> builtins.list[IntentRecord]:
        with self.vault.db.write() as s:
            self._expire(s)
        with self.vault.db.read() as s:
            rows = list(s.scalars(select(Intent).order_by(Intent.created_at.desc(), Intent.id)))
            records = [self._record(r, payload_of(self.vault, r)) for r in rows]
        return [r for r in records if kind is None or r.kind == kind]

    def get(self, intent_id: str) -> IntentRecord:
        with self.vault.db.write() as s:
            self._expire(s)
        with self.vault.db.read() as s:
            row = get_row(s, Intent, intent_id, "intent")
            return self._record(row, payload_of(self.vault, row))

    def _load(self, s: Session, intent_id: str) -> tuple[Intent, dict[str, Any], KeyPair]:
        row = get_row(s, Intent, intent_id, "intent")
        p = payload_of(self.vault, row)
        return row, p, KeyPair.from_private_bytes(base64.b64decode(p["seed"]))

    # -- writing ---------------------------------------------------------------------------------------

    def _content(
        self,
        base: Mapping[str, Any],
        *,
        category_id: str | None,
        text: str | None,
        price: Mapping[str, str] | None,
        clear_price: bool,
        features: Sequence[Mapping[str, Any]] | None,
        quantity: int | None,
        contract_months_max: int | None,
        clear_contract_months: bool,
        where: Mapping[str, Any] | None,
        when: Mapping[str, Any] | None,
        terms: Sequence[str] | None,
        expires_in_days: int | None,
    ) -> dict[str, Any]:
        p = dict(base)
        if category_id is not None:
            p["category"] = category(category_id.strip()).id
        if text is not None:
            if len(text) > MAX_TEXT:
                raise InvalidValue(f"say what you want in at most {MAX_TEXT} characters")
            p["text"] = text.strip()
        constraints = dict(p.get("constraints") or {})
        if clear_price:
            constraints.pop("price_max", None)
        if price is not None:
            constraints["price_max"] = price_max(price.get("amount"), price.get("currency"), price.get("per"))
        if features is not None:
            if len(features) > MAX_FEATURES:
                raise InvalidValue(f"name at most {MAX_FEATURES} features")
            constraints["features"] = [
                feature(f["name"], f.get("value", ""), required=bool(f.get("required"))) for f in features
            ]
            if not constraints["features"]:
                del constraints["features"]
        if quantity is not None:
            if quantity < 1:
                raise InvalidValue("the quantity is at least 1")
            constraints["quantity"] = quantity
        if clear_contract_months:
            constraints.pop("contract_months_max", None)
        if contract_months_max is not None:
            if not 0 <= contract_months_max <= 120:
                raise InvalidValue("the longest contract is 0 (no minimum term) to 120 months")
            constraints["contract_months_max"] = contract_months_max
        p["constraints"] = constraints
        if where is not None:
            p["where"] = _where(where)
        if when is not None:
            p["when"] = {k: str(v) for k, v in when.items() if v}
        if terms is not None:
            chosen = list(dict.fromkeys(t.strip() for t in terms if t.strip())) or ["intent-only"]
            for t in chosen:
                term(t)
            p["terms"] = chosen
        if expires_in_days is not None:
            p["expires_in_days"] = expires_in_days
        _check_expiry(p["kind"], int(p.get("expires_in_days", DEFAULT_EXPIRY_DAYS)))
        # The record must be one we can sign: try it with a throwaway key.
        self._signed(KeyPair.generate(), p, exclude=())
        return p

    def _signed(self, key: KeyPair, p: Mapping[str, Any], *, exclude: Sequence[str]) -> dict[str, Any]:
        now = self.clock()
        return make_intent(
            key,
            category=p["category"],
            text=p.get("text", ""),
            constraints=p.get("constraints") or {},
            where=p.get("where") or None,
            when=p.get("when") or None,
            terms=[term(t) for t in p.get("terms") or ["intent-only"]],
            exclude=exclude,
            kind=p["kind"],
            expires_at=now + timedelta(days=int(p.get("expires_in_days", DEFAULT_EXPIRY_DAYS))),
            intent_id=p["intent_id"],
            now=now,
        )

    def create(
        self,
        category_id: str,
        text: str = "",
        *,
        kind: str = "rfp",
        price: Mapping[str, str] | None = None,
        features: Sequence[Mapping[str, Any]] = (),
        quantity: int | None = None,
        contract_months_max: int | None = None,
        where: Mapping[str, Any] | None = None,
        when: Mapping[str, Any] | None = None,
        terms: Sequence[str] | None = None,
        expires_in_days: int | None = None,
    ) -> IntentRecord:
        """A draft intent (or standing interest) with its own fresh key; nothing is sent yet."""
        if kind not in KINDS:
            raise InvalidValue(f"the kind is one of {', '.join(KINDS)}")
        key = KeyPair.generate()
        days = expires_in_days or (MAX_INTEREST_DAYS if kind == "interest" else DEFAULT_EXPIRY_DAYS)
        base = {
            "intent_id": m.new_uuid(),
            "kind": kind,
            "category": "",
            "text": "",
            "constraints": {},
            "terms": ["intent-only"],
            "expires_in_days": days,
            "seed": base64.b64encode(key.private_bytes).decode(),
            "author": key.did,
            "muted": False,
        }
        p = self._content(
            base,
            category_id=category_id,
            text=text,
            price=price,
            clear_price=False,
            features=list(features),
            quantity=quantity,
            contract_months_max=contract_months_max,
            clear_contract_months=False,
            where=where or {},
            when=when or {},
            terms=terms,
            expires_in_days=None,
        )
        with self.vault.db.write() as s:
            row = insert(self.vault, s, Intent, p, state="draft", expires_at=None)
            return self._record(row, p)

    def edit(
        self,
        intent_id: str,
        *,
        category_id: str | None = None,
        text: str | None = None,
        price: Mapping[str, str] | None = None,
        clear_price: bool = False,
        features: Sequence[Mapping[str, Any]] | None = None,
        quantity: int | None = None,
        contract_months_max: int | None = None,
        clear_contract_months: bool = False,
        where: Mapping[str, Any] | None = None,
        when: Mapping[str, Any] | None = None,
        terms: Sequence[str] | None = None,
        expires_in_days: int | None = None,
    ) -> IntentRecord:
        """Change a draft; a published intent cannot change (withdraw it and write a new one)."""
        with self.vault.db.write() as s:
            row = get_row(s, Intent, intent_id, "intent")
            if row.state != "draft":
                raise Conflict(f"this intent is {row.state}; only a draft can be edited")
            p = self._content(
                payload_of(self.vault, row),
                category_id=category_id,
                text=text,
                price=price,
                clear_price=clear_price,
                features=features,
                quantity=quantity,
                contract_months_max=contract_months_max,
                clear_contract_months=clear_contract_months,
                where=where,
                when=when,
                terms=terms,
                expires_in_days=expires_in_days,
            )
            update(self.vault, row, p)
            return self._record(row, p)

    def blocked_vendors(self) -> builtins.list[str]:
        """The did:keys of the vendors the person blocked: they never receive an intent."""
        with self.vault.db.read() as s:
            return sorted(set(s.scalars(select(Connection.vendor_did).where(Connection.status == "blocked"))))

    def publish(self, intent_id: str, *, relay_url: str | None = None) -> IntentRecord:
        """Sign the draft with its own key and post it to the relay."""
        relay = (relay_url or self.relay_url).rstrip("/")
        exclude = self.blocked_vendors()
        with self.vault.db.read() as s:
            row, p, key = self._load(s, intent_id)
            if row.state != "draft":
                raise Conflict(f"this intent is already {row.state}")
        signed = self._signed(key, p, exclude=exclude)
        body = self._answer(self._send("POST", f"{relay}/intents", key, signed), "the intent")
        matched = body.get("matched")
        with self.vault.db.write() as s:
            row = get_row(s, Intent, intent_id, "intent")
            p = payload_of(self.vault, row)
            if row.state != "draft":
                raise Conflict(f"this intent is already {row.state}")
            p |= {
                "published": signed,
                "relay_url": relay,
                "matched": matched if isinstance(matched, int) else None,
                "exclude": exclude,
                "cursor": None,
            }
            row.state = "published"
            row.expires_at = m.parse_time(signed["expires_at"])
            update(self.vault, row, p)
            return self._record(row, p)

    def _decide(self, key: KeyPair, p: Mapping[str, Any], decision: str, offer_id: str | None = None) -> None:
        record = make_decision(key, p["published"], decision, offer_id=offer_id, now=self.clock())
        url = f"{p['relay_url']}/intents/{quote(p['intent_id'], safe='')}/decision"
        self._answer(self._send("POST", url, key, record), f"the {decision} decision")

    def withdraw(self, intent_id: str) -> IntentRecord:
        """Close the intent: a published one is withdrawn at the relay with a signed decision."""
        self.get(intent_id)  # expires it first if due
        with self.vault.db.read() as s:
            row, p, key = self._load(s, intent_id)
            state = row.state
        if state not in ("draft", "published"):
            raise Conflict(f"this intent is already {state}")
        if state == "published":
            self._decide(key, p, "withdrawn")
        with self.vault.db.write() as s:
            row = get_row(s, Intent, intent_id, "intent")
            p = payload_of(self.vault, row)
            row.state = "withdrawn"
            update(self.vault, row, p)
            return self._record(row, p)

    def set_muted(self, intent_id: str, muted: bool) -> IntentRecord:
        """Mute a standing interest (not polled, its offers hidden) or hear it again."""
        with self.vault.db.write() as s:
            row = get_row(s, Intent, intent_id, "intent")
            p = payload_of(self.vault, row)
            if p["kind"] != "interest":
                raise InvalidValue("only a standing interest can be muted; withdraw a request instead")
            p["muted"] = muted
            update(self.vault, row, p)
            return self._record(row, p)

    # -- offers ----------------------------------------------------------------------------------------

    def fetch(self, intent_id: str, *, max_pages: int = 10) -> int:
        """Fetch new offers from the relay; return how many were new. Invalid ones are kept, marked."""
        record = self.get(intent_id)
        if record.state != "published":
            raise Conflict(f"this intent is {record.state}; offers are fetched for a published intent")
        if record.muted:
            return 0
        with self.vault.db.read() as s:
            _row, p, key = self._load(s, intent_id)
        cursor = p.get("cursor")
        new = 0
        for _ in range(max_pages):
            query = urlencode({"after": cursor}) if cursor else ""
            url = f"{p['relay_url']}/intents/{quote(p['intent_id'], safe='')}/offers" + (
                f"?{query}" if query else ""
            )
            body = self._answer(self._send("GET", url, key), "the offers request", ok=(200,))
            envelopes = body.get("offers")
            if not isinstance(envelopes, list):
                raise RelayError("the relay's offers answer has no list of offers")
            new += self._store_offers(intent_id, p, key, envelopes)
            nxt = body.get("next")
            if not envelopes or not nxt or nxt == cursor:
                if nxt:
                    cursor = nxt
                break
            cursor = nxt
        with self.vault.db.write() as s:
            row = get_row(s, Intent, intent_id, "intent")
            fresh = payload_of(self.vault, row)
            fresh["cursor"] = cursor
            update(self.vault, row, fresh)
        return new

    def _store_offers(
        self, intent_id: str, p: Mapping[str, Any], key: KeyPair, envelopes: builtins.list[Any]
    ) -> int:
        new = 0
        with self.vault.db.write() as s:
            seen = set(s.scalars(select(IntentOffer.offer_id).where(IntentOffer.intent_id == intent_id)))
            for envelope in envelopes:
                offer_id = str(envelope.get("offer_id") if isinstance(envelope, dict) else "")[:64]
                if not offer_id:
                    offer_id = m.new_uuid()
                if offer_id in seen:
                    continue
                seen.add(offer_id)
                payload: dict[str, Any] = {"envelope": envelope}
                try:
                    offer = open_offer(envelope, key, p["published"])
                    if m.parse_time(offer["valid_until"]) <= self.clock():
                        raise m.ProtocolViolation("the offer is no longer valid")
                    payload |= {"offer": offer, "state": "open", "reason": None}
                except (SignatureError, IntegrityError, InvalidValue, NotFound) as exc:
                    payload |= {"offer": None, "state": "invalid", "reason": str(exc)[:300]}
                except (KeyError, TypeError, ValueError) as exc:
                    payload |= {
                        "offer": None,
                        "state": "invalid",
                        "reason": f"malformed offer: {exc!s}"[:300],
                    }
                if payload["offer"] is not None:
                    payload["score"] = ranking.score_offer(p["published"], payload["offer"]).to_json()
                insert(self.vault, s, IntentOffer, payload, intent_id=intent_id, offer_id=offer_id)
                new += 1
        return new

    def _offer_record(self, row: IntentOffer, p: dict[str, Any]) -> OfferRecord:
        raw = p.get("envelope")
        envelope: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return OfferRecord(
            id=row.id,
            offer_id=row.offer_id,
            state=p.get("state", "invalid"),
            vendor=str((p.get("offer") or {}).get("vendor") or envelope.get("vendor") or "unknown"),
            offer=p.get("offer"),
            reason=p.get("reason"),
            received_at=row.created_at,
        )

    def offers(self, intent_id: str) -> builtins.list[OfferRecord]:
        with self.vault.db.read() as s:
            get_row(s, Intent, intent_id, "intent")
            rows = s.scalars(
                select(IntentOffer).where(IntentOffer.intent_id == intent_id).order_by(IntentOffer.created_at)
            )
            return [self._offer_record(r, payload_of(self.vault, r)) for r in rows]

    def current_contract(self, intent: IntentRecord, today: date | None = None) -> CurrentContract | None:
        """The person's active contract whose category maps to the intent's (or its parent)."""
        from openvrm.ledger.contracts import ContractService, today_local
        from openvrm.ledger.terms import deadlines

        wanted = intent.category
        parent = wanted.rsplit(".", 1)[0] if "." in wanted else None
        day = today or today_local()
        for c in ContractService(self.vault).list():
            if c.status != "active":
                continue
            mapped = category_for(c.category)
            if mapped is None:
                continue
            if mapped == wanted or mapped == parent or covers(wanted, mapped):
                d = deadlines(c.terms(), day)
                return CurrentContract(
                    c.id, c.plan, c.price, c.currency, c.billing_cycle, d.cancellation_deadline
                )
        return None

    def compare(self, intent_id: str, *, today: date | None = None) -> Comparison:
        """The offers side by side: scored, ranked, with savings against the current contract."""
        intent = self.get(intent_id)
        records = self.offers(intent_id)
        if intent.muted:
            return Comparison(intent, [], None, [])
        reference = intent.published or self._preview(intent)
        by_key = {r.id: r for r in records}
        valid = [(r.id, r.offer) for r in records if r.offer is not None and r.state != "invalid"]
        contract = self.current_contract(intent, today)
        views = []
        for ranked in ranking.rank(reference, valid):
            saved = None
            if contract is not None:
                saved = ranking.savings(
                    ranked.offer.get("price") or {}, contract.price, contract.currency, contract.billing_cycle
                )
            views.append(OfferView(by_key[ranked.key], ranked.score, saved))
        invalid = [r for r in records if r.state == "invalid"]
        return Comparison(intent, views, contract, invalid)

    @staticmethod
    def _preview(intent: IntentRecord) -> dict[str, Any]:
        return {"constraints": intent.constraints, "terms": [{"id": t} for t in intent.terms]}

    def _find_offer(self, s: Session, intent_id: str, offer_key: str) -> IntentOffer:
        row = s.get(IntentOffer, offer_key) if offer_key else None
        if row is None or row.intent_id != intent_id:
            row = s.scalar(
                select(IntentOffer).where(
                    IntentOffer.intent_id == intent_id, IntentOffer.offer_id == offer_key
                )
            )
        if row is None:
            raise NotFound(f"no offer {offer_key[:40]!r} for this intent")
        return row

    # -- accepting -------------------------------------------------------------------------------------

    def accept(
        self,
        intent_id: str,
        offer_key: str,
        *,
        agent_base_url: str,
        fields: Sequence[str] = (),
        agent: AgentService | None = None,
    ) -> AcceptResult:
        """Accept one offer: tell the relay, connect to the vendor under the intent's terms, grant
        only ``fields``; the other offers are declined. Retrying after a failed connection connects again."""
        intent = self.get(intent_id)
        with self.vault.db.read() as s:
            row, p, key = self._load(s, intent_id)
            orow = self._find_offer(s, intent_id, offer_key)
            op = payload_of(self.vault, orow)
        offer = op.get("offer")
        if offer is None or op.get("state") == "invalid":
            raise Conflict(f"this offer cannot be accepted: {op.get('reason') or 'it is not valid'}")
        agents = agent or AgentService(self.vault, policy=self.policy, client_factory=self._client_factory)
        if agents.discover(offer["discovery"])["vendor"] != offer["vendor"]:
            raise Conflict(
                "the offer's discovery address belongs to another vendor than the one who signed it"
            )
        retry = (
            intent.state == "accepted" and intent.accepted_offer == orow.offer_id and not intent.connection_id
        )
        if not retry:
            if intent.state != "published":
                raise Conflict(
                    f"this intent is {intent.state}; only a published intent's offers can be accepted"
                )
            if m.parse_time(offer["valid_until"]) <= self.clock():
                raise Conflict("this offer is no longer valid")
            self._decide(key, p, "accepted", orow.offer_id)
            with self.vault.db.write() as s:
                row = get_row(s, Intent, intent_id, "intent")
                p = payload_of(self.vault, row)
                p["accepted_offer"] = orow.offer_id
                row.state = "accepted"
                update(self.vault, row, p)
                for other in s.scalars(select(IntentOffer).where(IntentOffer.intent_id == intent_id)):
                    q = payload_of(self.vault, other)
                    if other.id == orow.id:
                        q["state"] = "accepted"
                    elif q.get("state") == "open":
                        q["state"] = "declined"
                    else:
                        continue
                    update(self.vault, other, q)
        offered_terms = {t["id"] for t in offer.get("terms") or []}
        terms = [t for t in p.get("terms") or ["intent-only"] if t in offered_terms] or list(p["terms"])
        error: str | None = None
        result: ConnectResult | None = None
        try:
            result = agents.connect(
                offer["discovery"],
                agent_base_url=agent_base_url,
                terms=terms,
                intent={"intent_id": p["intent_id"], "offer_id": orow.offer_id},
            )
            if result.connection is None:
                error = f"the vendor answered {result.decision}: {result.reason or 'no reason given'}"
        except OpenVRMError as exc:
            error = exc.message
        granted: builtins.list[str] = []
        with self.vault.db.write() as s:
            row = get_row(s, Intent, intent_id, "intent")
            p = payload_of(self.vault, row)
            p["connect_error"] = error
            if result is not None and result.connection is not None:
                p["connection_id"] = result.connection.id
            update(self.vault, row, p)
        if error is not None:
            raise RelayError(
                f"the offer is accepted, but connecting to the vendor failed: {error}. "
                "Accept it again to retry the connection."
            )
        if result is None or result.connection is None:  # pragma: no cover - error is set then
            raise RelayError("connecting to the vendor failed")
        if fields:
            granted = agents.grant(result.connection.id, list(fields)).fields
        return AcceptResult(self.get(intent_id), result, granted)
