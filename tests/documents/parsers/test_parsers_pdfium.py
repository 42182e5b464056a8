"""One PDF parser per file: PDFium reads the embedded invoice XML and the text in one pass; pypdf is the
fallback for a file PDFium cannot open."""

from __future__ import annotations

import pypdfium2 as pdfium
import pytest

from openvrm.documents.parsers import parse
from openvrm.documents.parsers.pdf import _read_pdfium

from .support import DATA, text_pdf, with_attachment

CII = (DATA / "minimal-cii.xml").read_bytes()
WORDS = ["Rechnung Musterfirma Kundennummer 4711", "Vielen Dank fuer Ihren Einkauf"]


def _invoice_pdf(name: str = "factur-x.xml") -> bytes:
    return with_attachment(text_pdf(WORDS), name, CII)


def _same_invoice(got: object, xml_name: str = "minimal-cii.xml") -> None:
    expected = parse(CII, filename=xml_name)
    assert expected.status == "parsed" and expected.invoice_number
    for field in ("invoice_number", "issue_date", "currency", "gross_total", "seller", "line_items"):
        assert getattr(got, field) == getattr(expected, field), field


@pytest.mark.parametrize(
    "name", ["factur-x.xml", "ZUGFeRD-invoice.xml", "zugferd-invoice.xml", "xrechnung.xml"]
)
def test_pdfium_reads_the_embedded_xml_and_the_text_in_one_pass(name: str) -> None:
    data = _invoice_pdf(name)
    fast = _read_pdfium(data)
    assert fast is not None and fast.attachments == [(name, CII)]
    assert "Musterfirma" in fast.text[0]
    got = parse(data, filename="invoice.pdf")
    assert got.format == "facturx" and got.status == "parsed"
    _same_invoice(got)
    assert "Musterfirma" in got.text and "Kundennummer" in got.text


def test_a_pdf_pdfium_cannot_open_falls_back_to_pypdf() -> None:
    intact = _invoice_pdf()
    broken = intact.replace(b"/Root", b"/Rxot")  # no catalogue in the trailer: pypdf searches for one
    with pytest.raises(pdfium.PdfiumError):
        pdfium.PdfDocument(broken)
    assert _read_pdfium(broken) is None
    got = parse(broken, filename="invoice.pdf")
    assert got.format == "facturx" and got.status == "parsed"
    _same_invoice(got)
    assert "Musterfirma" in got.text  # the text came from pypdf


def test_a_pdf_neither_parser_can_open_is_unparsed_with_pypdfs_reason() -> None:
    got = parse(b"%PDF-1.7\n" + bytes(range(256)) * 20, filename="garbage.pdf")
    assert got.status == "unparsed" and "could not be read" in str(got.reason)


def test_a_pdf_only_pdfium_can_open_is_read() -> None:
    # Without its end-of-file marker pypdf refuses the file; PDFium reads it, so nothing is lost.
    data = _invoice_pdf().replace(b"%%EOF", b"")
    got = parse(data, filename="invoice.pdf")
    assert got.status == "parsed"
    _same_invoice(got)


def test_a_hostile_attachment_read_by_pdfium_is_still_refused() -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    got = parse(with_attachment(text_pdf(WORDS), "factur-x.xml", xxe), filename="invoice.pdf")
    assert got.status == "partial" and "factur-x.xml" in str(got.reason)
    assert "root:" not in got.text
