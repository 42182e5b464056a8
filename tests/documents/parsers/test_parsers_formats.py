"""UBL, generic PDF, plain text and images."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from openvrm.documents.parsers import LineItem, parse
from openvrm.documents.parsers.textfields import guess_fields, parse_amount, parse_date

from .support import DATA, text_pdf

# --- UBL ---------------------------------------------------------------------------------------------


def test_ubl_invoice() -> None:
    result = parse((DATA / "ubl-invoice.xml").read_bytes(), filename="ubl-invoice.xml")
    assert (result.format, result.status, result.document_type) == ("ubl", "parsed", "invoice")
    assert result.profile == "PEPPOL BIS Billing 3.0"
    assert result.seller == "Fibre du Sud"
    assert result.seller_vat_id == "FR40303265045"
    assert (result.seller_siren, result.seller_siret) == ("303265045", "30326504500029")
    assert result.seller_email == "billing@fibre-du-sud.example"
    assert result.seller_website == "https://www.fibre-du-sud.example/account"
    assert result.seller_domain == "fibre-du-sud.example"
    assert result.buyer == "Camille Martin"
    assert result.invoice_number == "INV-2024-00417"
    assert (result.issue_date, result.due_date) == (date(2024, 3, 15), date(2024, 4, 14))
    assert (result.service_start, result.service_end) == (date(2024, 2, 1), date(2024, 2, 29))
    assert result.currency == "EUR"
    assert (result.net_total, result.tax_total, result.gross_total, result.due_total) == (
        Decimal("62.09"),
        Decimal("8.20"),
        Decimal("70.29"),
        Decimal("70.29"),
    )
    assert result.line_items == (
        LineItem(
            "Fibre 1 Gbit/s, February", Decimal("1"), Decimal("32.99"), Decimal("32.99"), Decimal("20"), "MON"
        ),
        LineItem("TV channel pack", Decimal("2"), Decimal("14.55"), Decimal("29.10"), Decimal("5.5"), "C62"),
    )


def test_ubl_credit_note() -> None:
    result = parse((DATA / "ubl-creditnote.xml").read_bytes(), filename="gs.xml")
    assert (result.format, result.status, result.document_type) == ("ubl", "parsed", "credit_note")
    assert result.profile == "XRECHNUNG"
    assert result.invoice_number == "GS-2024-0031"
    assert result.due_date == date(2024, 5, 16)  # from cac:PaymentMeans on a UBL 2.1 credit note
    assert result.tax_total == Decimal("9.50")  # the EUR total, not the CHF one
    assert result.gross_total == Decimal("59.50")
    assert result.seller_domain == "radhaus-leipzig.example"
    (line,) = result.line_items
    assert (line.description, line.quantity, line.unit_price) == (
        "Bicycle lights",
        Decimal("2"),
        Decimal("25.00"),
    )


def test_ubl_missing_total_is_partial() -> None:
    data = (DATA / "ubl-invoice.xml").read_bytes().replace(b"TaxInclusiveAmount", b"SomethingElse")
    result = parse(data, filename="x.xml")
    assert result.status == "partial"
    assert result.reason and "gross_total" in result.reason
    assert result.invoice_number == "INV-2024-00417"


def test_ubl_with_doctype_is_refused() -> None:
    data = (
        (DATA / "ubl-invoice.xml")
        .read_bytes()
        .replace(b"<Invoice ", b'<!DOCTYPE Invoice [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<Invoice ', 1)
    )
    result = parse(data, filename="x.xml")
    assert (result.format, result.status) == ("ubl", "unparsed")


def test_to_json_is_json_ready() -> None:
    result = parse((DATA / "ubl-invoice.xml").read_bytes(), filename="ubl-invoice.xml")
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["issue_date"] == "2024-03-15"
    assert payload["gross_total"] == "70.29"
    assert payload["line_items"][1]["tax_rate"] == "5.5"
    assert payload["status"] == "parsed"


# --- generic PDF -------------------------------------------------------------------------------------


def test_plain_pdf_invoice_fields_from_text() -> None:
    data = text_pdf(
        [
            "Stadtwerke Musterstadt GmbH - USt-IdNr. DE136695976",
            "Rechnung Nr. 2024-0815",
            "Rechnungsdatum: 14.03.2024",
            "Nettobetrag 100,00 EUR",
            "MwSt. 19 % 19,00 EUR",
            "Gesamtbetrag 1.119,00 EUR (inkl. Vorauszahlung)",
            "Zahlbar bis 28.03.2024",
        ]
    )
    result = parse(data, filename="rechnung.pdf")
    assert (result.format, result.status, result.document_type) == ("pdf", "parsed", "invoice")
    assert result.invoice_number == "2024-0815"
    assert (result.issue_date, result.due_date) == (date(2024, 3, 14), date(2024, 3, 28))
    assert (result.net_total, result.tax_total, result.gross_total) == (
        Decimal("100.00"),
        Decimal("19.00"),
        Decimal("1119.00"),
    )
    assert result.currency == "EUR"
    assert result.seller_vat_id == "DE136695976"
    assert "Stadtwerke" in result.text


def test_plain_pdf_with_some_fields_is_partial() -> None:
    result = parse(text_pdf(["Invoice number: AB-17", "Thanks for shopping"]), filename="r.pdf")
    assert result.status == "partial"
    assert result.invoice_number == "AB-17"
    assert result.reason and "issue_date" in result.reason and "gross_total" in result.reason


def test_plain_pdf_letter_is_parsed_as_other() -> None:
    result = parse(text_pdf(["Dear customer,", "our opening hours change in May."]), filename="letter.pdf")
    assert (result.status, result.document_type) == ("parsed", "other")
    assert "opening hours" in result.text


def test_pdf_without_text_layer_is_partial() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    result = parse(bytes(pdf.output()), filename="scan.pdf")
    assert result.status == "partial"
    assert result.reason and "no text" in result.reason


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.234,56", "1234.56"),
        ("1,234.56", "1234.56"),
        ("1 234,56", "1234.56"),
        ("12.50", "12.50"),
        ("-3,00", "-3.00"),
        ("1'234.00", "1234.00"),
    ],
)
def test_amount_formats(text: str, value: str) -> None:
    assert parse_amount(text) == Decimal(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2024-03-05", date(2024, 3, 5)),
        ("05.03.2024", date(2024, 3, 5)),
        ("5/3/2024", date(2024, 3, 5)),
        ("5 March 2024", date(2024, 3, 5)),
        ("5. März 2024", date(2024, 3, 5)),
        ("March 5, 2024", date(2024, 3, 5)),
        ("31.02.2024", None),
    ],
)
def test_date_formats(text: str, value: date | None) -> None:
    assert parse_date(text) == value


def test_french_labels() -> None:
    fields = guess_fields(
        "Facture n° F2024-118\nDate de facture : 02/01/2024\nTotal HT 50,00 €\nTVA 20 % 10,00 €\n"
        "Total TTC 60,00 €\nÉchéance 01/02/2024"
    )
    assert fields.invoice_number == "F2024-118"
    assert (fields.issue_date, fields.due_date) == (date(2024, 1, 2), date(2024, 2, 1))
    assert (fields.net_total, fields.tax_total, fields.gross_total) == (
        Decimal("50.00"),
        Decimal("10.00"),
        Decimal("60.00"),
    )
    assert fields.currency == "EUR"


# --- text and images ---------------------------------------------------------------------------------


def test_plain_text() -> None:
    result = parse("Quittung\nKaffee 3,20 €\n".encode(), filename="beleg.txt")
    assert (result.format, result.status) == ("text", "parsed")
    assert "Kaffee" in result.text


def test_windows_1252_text() -> None:
    result = parse("Reçu: café crème".encode("cp1252"), filename="recu.txt")
    assert result.text == "Reçu: café crème"


def test_html_is_reduced_to_visible_text() -> None:
    html = (
        b"<html><head><style>p{}</style><script>alert(1)</script></head>"
        b"<body><p>Your receipt</p></body></html>"
    )
    result = parse(html, filename="receipt.html")
    assert result.format == "text"
    assert "Your receipt" in result.text
    assert "alert" not in result.text


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"\0" * 20,
        b"\xff\xd8\xff\xe0" + b"\0" * 20,
        b"GIF89a" + b"\0" * 20,
        b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 20,
    ],
    ids=["png", "jpeg", "gif", "webp"],
)
def test_images_by_magic_bytes(data: bytes) -> None:
    result = parse(data, filename="photo.dat")
    assert (result.format, result.status, result.document_type) == ("image", "parsed", "other")
    assert result.invoice_number is None and result.text == ""


def test_file_name_does_not_override_content() -> None:
    result = parse(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, filename="invoice.pdf", media_type="application/pdf")
    assert result.format == "image"


def _encrypted(user_password: str) -> bytes:
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(["Invoice number: E-1"]))))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_password_protected_pdf_is_unparsed_with_the_reason() -> None:
    result = parse(_encrypted("open-sesame"), filename="locked.pdf")
    assert (result.format, result.status) == ("pdf", "unparsed")
    assert result.reason == "the PDF is password-protected"


def test_pdf_with_only_an_owner_password_is_read() -> None:
    result = parse(_encrypted(""), filename="restricted.pdf")
    assert result.invoice_number == "E-1"
