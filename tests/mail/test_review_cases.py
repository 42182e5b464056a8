"""Cases found in review: spoofed replies, what a reply may carry, odd senders, no downstream server."""

from __future__ import annotations

import base64
import smtplib

import pytest

from openvrm.mail.routing import Downstream
from openvrm.vault.core import UnlockedVault
from tests.mail.support import REAL, body_of, mail_world, message, send, wait_for


def _reverse_of(w) -> str:  # type: ignore[no-untyped-def]
    send(
        w.port,
        "bounce@shop.example",
        [w.alias.address],
        message(sender="billing@shop.example", to=w.alias.address),
    )
    assert wait_for(lambda: len(w.sink.messages) >= 1)
    return str(w.sink.messages[0]["Reply-To"])


def test_a_reply_must_be_the_persons_and_authenticated(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        reverse = _reverse_of(w)
        # The envelope says the person, the header says someone else: refused.
        other = message(sender="x@other.example", to=reverse)
        with pytest.raises(smtplib.SMTPDataError) as exc:
            send(w.port, REAL, [reverse], other)
        assert exc.value.smtp_code == 550
        # The person's address, but from a server their domain does not allow and unsigned: refused.
        w.zone.records[("real.example", "TXT")] = [(b"v=spf1 -all",)]
        forged = message(sender=REAL, to=reverse, sign=False)
        with pytest.raises(smtplib.SMTPDataError) as exc:
            send(w.port, REAL, [reverse], forged)
        assert exc.value.smtp_code == 550 and b"not authenticated" in exc.value.smtp_error
        # Signed by the person's provider: accepted.
        assert send(w.port, REAL, [reverse], message(sender=REAL, to=reverse)) == {}
        assert wait_for(lambda: len(w.sink.messages) == 2)


def test_a_reply_carries_only_harmless_headers(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        reverse = _reverse_of(w)
        reply = message(
            sender=REAL,
            to=reverse,
            subject="Re: order",
            headers={
                "Autocrypt": "addr=anna@real.example; keydata=bWFkZSB1cCBrZXkgZm9yIGFubmE=",
                "X-Google-Smtp-Source": "AGHT+IE-provider-fingerprint",
                "User-Agent": "Thunderbird/128",
                "In-Reply-To": "<1@shop.example>",
            },
        )
        send(w.port, REAL, [reverse], reply)
        assert wait_for(lambda: len(w.sink.messages) == 2)
        out = w.sink.messages[1]
        assert {k.lower() for k in out.keys()} <= {
            "from", "to", "message-id", "subject", "date", "mime-version", "in-reply-to",
            "content-type", "content-transfer-encoding",
        }  # fmt: skip
        assert out["In-Reply-To"] == "<1@shop.example>"


def _reply_with_part(reverse: str, charset: str, payload: bytes) -> bytes:
    from tests.mail.support import dkim_key

    raw = message(sender=REAL, to=reverse, sign=False)
    head = raw.partition(b"\r\n\r\n")[0]
    keep = [x for x in head.split(b"\r\n") if not x.lower().startswith((b"content-", b"mime-version"))]
    raw = b"\r\n".join(keep) + (
        b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=" + charset.encode() + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(payload).replace(b"\n", b"\r\n")
    )
    return dkim_key("real.example").sign(raw)


def test_replies_in_odd_charsets_are_scrubbed_or_refused(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        reverse = _reverse_of(w)
        # An unknown but ASCII-compatible charset: the address is found in the bytes and replaced.
        ok = _reply_with_part(reverse, "x-unknown-charset", f"On Monday, {REAL} wrote".encode())
        assert send(w.port, REAL, [reverse], ok) == {}
        assert wait_for(lambda: len(w.sink.messages) == 2)
        assert REAL not in body_of(w.sink.messages[1]) and w.alias.address in body_of(w.sink.messages[1])
        # UTF-16 is scrubbed after decoding; UTF-16 that does not decode cannot be checked: refused.
        wide = _reply_with_part(reverse, "utf-16", f"On Monday, {REAL} wrote".encode("utf-16"))
        assert send(w.port, REAL, [reverse], wide) == {}
        assert wait_for(lambda: len(w.sink.messages) == 3)
        assert REAL not in body_of(w.sink.messages[2]).encode("latin-1", "replace").decode(
            "utf-16", "replace"
        )
        broken = _reply_with_part(reverse, "utf-16", b"\xff\xfeA\x00\x00\xd8")  # a lone surrogate
        with pytest.raises(smtplib.SMTPDataError) as exc:
            send(w.port, REAL, [reverse], broken)
        assert exc.value.smtp_code == 554


def test_a_from_without_an_address_is_forwarded_not_retried_forever(unlocked: UnlockedVault) -> None:
    raw = b"From: Shop\r\nTo: someone\r\nSubject: odd sender\r\n\r\nhello\r\n"
    with mail_world(unlocked) as w:
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        assert wait_for(lambda: len(w.sink.messages) == 1)
        assert w.sink.messages[0]["Reply-To"] == w.alias.address  # no reverse alias to make


def test_the_same_recipient_twice_is_one_delivery(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        raw = message(sender="billing@shop.example", to=w.alias.address)
        refused = send(w.port, "bounce@shop.example", [w.alias.address, w.alias.address.upper()], raw)
        assert [code for code, _ in refused.values()] == [452]
        assert wait_for(lambda: len(w.sink.messages) == 1)
    assert w.mail.file_inbox() == 1


def test_without_a_downstream_server_mail_is_kept_in_the_vault(unlocked: UnlockedVault) -> None:
    with mail_world(unlocked) as w:
        cfg = w.mail.config()
        assert cfg is not None
        w.mail.routes.save_config(
            type(cfg)(
                cfg.domains, cfg.forward_to, cfg.deliver, None, cfg.max_message_bytes, cfg.max_recipients
            )
        )
        raw = message(sender="billing@shop.example", to=w.alias.address)
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
    assert w.mail.spool().entries() == []
    w.mail.file_inbox()
    [m] = w.mail.messages()
    assert not m.forwarded and w.mail.raw(m.id) == raw
    w.mail.setup(
        domains=list(cfg.domains), forward_to=cfg.forward_to, downstream=Downstream("127.0.0.1", 25, "none")
    )


def test_hostile_subjects_do_not_break_the_cli(sqlite_settings) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from openvrm.cli.main import app
    from openvrm.vault.core import Vault
    from tests.conftest import PASSPHRASE, fast_kdf

    vault = Vault.open(sqlite_settings, create=True)
    try:
        uv = vault.create(PASSPHRASE, kdf=fast_kdf())
        with mail_world(uv) as w:
            subject = "Order [/x] shipped [link=https://evil.example]now"
            send(
                w.port,
                "bounce@shop.example",
                [w.alias.address],
                message(sender="billing@shop.example", to=w.alias.address, subject=subject),
            )
        w.mail.file_inbox()
    finally:
        vault.close()
    result = CliRunner().invoke(
        app, ["--home", str(sqlite_settings.home), "mail", "messages"], env={"OPENVRM_PASSPHRASE": PASSPHRASE}
    )
    assert result.exit_code == 0, result.output
    assert "[/x]" in result.stdout
