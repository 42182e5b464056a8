"""Spool rows handed to the gateway's own deliverer: written leased, sent without a claim, never twice."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from openvrm.mail.gateway import SPOOL_LEASE, Envelope, Gateway
from openvrm.mail.keys import MailKeys
from openvrm.mail.routing import Downstream
from openvrm.mail.service import MailService
from openvrm.server.smtp_gateway import downstream_transport
from openvrm.storage.models import MailSpool, utcnow
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.mail.support import DOMAIN, REAL, message, zone_for
from tests.outbox.support import smtp_sink


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def _accept(uv: UnlockedVault, port: int, clock: Clock, n: int) -> tuple[Gateway, list]:  # type: ignore[type-arg]
    vendor = VendorService(uv).add("Shop", domains=["shop.example"])
    mail = MailService(uv)
    mail.setup(domains=[DOMAIN], forward_to=REAL, downstream=Downstream("127.0.0.1", port, "none"))
    alias = mail.create_alias(vendor.id)
    gw = Gateway(uv.vault, MailKeys.from_vault(uv), zone_for("shop.example"), clock=clock)
    gw.handoff = lambda: True
    handed = []
    for i in range(n):
        env = Envelope(peer_ip="127.0.0.1", helo="mx.shop.example", mail_from="billing@shop.example")
        env.recipients.append(gw.recipient(env, alias.address))
        raw = message(sender="billing@shop.example", to=alias.address, subject=f"Order {i}")
        handed += gw.accept(env, raw).handed
    return gw, handed


def test_handed_rows_are_leased_so_another_deliverer_leaves_them(unlocked: UnlockedVault) -> None:
    clock = Clock()
    with smtp_sink() as (sink, port):
        gw, handed = _accept(unlocked, port, clock, 3)
        assert len(handed) == 3
        with unlocked.vault.db.read() as s:
            rows = list(s.query(MailSpool))
        assert {r.id for r in rows} == {h.id for h in handed}
        spool = MailService(unlocked).spool()
        spool.clock = clock
        cfg = gw.config()
        assert cfg.downstream is not None
        # `vrm mail deliver` at the same time: the rows are not due for it.
        assert asyncio.run(spool.deliver(downstream_transport(cfg.downstream, REAL))).sent == 0
        report = asyncio.run(spool.deliver_handed(downstream_transport(cfg.downstream, REAL), handed))
        assert report.sent == 3 and spool.entries() == []
        assert sorted(sink.ids().values()) == [1] * 3


def test_a_handed_row_whose_lease_is_half_over_is_left_to_a_claim(unlocked: UnlockedVault) -> None:
    clock = Clock()
    with smtp_sink() as (sink, port):
        gw, handed = _accept(unlocked, port, clock, 1)
        spool = MailService(unlocked).spool()
        spool.clock = clock
        cfg = gw.config()
        assert cfg.downstream is not None
        clock.now += SPOOL_LEASE / 2
        assert asyncio.run(spool.deliver_handed(downstream_transport(cfg.downstream, REAL), handed)).sent == 0
        clock.now += SPOOL_LEASE / 2 + timedelta(seconds=1)
        assert asyncio.run(spool.deliver(downstream_transport(cfg.downstream, REAL))).sent == 1
        assert spool.entries() == [] and sorted(sink.ids().values()) == [1]


def test_released_rows_are_due_at_once_unless_claimed_since(unlocked: UnlockedVault) -> None:
    clock = Clock()
    with smtp_sink() as (sink, port):
        gw, handed = _accept(unlocked, port, clock, 2)
        spool = MailService(unlocked).spool()
        spool.clock = clock
        # The second row's lease ran out and another deliverer claimed it anew: release leaves it alone.
        with unlocked.vault.db.write() as s:
            row = s.get(MailSpool, handed[1].id)
            assert row is not None
            row.next_attempt_at = clock.now + 2 * SPOOL_LEASE
        spool.release(handed)
        cfg = gw.config()
        assert cfg.downstream is not None
        assert asyncio.run(spool.deliver(downstream_transport(cfg.downstream, REAL))).sent == 1
        assert [e.id for e in spool.entries()] == [handed[1].id]
        assert len(sink.ids()) == 1


def test_delivered_rows_left_to_the_caller_stay_leased_until_forgotten(unlocked: UnlockedVault) -> None:
    clock = Clock()
    with smtp_sink() as (sink, port):
        gw, handed = _accept(unlocked, port, clock, 2)
        spool = MailService(unlocked).spool()
        spool.clock = clock
        cfg = gw.config()
        assert cfg.downstream is not None
        sent: list[str] = []
        transport = downstream_transport(cfg.downstream, REAL)
        assert asyncio.run(spool.deliver_handed(transport, handed, sent_ids=sent)).sent == 2
        assert sorted(sent) == sorted(h.id for h in handed) and len(spool.entries()) == 2
        # Still leased: another deliverer does not send them again.
        assert asyncio.run(spool.deliver(downstream_transport(cfg.downstream, REAL))).sent == 0
        spool.forget(sent)
        assert spool.entries() == [] and sorted(sink.ids().values()) == [1, 1]


def test_the_running_gateway_delivers_and_deletes_what_it_hands_over(unlocked: UnlockedVault) -> None:
    from tests.mail.support import mail_world, send, wait_for

    with mail_world(unlocked) as w:
        for i in range(5):
            raw = message(sender="billing@shop.example", to=w.alias.address, subject=f"Order {i}")
            assert send(w.port, "bounce@shop.example", [w.alias.address], raw) == {}
        assert wait_for(lambda: len(w.sink.messages) == 5)
        assert wait_for(lambda: w.mail.spool().entries() == [])
        assert sorted(m["Subject"] for m in w.sink.messages) == [f"Order {i}" for i in range(5)]
