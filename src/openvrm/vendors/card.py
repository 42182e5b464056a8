"""The relationship card: everything about one relationship in one portable JSON document.

A card is what a person takes away, prints or hands to an adviser: the vendor, the person's side of the
relationship, the contracts with their deadlines as of ``today``, the documents' descriptions (never
their content, and never the internal storage address), the payments made and the profile fields shared.

Shape (version 1)::

    {"format": "openvrm-relationship-card", "version": 1, "generated_at": "<UTC ISO 8601>",
     "as_of": "YYYY-MM-DD", "vendor": {...}, "relationship": {...}, "contracts": [...],
     "documents": [...], "payments": [...], "shares": [...],
     "mail": {"aliases": [...], "leaks": [{"reached": "<domain>", "count": n, ...}]}}

A contract or document belongs to the relationship when it points at it, or when it points at no
relationship but at the relationship's vendor (older or imported records). Money is text, dates are ISO.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from openvrm.documents.service import DocumentRecord, DocumentService
from openvrm.ledger.contracts import ContractService
from openvrm.mail.service import MailService
from openvrm.sharing.service import SharingService
from openvrm.storage.models import utcnow
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

CARD_FORMAT = "openvrm-relationship-card"
CARD_VERSION = 1
# Document keys left out of a card: where the sealed file lives is an internal detail of this vault.
_PRIVATE_DOCUMENT_KEYS = ("blob_address",)


def _belongs(record_relationship: str | None, record_vendor: str | None, rel_id: str, vendor_id: str) -> bool:
    if record_relationship is not None:
        return record_relationship == rel_id
    return record_vendor == vendor_id


def _document_json(doc: DocumentRecord) -> dict[str, Any]:
    data = doc.to_json()
    for key in _PRIVATE_DOCUMENT_KEYS:
        data.pop(key, None)
    return data


def relationship_card(uv: UnlockedVault, relationship_id: str, *, today: date) -> dict[str, Any]:
    """The card of one relationship as of ``today``; :class:`~openvrm.errors.NotFound` for an unknown id."""
    vendors = VendorService(uv)
    rel = vendors.relationship(relationship_id)
    vendor = vendors.get(rel.vendor_id)
    contract_service = ContractService(uv)
    contracts = [
        c
        for c in contract_service.list(vendor_id=vendor.id)
        if _belongs(c.relationship_id, c.vendor_id, rel.id, vendor.id)
    ]
    contract_ids = {c.id for c in contracts}
    documents = [
        d
        for d in DocumentService(uv).list(vendor_id=vendor.id)
        if _belongs(d.relationship_id, d.vendor_id, rel.id, vendor.id)
    ]
    payments = [p for p in contract_service.payments() if p.contract_id in contract_ids]
    shares = SharingService(uv).list(relationship_id=rel.id)
    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "generated_at": utcnow().isoformat(),
        "as_of": today.isoformat(),
        "vendor": vendor.to_json(),
        "relationship": rel.to_json(),
        "contracts": [c.to_json(today) for c in contracts],
        "documents": [_document_json(d) for d in documents],
        "payments": [p.to_json() for p in sorted(payments, key=lambda p: (p.paid_on, p.id))],
        "shares": [s.to_json() for s in shares],
        "mail": MailService(uv).card_section(vendor.id),
    }
