"""The relationship card, built straight from the core on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date

import pytest

from openvrm.documents.service import DocumentService
from openvrm.errors import NotFound
from openvrm.ledger.contracts import ContractService
from openvrm.sharing.service import SharingService
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.card import CARD_FORMAT, relationship_card
from openvrm.vendors.service import VendorService

TODAY = date(2025, 3, 10)


def test_card_gathers_one_relationship(unlocked: UnlockedVault) -> None:
    vendors = VendorService(unlocked)
    telco = vendors.add("Telco", domains=["telco.example"])
    other = vendors.add("Other Shop")
    rel = vendors.relate(telco.id, customer_number="C-42", tags=["home"])
    second = vendors.relate(telco.id)  # a second relationship with the same vendor stays out of the card
    other_rel = vendors.relate(other.id)
    contracts = ContractService(unlocked)
    mine = contracts.add(
        telco.id,
        plan="Fibre",
        price="30.00",
        start="2024-06-01",
        minimum_term_months=12,
        notice_value=1,
        notice_unit="months",
        relationship_id=rel.id,
    )
    contracts.add(telco.id, plan="Mobile", price="10", start="2024-06-01", relationship_id=second.id)
    contracts.add(other.id, plan="Box", price="5", start="2024-06-01")
    contracts.pay(mine.id, due_date="2024-06-01", paid_on="2024-06-03", today=TODAY)
    docs = DocumentService(unlocked)
    bill = docs.add(b"bill", filename="bill.txt", vendor_id=telco.id).document  # no relationship: by vendor
    docs.add(b"elsewhere", filename="x.txt", relationship_id=second.id)
    docs.add(b"other", filename="o.txt", vendor_id=other.id)
    SharingService(unlocked).share(rel.id, "email", purpose="billing")
    SharingService(unlocked).share(other_rel.id, "email", purpose="newsletter")

    card = relationship_card(unlocked, rel.id, today=TODAY)

    assert card["format"] == CARD_FORMAT == "openvrm-relationship-card"
    assert card["version"] == 1 and card["as_of"] == "2025-03-10"
    assert card["generated_at"].endswith("+00:00")
    assert card["vendor"]["name"] == "Telco" and card["relationship"]["customer_number"] == "C-42"
    assert [c["plan"] for c in card["contracts"]] == ["Fibre"]
    fibre = card["contracts"][0]
    assert fibre["term_end"] == "2025-05-31" and fibre["cancellation_deadline"] == "2025-04-30"
    assert [d["id"] for d in card["documents"]] == [bill.id]
    assert "blob_address" not in card["documents"][0]
    assert [(p["due_date"], p["amount"]) for p in card["payments"]] == [("2024-06-01", "30.00")]
    assert [(s["field"], s["purpose"]) for s in card["shares"]] == [("email", "billing")]
    json.dumps(card)  # portable: plain JSON all the way down


def test_card_of_unknown_relationship(unlocked: UnlockedVault) -> None:
    with pytest.raises(NotFound):
        relationship_card(unlocked, "no-such-relationship", today=TODAY)
