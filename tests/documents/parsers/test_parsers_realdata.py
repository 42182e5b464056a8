"""Every real e-invoice in ../shared/data/einvoices, checked against an independent oracle.

The oracle extracts the XML with the factur-x library and reads four values with plain XPath by local
name; it shares no code with the parsers.
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import facturx
import pytest
from lxml import etree

from openvrm.documents.parsers import ParsedDocument, parse

from .support import EINVOICES

if not EINVOICES.is_dir():
    pytest.skip(f"the shared e-invoice corpus is not at {EINVOICES}", allow_module_level=True)


def _files(*, failing: bool) -> list[Path]:
    files = [p for p in sorted(EINVOICES.rglob("*")) if p.suffix.lower() in (".pdf", ".xml") and p.is_file()]
    return [p for p in files if ("fail" in p.relative_to(EINVOICES).parts) == failing]


CORRECT = _files(failing=False)
FAILING = [
    p for p in sorted(EINVOICES.rglob("*")) if p.is_file() and "fail" in p.relative_to(EINVOICES).parts
]


def _id(path: Path) -> str:
    return str(path.relative_to(EINVOICES))


def oracle_xml(path: Path) -> bytes | None:
    data = path.read_bytes()
    if path.suffix.lower() == ".xml":
        return data
    logging.getLogger("factur-x").disabled = True
    _, xml = facturx.get_xml_from_pdf(data, check_xsd=False)
    return xml or None


def oracle_values(xml: bytes) -> tuple[str, date, str, Decimal]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(xml, parser=parser)
    header = "/*/*[local-name()='ExchangedDocument' or local-name()='HeaderExchangedDocument']"
    number = root.xpath(f"{header}/*[local-name()='ID']/text()")[0].strip()
    raw_date = root.xpath(f"{header}/*[local-name()='IssueDateTime']/*[local-name()='DateTimeString']/text()")
    stamp = raw_date[0].strip()
    currency = root.xpath("//*[local-name()='InvoiceCurrencyCode']/text()")[0].strip()
    grand = root.xpath("//*[local-name()='GrandTotalAmount']/text()")[0].strip()
    return number, date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8])), currency, Decimal(grand)


def test_the_corpus_is_all_there() -> None:
    assert len(CORRECT) == 64
    assert len(FAILING) == 21


@pytest.mark.parametrize("path", CORRECT, ids=_id)
def test_correct_file_matches_oracle(path: Path) -> None:
    xml = oracle_xml(path)
    assert xml is not None, (
        f"{_id(path)} is filed as correct but has no embedded invoice XML; it is not Factur-X/ZUGFeRD "
        "and needs its own expectation here"
    )
    number, issued, currency, grand = oracle_values(xml)

    result = parse(path.read_bytes(), filename=path.name)

    assert result.status == "parsed", result.reason
    assert result.format == ("cii" if path.suffix == ".xml" else "facturx")
    assert result.invoice_number == number
    assert result.issue_date == issued
    assert result.currency == currency
    assert result.gross_total == grand
    assert result.profile
    assert result.document_type in ("invoice", "credit_note")
    assert result.seller
    assert result.text, "searchable text is expected for every invoice"


@pytest.mark.parametrize("path", CORRECT, ids=_id)
def test_money_is_never_float_and_json_round_trips(path: Path) -> None:
    result = parse(path.read_bytes(), filename=path.name)
    _assert_no_float(result)
    as_json = result.to_json()
    if result.gross_total is not None:
        assert as_json["gross_total"] == str(result.gross_total)
    if result.issue_date is not None:
        assert as_json["issue_date"] == result.issue_date.isoformat()
    for item in result.line_items:
        assert item.net_amount is None or isinstance(item.net_amount, Decimal)


def _assert_no_float(value: Any) -> None:
    assert not isinstance(value, float)
    if isinstance(value, ParsedDocument):
        for name in value.__dataclass_fields__:
            _assert_no_float(getattr(value, name))
    elif isinstance(value, tuple):
        for item in value:
            _assert_no_float(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _assert_no_float(getattr(value, name))


@pytest.mark.parametrize("path", FAILING, ids=_id)
def test_failing_file_gives_a_result_with_a_reason(path: Path) -> None:
    result = parse(path.read_bytes(), filename=path.name)
    assert isinstance(result, ParsedDocument)
    if result.status != "parsed":
        assert result.reason
    assert result.format in ("facturx", "cii", "pdf")


def test_recoverable_encoding_declaration_is_read_with_a_warning() -> None:
    path = EINVOICES / "ZUGFeRDv2/fail/Mustangproject/factur-x-invalid-xml-encoding-attribute.pdf"
    if not path.exists():
        pytest.skip("sample not in this corpus version")
    result = parse(path.read_bytes(), filename=path.name)
    assert result.format == "facturx"
    assert result.invoice_number == "RE-20201121/508"
    assert result.gross_total == Decimal("571.04")
    assert any("unknown encoding" in w for w in result.warnings)


def test_details_of_a_french_basic_credit_note() -> None:
    path = EINVOICES / "ZUGFeRDv2/correct/FNFE-factur-x-examples/Avoir_FR_type381_BASIC.pdf"
    result = parse(path.read_bytes(), filename=path.name)
    assert result.document_type == "credit_note"
    assert result.profile == "BASIC"
    assert result.seller == "Au bon moulin"
    assert result.seller_vat_id == "FR11999999998"
    assert result.seller_siret == "99999999800010"
    assert result.seller_siren == "999999998"
    assert result.line_items[0].description == "Nougat de l'Abbaye 250g"
    assert result.line_items[0].tax_rate == Decimal("20.00")


def test_details_of_a_zugferd1_comfort_invoice() -> None:
    path = EINVOICES / "ZUGFeRDv1/correct/Intarsys/ZUGFeRD_1p0_COMFORT_Einfach.pdf"
    result = parse(path.read_bytes(), filename=path.name)
    assert result.profile == "ZUGFeRD 1.0 COMFORT"
    assert (result.seller, result.buyer) == ("Lieferant GmbH", "Kunden AG Mitte")
    assert result.seller_vat_id == "DE123456789"
    assert result.due_date == date(2013, 4, 4)
    assert (result.net_total, result.tax_total, result.due_total) == (
        Decimal("473.00"),
        Decimal("56.87"),
        Decimal("529.87"),
    )
    assert [i.description for i in result.line_items] == ["Trennblätter A4", "Joghurt Banane"]
    first = result.line_items[0]
    assert (first.quantity, first.unit_price, first.net_amount, first.tax_rate) == (
        Decimal("20.0000"),
        Decimal("9.9000"),
        Decimal("198.00"),
        Decimal("19.00"),
    )


def test_tax_total_is_taken_in_the_invoice_currency() -> None:
    # BT-110 in GBP and BT-111 in EUR: the invoice currency decides.
    path = EINVOICES / "ZUGFeRDv2/correct/intarsys/EXTENDED/zugferd_2p0_EXTENDED_Fremdwaehrung.pdf"
    result = parse(path.read_bytes(), filename=path.name)
    assert result.currency == "GBP"
    assert result.tax_total == Decimal("163.16")
    assert (result.service_start, result.service_end) == (date(2018, 10, 1), date(2018, 10, 31))


def test_plain_cii_xml_reads_seller_email_and_credit_note_type() -> None:
    path = EINVOICES / "ZUGFeRDv2/correct/Mustangproject/testout-ZF2PushCreditNote.xml"
    result = parse(path.read_bytes(), filename=path.name)
    assert result.format == "cii"
    assert result.document_type == "credit_note"
