"""A live person's server with the three reference vendors mounted, all over real loopback HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI
from tests.conftest import PASSPHRASE, fast_kdf

from openvrm.agent.service import AgentService
from openvrm.config import Settings
from openvrm.profile.service import ProfileService
from openvrm.server.app import create_app
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendor.demo import reference_configs
from openvrm.vendor.kit import VendorKit


@contextlib.contextmanager
def live_app(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """The real app (demo vendors mounted) under uvicorn on a free loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings, demo_vendors_url=url)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    waiting = threading.Event()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        waiting.wait(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


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
