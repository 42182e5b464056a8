"""Nothing the gateway handles reaches disk or logs in the clear: addresses, subjects, bodies, contacts.

Mail is received while the downstream server is down (so the spool holds it), kept in the vault, filed,
and a reply is sent; then every byte of the store and every log record is scanned, as for the vault.
"""

from __future__ import annotations

import logging

import pytest

from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from tests.mail.support import REAL, mail_world, message, send, wait_for
from tests.vault.test_no_plaintext import _store_bytes

SUBJECT = "Subject-secret-8842"
BODY = "Body-secret-text-5531"
CONTACT = "zed.contact@shop.example"


def test_no_mail_value_in_the_store_or_logs(
    unlocked: UnlockedVault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with mail_world(unlocked, sink_up=False) as w:
        raw = message(sender=CONTACT, to=w.alias.address, subject=SUBJECT, body=BODY)
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        w.mail.set_rules(alias_id=w.alias.id, deliver="vault")
        assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        assert wait_for(lambda: w.server.last_report is not None)
        [rev] = w.mail.routes.reverse_aliases(w.alias.id)
        reply = message(sender=REAL, to=rev.address, subject="Re: " + SUBJECT, body=BODY + " reply")
        assert send(w.port, REAL, [rev.address], reply) == {}
        alias, reverse = w.alias.address, rev.address
    assert w.mail.file_inbox() == 3
    assert len(w.mail.spool().entries()) == 2  # the forward and the reply, still owed downstream
    assert check_vault(unlocked).ok
    store = _store_bytes(unlocked)
    logs = "\n".join(r.getMessage() + " " + str(getattr(r, "openvrm_fields", "")) for r in caplog.records)
    for value in (alias, reverse, REAL, CONTACT, SUBJECT, BODY, "Shop Billing"):
        for needle in (value.encode(), value.encode("utf-16-le"), value.lower().encode()):
            assert needle not in store, f"{value!r} found in the store"
        assert value.lower() not in logs.lower(), f"{value!r} found in the logs"


def test_vrm_check_opens_every_mail_row_and_names_a_swapped_one(unlocked: UnlockedVault) -> None:
    from openvrm.storage.models import MailAlias

    with mail_world(unlocked) as w:
        other = w.mail.create_alias(w.vendor_id)
    assert check_vault(unlocked).ok
    with unlocked.db.write() as s:
        a, b = s.get(MailAlias, w.alias.id), s.get(MailAlias, other.id)
        assert a is not None and b is not None
        a.sealed, b.sealed = b.sealed, a.sealed
    problems = {(p.where, p.id) for p in check_vault(unlocked).problems}
    assert problems == {("mail_aliases", w.alias.id), ("mail_aliases", other.id)}
