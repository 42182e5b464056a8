"""A demo vault: a plausible person with a dozen vendors, relationships, invoices and shares.

Used by `vrm demo` (and so by `make run`) so a new user sees a lived-in vault. Every name and number
here is made up; vendor names are real companies only so the pages look like a real person's life.
"""

from __future__ import annotations

import json
import logging
import zlib
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

import facturx
from fpdf import FPDF

from openvrm.documents.importer import ImportService
from openvrm.ledger.contracts import ContractService
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


_CII = """<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
 xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
 xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100">
<rsm:ExchangedDocumentContext><ram:GuidelineSpecifiedDocumentContextParameter>
<ram:ID>urn:factur-x.eu:1p0:basicwl</ram:ID></ram:GuidelineSpecifiedDocumentContextParameter>
</rsm:ExchangedDocumentContext>
<rsm:ExchangedDocument><ram:ID>{number}</ram:ID><ram:TypeCode>380</ram:TypeCode>
<ram:IssueDateTime><udt:DateTimeString format="102">{issued}</udt:DateTimeString></ram:IssueDateTime>
</rsm:ExchangedDocument>
<rsm:SupplyChainTradeTransaction>
<ram:ApplicableHeaderTradeAgreement>
<ram:SellerTradeParty><ram:Name>{seller}</ram:Name>
<ram:PostalTradeAddress><ram:CountryID>{country}</ram:CountryID></ram:PostalTradeAddress>
</ram:SellerTradeParty>
<ram:BuyerTradeParty><ram:Name>{buyer}</ram:Name></ram:BuyerTradeParty>
</ram:ApplicableHeaderTradeAgreement>
<ram:ApplicableHeaderTradeDelivery/>
<ram:ApplicableHeaderTradeSettlement>
<ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>
<ram:ApplicableTradeTax><ram:CalculatedAmount>{tax}</ram:CalculatedAmount><ram:TypeCode>VAT</ram:TypeCode>
<ram:BasisAmount>{net}</ram:BasisAmount><ram:CategoryCode>S</ram:CategoryCode>
<ram:RateApplicablePercent>20.00</ram:RateApplicablePercent></ram:ApplicableTradeTax>
<ram:SpecifiedTradePaymentTerms><ram:DueDateDateTime>
<udt:DateTimeString format="102">{due}</udt:DateTimeString>
</ram:DueDateDateTime></ram:SpecifiedTradePaymentTerms>
<ram:SpecifiedTradeSettlementHeaderMonetarySummation>
<ram:LineTotalAmount>{net}</ram:LineTotalAmount><ram:TaxBasisTotalAmount>{net}</ram:TaxBasisTotalAmount>
<ram:TaxTotalAmount currencyID="EUR">{tax}</ram:TaxTotalAmount>
<ram:GrandTotalAmount>{gross}</ram:GrandTotalAmount>
<ram:DuePayableAmount>{gross}</ram:DuePayableAmount>
</ram:SpecifiedTradeSettlementHeaderMonetarySummation>
</ram:ApplicableHeaderTradeSettlement>
</rsm:SupplyChainTradeTransaction>
</rsm:CrossIndustryInvoice>
"""


def facturx_invoice(
    vendor: str, country: str, number: str, issued: date, gross: Decimal, customer: str
) -> bytes:
    """A Factur-X (BASIC WL) invoice: the printable PDF with its CII XML embedded, as vendors send them."""
    net = (gross / Decimal("1.2")).quantize(Decimal("0.01"))
    xml = _CII.format(
        number=escape(number),
        issued=issued.strftime("%Y%m%d"),
        due=(issued + timedelta(days=15)).strftime("%Y%m%d"),
        seller=escape(vendor),
        country=country,
        buyer=escape(customer),
        net=net,
        tax=gross - net,
        gross=gross,
    )
    pdf = invoice_pdf(vendor, number, issued, [(f"{vendor} monthly plan", gross)], customer)
    logging.getLogger("factur-x").setLevel(logging.ERROR)
    out = facturx.generate_from_binary(pdf, xml.encode(), flavor="factur-x", level="basicwl", check_xsd=False)
    return bytes(out)


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


# vendor name: plan, category, cycle, minimum term (months), renewal term, notice
CONTRACTS: dict[str, tuple[str, str, str, int, int, str]] = {
    "Free Mobile": ("Forfait Free 5G 150 Go", "telecom", "monthly", 0, 0, "10 days"),
    "EDF": ("Tarif Bleu 6 kVA", "energy", "monthly", 0, 0, "0 days"),
    "Orange": ("Livebox Fibre", "telecom", "monthly", 12, 1, "10 days"),
    "Netflix": ("Standard", "streaming", "monthly", 0, 0, "0 days"),
    "Spotify": ("Premium Individual", "streaming", "monthly", 0, 0, "0 days"),
    "MAIF": ("Assurance habitation", "insurance", "yearly", 12, 12, "2 months"),
}


