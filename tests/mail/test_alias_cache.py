"""The gateway's alias cache: RCPT without a database read, and changes still refuse mail promptly.

A change made in this process (the web app or CLI beside the gateway) applies at the next RCPT; one made
behind the gateway's back (another process) applies once the cached entry is ``alias_ttl`` old.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from openvrm.mail.analysis import Refused
from openvrm.mail.auth import ZoneResolver
from openvrm.mail.gateway import ALIAS_TTL, CacheMiss, Envelope, Gateway
from openvrm.mail.keys import MailKeys
from openvrm.mail.routing import Downstream, alias_generation
from openvrm.mail.service import MailService
from openvrm.storage.models import MailAlias, utcnow
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.mail.support import DOMAIN, REAL


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _setup(uv: UnlockedVault) -> tuple[MailService, str, str, Gateway, Clock]:
    vendor = VendorService(uv).add("Shop", domains=["shop.example"])
    VendorService(uv).relate(vendor.id)
    mail = MailService(uv)
    mail.setup(domains=[DOMAIN], forward_to=REAL, downstream=Downstream("127.0.0.1", 25, "none"))
    alias = mail.create_alias(vendor.id)
    clock = Clock()
    gateway = Gateway(uv.vault, MailKeys.from_vault(uv), ZoneResolver(), clock=clock, config_ttl=60)
    return mail, vendor.id, alias.id, gateway, clock


def _env() -> Envelope:
    return Envelope(peer_ip="127.0.0.1", helo="mx.shop.example", mail_from="billing@shop.example")


def _behind_the_back(uv: UnlockedVault, alias_id: str, state: str) -> None:
    """Change an alias as another process would: this process's change counter does not move."""
    before = alias_generation(uv.vault.db)
    with uv.vault.db.write() as s:
        s.execute(update(MailAlias).where(MailAlias.id == alias_id).values(state=state))
    assert alias_generation(uv.vault.db) == before


def test_a_cached_alias_is_answered_without_the_database(unlocked: UnlockedVault) -> None:
    mail, _vendor, alias_id, gw, _clock = _setup(unlocked)
    address = mail.alias(alias_id).address
    with pytest.raises(CacheMiss):
        gw.recipient(_env(), address, cached_only=True)  # never seen: the database decides
    assert gw.recipient(_env(), address).alias.id == alias_id
    assert gw.recipient(_env(), address, cached_only=True).alias.id == alias_id
    # Refusals that need no database are given at once, cache or not; unknown addresses are not cached.
    with pytest.raises(Refused) as exc:
        gw.recipient(_env(), "someone@elsewhere.example", cached_only=True)
    assert exc.value.code == 550
    with pytest.raises(Refused):
        gw.recipient(_env(), f"nobody@{DOMAIN}")
    with pytest.raises(CacheMiss):
        gw.recipient(_env(), f"nobody@{DOMAIN}", cached_only=True)


def test_changes_in_this_process_refuse_at_the_next_rcpt(unlocked: UnlockedVault) -> None:
    mail, vendor_id, alias_id, gw, _clock = _setup(unlocked)
    address = mail.alias(alias_id).address
    gw.recipient(_env(), address)

    mail.set_enabled(alias_id, False)
    with pytest.raises(CacheMiss):
        gw.recipient(_env(), address, cached_only=True)
    with pytest.raises(Refused) as exc:
        gw.recipient(_env(), address)
    assert exc.value.code == 550
    mail.set_enabled(alias_id, True)
    gw.recipient(_env(), address)  # a refusal is never cached: enabled again, accepted again

    [rel] = VendorService(unlocked).relationships(vendor_id)
    VendorService(unlocked).edit_relationship(rel.id, stance="blocked")
    with pytest.raises(Refused):
        gw.recipient(_env(), address)
    VendorService(unlocked).edit_relationship(rel.id, stance="neutral")
    gw.recipient(_env(), address)

    mail.delete_alias(alias_id)
    with pytest.raises(Refused) as exc:
        gw.recipient(_env(), address)
    assert exc.value.code == 550


def test_a_change_from_another_process_refuses_within_the_ttl(unlocked: UnlockedVault) -> None:
    mail, _vendor, alias_id, gw, clock = _setup(unlocked)
    address = mail.alias(alias_id).address
    gw.recipient(_env(), address)
    _behind_the_back(unlocked, alias_id, "disabled")
    clock.advance(ALIAS_TTL / 2)
    gw.recipient(_env(), address, cached_only=True)  # the documented window: still the cached answer
    clock.advance(ALIAS_TTL / 2 + 0.001)
    with pytest.raises(CacheMiss):
        gw.recipient(_env(), address, cached_only=True)
    with pytest.raises(Refused) as exc:
        gw.recipient(_env(), address)
    assert exc.value.code == 550
    _behind_the_back(unlocked, alias_id, "active")
    gw.recipient(_env(), address)


def test_a_rolled_back_change_keeps_the_cache(unlocked: UnlockedVault) -> None:
    mail, _vendor, alias_id, gw, _clock = _setup(unlocked)
    address = mail.alias(alias_id).address
    gw.recipient(_env(), address)
    before = alias_generation(unlocked.vault.db)
    with pytest.raises(RuntimeError), unlocked.vault.db.write() as s:
        mail.routes.write_alias(s, mail.alias(alias_id))
        raise RuntimeError("rolled back")
    assert alias_generation(unlocked.vault.db) == before
    gw.recipient(_env(), address, cached_only=True)


def test_learned_domains_are_added_to_the_stored_alias(unlocked: UnlockedVault) -> None:
    """Two messages routed with the same (cached) copy of an alias each add their domain."""
    mail, _vendor, alias_id, _gw, _clock = _setup(unlocked)
    mail.routes.learn_domain(alias_id, "a.example")
    mail.routes.learn_domain(alias_id, "b.example")
    mail.routes.learn_domain(alias_id, "a.example")
    assert mail.alias(alias_id).learned_domains == ("a.example", "b.example")
