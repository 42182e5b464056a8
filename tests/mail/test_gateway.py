"""The gateway end to end: a real SMTP client, the gateway on loopback, a real SMTP sink downstream."""

from __future__ import annotations

import smtplib
from email import message_from_bytes
from typing import Any

import pytest

from openvrm.storage.models import InboxItem
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.mail.support import DOMAIN, REAL, body_of, mail_world, message, send, wait_for


def test_vendor_mail_is_forwarded_with_the_vendor_named_and_filed(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        raw = message(sender="billing@shop.example", to=w.alias.address)
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        assert wait_for(lambda: len(w.sink.messages) == 1)
        fwd = w.sink.messages[0]
        assert fwd["X-Openvrm-Vendor"] == "Shop"
        assert fwd["X-Openvrm-Alias"] == w.alias.address
        [rel] = VendorService(unlocked).relationships(w.vendor_id)
        assert w.alias.relationship_id == rel.id and fwd["X-Openvrm-Relationship"] == rel.id
        assert fwd["X-Openvrm-Original-From"] == "billing@shop.example"
        assert "dkim=pass" in fwd["Authentication-Results"] and "spf=pass" in fwd["Authentication-Results"]
        assert "X-Openvrm-Leak" not in fwd
        # Replies go to a reverse alias on the gateway's domain, never to the vendor directly.
        reply_to = str(fwd["Reply-To"])
        assert reply_to.endswith("@" + DOMAIN) and reply_to.startswith("re.")
        assert "thanks for your order" in body_of(fwd)
    assert w.mail.file_inbox() == 1
    [m] = w.mail.messages()
    assert m.vendor_id == w.vendor_id and m.forwarded and not m.leaked
    assert m.auth["dkim"][0]["result"] == "pass" and m.auth["spf"] == "pass" and m.auth["dmarc"] == "pass"
    assert m.summary["subject"] == "Your order"


def test_never_an_open_relay(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        raw = message(sender="billing@shop.example", to="victim@elsewhere.example")
        for rcpt, code in (
            ("victim@elsewhere.example", 550),
            (f"nobody@{DOMAIN}", 550),
            (f"re.0000000000@{DOMAIN}", 550),
            ("not an address", 501),
        ):
            with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
                send(w.port, "spam@elsewhere.example", [rcpt], raw)
            assert exc.value.recipients[rcpt][0] == code
        # A real reverse alias, but written to by someone who is not the person: refused.
        w.mail.routes.reverse_for(w.alias, "billing@shop.example")
        [rev] = w.mail.routes.reverse_aliases(w.alias.id)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(w.port, "spam@elsewhere.example", [rev.address], raw)
    with unlocked.db.read() as s:
        assert s.query(InboxItem).count() == 0
    assert w.sink.messages == []


def test_disabled_and_blocked_aliases_reject_mail(unlocked: UnlockedVault) -> None:
    from openvrm.vendors.service import VendorService

    with mail_world(unlocked) as w:
        raw = message(sender="billing@shop.example", to=w.alias.address)
        w.mail.set_enabled(w.alias.id, False)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(w.port, "bounce@shop.example", [w.alias.address], raw)
        w.mail.set_enabled(w.alias.id, True)
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        [rel] = VendorService(unlocked).relationships(w.vendor_id)
        VendorService(unlocked).edit_relationship(rel.id, stance="blocked")
        assert w.mail.alias(w.alias.id).blocked
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            send(w.port, "bounce@shop.example", [w.alias.address], raw)
        assert exc.value.recipients[w.alias.address][0] == 550
        w.mail.delete_alias(w.alias.id)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(w.port, "bounce@shop.example", [w.alias.address], raw)
        assert wait_for(lambda: len(w.sink.messages) == 1)


def test_mail_from_someone_else_flags_a_leak(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        raw = message(sender="deals@other.example", to=w.alias.address, subject="Great deals")
        send(w.port, "bounce@other.example", [w.alias.address], raw)
        # Someone posing as the vendor, without its signature or its servers, is flagged too.
        spoof = message(sender="billing@shop.example", to=w.alias.address, sign=False)
        send(w.port, "x@spoofer.example", [w.alias.address], spoof)
        assert wait_for(lambda: len(w.sink.messages) == 2)
        assert "reached other.example" in str(w.sink.messages[0]["X-Openvrm-Leak"])
    assert w.mail.file_inbox() == 2
    leaks = w.mail.leaks(w.vendor_id)
    assert {entry["reached"] for entry in leaks} == {"other.example", "shop.example"}
    card_leaks = w.mail.card_section(w.vendor_id)["leaks"]
    assert card_leaks == leaks
    # "This sender is the vendor": its domain joins the vendor's and the flag is cleared.
    other = next(m for m in w.mail.messages() if m.leak.get("reached") == "other.example")
    w.mail.clear_leak(other.id)
    assert {entry["reached"] for entry in w.mail.leaks(w.vendor_id)} == {"shop.example"}
    assert "other.example" in w.mail.alias(w.alias.id).vendor_domains


def test_replies_go_out_as_the_alias_and_never_reveal_the_real_address(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        send(
            w.port,
            "bounce@shop.example",
            [w.alias.address],
            message(sender="billing@shop.example", to=w.alias.address),
        )
        assert wait_for(lambda: len(w.sink.messages) == 1)
        reverse = str(w.sink.messages[0]["Reply-To"])
        reply = message(
            sender=REAL,
            to=reverse,
            subject="Re: Your order",
            body=f"Thanks!\n\nOn Monday, {REAL} wrote:\n> earlier\n",
            headers={"Cc": "friend@real.example", "X-Originating-IP": "203.0.113.9"},
        )
        assert send(w.port, REAL, [reverse], reply) == {}
        assert wait_for(lambda: len(w.sink.messages) == 2)
        out = w.sink.messages[1]
        text = out.as_string()
        assert REAL not in text.lower() and "real.example" not in text.lower()
        assert out["From"] == w.alias.address and out["To"] == "billing@shop.example"
        assert "203.0.113.9" not in text
        assert "wrote:" in body_of(out)


def test_rules_mute_promotions_and_keep_them_in_the_vault(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        w.mail.set_rules(vendor_id=w.vendor_id, mode="mute_promotions")
        promo = message(
            sender="news@shop.example",
            to=w.alias.address,
            subject="Spring sale",
            headers={"List-Unsubscribe": "<mailto:unsubscribe@shop.example>"},
        )
        send(w.port, "bounce@shop.example", [w.alias.address], promo)
        send(
            w.port,
            "bounce@shop.example",
            [w.alias.address],
            message(sender="billing@shop.example", to=w.alias.address, subject="Your receipt"),
        )
        assert wait_for(lambda: len(w.sink.messages) == 1)
        assert w.sink.messages[0]["Subject"] == "Your receipt"
    assert w.mail.file_inbox() == 2
    muted = next(m for m in w.mail.messages() if m.summary["subject"] == "Spring sale")
    assert muted.summary["kind"] == "promotion" and not muted.forwarded
    assert "Spring sale" in w.mail.raw(muted.id).decode()


def test_downstream_down_loses_nothing_and_delivers_later(unlocked: UnlockedVault) -> None:
    import asyncio

    from openvrm.mail.routing import Downstream
    from tests.outbox.support import smtp_sink

    with mail_world(unlocked, sink_up=False) as w:
        raw = message(sender="billing@shop.example", to=w.alias.address)
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        assert wait_for(lambda: w.server.last_report is not None and w.server.last_report.retrying == 1)
        [entry] = w.mail.spool().entries()
        assert entry.state == "queued" and entry.attempts == 1 and entry.last_error
        with smtp_sink() as (sink, port):
            cfg = w.mail.config()
            assert cfg is not None
            w.mail.setup(
                domains=list(cfg.domains),
                forward_to=cfg.forward_to,
                downstream=Downstream("127.0.0.1", port, "none"),
            )
            w.mail.spool().retry(entry.id)
            report = asyncio.run(w.server.deliver_once())
            assert report.sent == 1
            assert len(sink.messages) == 1 and sink.messages[0]["X-Openvrm-Alias"] == w.alias.address
        assert w.mail.spool().entries() == []


def test_scrub_reaches_into_base64_and_quoted_printable_text() -> None:
    from email import message_from_bytes, policy
    from email.message import EmailMessage

    from openvrm.mail.gateway import scrub

    for cte in ("base64", "quoted-printable"):
        m = EmailMessage()
        m["From"] = REAL
        m.set_content(f"On Monday, {REAL.upper()} wrote:\n> café\n", cte=cte)
        m.add_alternative(f"<p>{REAL}</p>", subtype="html", cte=cte)
        out = scrub(m.as_bytes(), REAL, "shop.x1@mail.example")
        parsed = message_from_bytes(out, policy=policy.default)
        texts = [p.get_content() for p in parsed.walk() if p.get_content_maintype() == "text"]
        assert all("shop.x1@mail.example" in t and REAL not in t.lower() for t in texts), cte
        assert "café" in texts[0]


def test_two_deliverers_never_send_a_message_twice(unlocked: UnlockedVault) -> None:
    """The gateway and a `vrm mail deliver` at the same time: each spooled message leaves once."""
    import asyncio

    from openvrm.mail.routing import Downstream
    from openvrm.mail.service import MailService
    from openvrm.server.smtp_gateway import downstream_transport
    from tests.outbox.support import smtp_sink

    with smtp_sink() as (sink, port):
        w_mail = MailService(unlocked)
        vendor = VendorService(unlocked).add("Shop", domains=["shop.example"])
        w_mail.setup(
            domains=["mail.example"], forward_to=REAL, downstream=Downstream("127.0.0.1", port, "none")
        )
        alias = w_mail.create_alias(vendor.id)
        for i in range(30):
            w_mail.send(alias.id, to=f"c{i}@shop.example", subject=f"Hello {i}", body="Hi")
        spool = w_mail.spool()
        cfg = w_mail.config()
        assert cfg is not None and cfg.downstream is not None

        async def both() -> list[int]:
            reports = await asyncio.gather(
                *(spool.deliver(downstream_transport(cfg.downstream, REAL), limit=10) for _ in range(4))
            )
            return [r.sent for r in reports]

        while spool.entries():
            asyncio.run(both())
        assert sorted(sink.ids().values()) == [1] * 30


def test_starttls_is_offered_with_a_certificate(unlocked: UnlockedVault, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from openvrm.server.smtp_gateway import server_tls_context

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    tls = server_tls_context(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    with mail_world(unlocked, tls_context=tls) as w:
        client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        client_ctx.check_hostname = False
        with smtplib.SMTP("127.0.0.1", w.port, timeout=30) as c:
            c.ehlo("mx.shop.example")
            assert c.has_extn("starttls")
            c.starttls(context=client_ctx)
            c.ehlo("mx.shop.example")
            assert c.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
            raw = message(sender="billing@shop.example", to=w.alias.address)
            assert c.sendmail("bounce@shop.example", [w.alias.address], raw) == {}
        assert wait_for(lambda: len(w.sink.messages) == 1)


def _spooled(unlocked: UnlockedVault, n: int, port: int) -> tuple[Any, Any]:
    from openvrm.mail.routing import Downstream
    from openvrm.mail.service import MailService

    w_mail = MailService(unlocked)
    vendor = VendorService(unlocked).add("Shop", domains=["shop.example"])
    w_mail.setup(domains=["mail.example"], forward_to=REAL, downstream=Downstream("127.0.0.1", port, "none"))
    alias = w_mail.create_alias(vendor.id)
    for i in range(n):
        w_mail.send(alias.id, to=f"c{i}@shop.example", subject=f"Hello {i}", body="Hi")
    cfg = w_mail.config()
    assert cfg is not None and cfg.downstream is not None
    return w_mail.spool(), cfg


def test_batched_rounds_send_each_message_once_even_with_two_deliverers(unlocked: UnlockedVault) -> None:
    """Rounds that go on batch after batch (delete and next claim in one transaction), four at once."""
    import asyncio

    from openvrm.server.smtp_gateway import downstream_transport
    from tests.outbox.support import smtp_sink

    with smtp_sink() as (sink, port):
        spool, cfg = _spooled(unlocked, 40, port)

        async def all_at_once() -> list[int]:
            reports = await asyncio.gather(
                *(
                    spool.deliver(downstream_transport(cfg.downstream, REAL), limit=3, more=lambda: True)
                    for _ in range(4)
                )
            )
            return [r.sent for r in reports]

        sent = asyncio.run(all_at_once())
        assert sum(sent) == 40 and spool.entries() == []
        assert sorted(sink.ids().values()) == [1] * 40


def test_a_batched_round_cut_by_an_outage_keeps_what_was_not_sent(unlocked: UnlockedVault) -> None:
    """The server goes away after 7 messages: those 7 are deleted, the rest stay and leave later, once."""
    import asyncio

    from openvrm.outbox.transport import DeliveryFailed

    class Flaky:
        def __init__(self, up_for: int) -> None:
            self.left = up_for
            self.got: list[str] = []
            self.connected = True

        async def open(self) -> None: ...

        async def close(self) -> None: ...

        async def send(self, message: Any, sender: str, recipients: list[str]) -> None:
            if self.left == 0:
                self.connected = False
                raise DeliveryFailed("connection lost")
            self.left -= 1
            self.got.append(message_from_bytes(message)["Subject"])

    spool, _cfg = _spooled(unlocked, 20, 25)
    first = Flaky(7)
    report = asyncio.run(spool.deliver(first, limit=3, more=lambda: True))
    assert report.sent == 7 and report.retrying == 1 and len(spool.entries()) == 13
    # The failed one backs off, the claimed but unsent ones wait for their lease: make them all due now.
    for e in spool.entries():
        spool.retry(e.id)
    second = Flaky(100)
    assert asyncio.run(spool.deliver(second, limit=3, more=lambda: True)).sent == 13
    assert sorted(first.got + second.got) == sorted(f"Hello {i}" for i in range(20))
    assert spool.entries() == []