def populate_demo(
    vault: UnlockedVault, *, today: date | None = None, zone_file: Path | None = None
) -> dict[str, int]:
    """Fill an empty vault with the demo data; return counts of what was added.

    ``zone_file`` receives the demo mail's DNS zone (public keys only), for `vrm serve --mail-port`.
    """
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
    importer = ImportService(vault, create_vendors=False, today=today)
    contracts = ContractService(vault)
    sharing = SharingService(vault)
    counts = {
        "vendors": 0,
        "relationships": 0,
        "contracts": 0,
        "documents": 0,
        "shares": 0,
        "payments": 0,
        "profile_fields": len(PROFILE),
    }
    for name, domain, country, cats, customer, since, stance, price in VENDORS:
        v = vendors.add(
            name, domains=[domain], country=country, categories=cats, website=f"https://www.{domain}/"
        )
        rel = vendors.relate(v.id, customer_number=customer, since=since, stance=stance, tags=cats[:1])
        counts["vendors"] += 1
        counts["relationships"] += 1
        if price is not None and name in CONTRACTS:
            plan, category, cycle, min_term, renewal, notice = CONTRACTS[name]
            value, unit = notice.split()
            # The current contract began a while ago (the relationship is older: plans get renewed).
            spread = timedelta(days=3 * counts["contracts"])  # not every bill on the same day of the month
            start = max(
                date.fromisoformat(since), today - timedelta(days=400 if cycle == "monthly" else 300) - spread
            )
            yearly_price = price * 12 if cycle == "yearly" else price
            c = contracts.add(
                v.id,
                plan=plan,
                price=yearly_price,
                start=start,
                billing_cycle=cycle,
                category=category,
                minimum_term_months=min_term,
                renewal_term_months=renewal,
                notice_value=int(value),
                notice_unit=unit,
                variable=(category == "energy"),
                relationship_id=rel.id,
            )
            counts["contracts"] += 1
            if name == "Netflix":
                contracts.set_price(c.id, price + Decimal("2.50"), effective=today - timedelta(days=200))
            # Every payment so far was made on its due date, except the newest electricity bill, whose
            # amount (it varies) is not known yet.
            due = [e for e in contracts.expected(c.id, until=today, today=today) if e.due_date <= today]
            for e in due[:-1] if category == "energy" else due:
                contracts.pay(c.id, due_date=e.due_date, paid_on=e.due_date, today=today)
                counts["payments"] += 1
        if price is not None:
            for months_back in (2, 1):
                issued = (today.replace(day=1) - timedelta(days=30 * months_back)).replace(day=5)
                serial = zlib.crc32(f"{name}{months_back}".encode()) % 10000
                number = f"{name[:3].upper()}-{issued:%Y%m}-{serial:04d}"
                pdf = facturx_invoice(name, country, number, issued, price, "Camille Martin")
                outcomes = importer.import_bytes(
                    pdf, filename=f"{name.lower().replace(' ', '-')}-{issued:%Y-%m}.pdf", vendor_id=v.id
                )
                counts["documents"] += sum(1 for o in outcomes if o.status == "imported")
        if name in ("Netflix", "Spotify", "Free Mobile"):
            sharing.share(rel.id, "email", purpose="account and billing")
            counts["shares"] += 1
        if name in ("Boulanger", "Amazon EU", "La Poste"):
            sharing.share(rel.id, "address.home", purpose="delivery")
            counts["shares"] += 1
    # A purchase with a two-year warranty: it shows up in `vrm upcoming` when the end nears.
    receipt = invoice_pdf(
        "Boulanger",
        "BL-2025-77812",
        today - timedelta(days=700),
        [("Lave-linge Bosch Serie 6", Decimal("549.00"))],
        "Camille Martin",
    )
    bl = next(v for v in vendors.list() if v.name == "Boulanger")
    got = importer.import_bytes(receipt, filename="boulanger-lave-linge.pdf", vendor_id=bl.id)[0]
    if got.document_id:
        from openvrm.documents.service import DocumentService

        DocumentService(vault).edit(
            got.document_id,
            kind="receipt",
            title="Lave-linge Bosch Serie 6",
            warranty_until=(today + timedelta(days=30)).isoformat(),
        )
        counts["documents"] += 1
    vault.vault.deposit(
        {
            "type": "receipt",
            "vendor": "Boulanger",
            "total": "549.00",
            "currency": "EUR",
            "note": "sent while locked",
        }
    )
    from openvrm.mail.demo import populate_demo_mail

    mail_counts, zone = populate_demo_mail(vault, forward_to=str(dict(PROFILE)["email"]), today=today)
    counts["documents"] += mail_counts.pop("mail_bills")
    counts |= mail_counts
    if zone_file is not None:
        zone_file.write_text(json.dumps(zone.to_json(), indent=1), encoding="utf-8")
    return counts
