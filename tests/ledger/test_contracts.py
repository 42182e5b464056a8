"""Contracts, payments and costs through the real service, on both backends."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.ledger.contracts import ContractService
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

D = Decimal
TODAY = date(2024, 12, 1)


@pytest.fixture
def svc(unlocked: UnlockedVault) -> ContractService:
    return ContractService(unlocked)


def _vendor(u: UnlockedVault, name: str = "Free", cats: list[str] | None = None) -> str:
    v = VendorService(u).add(name, categories=cats or ["telecom"])
    VendorService(u).relate(v.id, customer_number="C1")
    return v.id


def test_add_and_read_back_with_deadlines(unlocked: UnlockedVault, svc: ContractService) -> None:
    vid = _vendor(unlocked)
    c = svc.add(
        vid,
        plan="Forfait 150 Go",
        price="15,99",
        start="2024-01-15",
        minimum_term_months=12,
        renewal_term_months=12,
        notice_value=1,
        notice_unit="months",
    )
    assert c.relationship_id is not None  # linked to the vendor's relationship
    got = svc.get(c.id)
    assert got.price == D("15.99") and got.currency == "EUR" and got.start == date(2024, 1, 15)
    data = got.to_json(TODAY)
    assert data["cancellation_deadline"] == "2024-12-14"
    assert data["next_renewal"] == "2025-01-15"
    assert data["monthly_cost"] == "15.99" and data["yearly_cost"] == "191.88"
    assert check_vault(unlocked).ok


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"price": "12.5.3"}, "not a number"),
        ({"price": 12.5}, "not a float"),
        ({"price": "-3"}, "negative"),
        ({"currency": "euro"}, "ISO 4217"),
        ({"start": "01/02/2024"}, "YYYY-MM-DD"),
        ({"billing_cycle": "daily"}, "billing cycle"),
        ({"plan": ""}, "empty"),
    ],
)
def test_bad_values_are_refused_and_store_nothing(
    unlocked: UnlockedVault, svc: ContractService, kw: dict[str, object], message: str
) -> None:
    vid = _vendor(unlocked)
    args: dict[str, object] = {"plan": "P", "price": "10", "start": "2024-01-01"} | kw
    with pytest.raises(InvalidValue, match=message):
        svc.add(vid, **args)  # type: ignore[arg-type]
    assert svc.list() == []


def test_unknown_vendor(svc: ContractService) -> None:
    with pytest.raises(NotFound):
        svc.add("nope", plan="P", price="1", start="2024-01-01")


def test_expected_versus_actual_payments(unlocked: UnlockedVault, svc: ContractService) -> None:
    vid = _vendor(unlocked, "EDF", ["energy"])
    c = svc.add(vid, plan="Électricité", price="74.20", start="2024-09-05", variable=True)
    expected = svc.expected(c.id, until=date(2025, 1, 31), today=TODAY)
    assert [(e.due_date, e.status) for e in expected] == [
        (date(2024, 9, 5), "overdue"),
        (date(2024, 10, 5), "overdue"),
        (date(2024, 11, 5), "overdue"),
        (date(2024, 12, 5), "upcoming"),
        (date(2025, 1, 5), "upcoming"),
    ]
    first = svc.pay(c.id, today=TODAY)  # oldest unpaid, expected amount
    assert first.due_date == date(2024, 9, 5) and first.amount == D("74.20")
    svc.pay(c.id, due_date="2024-10-05", amount="81.37", paid_on="2024-10-06", today=TODAY)  # a variable bill
    with pytest.raises(Conflict):
        svc.pay(c.id, due_date="2024-10-05", today=TODAY)
    with pytest.raises(InvalidValue, match="no payment"):
        svc.pay(c.id, due_date="2024-10-06", today=TODAY)
    statuses = {
        e.due_date: (e.status, e.paid) for e in svc.expected(c.id, until=date(2024, 11, 30), today=TODAY)
    }
    assert statuses[date(2024, 9, 5)] == ("paid", D("74.20"))
    assert statuses[date(2024, 10, 5)] == ("paid", D("81.37"))
    assert statuses[date(2024, 11, 5)] == ("overdue", None)


def test_price_change_and_cancel(unlocked: UnlockedVault, svc: ContractService) -> None:
    vid = _vendor(unlocked)
    c = svc.add(
        vid,
        plan="Box",
        price="29.99",
        start="2023-03-01",
        minimum_term_months=12,
        renewal_term_months=1,
        notice_value=10,
        notice_unit="days",
    )
    svc.set_price(c.id, "34.99", effective="2024-06-01")
    with pytest.raises(InvalidValue):
        svc.set_price(c.id, "1", effective="2020-01-01")
    amounts = [e.expected for e in svc.expected(c.id, until=date(2024, 7, 31), today=TODAY)]
    assert amounts[-3:] == [D("29.99"), D("34.99"), D("34.99")]
    cancelled = svc.cancel(c.id, today=TODAY)
    assert cancelled.status == "cancelled" and cancelled.end_date == date(2024, 12, 31)
    with pytest.raises(Conflict):
        svc.cancel(c.id, today=TODAY)
    assert svc.get(c.id).to_json(date(2025, 1, 2))["active"] is False


def test_cancelling_a_contract_that_has_ended_by_itself_changes_nothing(
    unlocked: UnlockedVault, svc: ContractService
) -> None:
    vid = _vendor(unlocked)
    c = svc.add(vid, plan="Fixed", price="10", start="2023-01-31", minimum_term_months=12, auto_renewal=False)
    with pytest.raises(Conflict, match="already ended on 2024-01-30"):
        svc.cancel(c.id, today=TODAY)  # it was "cancelled" to end on TODAY: eleven more months to pay
    assert svc.get(c.id).end_date is None and svc.get(c.id).status == "active"
    running = svc.add(
        vid, plan="Fixed", price="10", start="2024-06-01", minimum_term_months=12, auto_renewal=False
    )
    assert svc.cancel(running.id, today=TODAY).end_date == date(2025, 5, 31)


def test_costs_by_vendor_and_category(unlocked: UnlockedVault, svc: ContractService) -> None:
    free = _vendor(unlocked, "Free", ["telecom"])
    orange = _vendor(unlocked, "Orange", ["telecom"])
    spotify = _vendor(unlocked, "Spotify", ["streaming"])
    svc.add(free, plan="Mobile", price="15.99", start="2024-01-01")
    svc.add(free, plan="Box", price="29.99", start="2024-01-01")
    svc.add(orange, plan="Yearly", price="120", start="2024-01-01", billing_cycle="yearly")
    svc.add(spotify, plan="Premium", price="11.12", start="2024-01-01", category="music")
    by_vendor = {line.key: line for line in svc.costs(by="vendor", today=TODAY)}
    assert by_vendor["Free"].monthly == D("45.98") and by_vendor["Free"].yearly == D("551.76")
    assert by_vendor["Orange"].monthly == D("10.00")
    by_cat = {line.key: line.yearly for line in svc.costs(by="category", today=TODAY)}
    assert by_cat == {"telecom": D("671.76"), "music": D("133.44")}
