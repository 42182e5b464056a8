"""E-mail messages: headers, bodies, attachments, nesting, and the malformed mail found in the wild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime

from openvrm.documents.parsers import MAX_ATTACHMENTS, parse

from .support import DATA, EINVOICES, text_pdf


def _invoice_pdf() -> bytes:
    path = EINVOICES / "ZUGFeRDv2/correct/intarsys/BASIC/zugferd_2p0_BASIC_Taxifahrt.pdf"
    return path.read_bytes() if path.exists() else text_pdf(["Invoice"])


def _message(subject: str = "Your invoice", body: str = "Please find your invoice attached.") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Taxi TX <billing@taxi-tx.example>"
    msg["To"] = "me@example.org"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=1))))
    msg["Message-ID"] = "<abc@taxi-tx.example>"
    msg.set_content(body)
    return msg


def test_message_with_a_pdf_attachment() -> None:
    msg = _message()
    msg.add_attachment(_invoice_pdf(), maintype="application", subtype="pdf", filename="rechnung.pdf")
    result = parse(msg.as_bytes(), filename="mail.eml")

    assert (result.format, result.status, result.document_type) == ("email", "parsed", "email")
    assert result.email_subject == "Your invoice"
    assert result.email_from == "Taxi TX <billing@taxi-tx.example>"
    assert result.email_date == datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
    assert result.email_date is not None and result.email_date.tzinfo is not None
    assert (result.seller_email, result.seller_domain) == ("billing@taxi-tx.example", "taxi-tx.example")
    assert "Please find your invoice" in result.text
    (attachment,) = result.attachments
    assert (attachment.filename, attachment.media_type) == ("rechnung.pdf", "application/pdf")
    assert attachment.data == _invoice_pdf()
    # The import service hands each attachment back to parse().
    inner = parse(attachment.data, filename=attachment.filename)
    assert inner.format in ("facturx", "pdf")


def test_nested_message_is_an_attachment_and_parses_in_turn() -> None:
    inner = _message(subject="Original receipt")
    inner.add_attachment(b"%PDF-1.4 not really", maintype="application", subtype="pdf", filename="r.pdf")
    outer = _message(subject="Fwd: Original receipt", body="See below.")
    outer.add_attachment(inner)

    result = parse(outer.as_bytes(), filename="fwd.eml")
    (nested,) = result.attachments
    assert nested.media_type == "message/rfc822"
    assert nested.filename.endswith(".eml")

    again = parse(nested.data, filename=nested.filename)
    assert again.format == "email"
    assert again.email_subject == "Original receipt"
    assert [a.filename for a in again.attachments] == ["r.pdf"]


def test_html_only_message() -> None:
    msg = _message()
    msg.set_content(
        "<html><body><p>Order <b>4711</b> confirmed</p><script>x()</script></body></html>", subtype="html"
    )
    result = parse(msg.as_bytes(), filename="m.eml")
    assert result.status == "parsed"
    assert "Order 4711 confirmed" in " ".join(result.text.split())
    assert "x()" not in result.text


def test_alternative_prefers_plain_text_and_skips_inline_logo() -> None:
    msg = _message(body="plain version")
    msg.add_alternative("<p>html version</p><img src='cid:logo'>", subtype="html")
    html_part = msg.get_payload()[1]
    html_part.add_related(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", cid="<logo>")
    result = parse(msg.as_bytes(), filename="m.eml")
    assert "plain version" in result.text
    assert "html version" not in result.text
    assert result.attachments == ()


def test_non_utf8_headers_and_body() -> None:
    raw = (
        b"From: =?iso-8859-1?q?M=FCller?= <rechnung@mueller.example>\r\n"
        b"Subject: Rechnung f\xfcr M\xe4rz\r\n"
        b"Date: Tue, 5 Mar 2024 10:00:00 +0100\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"\r\n"
        b"Gr\xfc\xdfe aus K\xf6ln\r\n"
    )
    result = parse(raw, filename="m.eml")
    assert result.status == "parsed"
    assert result.email_subject == "Rechnung für März"
    assert result.email_from == "Müller <rechnung@mueller.example>"
    assert "Grüße aus Köln" in result.text


def test_unknown_charset_and_broken_date() -> None:
    raw = (
        b"From: shop@example.com\r\nSubject: hello\r\nDate: yesterday-ish\r\n"
        b"Content-Type: text/plain; charset=x-does-not-exist\r\n\r\nbody text\r\n"
    )
    result = parse(raw, filename="m.eml")
    assert result.email_date is None
    assert "body text" in result.text


def test_naive_date_is_taken_as_utc() -> None:
    raw = b"From: a@b.example\r\nSubject: s\r\nDate: Tue, 5 Mar 2024 10:00:00 -0000\r\n\r\nx\r\n"
    result = parse(raw, filename="m.eml")
    assert result.email_date == datetime(2024, 3, 5, 10, 0, tzinfo=UTC)


def test_missing_closing_boundary_is_partial_and_keeps_what_was_read() -> None:
    raw = (
        b"From: shop@example.com\r\nSubject: cut off\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
        b"--XYZ\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
        b"--XYZ\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    )
    result = parse(raw, filename="m.eml")
    assert result.status == "partial"
    assert result.reason and "CloseBoundaryNotFoundDefect" in result.reason
    assert "first part" in result.text
    assert [a.data for a in result.attachments] == [b"%PDF-1.4\n"]


def test_attachment_names_are_made_safe() -> None:
    msg = _message()
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="../../etc/passwd")
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="C:\\x\\evil.exe")
    msg.add_attachment(b"%PDF", maintype="application", subtype="pdf")
    names = [a.filename for a in parse(msg.as_bytes(), filename="m.eml").attachments]
    assert names == ["passwd", "evil.exe", "attachment-3.pdf"]


def test_attachment_count_is_capped() -> None:
    msg = _message()
    for i in range(MAX_ATTACHMENTS + 5):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"f{i}.bin")
    result = parse(msg.as_bytes(), filename="m.eml")
    assert len(result.attachments) == MAX_ATTACHMENTS
    assert any("5 were left out" in w for w in result.warnings)


def test_message_is_recognised_without_eml_name() -> None:
    result = parse(_message().as_bytes(), filename="upload")
    assert result.format == "email"


def test_eml_name_with_no_mail_inside() -> None:
    result = parse((DATA / "ubl-invoice.xml").read_bytes(), filename="x.eml")
    assert result.format == "ubl"  # content wins over the name
