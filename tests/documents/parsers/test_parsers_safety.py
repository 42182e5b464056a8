"""Hostile and broken input: XML attacks, size limits, damaged PDFs, garbage. Nothing may raise or leak."""

from __future__ import annotations

import http.server
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from openvrm.documents.parsers import MAX_INPUT_BYTES, MAX_TEXT_CHARS, ParsedDocument, parse
from openvrm.documents.parsers import pdf as pdf_module
from openvrm.documents.parsers._util import to_decimal
from openvrm.documents.parsers._xml import DOCTYPE_REFUSED, hardened_parser

from .support import DATA, EINVOICES, text_pdf, with_attachment

CII_NS = (
    'xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100" '
    'xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"'
)


def _everything(result: ParsedDocument) -> str:
    return repr(result.to_json()) + result.text


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.hits.append(self.path)
        body = b"TOP-SECRET-FROM-NETWORK"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture
def http_trap() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request; a leak would show up as a hit."""
    hits: list[str] = []
    handler = type("Trap", (_Recorder,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


# --- XML attacks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xxe-file.xml", "xxe-http.xml", "billion-laughs.xml"])
def test_xml_with_a_doctype_is_refused(name: str) -> None:
    result = parse((DATA / name).read_bytes(), filename=name)
    assert result.status == "unparsed"
    assert result.reason == DOCTYPE_REFUSED
    assert result.format == "cii"
    assert "root:" not in _everything(result)
    assert "lollol" not in _everything(result)


def test_external_file_entity_never_leaks(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("MARKER-7f3a-SECRET-FILE-CONTENT")
    xml = (DATA / "xxe-file.xml").read_bytes().replace(b"file:///etc/passwd", secret.as_uri().encode())

    result = parse(xml, filename="invoice.xml")
    assert result.status == "unparsed"
    assert "MARKER-7f3a" not in _everything(result)

    # Second line of defence: even if the DOCTYPE screen were bypassed, the parser resolves nothing.
    root = etree.fromstring(xml, parser=hardened_parser())
    assert b"MARKER-7f3a" not in etree.tostring(root)


def test_network_entities_are_never_fetched(http_trap: tuple[str, list[str]]) -> None:
    base, hits = http_trap
    xml = (DATA / "xxe-http.xml").read_bytes().replace(b"http://attacker.invalid", base.encode())

    result = parse(xml, filename="invoice.xml")
    assert result.status == "unparsed"
    assert "TOP-SECRET" not in _everything(result)

    try:
        root = etree.fromstring(xml, parser=hardened_parser())
        assert b"TOP-SECRET" not in etree.tostring(root)
    except etree.XMLSyntaxError:
        pass  # refusing to read it at all is fine too
    assert hits == [], f"the XML parser fetched {hits}"


def test_billion_laughs_is_not_expanded_by_the_hardened_parser() -> None:
    data = (DATA / "billion-laughs.xml").read_bytes()
    try:
        root = etree.fromstring(data, parser=hardened_parser())
    except etree.XMLSyntaxError:
        return
    assert len(etree.tostring(root)) < 10_000


def test_doctype_in_utf16_is_refused_too() -> None:
    xml = (DATA / "xxe-file.xml").read_text("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    result = parse(xml.encode("utf-16"), filename="invoice.xml")
    assert result.status == "unparsed"
    assert "root:" not in _everything(result)


@pytest.mark.parametrize("name", ["xxe-file.xml", "billion-laughs.xml"])
def test_hostile_xml_inside_a_pdf_never_reaches_an_xml_parser(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(
        pdf_module.facturx, "get_xml_from_pdf", lambda *a, **k: calls.append(a) or (None, None)
    )
    data = with_attachment(text_pdf(["Invoice"]), "factur-x.xml", (DATA / name).read_bytes())

    result = parse(data, filename="invoice.pdf")

    assert result.format == "facturx"
    assert result.status == "partial"
    assert result.reason and DOCTYPE_REFUSED in result.reason
    assert calls == [], "the factur-x library must not parse a refused XML"
    assert "root:" not in _everything(result)


# --- damaged files -----------------------------------------------------------------------------------


def test_empty_file() -> None:
    result = parse(b"", filename="empty.pdf")
    assert (result.format, result.status, result.reason) == ("unknown", "unparsed", "the file is empty")


def test_oversized_file_is_refused_before_parsing() -> None:
    data = b"%PDF-1.7\n" + b"\0" * (MAX_INPUT_BYTES)
    result = parse(data, filename="huge.pdf")
    assert result.status == "unparsed"
    assert result.format == "pdf"
    assert result.reason and "50 MiB" in result.reason


@pytest.mark.parametrize("seed", range(5))
def test_random_garbage(seed: int) -> None:
    data = random.Random(seed).randbytes(4096)  # noqa: S311 - reproducible junk, not a secret
    result = parse(data, filename="mystery.bin")
    assert result.format == "unknown"
    assert result.status == "unparsed"
    assert result.reason and "no parser" in result.reason


@pytest.mark.parametrize("seed", range(3))
def test_garbage_after_a_pdf_header(seed: int) -> None:
    data = b"%PDF-1.4\n" + random.Random(seed).randbytes(4096)  # noqa: S311 - reproducible junk, not a secret
    result = parse(data, filename="broken.pdf")
    assert result.format == "pdf"
    assert result.status in ("unparsed", "partial")
    assert result.reason


def _a_real_facturx() -> bytes:
    path = EINVOICES / "ZUGFeRDv2/correct/intarsys/EN16931/zugferd_2p0_EN16931_Einfach.pdf"
    if path.exists():
        return path.read_bytes()
    return with_attachment(text_pdf(["Invoice 1"]), "factur-x.xml", (DATA / "minimal-cii.xml").read_bytes())


@pytest.mark.parametrize("fraction", [0.02, 0.25, 0.5, 0.75, 0.98])
def test_truncated_pdf(fraction: float) -> None:
    data = _a_real_facturx()
    result = parse(data[: int(len(data) * fraction)], filename="cut.pdf")
    assert isinstance(result, ParsedDocument)
    if result.status != "parsed":
        assert result.reason
    assert result.format in ("facturx", "pdf")


def test_pdf_with_corrupt_embedded_xml() -> None:
    broken = f"<rsm:CrossIndustryInvoice {CII_NS}><rsm:ExchangedDocument><ram:ID>X".encode()
    data = with_attachment(
        text_pdf(["Invoice number: R-17", "Invoice date: 03.02.2024", "Total: 12,50 EUR"]),
        "factur-x.xml",
        broken,
    )
    result = parse(data, filename="invoice.pdf")
    assert result.format == "facturx"
    assert result.status == "partial"
    assert result.reason and "not well-formed" in result.reason
    assert "R-17" in result.text
    assert result.invoice_number == "R-17"  # guessed from the text


def test_pdf_with_embedded_xml_that_is_not_an_invoice() -> None:
    data = with_attachment(text_pdf(["Hello"]), "notes.xml", b"<notes><note>hi</note></notes>")
    result = parse(data, filename="letter.pdf")
    assert result.status == "partial"
    assert result.reason and "neither CII nor UBL" in result.reason


@pytest.mark.parametrize(
    "text", ["NaN", "Infinity", "-inf", "1E+999999", "1e5", "12,50", "1 000.00", "", "0x10", "١٢"]
)
def test_amounts_other_than_plain_decimals_are_refused(text: str) -> None:
    assert to_decimal(text) is None


def test_non_decimal_amount_in_xml_is_dropped_not_trusted() -> None:
    xml = f"""<rsm:CrossIndustryInvoice {CII_NS}
        xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100">
      <rsm:ExchangedDocument><ram:ID>A-1</ram:ID><ram:TypeCode>380</ram:TypeCode>
        <ram:IssueDateTime><udt:DateTimeString format="102">20240230</udt:DateTimeString></ram:IssueDateTime>
      </rsm:ExchangedDocument>
      <rsm:SupplyChainTradeTransaction><ram:ApplicableHeaderTradeSettlement>
        <ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>
        <ram:SpecifiedTradeSettlementHeaderMonetarySummation>
          <ram:GrandTotalAmount>1E+999999</ram:GrandTotalAmount>
        </ram:SpecifiedTradeSettlementHeaderMonetarySummation>
      </ram:ApplicableHeaderTradeSettlement></rsm:SupplyChainTradeTransaction>
    </rsm:CrossIndustryInvoice>""".encode()
    result = parse(xml, filename="odd.xml")
    assert result.status == "partial"
    assert result.invoice_number == "A-1"
    assert result.issue_date is None  # 30 February
    assert result.gross_total is None
    assert result.reason and "issue_date" in result.reason and "gross_total" in result.reason


def test_malformed_xml_is_unparsed_with_the_reason() -> None:
    result = parse(f"<rsm:CrossIndustryInvoice {CII_NS}><oops>".encode(), filename="x.xml")
    assert result.status == "unparsed"
    assert result.reason and result.reason.startswith("the XML is not well-formed")


def test_text_is_capped() -> None:
    data = ("word " * (MAX_TEXT_CHARS // 2)).encode()
    result = parse(data, filename="long.txt")
    assert result.status == "parsed"
    assert len(result.text) <= MAX_TEXT_CHARS
