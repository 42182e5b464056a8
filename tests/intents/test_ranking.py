"""Ranking offers against an intent: hard constraints, the score breakdown, savings (property tests)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from openvrm.intents.ranking import (
    WEIGHTS,
    contract_yearly_cost,
    rank,
    savings,
    score_offer,
    yearly_cost,
)

TERMS = [{"id": "intent-only", "version": "1.0.0"}]
amounts = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False, allow_infinity=False)
pers = st.sampled_from(["month", "year", "once"])
currencies = st.sampled_from(["EUR", "USD"])


def intent(
    ceiling: Decimal | None = Decimal("15"),
    currency: str = "EUR",
    per: str = "month",
    features: list[dict[str, Any]] | None = None,
    months_max: int | None = None,
) -> dict[str, Any]:
    constraints: dict[str, Any] = {}
    if ceiling is not None:
        constraints["price_max"] = {"amount": str(ceiling), "currency": currency, "per": per}
    if features:
        constraints["features"] = features
    if months_max is not None:
        constraints["contract_months_max"] = months_max
    return {"constraints": constraints, "terms": TERMS}


def offer(
    amount: Decimal, currency: str = "EUR", per: str = "month", features: Any = (), months: int | None = 0
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "price": {"amount": str(amount), "currency": currency, "per": per},
        "features": list(features),
        "terms": TERMS,
    }
    if months is not None:
        out["contract_months"] = months
    return out


@given(amounts, amounts, pers, pers, currencies, currencies, st.integers(0, 48), st.integers(0, 48))
def test_score_is_bounded_and_adds_up(
    ceiling: Decimal, price: Decimal, per_i: str, per_o: str, cur_i: str, cur_o: str, mx: int, months: int
) -> None:
    s = score_offer(intent(ceiling, cur_i, per_i, months_max=mx), offer(price, cur_o, per_o, months=months))
    assert Decimal(0) <= s.total <= Decimal(100)
    assert s.total == sum(s.parts.values())
    for name, points in s.parts.items():
        assert Decimal(0) <= points <= WEIGHTS[name]
    assert s.violating == bool(s.violations)


@given(amounts, amounts)
def test_over_the_ceiling_in_the_same_currency_and_period_violates(ceiling: Decimal, price: Decimal) -> None:
    s = score_offer(intent(ceiling), offer(price))
    assert ("price" in s.violations) == (price > ceiling)


@given(amounts, amounts)
def test_another_currency_violates(ceiling: Decimal, price: Decimal) -> None:
    assert "currency" in score_offer(intent(ceiling, "EUR"), offer(price, "USD")).violations


@given(amounts, amounts)
def test_month_and_year_are_normalised(ceiling: Decimal, price: Decimal) -> None:
    s = score_offer(intent(ceiling, per="month"), offer(price, per="year"))
    assert ("price" in s.violations) == (price / 12 > ceiling)


@given(amounts, amounts, amounts)
def test_a_cheaper_offer_never_scores_less(ceiling: Decimal, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    i = intent(ceiling)
    assert score_offer(i, offer(low)).total >= score_offer(i, offer(high)).total


@given(st.integers(1, 100), st.integers(0, 200))
def test_a_missing_or_smaller_required_feature_violates(wanted: int, have: int) -> None:
    i = intent(None, features=[{"name": "data_gb", "value": str(wanted), "required": True}])
    s = score_offer(i, offer(Decimal(1), features=[{"name": "data_gb", "value": str(have)}]))
    assert ("feature:data_gb" in s.violations) == (have < wanted)
    assert "feature:data_gb" in score_offer(i, offer(Decimal(1))).violations


@given(st.booleans())
def test_optional_features_only_add_points(has: bool) -> None:
    i = intent(None, features=[{"name": "esim", "value": "yes", "required": False}])
    s = score_offer(i, offer(Decimal(1), features=[{"name": "esim", "value": "yes"}] if has else []))
    assert not s.violations
    assert s.parts["optional"] == (WEIGHTS["optional"] if has else 0)


@given(st.integers(0, 36), st.integers(0, 48))
def test_a_longer_contract_than_allowed_violates(mx: int, months: int) -> None:
    s = score_offer(intent(None, months_max=mx), offer(Decimal(1), months=months))
    assert ("contract" in s.violations) == (months > mx)


@given(st.lists(st.tuples(amounts, currencies, st.integers(0, 24)), max_size=8), amounts)
def test_rank_puts_conforming_offers_first_best_first(
    specs: list[tuple[Decimal, str, int]], ceiling: Decimal
) -> None:
    i = intent(ceiling, months_max=12)
    ranked = rank(i, [(f"o{n}", offer(a, c, months=mo)) for n, (a, c, mo) in enumerate(specs)])
    assert len(ranked) == len(specs)
    flags = [r.score.violating for r in ranked]
    assert flags == sorted(flags)
    for a, b in zip(ranked, ranked[1:], strict=False):
        if a.score.violating == b.score.violating:
            assert a.score.total >= b.score.total


@given(amounts, st.sampled_from(["weekly", "monthly", "quarterly", "semiannual", "yearly"]), amounts, pers)
def test_savings_are_exact_decimal_differences(
    contract_price: Decimal, cycle: str, price: Decimal, per: str
) -> None:
    s = savings({"amount": str(price), "currency": "EUR", "per": per}, contract_price, "EUR", cycle)
    assert s is not None
    assert s.amount == contract_yearly_cost(contract_price, cycle) - yearly_cost(
        {"amount": str(price), "per": per}
    )  # type: ignore[operator]
    assert (
        savings({"amount": str(price), "currency": "USD", "per": per}, contract_price, "EUR", cycle) is None
    )


def test_savings_examples() -> None:
    s = savings({"amount": "12.99", "currency": "EUR", "per": "month"}, Decimal("19.99"), "EUR", "monthly")
    assert s is not None and s.amount == Decimal("84.00")
    assert (
        savings({"amount": "100", "currency": "EUR", "per": "year"}, Decimal("50"), "EUR", "one-off") is None
    )
