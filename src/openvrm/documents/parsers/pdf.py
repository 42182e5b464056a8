"""PDF files: Factur-X / ZUGFeRD (a PDF carrying invoice XML) and plain PDFs.

Both parsers share one reading path, so a PDF gets the same outcome whichever of them the registry picks:

1. PDFium (pypdfium2) opens the file once and gives its ``*.xml`` attachments and its text in one pass;
   pypdf (non-strict) is the fallback when PDFium cannot open the file, list its attachments or get text
   from its pages. A file neither opens is an ``"unparsed"`` result with pypdf's complaint;
2. every ``*.xml`` attachment is screened: one with a DTD or entity declaration is never handed to any
   XML parser, including the factur-x library's;
3. an attachment with a standard name is read directly; otherwise the factur-x library selects the XML
   (it knows the file names and flavours of Factur-X, ZUGFeRD 1/2, XRechnung and Order-X); our hardened
   parser reads it as CII or UBL;
4. if the library found nothing but an XML attachment exists (a wrong encoding declaration, say), we try
   it ourselves, so a recoverable file is not reduced to its text;
5. the text layer (from step 1) is kept for search; without usable XML, invoice fields are guessed from it.

The Factur-X parser only scores higher when the attachment names are visible in the raw bytes (they are
in every real file seen so far); the plain PDF parser still finds XML stored in compressed object streams.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from dataclasses import dataclass, replace
from typing import Any

# factur-x ships no type information; only get_xml_from_pdf is used and its result is checked below.
import facturx
import pypdfium2 as pdfium
from pypdf import PdfReader

from openvrm.documents.parsers._util import cap_text, looks_like_pdf, squeeze_whitespace
from openvrm.documents.parsers._xml import DOCTYPE_REFUSED, XmlRefused, has_declaration, parse_xml
from openvrm.documents.parsers.cii import is_cii_namespace, read_cii
from openvrm.documents.parsers.model import MAX_TEXT_CHARS, Format, ParsedDocument
from openvrm.documents.parsers.textfields import guess_fields
from openvrm.documents.parsers.ubl import is_ubl_namespace, read_ubl

log = logging.getLogger(__name__)
# The factur-x library logs the whole invoice XML at DEBUG level; invoice content must never reach logs.
logging.getLogger("factur-x").setLevel(logging.WARNING)

MAX_PAGES = 1_000  # pages whose text is extracted; later pages are left out of ``text``
_STANDARD_NAMES = ("factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml")
_STANDARD_NAMES_BYTES = tuple(name.encode() for name in _STANDARD_NAMES)


def _names_an_invoice_xml(data: bytes) -> bool:
    """Whether a standard invoice XML file name appears in the raw bytes, in any (ASCII) case.

    ``bytes.lower`` and ``in`` are five times faster than one case-insensitive regex over a whole PDF.
    """
    low = data.lower()
    return any(name in low for name in _STANDARD_NAMES_BYTES)


class _PdfUnreadable(Exception):
    pass


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            # Many "protected" invoices only carry an owner password; an empty user password opens them.
            raise _PdfUnreadable("the PDF is password-protected")
        _ = len(reader.pages)
    except _PdfUnreadable:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise _PdfUnreadable(f"the PDF could not be read ({_describe(exc)})") from None
    return reader


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _xml_attachments(reader: PdfReader) -> tuple[list[tuple[str, bytes]], list[str]]:
    found: list[tuple[str, bytes]] = []
    notes: list[str] = []
    try:
        for att in reader.attachment_list:
            name = str(att.name or "")
            if name.lower().endswith(".xml"):
                found.append((name, bytes(att.content or b"")))
    except Exception as exc:
        notes.append(f"the PDF attachments could not be listed ({_describe(exc)})")
    return found, notes


# PDFium is not thread-safe; the server may parse in several worker threads at once.
_PDFIUM_LOCK = threading.Lock()


def pdf_lock() -> threading.Lock:
    """The lock every PDFium call of this process is made under (hold it to fork a parser process)."""
    return _PDFIUM_LOCK


def _new_lock_after_fork() -> None:
    # A forked child gets a lock of its own: its copy of the parent's may have been held at the fork,
    # and no thread of the child would ever release it.
    global _PDFIUM_LOCK
    _PDFIUM_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


@dataclass
class _PdfiumRead:
    """What one pass of PDFium over a file gave: its XML attachments (None when PDFium could not list
    them, so pypdf must) and its text (text, warnings, pages that failed)."""

    attachments: list[tuple[str, bytes]] | None
    text: tuple[str, list[str], int]


def _pdfium_attachments(doc: Any) -> list[tuple[str, bytes]] | None:
    found: list[tuple[str, bytes]] = []
    try:
        for index in range(doc.count_attachments()):
            att = doc.get_attachment(index)
            name = str(att.get_name() or "")
            if name.lower().endswith(".xml"):
                try:
                    content = bytes(att.get_data())
                except pdfium.PdfiumError:
                    # PDFium reports an empty embedded file as an error; pypdf gives b"" for it.
                    content = b""
                found.append((name, content))
    except pdfium.PdfiumError:
        return None
    return found


def _pdfium_text(doc: Any) -> tuple[str, list[str], int]:
    parts: list[str] = []
    notes: list[str] = []
    failed = 0
    size = 0
    total = len(doc)
    for index in range(min(total, MAX_PAGES)):
        try:
            page = doc[index]
            textpage = page.get_textpage()
            page_text = textpage.get_text_bounded() or ""
            textpage.close()
            page.close()
        except pdfium.PdfiumError:
            failed += 1
            continue
        parts.append(page_text)
        size += len(page_text)
        if size >= MAX_TEXT_CHARS:
            notes.append("the text was cut at the size limit")
            break
    if total > MAX_PAGES:
        notes.append(f"only the first {MAX_PAGES} of {total} pages were read for text")
    if failed:
        notes.append(f"the text of {failed} of {total} pages could not be extracted")
    return cap_text(squeeze_whitespace("\n".join(parts))), notes, failed


def _read_pdfium(data: bytes) -> _PdfiumRead | None:
    """Attachments and text in one pass of PDFium (pypdfium2); None when PDFium cannot open the file.

    PDFium is far faster than pypdf, and opening the file once for both spares a second parser.
    """
    with _PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError:
            return None
        try:
            return _PdfiumRead(_pdfium_attachments(doc), _pdfium_text(doc))
        finally:
            doc.close()


def _usable(fast: _PdfiumRead | None) -> bool:
    """Whether PDFium's text stands: it read the file, and got some text or had no page fail."""
    return fast is not None and bool(fast.text[0] or not fast.text[2])


