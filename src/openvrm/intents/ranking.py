"""Ranking offers against an intent's constraints, and what an offer would save against a contract.

Pure functions of the records (the intent and the opened offers as dicts, a contract's price and cycle),
so they are easy to test with generated inputs:

* :func:`score_offer` gives a score out of 100 broken down by criterion (price against the ceiling,
  required features met, optional features, contract length, terms) and lists the **hard** constraints
  the offer breaks: over the price ceiling (same currency, per month/year normalised), a different
  currency, a missing required feature, a contract longer than the maximum.
* :func:`rank` sorts offers for a side-by-side comparison: offers that break nothing first, best score
  first; violating offers after them.
* :func:`yearly_cost` and :func:`savings` compare an offer with the person's current contract over a
  year, in :class:`~decimal.Decimal` (monthly, yearly and one-off amounts normalised).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

WEIGHTS: dict[str, int] = {"price": 40, "required": 30, "optional": 10, "contract": 10, "terms": 10}
"""Points each criterion is worth; they add up to 100."""

PER_YEAR: dict[str, int] = {"month": 12, "year": 1}
CYCLES_PER_YEAR: dict[str, int] = {
    "weekly": 52,
    "monthly": 12,
    "quarterly": 4,
    "semiannual": 2,
    "yearly": 1,
    "one-off": 0,
}
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Score:
    """An offer's score (0 to 100), its breakdown by criterion, and the hard constraints it breaks."""

    total: Decimal
    parts: dict[str, Decimal]
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violating(self) -> bool:
        return bool(self.violations)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": str(self.total),
            "parts": {k: str(v) for k, v in self.parts.items()},
            "violations": list(self.violations),
            "violating": self.violating,
            "notes": list(self.notes),
        }


