"""A live person's server with the three reference vendors mounted, all over real loopback HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from tests.conftest import PASSPHRASE, fast_kdf

from openvrm.agent.service import AgentService
from openvrm.config import Settings
from openvrm.conformance.live import serve_factory_in_thread
from openvrm.profile.service import ProfileService
from openvrm.server.app import create_app
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendor.demo import reference_configs
from openvrm.vendor.kit import VendorKit


@contextlib.contextmanager
def live_app(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """The real app (demo vendors mounted) under uvicorn on a free loopback port, in a thread."""
    made: list[FastAPI] = []

    def app_for(url: str) -> FastAPI:
        made.append(create_app(settings, demo_vendors_url=url))
        return made[0]

    with serve_factory_in_thread(app_for) as url:
        yield url, made[0]


@dataclass
class World:
    url: str
    app: FastAPI
    settings: Settings
    unlocked: UnlockedVault
    vendors: dict[str, VendorKit]

    @property
    def agent(self) -> AgentService:
        return AgentService(self.unlocked)

    def vendor_url(self, slug: str) -> str:
        return f"{self.url}/demo-vendors/{slug}"


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    """A vault (SQLite or PostgreSQL) with a profile, its server, and the reference vendors' kits."""
    from dataclasses import replace

    settings = replace(settings, allow_loopback_peers=True)
    vault = Vault.open(settings, create=True)
    unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
    profile = ProfileService(unlocked)
    profile.set("name", "Ada Lovelace")
    profile.set("email", "ada@example.org")
    profile.set("phone", "+33 6 12 34 56 78")
    with live_app(settings) as (url, app):
        kits = {
            c.base_url.rsplit("/", 1)[-1]: VendorKit(c)
            for c in reference_configs(url, settings.home / "demo-vendors")
        }
        try:
            yield World(url, app, settings, unlocked, kits)
        finally:
            for kit in kits.values():
                kit.close()
            unlocked.lock()
            vault.close()