def _pypdf_text(reader: PdfReader) -> tuple[str, list[str], int]:
    """Text of the first pages with pypdf (slower, but it opens some files PDFium refuses), capped."""
    parts: list[str] = []
    size = 0
    failed = 0
    notes: list[str] = []
    pages = reader.pages
    total = len(pages)
    for index in range(min(total, MAX_PAGES)):
        try:
            page_text = pages[index].extract_text() or ""
        except Exception:
            failed += 1
            continue
        parts.append(page_text)
        size += len(page_text)
        if size >= MAX_TEXT_CHARS:
            notes.append("the text was cut at the size limit")
            break
    if total > MAX_PAGES:
        notes.append(f"only the first {MAX_PAGES} of {total} pages were read for text")
    if failed:
        notes.append(f"the text of {failed} of {total} pages could not be extracted")
    return cap_text(squeeze_whitespace("\n".join(parts))), notes, failed


def _read_invoice_xml(data: bytes, fmt: Format, *, text: bool = True) -> ParsedDocument:
    try:
        xml = parse_xml(data)
    except XmlRefused as exc:
        return ParsedDocument(format=fmt, status="unparsed", reason=str(exc))
    ns = re.match(r"\{([^}]*)\}", str(xml.root.tag))
    namespace = ns[1] if ns else None
    if is_cii_namespace(namespace):
        return read_cii(xml.root, fmt=fmt, warnings=xml.warnings, text=text)
    if is_ubl_namespace(namespace):
        return read_ubl(xml.root, fmt=fmt, warnings=xml.warnings, text=text)
    return ParsedDocument(format=fmt, status="unparsed", reason="the XML is neither CII nor UBL")


def _facturx_select(data: bytes) -> tuple[str | None, bytes | None, str | None]:
    try:
        name, xml = facturx.get_xml_from_pdf(data, check_xsd=False)
    except Exception as exc:
        return None, None, f"the factur-x library could not inspect the PDF ({_describe(exc)})"
    if isinstance(xml, bytes) and xml and isinstance(name, str):
        return name, xml, None
    return None, None, None


