"""UN/CEFACT Cross Industry Invoice (CII) XML.

Two generations are read with one code path and a table of element paths each:

- **CII D16B** (root ``rsm:CrossIndustryInvoice``), the syntax of ZUGFeRD 2.x, Factur-X and XRechnung-CII;
- **ZUGFeRD 1.0** (root ``rsm:CrossIndustryDocument`` in ``urn:ferd:CrossIndustryDocument:invoice:1p0``),
  an older CII draft with different wrapper element names but the same leaf names.

The business terms read are those of EN 16931 (BT numbers in comments where the mapping is not obvious).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from openvrm.documents.parsers._util import (
    clean_text,
    domain_of_email,
    parse_cii_date,
    per_unit,
    to_currency,
    to_decimal,
)
from openvrm.documents.parsers._xml import XmlRefused, all_text, namespace_score, parse_xml, xpath
from openvrm.documents.parsers.model import (
    MAX_LINE_ITEMS,
    MAX_TEXT_CHARS,
    DocumentType,
    Format,
    LineItem,
    ParsedDocument,
)

NS_D16B = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
NS_ZUGFERD1 = "urn:ferd:CrossIndustryDocument:invoice:1p0"


@dataclass(frozen=True)
class _Syntax:
    name: str
    ns: dict[str, str]
    context: str
    document: str
    agreement: str
    settlement: str
    summation: str
    lines: str
    line_quantity: str
    line_price: str
    line_tax_rate: str
    line_net: str


_D16B = _Syntax(
    name="CII D16B",
    ns={
        "rsm": NS_D16B,
        "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
        "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
    },
    context="rsm:ExchangedDocumentContext",
    document="rsm:ExchangedDocument",
    agreement="rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement",
    settlement="rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement",
    summation="ram:SpecifiedTradeSettlementHeaderMonetarySummation",
    lines="rsm:SupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem",
    line_quantity="ram:SpecifiedLineTradeDelivery/ram:BilledQuantity",
    line_price="ram:SpecifiedLineTradeAgreement/ram:NetPriceProductTradePrice",
    line_tax_rate="ram:SpecifiedLineTradeSettlement/ram:ApplicableTradeTax/ram:RateApplicablePercent",
    line_net="ram:SpecifiedLineTradeSettlement/ram:SpecifiedTradeSettlementLineMonetarySummation"
    "/ram:LineTotalAmount",
)

_ZUGFERD1 = _Syntax(
    name="ZUGFeRD 1.0",
    ns={
        "rsm": NS_ZUGFERD1,
        "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:12",
        "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:15",
    },
    context="rsm:SpecifiedExchangedDocumentContext",
    document="rsm:HeaderExchangedDocument",
    agreement="rsm:SpecifiedSupplyChainTradeTransaction/ram:ApplicableSupplyChainTradeAgreement",
    settlement="rsm:SpecifiedSupplyChainTradeTransaction/ram:ApplicableSupplyChainTradeSettlement",
    summation="ram:SpecifiedTradeSettlementMonetarySummation",
    lines="rsm:SpecifiedSupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem",
    line_quantity="ram:SpecifiedSupplyChainTradeDelivery/ram:BilledQuantity",
    line_price="ram:SpecifiedSupplyChainTradeAgreement/ram:NetPriceProductTradePrice",
    line_tax_rate="ram:SpecifiedSupplyChainTradeSettlement/ram:ApplicableTradeTax/ram:ApplicablePercent",
    line_net="ram:SpecifiedSupplyChainTradeSettlement/ram:SpecifiedTradeSettlementMonetarySummation"
    "/ram:LineTotalAmount",
)

_SYNTAX_BY_ROOT = {
    f"{{{NS_D16B}}}CrossIndustryInvoice": _D16B,
    f"{{{NS_ZUGFERD1}}}CrossIndustryDocument": _ZUGFERD1,
}

# UNTDID 1001 document name codes that mean "credit note"; every other code in a CII invoice message is
# some kind of invoice (380 commercial, 384 corrected, 389 self-billed, 326 partial, 575 insurer's, ...).
CREDIT_NOTE_CODES = frozenset({"81", "83", "261", "262", "296", "308", "381", "396", "420", "458", "532"})

REQUIRED = ("invoice_number", "issue_date", "currency", "gross_total")


def document_type_for(code: str | None) -> DocumentType:
    return "credit_note" if code and code.strip() in CREDIT_NOTE_CODES else "invoice"


def profile_name(guideline: str | None) -> str | None:
    """A short, human profile name from the guideline identifier (BT-24)."""
    if not guideline:
        return None
    g = guideline.strip().lower()
    if g.startswith("urn:ferd:crossindustrydocument:invoice:1p0"):
        level = g.rsplit(":", 1)[-1].upper()
        return f"ZUGFeRD 1.0 {level}" if level in ("BASIC", "COMFORT", "EXTENDED") else "ZUGFeRD 1.0"
    if "xrechnung" in g:
        return "XRECHNUNG"
    for marker, name in (
        ("extended", "EXTENDED"),
        ("basicwl", "BASIC WL"),
        ("basic", "BASIC"),
        ("minimum", "MINIMUM"),
        ("en16931", "EN 16931"),
    ):
        if marker in g:
            return name
    return clean_text(guideline, 200)


class _Reader:
    def __init__(self, syntax: _Syntax) -> None:
        self.ns = syntax.ns

    def first(self, node: Any, path: str) -> Any:
        if node is None:
            return None
        found = xpath(node, path, self.ns)
        return found[0] if found else None

    def text(self, node: Any, path: str) -> str | None:
        el = self.first(node, path)
        if el is None:
            return None
        return clean_text(el.text if hasattr(el, "text") else str(el))

    def date(self, node: Any, path: str) -> date | None:
        el = self.first(node, path + "/udt:DateTimeString")
        return parse_cii_date(el.text, el.get("format")) if el is not None else None

    def amount(self, node: Any, path: str) -> Decimal | None:
        return to_decimal(self.text(node, path))


def read_cii(
    root: Any, *, fmt: Format = "cii", warnings: tuple[str, ...] = (), text: bool = True
) -> ParsedDocument:
    """Read the business terms of a parsed CII tree. Never raises for odd content.

    ``text=False`` leaves ``text`` empty, for a caller that has the document's text already (a PDF's).
    """
    syntax = _SYNTAX_BY_ROOT.get(root.tag)
    if syntax is None:
        return ParsedDocument(
            format=fmt,
            status="unparsed",
            reason=f"not a CII invoice: the root element is {_local(root.tag)!r}",
            warnings=warnings,
        )
    r = _Reader(syntax)
    notes = list(warnings)
    doc = r.first(root, syntax.document)
    agreement = r.first(root, syntax.agreement)
    settlement = r.first(root, syntax.settlement)
    summation = r.first(settlement, syntax.summation)
    seller = r.first(agreement, "ram:SellerTradeParty")
    buyer = r.first(agreement, "ram:BuyerTradeParty")

    currency = to_currency(r.text(settlement, "ram:InvoiceCurrencyCode"))
    vat_id = r.text(seller, "ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA']")
    siren, siret = _french_ids(r, seller, vat_id)
    email = r.text(seller, "ram:URIUniversalCommunication/ram:URIID[@schemeID='EM']") or r.text(
        seller, "ram:DefinedTradeContact/ram:EmailURIUniversalCommunication/ram:URIID"
    )
    type_code = r.text(doc, "ram:TypeCode")

    lines = xpath(root, syntax.lines, r.ns)
    if len(lines) > MAX_LINE_ITEMS:
        notes.append(f"only the first {MAX_LINE_ITEMS} of {len(lines)} lines were kept")
    # ZUGFeRD 1.0 uses line items that hold only a free-text note; they carry no goods and are skipped
    # (their text is still in ``text``).
    items = tuple(
        item for item in (_line(r, syntax, line) for line in lines[:MAX_LINE_ITEMS]) if _useful(item)
    )

    result = ParsedDocument(
        format=fmt,
        status="parsed",
        profile=profile_name(
            r.text(root, syntax.context + "/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID")
        ),
        document_type=document_type_for(type_code),
        seller=r.text(seller, "ram:Name"),
        seller_vat_id=vat_id,
        seller_siren=siren,
        seller_siret=siret,
        seller_email=email,
        seller_domain=domain_of_email(email),
        buyer=r.text(buyer, "ram:Name"),
        invoice_number=r.text(doc, "ram:ID"),
        issue_date=r.date(doc, "ram:IssueDateTime"),
        due_date=r.date(settlement, "ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime"),
        service_start=r.date(settlement, "ram:BillingSpecifiedPeriod/ram:StartDateTime"),
        service_end=r.date(settlement, "ram:BillingSpecifiedPeriod/ram:EndDateTime"),
        currency=currency,
        net_total=_first_not_none(
            r.amount(summation, "ram:TaxBasisTotalAmount"), r.amount(summation, "ram:LineTotalAmount")
        ),
        tax_total=_tax_total(r, summation, currency),
        gross_total=r.amount(summation, "ram:GrandTotalAmount"),
        due_total=r.amount(summation, "ram:DuePayableAmount"),
        line_items=items,
        text=all_text(root, MAX_TEXT_CHARS) if text else "",
        warnings=tuple(notes),
    )
    missing = [name for name in REQUIRED if getattr(result, name) is None]
    if missing:
        return replace(
            result,
            status="partial",
            reason=f"{syntax.name} invoice read, but these fields are missing or invalid: "
            + ", ".join(missing),
        )
    return result


def _first_not_none(*values: Decimal | None) -> Decimal | None:
    return next((v for v in values if v is not None), None)


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _tax_total(r: _Reader, summation: Any, currency: str | None) -> Decimal | None:
    # BT-110 is the VAT total in the invoice currency; BT-111 repeats it in the accounting currency with
    # another currencyID. Take the one in the invoice currency, else the one without a currencyID.
    if summation is None:
        return None
    amounts = xpath(summation, "ram:TaxTotalAmount", r.ns)
    for el in amounts:
        if currency and (el.get("currencyID") or "").strip().upper() == currency:
            return to_decimal(el.text)
    for el in amounts:
        if not el.get("currencyID"):
            return to_decimal(el.text)
    return to_decimal(amounts[0].text) if len(amounts) == 1 else None


def _french_ids(r: _Reader, seller: Any, vat_id: str | None) -> tuple[str | None, str | None]:
    # ISO 6523 ICD 0002 is the French SIRENE register (a 9-digit SIREN or a 14-digit SIRET); 0009 is SIRET.
    siren = siret = None
    if seller is not None:
        for el in xpath(seller, "ram:SpecifiedLegalOrganization/ram:ID", r.ns):
            value = "".join((el.text or "").split())
            scheme = (el.get("schemeID") or "").strip()
            if scheme in ("0002", "0009") and value.isdigit():
                if len(value) == 14:
                    siret = siret or value
                    siren = siren or value[:9]
                elif len(value) == 9 and scheme == "0002":
                    siren = siren or value
    if siren is None and vat_id:
        siren = siren_from_vat(vat_id)
    return siren, siret


def siren_from_vat(vat_id: str) -> str | None:
    """A French VAT number is ``FR`` + a 2-character key + the 9-digit SIREN."""
    compact = "".join(vat_id.split()).upper()
    if compact.startswith("FR") and len(compact) == 13 and compact[4:].isdigit():
        return compact[4:]
    return None


def _line(r: _Reader, syntax: _Syntax, line: Any) -> LineItem:
    quantity_el = r.first(line, syntax.line_quantity)
    price = r.amount(line, syntax.line_price + "/ram:ChargeAmount")
    basis = r.amount(line, syntax.line_price + "/ram:BasisQuantity")
    price = per_unit(price, basis)
    return LineItem(
        description=r.text(line, "ram:SpecifiedTradeProduct/ram:Name"),
        quantity=to_decimal(quantity_el.text) if quantity_el is not None else None,
        unit=clean_text(quantity_el.get("unitCode"), 10) if quantity_el is not None else None,
        unit_price=price,
        net_amount=r.amount(line, syntax.line_net),
        tax_rate=r.amount(line, syntax.line_tax_rate),
    )


def _useful(item: LineItem) -> bool:
    return any(v is not None for v in (item.description, item.quantity, item.unit_price, item.net_amount))


def is_cii_namespace(ns: str | None) -> bool:
    return ns in (NS_D16B, NS_ZUGFERD1)


class CiiParser:
    """Plain CII XML files (``.xml``) in either generation."""

    name = "cii"
    formats: tuple[Format, ...] = ("cii",)

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        return namespace_score(data, (NS_D16B, NS_ZUGFERD1))

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        try:
            xml = parse_xml(data)
        except XmlRefused as exc:
            return ParsedDocument(format="cii", status="unparsed", reason=str(exc))
        return read_cii(xml.root, fmt="cii", warnings=xml.warnings)


__all__ = ["CiiParser", "document_type_for", "profile_name", "read_cii", "siren_from_vat"]
