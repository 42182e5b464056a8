"""Contracts and subscriptions, their payments, and what they cost.

A contract belongs to a vendor (and usually to the person's relationship with it). Its terms live in
the sealed payload; :mod:`openvrm.ledger.terms` does the arithmetic. Expected payments are computed
from the terms, never stored; a payment actually made is a ``payments`` row pointing at the contract
and at the due date it settles, so "expected versus actual" is a join in memory.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from openvrm.errors import Conflict, InvalidValue
from openvrm.ledger.money import optional_date, parse_amount, parse_currency, parse_date
from openvrm.ledger.terms import (
    CYCLES,
    NOTICE_UNITS,
    ContractTerms,
    Deadlines,
    PricePoint,
    deadlines,
    monthly_cost,
    schedule,
    term_ends,
    yearly_cost,
)
from openvrm.profile.fields import _text
from openvrm.records import get_row, insert, payload_of, update
from openvrm.storage.models import Contract, Payment, Relationship, Vendor
from openvrm.vault.core import UnlockedVault

STATUSES = ("active", "cancelled", "ended")


def today_local() -> date:
    return date.today()  # noqa: DTZ011 - deadlines are calendar days in the person's own time zone


@dataclass
class ContractRecord:
    id: str
    vendor_id: str
    relationship_id: str | None
    plan: str
    category: str | None
    price: Decimal
    currency: str
    billing_cycle: str
    start: date
    minimum_term_months: int = 0
    auto_renewal: bool = True
    renewal_term_months: int = 0
    notice_value: int = 0
    notice_unit: str = "days"
    end_date: date | None = None
    status: str = "active"
    variable: bool = False
    price_history: list[PricePoint] = field(default_factory=list)
    notes: str = ""
    created_at: datetime | None = None

    def terms(self) -> ContractTerms:
        return ContractTerms(
            start=self.start,
            price=self.price,
            currency=self.currency,
            billing_cycle=self.billing_cycle,
            minimum_term_months=self.minimum_term_months,
            auto_renewal=self.auto_renewal,
            renewal_term_months=self.renewal_term_months,
            notice_value=self.notice_value,
            notice_unit=self.notice_unit,
            end_date=self.end_date,
            price_history=tuple(self.price_history),
        )

    def payload(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "category": self.category,
            "price": str(self.price),
            "currency": self.currency,
            "billing_cycle": self.billing_cycle,
            "start": self.start.isoformat(),
            "minimum_term_months": self.minimum_term_months,
            "auto_renewal": self.auto_renewal,
            "renewal_term_months": self.renewal_term_months,
            "notice_value": self.notice_value,
            "notice_unit": self.notice_unit,
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "status": self.status,
            "variable": self.variable,
            "price_history": [
                {"effective": p.effective.isoformat(), "price": str(p.price), "currency": p.currency}
                for p in self.price_history
            ],
            "notes": self.notes,
        }

    @classmethod
    def from_row(cls, row: Contract, p: dict[str, Any]) -> ContractRecord:
        return cls(
            id=row.id,
            vendor_id=row.vendor_id,
            relationship_id=row.relationship_id,
            plan=p["plan"],
            category=p.get("category"),
            price=Decimal(p["price"]),
            currency=p["currency"],
            billing_cycle=p["billing_cycle"],
            start=date.fromisoformat(p["start"]),
            minimum_term_months=int(p.get("minimum_term_months", 0)),
            auto_renewal=bool(p.get("auto_renewal", True)),
            renewal_term_months=int(p.get("renewal_term_months", 0)),
            notice_value=int(p.get("notice_value", 0)),
            notice_unit=p.get("notice_unit", "days"),
            end_date=date.fromisoformat(p["end_date"]) if p.get("end_date") else None,
            status=p.get("status", "active"),
            variable=bool(p.get("variable", False)),
            price_history=[
                PricePoint(date.fromisoformat(h["effective"]), Decimal(h["price"]), h["currency"])
                for h in p.get("price_history", [])
            ],
            notes=p.get("notes", ""),
            created_at=row.created_at,
        )

    def to_json(self, today: date | None = None) -> dict[str, Any]:
        d = {
            "id": self.id,
            "vendor_id": self.vendor_id,
            "relationship_id": self.relationship_id,
        } | self.payload()
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        if today is not None:
            dl = deadlines(self.terms(), today)
            d |= {
                "active": dl.active,
                "term_end": _iso(dl.term_end),
                "cancellation_deadline": _iso(dl.cancellation_deadline),
                "ends_if_cancelled": _iso(dl.ends_if_cancelled),
                "next_renewal": _iso(dl.next_renewal),
                "next_payment": _iso(dl.next_payment),
                "monthly_cost": str(monthly_cost(self.terms(), today)),
                "yearly_cost": str(yearly_cost(self.terms(), today)),
            }
        return d


# Terms and payments are computed for years after the start; a start near the end of the calendar
# (9999-12-31) would overflow date arithmetic, one long ago would list thousands of past payments.
_EARLIEST_START, _LATEST_START = date(1900, 1, 1), date(2999, 12, 31)


def _start_date(value: object) -> date:
    start = parse_date(value, "the start date")
    if not _EARLIEST_START <= start <= _LATEST_START:
        raise InvalidValue(
            f"the start date must be between {_EARLIEST_START} and {_LATEST_START}, not {start}"
        )
    return start


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


@dataclass
class PaymentRecord:
    id: str
    contract_id: str | None
    vendor_id: str | None
    document_id: str | None
    due_date: date | None
    paid_on: date
    amount: Decimal
    currency: str
    note: str = ""

    def payload(self) -> dict[str, Any]:
        return {
            "due_date": _iso(self.due_date),
            "paid_on": self.paid_on.isoformat(),
            "amount": str(self.amount),
            "currency": self.currency,
            "note": self.note,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "contract_id": self.contract_id,
            "vendor_id": self.vendor_id,
            "document_id": self.document_id,
        } | self.payload()


@dataclass(frozen=True)
class ExpectedPayment:
    contract_id: str
    due_date: date
    expected: Decimal
    currency: str
    status: str  # "paid" | "overdue" | "due" | "upcoming"
    paid: Decimal | None = None
    payment_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "contract_id": self.contract_id,
            "due_date": self.due_date.isoformat(),
            "expected": str(self.expected),
            "currency": self.currency,
            "status": self.status,
            "paid": str(self.paid) if self.paid is not None else None,
            "payment_id": self.payment_id,
        }


@dataclass(frozen=True)
class CostLine:
    key: str
    currency: str
    monthly: Decimal
    yearly: Decimal
    contracts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "currency": self.currency,
            "monthly": str(self.monthly),
            "yearly": str(self.yearly),
            "contracts": self.contracts,
        }


def _payment_from_row(row: Payment, p: dict[str, Any]) -> PaymentRecord:
    return PaymentRecord(
        id=row.id,
        contract_id=row.contract_id,
        vendor_id=row.vendor_id,
        document_id=row.document_id,
        due_date=date.fromisoformat(p["due_date"]) if p.get("due_date") else None,
        paid_on=date.fromisoformat(p["paid_on"]),
        amount=Decimal(p["amount"]),
        currency=p["currency"],
        note=p.get("note", ""),
    )


class ContractService:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault

    def add(
        self,
        vendor_id: str,
        *,
        plan: str,
        price: object,
        currency: object = "EUR",
        billing_cycle: str = "monthly",
        start: object,
        category: str | None = None,
        minimum_term_months: int = 0,
        auto_renewal: bool = True,
        renewal_term_months: int = 0,
        notice_value: int = 0,
        notice_unit: str = "days",
        variable: bool = False,
        relationship_id: str | None = None,
        notes: str = "",
    ) -> ContractRecord:
        rec = ContractRecord(
            id="",
            vendor_id=vendor_id,
            relationship_id=relationship_id,
            plan=_text(plan, "a plan name", max_len=200),
            category=_text(category, "a category", max_len=60).lower() if category else None,
            price=parse_amount(price, "the price"),
            currency=parse_currency(currency),
            billing_cycle=billing_cycle,
            start=_start_date(start),
            minimum_term_months=minimum_term_months,
            auto_renewal=auto_renewal,
            renewal_term_months=renewal_term_months,
            notice_value=notice_value,
            notice_unit=notice_unit,
            variable=variable,
            notes=notes.strip()[:10000],
        )
        rec.terms()  # validates cycle, notice unit, ranges
        with self.vault.db.write() as s:
            get_row(s, Vendor, vendor_id, "vendor")
            if relationship_id is None:
                rel = s.scalar(select(Relationship.id).where(Relationship.vendor_id == vendor_id).limit(1))
                rec.relationship_id = rel
            else:
                r = get_row(s, Relationship, relationship_id, "relationship")
                if r.vendor_id != vendor_id:
                    raise InvalidValue("that relationship is with another vendor")
            row = insert(
                self.vault,
                s,
                Contract,
                rec.payload(),
                vendor_id=vendor_id,
                relationship_id=rec.relationship_id,
            )
        rec.id, rec.created_at = row.id, row.created_at
        return rec

    def list(self, *, vendor_id: str | None = None) -> builtins.list[ContractRecord]:
        with self.vault.db.read() as s:
            q = select(Contract).order_by(Contract.id)
            if vendor_id is not None:
                q = q.where(Contract.vendor_id == vendor_id)
            rows = builtins.list(s.scalars(q))
        return [ContractRecord.from_row(r, payload_of(self.vault, r)) for r in rows]

    def get(self, contract_id: str) -> ContractRecord:
        with self.vault.db.read() as s:
            row = get_row(s, Contract, contract_id, "contract")
        return ContractRecord.from_row(row, payload_of(self.vault, row))

    def _save(self, rec: ContractRecord) -> ContractRecord:
        rec.terms()
        with self.vault.db.write() as s:
            row = get_row(s, Contract, rec.id, "contract")
            update(self.vault, row, rec.payload())
        return rec

    def set_price(
        self, contract_id: str, price: object, *, effective: object, currency: object = None
    ) -> ContractRecord:
        """Record a price change from ``effective`` on; earlier payments keep their old price."""
        rec = self.get(contract_id)
        point = PricePoint(
            parse_date(effective, "the effective date"),
            parse_amount(price, "the price"),
            parse_currency(currency) if currency else rec.currency,
        )
        if point.effective < rec.start:
            raise InvalidValue("a price change cannot take effect before the contract starts")
        history = [p for p in rec.price_history if p.effective != point.effective] + [point]
        return self._save(replace(rec, price_history=sorted(history, key=lambda p: p.effective)))

    def cancel(self, contract_id: str, *, today: date | None = None, end: object = None) -> ContractRecord:
        """Mark cancelled; it ends on ``end`` or, by default, on the earliest end notice today achieves."""
        rec = self.get(contract_id)
        if rec.status != "active":
            raise Conflict(f"this contract is already {rec.status}")
        day = today or today_local()
        end_date = optional_date(end, "the end date")
        if end_date is None:
            terms = rec.terms()
            last = next(term_ends(terms), None) if not terms.auto_renewal else None
            if last is not None and last < day:  # "cancelling" it would run it on until today
                raise Conflict(f"this contract already ended on {last}: it does not renew")
            dl = deadlines(terms, day)
            end_date = dl.ends_if_cancelled or day
        return self._save(replace(rec, status="cancelled", end_date=end_date))

    def deadlines(self, contract_id: str, today: date | None = None) -> Deadlines:
        return deadlines(self.get(contract_id).terms(), today or today_local())

    # payments

    def pay(
        self,
        contract_id: str,
        *,
        due_date: object = None,
        amount: object = None,
        paid_on: object = None,
        note: str = "",
        today: date | None = None,
    ) -> PaymentRecord:
        """Record a payment. Without ``due_date`` it settles the oldest unpaid expected payment;
        without ``amount`` it is the expected amount (give it for variable bills)."""
        rec = self.get(contract_id)
        day = today or today_local()
        expected = self.expected(
            contract_id, until=max(day, parse_date(due_date)) if due_date else day, today=day
        )
        if due_date is not None:
            due = parse_date(due_date, "the due date")
            slot = next((e for e in expected if e.due_date == due), None)
            if slot is None:
                raise InvalidValue(f"no payment of this contract is due on {due.isoformat()}")
        else:
            slot = next((e for e in expected if e.status != "paid"), None)
            if slot is None:
                raise Conflict("every payment due so far is already recorded as paid")
        if slot.status == "paid":
            raise Conflict(f"the payment due on {slot.due_date.isoformat()} is already recorded")
        payment = PaymentRecord(
            id="",
            contract_id=rec.id,
            vendor_id=rec.vendor_id,
            document_id=None,
            due_date=slot.due_date,
            paid_on=parse_date(paid_on, "the payment date") if paid_on else day,
            amount=parse_amount(amount, "the amount") if amount is not None else slot.expected,
            currency=slot.currency,
            note=note.strip()[:1000],
        )
        with self.vault.db.write() as s:
            row = insert(
                self.vault, s, Payment, payment.payload(), contract_id=rec.id, vendor_id=rec.vendor_id
            )
        payment.id = row.id
        return payment

    def payments(self, *, contract_id: str | None = None) -> builtins.list[PaymentRecord]:
        with self.vault.db.read() as s:
            q = select(Payment).order_by(Payment.id)
            if contract_id is not None:
                q = q.where(Payment.contract_id == contract_id)
            rows = builtins.list(s.scalars(q))
        return [_payment_from_row(r, payload_of(self.vault, r)) for r in rows]

    def expected(
        self, contract_id: str, *, until: date, today: date | None = None, grace_days: int = 0
    ) -> builtins.list[ExpectedPayment]:
        """Expected payments up to ``until`` matched against payments made."""
        rec = self.get(contract_id)
        day = today or today_local()
        paid = {p.due_date: p for p in self.payments(contract_id=contract_id) if p.due_date}
        out = []
        for due, amount, currency in schedule(rec.terms(), until):
            made = paid.get(due)
            if made is not None:
                status = "paid"
            elif (day - due).days > grace_days:
                status = "overdue"
            elif due <= day:
                status = "due"
            else:
                status = "upcoming"
            out.append(
                ExpectedPayment(
                    rec.id,
                    due,
                    amount,
                    currency,
                    status,
                    made.amount if made else None,
                    made.id if made else None,
                )
            )
        return out

    # costs

    def costs(self, *, by: str = "vendor", today: date | None = None) -> builtins.list[CostLine]:
        """Monthly and yearly cost of active contracts, grouped by vendor or category, per currency."""
        if by not in ("vendor", "category"):
            raise InvalidValue("costs are grouped by 'vendor' or 'category'")
        day = today or today_local()
        from openvrm.vendors.service import VendorService

        names = {v.id: v for v in VendorService(self.vault).list()}
        groups: dict[tuple[str, str], list[Decimal | int]] = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
        for c in self.list():
            t = c.terms()
            if not deadlines(t, day).active:
                continue
            vendor = names.get(c.vendor_id)
            if by == "vendor":
                key = vendor.name if vendor else c.vendor_id
            else:
                key = c.category or (
                    vendor.categories[0] if vendor and vendor.categories else "uncategorised"
                )
            g = groups[(key, c.currency)]
            g[0] += monthly_cost(t, day)
            g[1] += yearly_cost(t, day)
            g[2] += 1
        return sorted(
            (CostLine(k, cur, Decimal(g[0]), Decimal(g[1]), int(g[2])) for (k, cur), g in groups.items()),
            key=lambda line: (-line.yearly, line.key),
        )


__all__ = [
    "CYCLES",
    "NOTICE_UNITS",
    "STATUSES",
    "ContractRecord",
    "ContractService",
    "CostLine",
    "ExpectedPayment",
    "PaymentRecord",
]
