"""The durable outbox against a real SMTP server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from openvrm.config import Settings
from openvrm.errors import Conflict
from openvrm.outbox import Attachment, Outbox, SmtpTransport, load_mail_settings
from openvrm.outbox.service import backoff, message_id_for
from openvrm.outbox.settings import clean_mail_settings
from openvrm.storage.models import OutboxMessage, utcnow
from openvrm.vault.core import UnlockedVault
from tests.conftest import PASSPHRASE
from tests.outbox.support import free_port, smtp_sink, use_sink

ROOT = Path(__file__).resolve().parents[2]


def queue(uv: UnlockedVault, n: int, *, prefix: str = "test", to: str = "vendor{i}@example.net") -> list[str]:
    mail = load_mail_settings(uv)
    box = Outbox(uv)
    with uv.db.write() as s:
        return [
            box.enqueue(
                s,
                key=f"{prefix}:{i}",
                to=[to.format(i=i)],
                subject=f"Notice {i}",
                body=f"Hello vendor {i}, my address changed.",
                mail=mail,
            )
            for i in range(n)
        ]


def test_delivers_each_message_once_with_a_stable_message_id(unlocked: UnlockedVault) -> None:
    with smtp_sink() as (sink, port):
        use_sink(unlocked, port)
        ids = queue(unlocked, 5)
        box = Outbox(unlocked)
        report = box.deliver_now(SmtpTransport(load_mail_settings(unlocked)))
        assert (report.sent, report.failed, report.retrying) == (5, 0, 0)
        # Nothing is due any more: a second run sends nothing.
        assert box.deliver_now(SmtpTransport(load_mail_settings(unlocked))).sent == 0
        expected = {message_id_for(unlocked.vault_id, f"test:{i}", "example.org") for i in range(5)}
        assert set(sink.ids()) == expected and set(sink.ids().values()) == {1}
        assert {m.status for m in box.list()} == {"sent"}
        assert [str(m["To"]) for m in sink.messages] == [f"vendor{i}@example.net" for i in range(5)]
        assert box.get(ids[0]).attempts == 1


def test_enqueue_is_idempotent_and_part_of_the_callers_transaction(unlocked: UnlockedVault) -> None:
    use_sink(unlocked, free_port())
    first = queue(unlocked, 2)
    assert queue(unlocked, 2) == first
    assert len(Outbox(unlocked).list()) == 2

    class Boom(Exception):
        pass

    mail = load_mail_settings(unlocked)
    with pytest.raises(Boom), unlocked.db.write() as s:
        Outbox(unlocked).enqueue(s, key="rolled-back", to=["x@example.net"], subject="s", body="b", mail=mail)
        raise Boom
    assert [m.key for m in Outbox(unlocked).list()] == ["test:0", "test:1"]


def test_refused_recipient_backs_off_then_fails_with_the_error_kept(unlocked: UnlockedVault) -> None:
    with smtp_sink(refuse={"vendor1@example.net"}) as (sink, port):
        use_sink(unlocked, port)
        ids = queue(unlocked, 3)
        box = Outbox(unlocked)
        now = utcnow()
        first = box.deliver_now(SmtpTransport(load_mail_settings(unlocked)), now=now)
        assert (first.sent, first.retrying, first.failed) == (2, 1, 0)
        bad = box.get(ids[1])
        assert bad.status == "pending" and bad.attempts == 1
        assert bad.next_attempt_at == now + backoff(1)
        assert "550" in (bad.last_error or "")
        # Not due before its backoff has passed.
        assert (
            box.deliver_now(
                SmtpTransport(load_mail_settings(unlocked)), now=now + timedelta(seconds=30)
            ).errors
            == []
        )
        t = now
        for attempt in range(2, bad.max_attempts + 1):
            t = t + backoff(attempt - 1)
            box.deliver_now(SmtpTransport(load_mail_settings(unlocked)), now=t)
            assert box.get(ids[1]).attempts == attempt
        bad = box.get(ids[1])
        assert bad.status == "failed" and "mailbox unavailable" in (bad.last_error or "")
        assert box.due(t + timedelta(days=1)) == 0
        assert sum(sink.ids().values()) == 2
        # Retrying is the person's explicit choice; once the mailbox works, it goes through.
        sink.refuse.clear()
        box.retry(ids[1], now=t)
        assert box.deliver_now(SmtpTransport(load_mail_settings(unlocked)), now=t).sent == 1
        assert box.get(ids[1]).status == "sent"


def test_server_down_counts_attempts_and_fails_after_the_limit(unlocked: UnlockedVault) -> None:
    use_sink(unlocked, free_port())  # nothing listens there: connection refused
    ids = queue(unlocked, 2)
    box = Outbox(unlocked)
    t = utcnow()
    for attempt in range(1, 6):
        report = box.deliver_now(SmtpTransport(load_mail_settings(unlocked)), now=t)
        assert report.sent == 0 and len(report.errors) == 2
        t = t + backoff(attempt)
    for i in ids:
        m = box.get(i)
        assert m.status == "failed" and m.attempts == 5
        assert "cannot reach 127.0.0.1" in (m.last_error or "")


def test_person_confirms_or_resends_an_unconfirmed_message(unlocked: UnlockedVault) -> None:
    use_sink(unlocked, free_port())
    ids = queue(unlocked, 2)
    with unlocked.db.write() as s:
        for row in s.scalars(select(OutboxMessage)):
            row.status = "sending"  # as a killed worker leaves them
    box = Outbox(unlocked)
    assert box.recover() == 2
    assert {m.status for m in box.list()} == {"unconfirmed"}
    assert box.due() == 0  # never re-sent on its own
    assert box.confirm(ids[0]).status == "sent"
    assert box.retry(ids[1]).status == "pending"
    with pytest.raises(Conflict):
        box.confirm(ids[0])
    assert box.cancel(ids[1]).status == "cancelled"


def test_payload_is_sealed(sqlite_settings: Settings) -> None:
    from openvrm.vault.core import Vault
    from tests.conftest import fast_kdf

    vault = Vault.open(sqlite_settings, create=True)
    uv = vault.create(PASSPHRASE, kdf=fast_kdf())
    use_sink(uv, free_port())
    mail = load_mail_settings(uv)
    with uv.db.write() as s:
        Outbox(uv).enqueue(
            s,
            key="k",
            to=["secret-recipient@example.net"],
            subject="Very private subject",
            body="Body with 12 Rue Secrète",
            mail=mail,
            attachments=[Attachment("history.pdf", "application/pdf", b"%PDF-attachment-secret")],
        )
    vault.close()
    raw = b"".join(p.read_bytes() for p in sqlite_settings.home.rglob("*") if p.is_file())
    for secret in (b"secret-recipient", b"Very private", b"Rue Secr", b"attachment-secret", b"anna@example"):
        assert secret not in raw


def test_smtp_settings_are_checked() -> None:
    from openvrm.errors import InvalidValue

    for kw, message in (
        ({"host": "smtp example", "from_addr": "a@example.org"}, "name or an IP"),
        ({"host": "h", "from_addr": "nope"}, "From address"),
        ({"host": "h", "from_addr": "a@example.org", "tls": "ssl"}, "TLS mode"),
        ({"host": "h", "from_addr": "a@example.org", "port": 70000}, "port"),
        ({"host": "h", "from_addr": "a@example.org", "password": "x"}, "needs a username"),
    ):
        with pytest.raises(InvalidValue, match=message):
            clean_mail_settings(**kw)  # type: ignore[arg-type]
    assert clean_mail_settings(host="h", from_addr="a@example.org", tls="tls").port == 465


def test_killed_sender_resumes_without_losing_or_duplicating(
    settings: Settings, unlocked: UnlockedVault
) -> None:
    """A real `vrm outbox send` subprocess is SIGKILLed while the server holds message 4; then resume."""
    total, hold_at = 12, 4
    with smtp_sink(hold_at=hold_at) as (sink, port):
        use_sink(unlocked, port)
        queue(unlocked, total)
        env = dict(os.environ, OPENVRM_HOME=str(settings.home), OPENVRM_PASSPHRASE=PASSPHRASE)
        env["OPENVRM_DATABASE_URL"] = settings.database_url
        env["OPENVRM_BLOB_STORE"] = settings.blob_backend
        cmd = [sys.executable, "-m", "openvrm.cli.main", "outbox", "send", "--json"]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert sink.held.wait(120), proc.stderr.read() if proc.stderr else ""
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            sink.release.set()
        assert proc.returncode == -signal.SIGKILL
        box = Outbox(unlocked)
        states = [m.status for m in box.list()]
        assert states.count("sent") == hold_at - 1 and states.count("sending") == 1

        # Resume in another real subprocess: the in-flight message becomes unconfirmed, the rest go out.
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert b'"unconfirmed": 1' in done.stdout
        unconfirmed = box.list(status="unconfirmed")
        assert len(unconfirmed) == 1
        # The person checks: it did arrive (the server had it), so they confirm rather than resend.
        assert sink.ids()[unconfirmed[0].message_id] == 1
        box.confirm(unconfirmed[0].id)
        assert {m.status for m in box.list()} == {"sent"}
        ids = sink.ids()
        assert len(ids) == total and set(ids.values()) == {1}
        assert set(ids) == {m.message_id for m in box.list()}
