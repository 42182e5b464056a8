"""Which subscriptions an intent reaches, found through the filter indexes (never by testing them all).

:func:`match` runs one SQL query per intent: candidate subscriptions come from the category index (the
intent's category and its ancestors), then region, price, keyword, exclusion and ``active`` are tested in
the same query with ``EXISTS`` lookups on the region and keyword indexes. :func:`naive_match` loads every
subscription and applies the same rules in Python; it exists for the property test and the benchmark.

Rules (docs/protocol.md 12.2, with the relay's reading of the loose ends, see docs/relay.md):

* category: one of the subscription's categories is the intent's category or one of its ancestors;
* region: the subscription has no regions, or one equals the intent's country (``FR``) or
  country-region (``FR-ARA``); a subscription with regions does not match an intent without a country;
* price: when the subscription has a ``price_min`` and the intent a ``price_max`` in the same currency,
  ``price_min <= price_max``; other combinations do not filter;
* keywords: the subscription has none, or one of them is a word of the intent's text (case and accents
  folded);
* the vendor is not in the intent's ``exclude``, and the subscription is active.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from openvrm.errors import InvalidValue
from openvrm.intents.taxonomy import ancestors
from openvrm.relay.store import (
    Subscription,
    SubscriptionCategory,
    SubscriptionKeyword,
    SubscriptionRegion,
)

_WORD = re.compile(r"[^\W_]+")
_AMOUNT = re.compile(r"\d{1,10}(\.\d{1,2})?")
MAX_WORDS = 600


def fold(text: str) -> str:
    """Case-folded, accents removed, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def words(text: str) -> list[str]:
    """The distinct folded words of ``text`` (letters and digits), in order, at most :data:`MAX_WORDS`."""
    return list(dict.fromkeys(w for w in _WORD.findall(fold(text)) if len(w) <= 60))[:MAX_WORDS]


def cents(amount: Any) -> int:
    """``"12.5"`` -> ``1250``; the protocol's decimal strings, at most two decimals."""
    if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
        raise InvalidValue(f'{str(amount)[:40]!r} is not an amount such as "12.50" (at most two decimals)')
    return int(Decimal(amount) * 100)


def region_keys(country: str | None, region: str | None) -> list[str]:
    """``("FR", "ARA")`` -> ``["FR", "FR-ARA"]``; ``("FR", "FR-ARA")`` gives the same."""
    if not country:
        return []
    keys = [country.upper()]
    if region:
        r = region.strip().upper()
        keys.append(r if r.startswith(keys[0] + "-") else f"{keys[0]}-{r}")
    return keys


@dataclass(frozen=True)
class IntentFacts:
    """What matching needs from an intent."""

    category: str
    regions: tuple[str, ...] = ()
    price_max: int | None = None
    currency: str | None = None
    words: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, intent: Mapping[str, Any]) -> IntentFacts:
        where = intent.get("where") or {}
        price = (intent.get("constraints") or {}).get("price_max")
        return cls(
            category=str(intent["category"]),
            regions=tuple(region_keys(where.get("country"), where.get("region"))),
            price_max=cents(price["amount"]) if price else None,
            currency=price["currency"] if price else None,
            words=tuple(words(str(intent.get("text", "")))),
            exclude=tuple(sorted(set(intent.get("exclude") or ()))),
        )


def _facts(intent: IntentFacts | Mapping[str, Any]) -> IntentFacts:
    return intent if isinstance(intent, IntentFacts) else IntentFacts.of(intent)


def match(session: Session, intent: IntentFacts | Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(subscription_id, vendor)`` of every matching subscription, by one indexed query."""
    facts = _facts(intent)
    sub = Subscription
    conditions: list[Any] = [
        sub.id.in_(
            select(SubscriptionCategory.subscription_id).where(
                SubscriptionCategory.category.in_(ancestors(facts.category))
            )
        ),
        sub.active.is_(True),
    ]
    region_ok: Any = sub.any_region.is_(True)
    if facts.regions:
        region_ok = or_(
            region_ok,
            exists().where(
                SubscriptionRegion.subscription_id == sub.id,
                SubscriptionRegion.region.in_(facts.regions),
            ),
        )
    conditions.append(region_ok)
    keyword_ok: Any = sub.any_keyword.is_(True)
    if facts.words:
        keyword_ok = or_(
            keyword_ok,
            exists().where(
                SubscriptionKeyword.subscription_id == sub.id,
                SubscriptionKeyword.keyword.in_(facts.words),
            ),
        )
    conditions.append(keyword_ok)
    if facts.price_max is not None and facts.currency is not None:
        conditions.append(
            or_(
                sub.price_min.is_(None),
                sub.currency.is_(None),
                sub.currency != facts.currency,
                and_(sub.currency == facts.currency, sub.price_min <= facts.price_max),
            )
        )
    if facts.exclude:
        conditions.append(sub.vendor.not_in(facts.exclude))
    rows = session.execute(select(sub.id, sub.vendor).where(*conditions).order_by(sub.id))
    return [(str(r[0]), str(r[1])) for r in rows]


def _matches_one(
    facts: IntentFacts,
    sub: Subscription,
    cats: Iterable[str],
    regions: Iterable[str],
    keywords: Iterable[str],
) -> bool:
    if not sub.active or sub.vendor in facts.exclude:
        return False
    if not set(cats) & set(ancestors(facts.category)):
        return False
    if not sub.any_region and not set(regions) & set(facts.regions):
        return False
    if not sub.any_keyword and not set(keywords) & set(facts.words):
        return False
    return not (
        facts.price_max is not None
        and sub.price_min is not None
        and sub.currency == facts.currency
        and sub.price_min > facts.price_max
    )


def naive_match(session: Session, intent: IntentFacts | Mapping[str, Any]) -> list[tuple[str, str]]:
    """The same answer as :func:`match`, by loading every subscription (benchmark and tests only)."""
    facts = _facts(intent)
    cats: dict[str, list[str]] = {}
    regions: dict[str, list[str]] = {}
    keywords: dict[str, list[str]] = {}
    for c in session.scalars(select(SubscriptionCategory)):
        cats.setdefault(c.subscription_id, []).append(c.category)
    for r in session.scalars(select(SubscriptionRegion)):
        regions.setdefault(r.subscription_id, []).append(r.region)
    for k in session.scalars(select(SubscriptionKeyword)):
        keywords.setdefault(k.subscription_id, []).append(k.keyword)
    out = [
        (s.id, s.vendor)
        for s in session.scalars(select(Subscription))
        if _matches_one(facts, s, cats.get(s.id, ()), regions.get(s.id, ()), keywords.get(s.id, ()))
    ]
    return sorted(out)
