"""A demo vault: a plausible person with a dozen vendors, relationships, invoices and shares.

Used by `vrm demo` (and so by `make run`) so a new user sees a lived-in vault. Every name and number
here is made up; vendor names are real companies only so the pages look like a real person's life.
"""

from __future__ import annotations

import zlib
from datetime import date, timedelta
from decimal import Decimal

from fpdf import FPDF

from openvrm.documents.service import DocumentService
from openvrm.profile.service import ProfileService
from openvrm.sharing.service import SharingService
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

PROFILE: list[tuple[str, object]] = [
    ("name", "Camille Martin"),
    ("given-name", "Camille"),
    ("family-name", "Martin"),
    ("email", "camille.martin@example.org"),
    ("phone", "+33 6 12 34 56 78"),
    (
        "address.home",
        {"street": "18 rue des Lilas", "postal_code": "69003", "city": "Lyon", "country": "FR"},
    ),
    ("birth-date", "1988-04-12"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("loyalty.fnac", "FN-2231-8876"),
]

# name, domain, country, categories, customer number, since, stance, monthly price (for invoices)
VENDORS: list[tuple[str, str, str, list[str], str | None, str, str, Decimal | None]] = [
    ("Free Mobile", "free.fr", "FR", ["telecom"], "FM-88412093", "2019-03-02", "neutral", Decimal("15.99")),
    ("EDF", "edf.fr", "FR", ["energy"], "6004 1187 332", "2016-09-15", "trusted", Decimal("74.20")),
    ("Orange", "orange.fr", "FR", ["telecom"], "0472118890", "2014-01-10", "neutral", Decimal("42.99")),
    ("Netflix", "netflix.com", "NL", ["streaming"], None, "2020-04-01", "neutral", Decimal("13.49")),
    ("Spotify", "spotify.com", "SE", ["streaming"], None, "2017-06-21", "neutral", Decimal("11.12")),
    ("Deutsche Bahn", "bahn.de", "DE", ["travel"], "DB-7710023", "2021-08-04", "neutral", None),
    ("Amazon EU", "amazon.fr", "LU", ["retail"], None, "2012-11-30", "neutral", None),
    (
        "Boulanger",
        "boulanger.com",
        "FR",
        ["retail", "electronics"],
        "BL-0098123",
        "2023-02-11",
        "trusted",
        None,
    ),
    ("MAIF", "maif.fr", "FR", ["insurance"], "1234567A", "2015-05-05", "trusted", Decimal("38.40")),
    ("Decathlon", "decathlon.fr", "FR", ["retail", "sport"], "DC-55120", "2018-04-02", "neutral", None),
    ("La Poste", "laposte.fr", "FR", ["post"], None, "2010-01-01", "neutral", None),
    ("DataBroker Ltd", "databroker.example", "GB", ["marketing"], None, "2022-07-07", "blocked", None),
]


def invoice_pdf(
    vendor: str, number: str, issued: date, lines: list[tuple[str, Decimal]], customer: str
) -> bytes:
    """A simple one-page invoice, as a vendor might send it."""
    pdf = FPDF(format="A4")
    pdf.set_creator("openvrm demo")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 12, vendor, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.cell(0, 7, f"Invoice {number}", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 7, f"Date: {issued.isoformat()}", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 7, f"Customer: {customer}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    total = Decimal("0")
    for label, amount in lines:
        pdf.cell(140, 7, label)
        pdf.cell(0, 7, f"{amount:.2f} EUR", align="R", new_x="LMARGIN", new_y="NEXT")
        total += amount
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(140, 8, "Total (VAT included)")
    pdf.cell(0, 8, f"{total:.2f} EUR", align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def populate_demo(vault: UnlockedVault, *, today: date | None = None) -> dict[str, int]:
    """Fill an empty vault with the demo data; return counts of what was added."""
    today = today or date.today()  # noqa: DTZ011 - a calendar date for sample invoices
    profile = ProfileService(vault)
    for key, value in PROFILE:
        profile.set(key, value, source="demo")
    # An older address, so the profile history shows a move.
    profile.set(
        "address.home",
        {"street": "4 place Bellecour", "postal_code": "69002", "city": "Lyon", "country": "FR"},
    )
    profile.set("address.home", dict(PROFILE[5][1]))  # type: ignore[call-overload]

    vendors = VendorService(vault)
    docs = DocumentService(vault)
    sharing = SharingService(vault)
    counts = {"vendors": 0, "relationships": 0, "documents": 0, "shares": 0, "profile_fields": len(PROFILE)}
    for name, domain, country, cats, customer, since, stance, price in VENDORS:
        v = vendors.add(
            name, domains=[domain], country=country, categories=cats, website=f"https://www.{domain}/"
        )
        rel = vendors.relate(v.id, customer_number=customer, since=since, stance=stance, tags=cats[:1])
        counts["vendors"] += 1
        counts["relationships"] += 1
        if price is not None:
            for months_back in (2, 1):
                issued = (today.replace(day=1) - timedelta(days=30 * months_back)).replace(day=5)
                serial = zlib.crc32(f"{name}{months_back}".encode()) % 10000
                number = f"{name[:3].upper()}-{issued:%Y%m}-{serial:04d}"
                pdf = invoice_pdf(
                    name, number, issued, [(f"{name} monthly plan", price)], customer or "Camille Martin"
                )
                docs.add(
                    pdf,
                    filename=f"{name.lower().replace(' ', '-')}-{issued:%Y-%m}.pdf",
                    title=f"{name} invoice {issued:%B %Y}",
                    kind="invoice",
                    vendor_id=v.id,
                    relationship_id=rel.id,
                )
                counts["documents"] += 1
        if name in ("Netflix", "Spotify", "Free Mobile"):
            sharing.share(rel.id, "email", purpose="account and billing")
            counts["shares"] += 1
        if name in ("Boulanger", "Amazon EU", "La Poste"):
            sharing.share(rel.id, "address.home", purpose="delivery")
            counts["shares"] += 1
    vault.vault.deposit(
        {
            "type": "receipt",
            "vendor": "Boulanger",
            "total": "549.00",
            "currency": "EUR",
            "note": "sent while locked",
        }
    )
    return counts