def decimal_of(value: Any) -> Decimal | None:
    """A finite decimal from a string or number, or ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return out if out.is_finite() else None


def _clamp(value: Decimal, low: Decimal = Decimal(0), high: Decimal = Decimal(1)) -> Decimal:
    return max(low, min(high, value))


def _points(weight: int, fraction: Decimal) -> Decimal:
    return (Decimal(weight) * _clamp(fraction)).quantize(CENT)


def comparable_amount(price: Mapping[str, Any], per: str) -> Decimal | None:
    """``price`` expressed per ``per`` (month and year convert; once compares only with once)."""
    amount = decimal_of(price.get("amount"))
    have = str(price.get("per") or "once")
    if amount is None:
        return None
    if have == per:
        return amount
    if have in PER_YEAR and per in PER_YEAR:
        return amount * PER_YEAR[have] / PER_YEAR[per]
    return None


def feature_met(wanted: Mapping[str, Any], offered: Sequence[Mapping[str, Any]]) -> bool:
    """An offered feature of the same name with the wanted value (a number: at least as much)."""
    name = str(wanted.get("name", "")).strip().casefold()
    value = str(wanted.get("value", "") or "").strip()
    for f in offered:
        if str(f.get("name", "")).strip().casefold() != name:
            continue
        have = str(f.get("value", "") or "").strip()
        if not value:
            return True
        want_n, have_n = decimal_of(value), decimal_of(have)
        if want_n is not None and have_n is not None:
            if have_n >= want_n:
                return True
        elif have.casefold() == value.casefold():
            return True
    return False


def score_offer(intent: Mapping[str, Any], offer: Mapping[str, Any]) -> Score:
    """Score ``offer`` against ``intent``'s constraints (see the module's description)."""
    constraints: Mapping[str, Any] = intent.get("constraints") or {}
    parts: dict[str, Decimal] = {}
    violations: list[str] = []
    notes: list[str] = []

    # Price against the ceiling.
    price: Mapping[str, Any] = offer.get("price") or {}
    ceiling: Mapping[str, Any] | None = constraints.get("price_max")
    amount = decimal_of(price.get("amount"))
    if ceiling and decimal_of(ceiling.get("amount")) is not None:
        limit = decimal_of(ceiling.get("amount")) or Decimal(0)
        if str(price.get("currency", "")).upper() != str(ceiling.get("currency", "")).upper():
            violations.append("currency")
            parts["price"] = Decimal("0.00")
        else:
            same = comparable_amount(price, str(ceiling.get("per") or "once"))
            if same is None:
                notes.append("the price is not per the same period as your ceiling")
                parts["price"] = _points(WEIGHTS["price"], Decimal("0.5"))
            elif same > limit:
                violations.append("price")
                parts["price"] = Decimal("0.00")
            elif limit <= 0:
                parts["price"] = _points(WEIGHTS["price"], Decimal(1))
            else:
                # At the ceiling: half the points; free: all of them.
                parts["price"] = _points(WEIGHTS["price"], 1 - same / (2 * limit))
    else:
        parts["price"] = _points(WEIGHTS["price"], Decimal("0.5"))
        if amount is None:
            notes.append("the offer has no readable price")

    # Features.
    wanted: list[Mapping[str, Any]] = list(constraints.get("features") or [])
    offered: list[Mapping[str, Any]] = list(offer.get("features") or [])
    required = [f for f in wanted if f.get("required")]
    optional = [f for f in wanted if not f.get("required")]
    met_required = 0
    for f in required:
        if feature_met(f, offered):
            met_required += 1
        else:
            violations.append(f"feature:{f.get('name')}")
    parts["required"] = _points(
        WEIGHTS["required"], Decimal(met_required) / len(required) if required else Decimal(1)
    )
    met_optional = sum(1 for f in optional if feature_met(f, offered))
    parts["optional"] = _points(
        WEIGHTS["optional"], Decimal(met_optional) / len(optional) if optional else Decimal(1)
    )

    # Contract length.
    months_max = constraints.get("contract_months_max")
    months = offer.get("contract_months")
    if isinstance(months_max, int) and isinstance(months, int) and months > months_max:
        violations.append("contract")
        parts["contract"] = Decimal("0.00")
    elif isinstance(months, int):
        parts["contract"] = _points(WEIGHTS["contract"], 1 - Decimal(min(months, 36)) / 36)
    else:
        notes.append("the offer does not say how long the contract is")
        parts["contract"] = _points(WEIGHTS["contract"], Decimal("0.5"))

    # Terms: full points when the offer accepts the intent's preferred term.
    intent_terms = [t.get("id") for t in intent.get("terms") or []]
    offer_terms = {t.get("id") for t in offer.get("terms") or []}
    if intent_terms and intent_terms[0] in offer_terms:
        parts["terms"] = _points(WEIGHTS["terms"], Decimal(1))
    elif offer_terms & set(intent_terms):
        parts["terms"] = _points(WEIGHTS["terms"], Decimal("0.5"))
    else:
        parts["terms"] = Decimal("0.00")

    total = sum(parts.values(), Decimal(0)).quantize(CENT)
    return Score(total, parts, violations, notes)


@dataclass(frozen=True)
class Ranked:
    key: str
    offer: dict[str, Any]
    score: Score


def rank(intent: Mapping[str, Any], offers: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Ranked]:
    """Offers (``(key, offer)`` pairs) scored and sorted: those that break nothing first, best first."""
    scored = [Ranked(key, dict(offer), score_offer(intent, offer)) for key, offer in offers]
    return sorted(scored, key=lambda r: (r.score.violating, -r.score.total, r.key))


# -- against the current contract --------------------------------------------------------------------------


def yearly_cost(price: Mapping[str, Any]) -> Decimal | None:
    """An offer's price over a year: a month x 12, a year x 1, once as it is."""
    amount = decimal_of(price.get("amount"))
    if amount is None:
        return None
    per = str(price.get("per") or "once")
    return (amount * PER_YEAR.get(per, 1)).quantize(CENT)


def contract_yearly_cost(price: Decimal, billing_cycle: str) -> Decimal | None:
    """A contract's cost over a year; ``None`` for a one-off contract (nothing more to pay)."""
    per_year = CYCLES_PER_YEAR.get(billing_cycle)
    if not per_year:
        return None
    return (price * per_year).quantize(CENT)


@dataclass(frozen=True)
class Savings:
    contract_yearly: Decimal
    offer_yearly: Decimal
    currency: str

    @property
    def amount(self) -> Decimal:
        """Positive: the offer saves this much a year; negative: it costs this much more."""
        return self.contract_yearly - self.offer_yearly

    def to_json(self) -> dict[str, str]:
        return {
            "contract_yearly": str(self.contract_yearly),
            "offer_yearly": str(self.offer_yearly),
            "saves": str(self.amount),
            "currency": self.currency,
        }


def savings(
    offer_price: Mapping[str, Any], contract_price: Decimal, contract_currency: str, billing_cycle: str
) -> Savings | None:
    """What the offer saves (or costs) over a year against the contract; ``None`` when not comparable."""
    if str(offer_price.get("currency", "")).upper() != contract_currency.upper():
        return None
    offer_yearly = yearly_cost(offer_price)
    contract_yearly = contract_yearly_cost(contract_price, billing_cycle)
    if offer_yearly is None or contract_yearly is None:
        return None
    return Savings(contract_yearly, offer_yearly, contract_currency.upper())
