"""Spending: what went out, per vendor, category and month.

Entries are the payments recorded against contracts, plus bills (invoices and receipts with a total)
that are not linked to a contract, at their issue date; a bill linked to a contract is already counted
by that contract's payments. Credit notes count as negative. Currencies are never mixed: every total is
per currency.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from openvrm.documents.service import DocumentService
from openvrm.errors import InvalidValue
from openvrm.ledger.contracts import ContractService
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

GROUPINGS = ("vendor", "category", "month")


@dataclass(frozen=True)
class SpendEntry:
    day: date
    vendor: str
    category: str
    amount: Decimal
    currency: str
    source: str  # "payment" | "bill"
    ref: str


@dataclass(frozen=True)
class SpendRow:
    key: str
    currency: str
    total: Decimal
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "currency": self.currency, "total": str(self.total), "count": self.count}


def entries(uv: UnlockedVault) -> list[SpendEntry]:
    vendors = {v.id: v for v in VendorService(uv).list()}
    contracts = {c.id: c for c in ContractService(uv).list()}

    def describe(vendor_id: str | None, category: str | None = None) -> tuple[str, str]:
        v = vendors.get(vendor_id or "")
        cat = category or (v.categories[0] if v and v.categories else "uncategorised")
        return (v.name if v else "unknown vendor"), cat

    out: list[SpendEntry] = []
    for p in ContractService(uv).payments():
        c = contracts.get(p.contract_id or "")
        name, cat = describe(p.vendor_id, c.category if c else None)
        out.append(SpendEntry(p.paid_on, name, cat, p.amount, p.currency, "payment", p.id))
    for d in DocumentService(uv).list():
        f = d.fields
        total = f.get("gross_total") or f.get("due_total")
        if d.contract_id or not total or not f.get("issue_date") or not f.get("currency"):
            continue
        if f.get("document_type") not in ("invoice", "receipt", "credit_note"):
            continue
        amount = Decimal(total)
        if f.get("document_type") == "credit_note" and amount > 0:
            amount = -amount
        name, cat = describe(d.vendor_id)
        out.append(
            SpendEntry(date.fromisoformat(f["issue_date"]), name, cat, amount, f["currency"], "bill", d.id)
        )
    return sorted(out, key=lambda e: (e.day, e.vendor))


def totals(
    items: list[SpendEntry], *, by: str = "vendor", since: date | None = None, until: date | None = None
) -> list[SpendRow]:
    if by not in GROUPINGS:
        raise InvalidValue(f"spending is grouped by {', '.join(GROUPINGS)}, not {by!r}")
    groups: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for e in items:
        if (since and e.day < since) or (until and e.day > until):
            continue
        key = {"vendor": e.vendor, "category": e.category, "month": e.day.strftime("%Y-%m")}[by]
        g = groups[(key, e.currency)]
        g[0] += e.amount
        g[1] += 1
    rows = [SpendRow(k, cur, g[0], g[1]) for (k, cur), g in groups.items()]
    if by == "month":
        return sorted(rows, key=lambda r: (r.key, r.currency))
    return sorted(rows, key=lambda r: (-r.total, r.key, r.currency))


def to_csv(rows: list[SpendRow], by: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([by, "currency", "total", "count"])
    for r in rows:
        w.writerow([r.key, r.currency, f"{r.total:.2f}", r.count])
    return buf.getvalue()