def _invoice_from_attachments(
    data: bytes, attachments: list[tuple[str, bytes]], notes: list[str], *, text: bool = True
) -> tuple[ParsedDocument | None, str | None]:
    """The invoice among the embedded XML files, or the reason none could be read (``text=False``: the
    XML's text is not gathered, the PDF's own being at hand)."""
    # An attachment with a standard name is read straight from the list already made, sparing a
    # second pass over the PDF; the factur-x library chooses only when that fails.
    for att_name, content in attachments:
        if att_name.lower() in _STANDARD_NAMES:
            result = _read_invoice_xml(content, "facturx", text=text)
            if result.status != "unparsed":
                return result, None
    name, xml, error = _facturx_select(data)
    if error:
        notes.append(error)
    candidates: list[tuple[str, bytes]] = [(name, xml)] if name and xml else []
    candidates += [(n, c) for n, c in attachments if n != name]
    failure: str | None = None
    for cand_name, content in candidates:
        result = _read_invoice_xml(content, "facturx", text=text)
        if result.status != "unparsed":
            if cand_name != name:
                notes.append(f"{cand_name} was not accepted by the factur-x library; read it directly")
            return result, None
        failure = failure or f"embedded {cand_name}: {result.reason}"
    return None, failure


def read_pdf(data: bytes) -> ParsedDocument:
    """The full PDF path described in the module docstring. Never raises for bad input."""
    fast = _read_pdfium(data)
    reader: PdfReader | None = None
    if fast is None or fast.attachments is None or not _usable(fast):
        # pypdf is needed: for a file PDFium cannot open, or for what PDFium could not read in it.
        try:
            reader = _open(data)
        except _PdfUnreadable as exc:
            return ParsedDocument(format="pdf", status="unparsed", reason=str(exc))

    attachments: list[tuple[str, bytes]] = []
    notes: list[str] = []
    if fast is not None and fast.attachments is not None:
        attachments = fast.attachments
    elif reader is not None:
        attachments, notes = _xml_attachments(reader)
    invoice: ParsedDocument | None = None
    failure: str | None = None

    hostile = [name for name, content in attachments if has_declaration(content)]
    if hostile:
        failure = f"embedded {hostile[0]}: {DOCTYPE_REFUSED}"
    elif attachments:
        # The PDF's text, when PDFium gave some, is what the document keeps; the XML's is not gathered.
        have_text = fast is not None and _usable(fast) and bool(fast.text[0])
        invoice, failure = _invoice_from_attachments(data, attachments, notes, text=not have_text)

    text_notes: list[str] = []
    text, failed_pages = "", 0
    if fast is not None and _usable(fast):
        text, text_notes, failed_pages = fast.text
    elif reader is not None:
        text, text_notes, failed_pages = _pypdf_text(reader)
    notes += text_notes

    if invoice is not None:
        return replace(invoice, text=text or invoice.text, warnings=invoice.warnings + tuple(notes))

    fields = guess_fields(text)
    fmt: Format = "facturx" if failure else "pdf"
    base: dict[str, Any] = {
        "format": fmt,
        "invoice_number": fields.invoice_number,
        "issue_date": fields.issue_date,
        "due_date": fields.due_date,
        "currency": fields.currency,
        "net_total": fields.net_total,
        "tax_total": fields.tax_total,
        "gross_total": fields.gross_total,
        "seller_vat_id": fields.vat_id,
        "text": text,
        "warnings": tuple(notes),
    }
    if failure:
        return ParsedDocument(
            **base,
            status="partial",
            document_type="invoice",
            reason=f"{failure}; only the PDF text was read"
            + (", and fields were guessed from it" if fields.found() else ""),
        )
    if not text:
        reason = "the PDF has no text layer (a scan?); no OCR is done"
        if failed_pages:
            reason = "the text of the PDF could not be extracted"
        return ParsedDocument(**base, status="partial", reason=reason)
    found, missing = fields.found(), fields.missing()
    if not found:
        return ParsedDocument(**base, status="parsed", document_type="other")
    if missing:
        return ParsedDocument(
            **base,
            status="partial",
            document_type="invoice",
            reason=f"no embedded invoice data; guessed from the text: {', '.join(found)}; "
            f"not found: {', '.join(missing)}",
        )
    return ParsedDocument(**base, status="parsed", document_type="invoice")


class FacturxParser:
    """PDF/A-3 invoices with embedded CII (Factur-X, ZUGFeRD 1 and 2) or UBL (XRechnung) XML."""

    name = "facturx"
    formats: tuple[Format, ...] = ("facturx",)

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        if not looks_like_pdf(data):
            return 0
        return 70 if _names_an_invoice_xml(data) else 0

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        return read_pdf(data)


class PdfParser:
    """Any other PDF: its text, and invoice fields guessed from that text."""

    name = "pdf"
    formats: tuple[Format, ...] = ("pdf", "facturx")

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        return 50 if looks_like_pdf(data) else 0

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        return read_pdf(data)


__all__ = ["FacturxParser", "PdfParser", "pdf_lock", "read_pdf"]
