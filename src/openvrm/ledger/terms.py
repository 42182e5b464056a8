"""Contract arithmetic: terms, renewals, cancellation deadlines, billing schedules, prices over time.

Pure functions over :class:`ContractTerms`; nothing here touches storage, so the rules can be tested
date by date. Conventions (stated in docs/ledger.md):

* A term of N months starting on day S covers S up to the day before S + N months. ``term_end`` is the
  last day covered (inclusive).
* The **cancellation deadline** of a term is ``term_end - notice period``: the last day on which notice
  must reach the vendor for the contract to end with that term. Once it has passed, the next term's
  deadline applies (if the contract renews), and openvrm says so.
* With no minimum term, a term is one billing cycle. A contract that does not auto-renew ends after its
  first term.
* Month arithmetic clips to the end of shorter months (31 January + 1 month = 28/29 February), as
  dateutil's relativedelta does; later dates are computed from the start, so clipping never drifts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta

from openvrm.errors import InvalidValue

CYCLES: dict[str, tuple[relativedelta | None, int]] = {
    # name: (length, cycles per year)
    "weekly": (relativedelta(weeks=1), 52),
    "monthly": (relativedelta(months=1), 12),
    "quarterly": (relativedelta(months=3), 4),
    "semiannual": (relativedelta(months=6), 2),
    "yearly": (relativedelta(years=1), 1),
    "one-off": (None, 0),
}
NOTICE_UNITS = ("days", "weeks", "months")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class PricePoint:
    effective: date
    price: Decimal
    currency: str


@dataclass(frozen=True)
class ContractTerms:
    start: date
    price: Decimal
    currency: str
    billing_cycle: str = "monthly"
    minimum_term_months: int = 0
    auto_renewal: bool = True
    renewal_term_months: int = 0  # 0: renews one billing cycle at a time
    notice_value: int = 0
    notice_unit: str = "days"
    end_date: date | None = None  # set when cancelled or ended: the last day of the contract
    price_history: tuple[PricePoint, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.billing_cycle not in CYCLES:
            raise InvalidValue(
                f"billing cycle must be one of {', '.join(CYCLES)}, not {self.billing_cycle!r}"
            )
        if self.notice_unit not in NOTICE_UNITS:
            raise InvalidValue(f"notice unit must be one of {', '.join(NOTICE_UNITS)}")
        if self.minimum_term_months < 0 or self.renewal_term_months < 0 or self.notice_value < 0:
            raise InvalidValue("terms and notice periods cannot be negative")
        if self.price < 0:
            raise InvalidValue("a price cannot be negative")
        if self.end_date is not None and self.end_date < self.start:
            raise InvalidValue("a contract cannot end before it starts")

    @property
    def cycle(self) -> relativedelta | None:
        return CYCLES[self.billing_cycle][0]

    @property
    def per_year(self) -> int:
        return CYCLES[self.billing_cycle][1]

    def notice(self) -> relativedelta:
        if self.notice_unit == "months":
            return relativedelta(months=self.notice_value)
        if self.notice_unit == "weeks":
            return relativedelta(weeks=self.notice_value)
        return relativedelta(days=self.notice_value)


def _first_term_months(t: ContractTerms) -> relativedelta | None:
    if t.minimum_term_months:
        return relativedelta(months=t.minimum_term_months)
    return t.cycle


def _renewal_step(t: ContractTerms) -> relativedelta | None:
    if t.renewal_term_months:
        return relativedelta(months=t.renewal_term_months)
    return t.cycle


def _average_days(step: relativedelta) -> float:
    return step.years * 365.2425 + step.months * 30.436875 + step.days


def _first_k(base: date, step: relativedelta, since: date | None) -> int:
    """A safe starting multiple of ``step`` from ``base`` for dates near ``since`` (skips the past)."""
    if since is None or since <= base:
        return 0
    return max(0, int((since - base).days / _average_days(step)) - 2)


def term_ends(t: ContractTerms, since: date | None = None) -> Iterator[date]:
    """Last days of each term, in order (infinite for a contract that keeps renewing).

    With ``since``, terms ending long before it are skipped without being walked one by one.
    """
    first = _first_term_months(t)
    if first is None:  # one-off purchase: no term
        return
    try:
        first_end_excl = t.start + first
        step = _renewal_step(t)
        k = _first_k(first_end_excl, step, since) if step is not None and t.auto_renewal else 0
        if k == 0:
            yield first_end_excl - timedelta(days=1)
            k = 1
        if not t.auto_renewal or step is None:
            return
        while True:
            # computed from the start, not from the previous end, so month-end clipping never drifts
            yield t.start + (first + step * k) - timedelta(days=1)
            k += 1
    except (ValueError, OverflowError):  # past 9999-12-31: a stored start that late has no more terms
        return


@dataclass(frozen=True)
class Deadlines:
    """Where a contract stands on a given day."""

    active: bool
    term_end: date | None  # last day of the current term
    cancellation_deadline: date | None  # last day to give notice so it ends at ``ends_if_cancelled``
    ends_if_cancelled: date | None  # the end a notice given today achieves
    next_renewal: date | None  # first day of the next term, if it renews
    next_payment: date | None


def deadlines(t: ContractTerms, today: date) -> Deadlines:
    if t.end_date is not None and t.end_date < today:
        return Deadlines(False, None, None, None, None, None)
    next_pay = next_payment(t, today)
    if t.end_date is not None:  # cancelled, still running until its end
        return Deadlines(True, t.end_date, None, t.end_date, None, next_pay)
    ends = term_ends(t, since=today)
    current: date | None = None
    for end in ends:
        if end >= today:
            current = end
            break
    if current is None:
        return Deadlines(False, None, None, None, None, None)
    # The first term end that notice given today can still reach (with a notice period longer than a
    # term, that may be several terms away); None when the contract ends before any can be reached.
    achievable: date | None = current
    deadline: date | None = current - t.notice()
    while deadline is not None and deadline < today:
        achievable = next(ends, None)
        deadline = achievable - t.notice() if achievable is not None else None
    if achievable is None:
        achievable = current  # it ends by itself with the current term
    renewal = current + timedelta(days=1) if t.auto_renewal and _renewal_step(t) is not None else None
    return Deadlines(True, current, deadline, achievable, renewal, next_pay)


def price_at(t: ContractTerms, day: date) -> tuple[Decimal, str]:
    best = (t.price, t.currency)
    for p in sorted(t.price_history, key=lambda p: p.effective):
        if p.effective <= day:
            best = (p.price, p.currency)
    return best


def schedule(t: ContractTerms, until: date, since: date | None = None) -> Iterator[tuple[date, Decimal, str]]:
    """Expected payments (due date, amount, currency) from the start (or ``since``) to ``until``."""
    end = t.end_date
    if end is None and not t.auto_renewal:  # it ends by itself with its first term
        end = next(term_ends(t), None)
    last = min(until, end) if end else until
    if t.cycle is None:
        if t.start <= last and (since is None or t.start >= since):
            yield (t.start, *price_at(t, t.start))
        return
    k = _first_k(t.start, t.cycle, since)
    while True:
        due = t.start + t.cycle * k
        if due > last:
            return
        if since is None or due >= since:
            yield (due, *price_at(t, due))
        k += 1


def next_payment(t: ContractTerms, today: date) -> date | None:
    horizon = today + relativedelta(years=1, days=7)
    for due, _, _ in schedule(t, horizon, since=today):
        return due
    return None


def monthly_cost(t: ContractTerms, day: date) -> Decimal:
    """What the contract costs per month at ``day`` (0 for one-off purchases)."""
    price, _ = price_at(t, day)
    return (price * t.per_year / 12).quantize(CENT)


def yearly_cost(t: ContractTerms, day: date) -> Decimal:
    price, _ = price_at(t, day)
    return (price * t.per_year).quantize(CENT)
