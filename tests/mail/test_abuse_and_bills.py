"""Bad input and abuse at the gateway (clear SMTP replies, nothing lost, no crash), and bills by mail."""

from __future__ import annotations

import smtplib

import pytest

from openvrm.documents.service import DocumentService
from openvrm.storage.models import InboxItem
from openvrm.vault.core import UnlockedVault
from tests.documents.parsers.support import EINVOICES
from tests.mail.support import mail_world, message, send, wait_for

FACTURX = EINVOICES / "ZUGFeRDv2" / "correct" / "FNFE-factur-x-examples" / "Facture_FR_BASICWL.pdf"


def _inbox_count(uv: UnlockedVault) -> int:
    with uv.db.read() as s:
        return s.query(InboxItem).count()


def test_oversized_messages_are_refused_with_552(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        w.mail.setup(domains=["mail.example"], forward_to="anna@real.example", max_message_bytes=64 * 1024)
        big = message(sender="billing@shop.example", to=w.alias.address, body="x" * 200_000)
        with pytest.raises(smtplib.SMTPException) as exc:
            send(w.port, "bounce@shop.example", [w.alias.address], big)
        assert "552" in str(exc.value) or getattr(exc.value, "smtp_code", 0) == 552
        # The gateway still works afterwards.
        assert (
            send(
                w.port,
                "bounce@shop.example",
                [w.alias.address],
                message(sender="billing@shop.example", to=w.alias.address),
            )
            == {}
        )
    assert _inbox_count(unlocked) == 1


def test_too_many_recipients_get_452_and_the_rest_is_delivered(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        w.mail.setup(domains=["mail.example"], forward_to="anna@real.example", max_recipients=2)
        extra = [w.mail.create_alias(w.vendor_id).address for _ in range(3)]
        rcpts = [w.alias.address, *extra]
        refused = send(
            w.port, "bounce@shop.example", rcpts, message(sender="billing@shop.example", to=w.alias.address)
        )
        assert {code for code, _ in refused.values()} == {452} and len(refused) == 2
        assert wait_for(lambda: len(w.sink.messages) == 2)
    assert _inbox_count(unlocked) == 2


def test_deep_mime_nesting_is_refused_and_nothing_is_kept(unlocked: UnlockedVault) -> None:
    inner = b"Content-Type: text/plain\r\n\r\nhi\r\n"
    for i in range(30):
        b = f"b{i}".encode()
        inner = (
            b"Content-Type: multipart/mixed; boundary="
            + b
            + b"\r\n\r\n--"
            + b
            + b"\r\n"
            + inner
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    raw = b"From: billing@shop.example\r\nSubject: nest\r\nMIME-Version: 1.0\r\n" + inner
    with mail_world(unlocked) as w:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            send(w.port, "bounce@shop.example", [w.alias.address], raw)
        assert exc.value.smtp_code == 554 and b"nested" in exc.value.smtp_error
    assert _inbox_count(unlocked) == 0


def test_malformed_mime_and_non_utf8_headers_are_kept_and_flagged(unlocked: UnlockedVault) -> None:
    broken = (
        b"From: =?x-unknown?q?Shop?= <billing@shop.example>\r\n"
        b"Subject: Caf\xe9 \xff\xfe bill\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
        b"--never-closed\r\n"
        b"Content-Type: application/pdf; name=x.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not base64!!!\r\n"
    )
    with mail_world(unlocked) as w:
        w.mail.set_rules(alias_id=w.alias.id, deliver="vault")
        assert send(w.port, "bounce@shop.example", [w.alias.address], broken) == {}
        # A message with no From and no body at all.
        assert send(w.port, "bounce@shop.example", [w.alias.address], b"Subject: empty\r\n\r\n") == {}
    assert w.mail.file_inbox() == 2
    by_subject = {m.summary["subject"]: m for m in w.mail.messages()}
    odd = next(m for s, m in by_subject.items() if s.startswith("Caf"))
    assert "\ufffd" in odd.summary["subject"] and odd.summary["defects"]
    assert w.mail.raw(odd.id) == broken  # kept byte for byte
    assert by_subject["empty"].summary["from"] == ""


def test_a_factur_x_bill_by_mail_is_imported_under_the_vendor(unlocked: UnlockedVault) -> None:
    pdf = FACTURX.read_bytes()
    with mail_world(unlocked) as w:
        raw = message(
            sender="billing@shop.example",
            to=w.alias.address,
            subject="Your invoice for March",
            attachments=[("Facture_FR_BASICWL.pdf", "application/pdf", pdf)],
        )
        send(w.port, "bounce@shop.example", [w.alias.address], raw)
        assert wait_for(lambda: len(w.sink.messages) == 1)
    assert w.mail.file_inbox() == 1
    [m] = w.mail.messages()
    assert m.summary["kind"] == "transactional"
    [bill] = m.bills
    assert bill["status"] == "imported"
    doc = DocumentService(unlocked).get(bill["document_id"])
    assert doc.vendor_id == w.vendor_id
    assert "Your invoice for March" in doc.notes and "By e-mail to" in doc.notes
    assert doc.to_json().get("format")
    # The same bill again is a duplicate, not a second document.
    with mail_world_again(unlocked, w) as port:
        send(port, "bounce@shop.example", [w.alias.address], raw)
    w.mail.file_inbox()
    assert len(DocumentService(unlocked).list(vendor_id=w.vendor_id)) == 1


def test_a_bill_from_a_leaker_is_not_filed_under_the_vendor(unlocked: UnlockedVault) -> None:
    pdf = FACTURX.read_bytes()
    with mail_world(unlocked) as w:
        raw = message(
            sender="deals@other.example",
            to=w.alias.address,
            subject="Invoice",
            attachments=[("Facture_FR_BASICWL.pdf", "application/pdf", pdf)],
        )
        send(w.port, "bounce@other.example", [w.alias.address], raw)
    w.mail.file_inbox()
    [m] = w.mail.messages()
    assert m.leaked
    doc = DocumentService(unlocked).get(m.bills[0]["document_id"])
    assert doc.vendor_id != w.vendor_id


def mail_world_again(unlocked: UnlockedVault, w: object):  # type: ignore[no-untyped-def]
    """The same vault's gateway, started again (the first world has stopped)."""
    from contextlib import contextmanager

    from openvrm.mail.gateway import Gateway
    from openvrm.mail.keys import MailKeys
    from openvrm.server.smtp_gateway import GatewayServer, gateway_in_thread

    @contextmanager
    def run():  # type: ignore[no-untyped-def]
        gw = Gateway(unlocked.vault, MailKeys.from_vault(unlocked), w.zone, config_ttl=0)  # type: ignore[attr-defined]
        with gateway_in_thread(GatewayServer(gw, port=0, poll_seconds=60)) as (_h, port):
            yield port

    return run()


def test_hostile_sender_names_cannot_inject_headers_into_the_forwarded_copy(unlocked: UnlockedVault) -> None:
    import base64

    evil = base64.b64encode(b"Shop\r\nBcc: thief@evil.example\r\nX-Openvrm-Vendor: Bank").decode()
    raw = (
        f"From: =?utf-8?b?{evil}?= <billing@shop.example>\r\n"
        "Subject: =?utf-8?q?hi=0D=0ABcc=3A_thief@evil.example?=\r\n"
        "X-Openvrm-Vendor: Forged Bank\r\n\r\nhello\r\n"
    ).encode()
    with mail_world(unlocked) as w:
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        assert wait_for(lambda: len(w.sink.messages) == 1)
        fwd = w.sink.messages[0]
        assert fwd.get_all("X-Openvrm-Vendor") == ["Shop"]  # the vendor's own header dropped, ours alone
        assert fwd.get_all("Bcc") is None
        assert "thief@evil.example" not in "".join(f"{k}: {v}" for k, v in fwd.items() if k != "Subject")
        assert fwd["X-Openvrm-Original-From"] == "billing@shop.example"  # the address survives the name
    w.mail.file_inbox()
    [m] = w.mail.messages()
    assert m.summary["from"] == "billing@shop.example" and not m.leaked


def test_a_large_message_is_kept_whole(unlocked: UnlockedVault) -> None:
    """Kept messages are not bound by the 1 MiB of a vendor's push, only by the gateway's size limit."""
    big = b"%PDF-1.4\n" + bytes(range(256)) * 12_000  # ~3 MB attachment: 4 MB once base64-encoded
    with mail_world(unlocked) as w:
        w.mail.set_rules(alias_id=w.alias.id, deliver="vault")
        raw = message(
            sender="billing@shop.example",
            to=w.alias.address,
            subject="Photos of your order",
            attachments=[("photos.bin", "application/octet-stream", big)],
        )
        assert len(raw) > 4_000_000
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
    assert w.mail.file_inbox() == 1
    [m] = w.mail.messages()
    assert w.mail.raw(m.id) == raw
