"""Contract arithmetic, date by date."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openvrm.errors import InvalidValue
from openvrm.ledger.terms import (
    ContractTerms,
    PricePoint,
    deadlines,
    monthly_cost,
    price_at,
    schedule,
    term_ends,
    yearly_cost,
)

D = Decimal


def mobile(**kw: object) -> ContractTerms:
    base: dict[str, object] = {
        "start": date(2024, 1, 15),
        "price": D("15.99"),
        "currency": "EUR",
        "billing_cycle": "monthly",
        "minimum_term_months": 12,
        "auto_renewal": True,
        "renewal_term_months": 12,
        "notice_value": 1,
        "notice_unit": "months",
    }
    base.update(kw)
    return ContractTerms(**base)  # type: ignore[arg-type]


def test_term_ends_of_a_yearly_renewing_contract() -> None:
    ends = term_ends(mobile())
    assert [next(ends) for _ in range(3)] == [date(2025, 1, 14), date(2026, 1, 14), date(2027, 1, 14)]


def test_cancellation_deadline_before_and_after_it_passes() -> None:
    t = mobile()
    before = deadlines(t, date(2024, 12, 1))
    assert before.term_end == date(2025, 1, 14)
    assert before.cancellation_deadline == date(2024, 12, 14)
    assert before.ends_if_cancelled == date(2025, 1, 14)
    assert before.next_renewal == date(2025, 1, 15)
    # The deadline day itself is still in time.
    assert deadlines(t, date(2024, 12, 14)).cancellation_deadline == date(2024, 12, 14)
    # One day late: this term is lost, notice now ends the contract a year later.
    late = deadlines(t, date(2024, 12, 15))
    assert late.term_end == date(2025, 1, 14)
    assert late.cancellation_deadline == date(2025, 12, 14)
    assert late.ends_if_cancelled == date(2026, 1, 14)


def test_month_end_clipping_does_not_drift() -> None:
    t = mobile(start=date(2024, 1, 31), minimum_term_months=0, renewal_term_months=0, notice_value=0)
    ends = term_ends(t)
    assert [next(ends) for _ in range(4)] == [
        date(
            2024, 2, 28
        ),  # 31 Jan + 1 month clips to 29 Feb (2024 is a leap year); the term ends the day before
        date(2024, 3, 30),
        date(2024, 4, 29),
        date(2024, 5, 30),
    ]
    dues = [d for d, _, _ in schedule(t, date(2024, 6, 1))]
    assert dues == [
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
        date(2024, 5, 31),
    ]


def test_no_minimum_term_monthly_notice_in_days() -> None:
    t = mobile(minimum_term_months=0, renewal_term_months=0, notice_value=10, notice_unit="days")
    d = deadlines(t, date(2024, 3, 1))
    assert d.term_end == date(2024, 3, 14)
    assert d.cancellation_deadline == date(2024, 3, 4)


def test_fixed_term_without_renewal_ends() -> None:
    t = mobile(auto_renewal=False)
    assert deadlines(t, date(2024, 6, 1)).next_renewal is None
    assert deadlines(t, date(2024, 12, 20)).cancellation_deadline is None  # too late, and it ends anyway
    gone = deadlines(t, date(2025, 2, 1))
    assert not gone.active


def test_cancelled_contract_runs_to_its_end_date() -> None:
    t = mobile(end_date=date(2025, 1, 14))
    d = deadlines(t, date(2024, 12, 20))
    assert d.active and d.term_end == date(2025, 1, 14) and d.cancellation_deadline is None
    assert not deadlines(t, date(2025, 1, 15)).active
    assert [due for due, _, _ in schedule(t, date(2030, 1, 1))][-1] == date(2024, 12, 15)


def test_price_history_and_costs() -> None:
    t = mobile(price_history=(PricePoint(date(2024, 7, 15), D("17.99"), "EUR"),))
    assert price_at(t, date(2024, 7, 14)) == (D("15.99"), "EUR")
    assert price_at(t, date(2024, 7, 15)) == (D("17.99"), "EUR")
    amounts = [a for _, a, _ in schedule(t, date(2024, 12, 31))]
    assert amounts == [D("15.99")] * 6 + [D("17.99")] * 6
    assert monthly_cost(t, date(2024, 8, 1)) == D("17.99")
    assert yearly_cost(t, date(2024, 8, 1)) == D("215.88")
    weekly = mobile(billing_cycle="weekly", price=D("10"))
    assert monthly_cost(weekly, date(2024, 8, 1)) == D("43.33")
    assert monthly_cost(mobile(billing_cycle="one-off"), date(2024, 8, 1)) == D("0.00")


def test_one_off_purchase() -> None:
    t = mobile(billing_cycle="one-off", minimum_term_months=0, renewal_term_months=0)
    assert list(schedule(t, date(2030, 1, 1))) == [(date(2024, 1, 15), D("15.99"), "EUR")]
    assert list(term_ends(t)) == []


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"billing_cycle": "fortnightly"}, "billing cycle"),
        ({"notice_unit": "years"}, "notice unit"),
        ({"price": D("-1")}, "negative"),
        ({"minimum_term_months": -1}, "negative"),
        ({"end_date": date(2023, 1, 1)}, "before it starts"),
    ],
)
def test_invalid_terms(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        mobile(**kw)


@given(
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31)),
    today=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31)),
    min_term=st.integers(0, 36),
    renewal=st.integers(0, 24),
    notice=st.integers(0, 90),
    cycle=st.sampled_from(["weekly", "monthly", "quarterly", "semiannual", "yearly"]),
)
def test_deadline_properties(
    start: date, today: date, min_term: int, renewal: int, notice: int, cycle: str
) -> None:
    t = mobile(
        start=start,
        billing_cycle=cycle,
        minimum_term_months=min_term,
        renewal_term_months=renewal,
        notice_value=notice,
        notice_unit="days",
    )
    d = deadlines(t, today)
    if today < start:
        return
    assert d.active
    assert d.term_end is not None and d.term_end >= today
    assert d.cancellation_deadline is not None and d.cancellation_deadline >= today
    assert d.ends_if_cancelled is not None and d.ends_if_cancelled >= d.term_end
    assert (d.ends_if_cancelled - d.cancellation_deadline).days == notice


def test_terms_stop_at_the_end_of_the_calendar() -> None:
    # A contract stored with a start this late (before `contracts add` refused one) made deadlines raise
    # "year 10000 is out of range", and with it `vrm contracts list` and `vrm upcoming`.
    late = mobile(start=date(9999, 12, 31), minimum_term_months=0, renewal_term_months=0, notice_value=0)
    assert list(term_ends(late)) == []
    assert deadlines(late, date(2026, 12, 3)).active is False
    near = mobile(start=date(9998, 12, 1))
    assert list(term_ends(near)) == [date(9999, 11, 30)]  # the next renewal would end in year 10000


def test_a_contract_that_does_not_renew_expects_no_payment_after_its_term() -> None:
    fixed = mobile(start=date(2025, 1, 31), auto_renewal=False)  # 12 months, ends 2026-01-30
    dues = [due for due, _, _ in schedule(fixed, until=date(2026, 12, 31))]
    # it went on listing payments (overdue ones) every month after the contract had ended
    assert len(dues) == 12 and dues[0] == date(2025, 1, 31) and dues[-1] == date(2025, 12, 31)
