"""OASIS UBL 2.1 ``Invoice`` and ``CreditNote`` (the EN 16931 UBL syntax, as used by PEPPOL and XRechnung)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from openvrm.documents.parsers._util import (
    clean_text,
    domain_of_email,
    domain_of_url,
    parse_iso_date,
    per_unit,
    to_currency,
    to_decimal,
)
from openvrm.documents.parsers._xml import XmlRefused, all_text, namespace_score, parse_xml, xpath
from openvrm.documents.parsers.cii import CREDIT_NOTE_CODES, siren_from_vat
from openvrm.documents.parsers.model import (
    MAX_LINE_ITEMS,
    MAX_TEXT_CHARS,
    DocumentType,
    Format,
    LineItem,
    ParsedDocument,
)

NS_INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
NS_CREDIT_NOTE = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
REQUIRED = ("invoice_number", "issue_date", "currency", "gross_total")


def ubl_profile(customization: str | None) -> str | None:
    """A short profile name from ``cbc:CustomizationID`` (BT-24)."""
    if not customization:
        return None
    c = customization.strip().lower()
    if "xrechnung" in c:
        return "XRECHNUNG"
    if "peppol" in c:
        return "PEPPOL BIS Billing 3.0"
    if "en16931" in c:
        return "EN 16931"
    return clean_text(customization, 200)


def _first(node: Any, path: str) -> Any:
    if node is None:
        return None
    found = xpath(node, path, NS)
    return found[0] if found else None


def _text(node: Any, path: str) -> str | None:
    el = _first(node, path)
    return clean_text(el.text) if el is not None else None


def _amount(node: Any, path: str) -> Decimal | None:
    return to_decimal(_text(node, path))


def _party(party: Any) -> dict[str, Any]:
    name = _text(party, "cac:PartyName/cbc:Name") or _text(party, "cac:PartyLegalEntity/cbc:RegistrationName")
    vat_id = _text(party, "cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID")
    siren = siret = None
    for el in xpath(party, "cac:PartyLegalEntity/cbc:CompanyID", NS) if party is not None else []:
        value = "".join((el.text or "").split())
        scheme = (el.get("schemeID") or "").strip()
        if scheme in ("0002", "0009") and value.isdigit():
            if len(value) == 14:
                siret, siren = siret or value, siren or value[:9]
            elif len(value) == 9 and scheme == "0002":
                siren = siren or value
    if siren is None and vat_id:
        siren = siren_from_vat(vat_id)
    email = _text(party, "cbc:EndpointID[@schemeID='EM']") or _text(party, "cac:Contact/cbc:ElectronicMail")
    website = _text(party, "cbc:WebsiteURI")
    return {
        "name": name,
        "vat_id": vat_id,
        "siren": siren,
        "siret": siret,
        "email": email,
        "website": website,
        "domain": domain_of_url(website) or domain_of_email(email),
    }


def read_ubl(
    root: Any, *, fmt: Format = "ubl", warnings: tuple[str, ...] = (), text: bool = True
) -> ParsedDocument:
    """Read the business terms of a parsed UBL Invoice or CreditNote tree (``text`` as for ``read_cii``)."""
    if root.tag == f"{{{NS_INVOICE}}}Invoice":
        kind, type_path, line_path, qty_path = (
            "Invoice",
            "cbc:InvoiceTypeCode",
            "cac:InvoiceLine",
            "cbc:InvoicedQuantity",
        )
    elif root.tag == f"{{{NS_CREDIT_NOTE}}}CreditNote":
        kind, type_path, line_path, qty_path = (
            "CreditNote",
            "cbc:CreditNoteTypeCode",
            "cac:CreditNoteLine",
            "cbc:CreditedQuantity",
        )
    else:
        local = str(root.tag).rsplit("}", 1)[-1]
        return ParsedDocument(
            format=fmt,
            status="unparsed",
            reason=f"not a UBL invoice or credit note: the root element is {local!r}",
            warnings=warnings,
        )
    notes = list(warnings)
    currency = to_currency(_text(root, "cbc:DocumentCurrencyCode"))
    type_code = _text(root, type_path)
    document_type: DocumentType
    if kind == "CreditNote" or (type_code and type_code in CREDIT_NOTE_CODES):
        document_type = "credit_note"
    else:
        document_type = "invoice"
    seller = _party(_first(root, "cac:AccountingSupplierParty/cac:Party"))
    buyer = _party(_first(root, "cac:AccountingCustomerParty/cac:Party"))
    totals = _first(root, "cac:LegalMonetaryTotal")

    lines = xpath(root, line_path, NS)
    if len(lines) > MAX_LINE_ITEMS:
        notes.append(f"only the first {MAX_LINE_ITEMS} of {len(lines)} lines were kept")
    items = tuple(_line(line, qty_path) for line in lines[:MAX_LINE_ITEMS])

    result = ParsedDocument(
        format=fmt,
        status="parsed",
        profile=ubl_profile(_text(root, "cbc:CustomizationID")),
        document_type=document_type,
        seller=seller["name"],
        seller_vat_id=seller["vat_id"],
        seller_siren=seller["siren"],
        seller_siret=seller["siret"],
        seller_email=seller["email"],
        seller_website=seller["website"],
        seller_domain=seller["domain"],
        buyer=buyer["name"],
        invoice_number=_text(root, "cbc:ID"),
        issue_date=parse_iso_date(_text(root, "cbc:IssueDate")),
        # BT-9: cbc:DueDate on an Invoice; a UBL 2.1 CreditNote carries it on the payment means.
        due_date=parse_iso_date(
            _text(root, "cbc:DueDate") or _text(root, "cac:PaymentMeans/cbc:PaymentDueDate")
        ),
        service_start=parse_iso_date(_text(root, "cac:InvoicePeriod/cbc:StartDate")),
        service_end=parse_iso_date(_text(root, "cac:InvoicePeriod/cbc:EndDate")),
        currency=currency,
        net_total=_amount(totals, "cbc:TaxExclusiveAmount"),
        tax_total=_tax_total(root, currency),
        gross_total=_amount(totals, "cbc:TaxInclusiveAmount"),
        due_total=_amount(totals, "cbc:PayableAmount"),
        line_items=items,
        text=all_text(root, MAX_TEXT_CHARS) if text else "",
        warnings=tuple(notes),
    )
    missing = [name for name in REQUIRED if getattr(result, name) is None]
    if missing:
        return replace(
            result,
            status="partial",
            reason=f"UBL {kind} read, but these fields are missing or invalid: {', '.join(missing)}",
        )
    return result


def _tax_total(root: Any, currency: str | None) -> Decimal | None:
    # BT-110 (in the document currency) and BT-111 (in the tax currency) are two cac:TaxTotal elements.
    amounts = xpath(root, "cac:TaxTotal/cbc:TaxAmount", NS)
    for el in amounts:
        if currency and (el.get("currencyID") or "").strip().upper() == currency:
            return to_decimal(el.text)
    return to_decimal(amounts[0].text) if amounts else None


def _line(line: Any, qty_path: str) -> LineItem:
    quantity_el = _first(line, qty_path)
    price = _amount(line, "cac:Price/cbc:PriceAmount")
    basis = _amount(line, "cac:Price/cbc:BaseQuantity")
    price = per_unit(price, basis)
    return LineItem(
        description=_text(line, "cac:Item/cbc:Name") or _text(line, "cac:Item/cbc:Description"),
        quantity=to_decimal(quantity_el.text) if quantity_el is not None else None,
        unit=clean_text(quantity_el.get("unitCode"), 10) if quantity_el is not None else None,
        unit_price=price,
        net_amount=_amount(line, "cbc:LineExtensionAmount"),
        tax_rate=_amount(line, "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent"),
    )


def is_ubl_namespace(ns: str | None) -> bool:
    return ns in (NS_INVOICE, NS_CREDIT_NOTE)


class UblParser:
    """UBL 2.1 Invoice and CreditNote XML files."""

    name = "ubl"
    formats: tuple[Format, ...] = ("ubl",)

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        return namespace_score(data, (NS_INVOICE, NS_CREDIT_NOTE))

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        try:
            xml = parse_xml(data)
        except XmlRefused as exc:
            return ParsedDocument(format="ubl", status="unparsed", reason=str(exc))
        return read_ubl(xml.root, fmt="ubl", warnings=xml.warnings)


__all__ = ["UblParser", "read_ubl", "ubl_profile"]
