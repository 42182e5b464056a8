"""A live person's server with the real relay (``create_app(settings, relay=True)``) and vendors that
accept intent-only terms, over loopback HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from openvrm.config import Settings
from openvrm.conformance.live import serve_factory_in_thread
from openvrm.intents.service import IntentService
from openvrm.profile.service import ProfileService
from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_offer, seal_offer
from openvrm.protocol.records import canonical_json
from openvrm.server.app import create_app
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendor.app import create_vendor_app
from openvrm.vendor.config import VendorConfig
from tests.conftest import PASSPHRASE, fast_kdf

VENDOR_PREFIX = "/intent-vendors"
VENDORS = (
    ("fibre", "Fibre & Co", ("intent-only", "service-delivery-only")),
    ("mobile", "Mobile Max", ("intent-only", "service-delivery-only")),
    ("picky", "Picky Shop", ("goods-and-services-only",)),  # refuses intent-only terms
)


def build_app(settings: Settings, url: str, store: Path) -> tuple[FastAPI, dict[str, FastAPI]]:
    """The person's server with the relay at /relay and three vendors of our own (no demo vendors, whose
    rules would answer intents too)."""
    app = create_app(replace(settings, allow_loopback_peers=True), relay=True)
    vendors = {}
    for slug, name, terms in VENDORS:
        config = VendorConfig(
            name=name,
            base_url=f"{url}{VENDOR_PREFIX}/{slug}",
            store_dir=store / slug,
            accepted_terms=terms,
            alternative=False,
            allow_loopback=True,
        )
        vendor_app = create_vendor_app(config)
        app.mount(f"{VENDOR_PREFIX}/{slug}", vendor_app)
        vendors[slug] = vendor_app
    return app, vendors


@contextlib.contextmanager
def serve_app(settings: Settings, store: Path) -> Iterator[tuple[str, FastAPI, dict[str, FastAPI]]]:
    made: list[tuple[FastAPI, dict[str, FastAPI]]] = []

    def app_for(url: str) -> FastAPI:
        made.append(build_app(settings, url, store))
        return made[0][0]

    try:
        with serve_factory_in_thread(app_for) as url:
            yield url, *made[0]
    finally:
        for vendor_app in made[0][1].values() if made else ():
            vendor_app.state.kit.close()


def signed_post(url: str, key: KeyPair, record: Mapping[str, Any]) -> httpx.Response:
    body = canonical_json(dict(record))
    headers = {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}
    return httpx.post(url, content=body, headers=sign_request("POST", url, headers, body, key), timeout=30)


def subscribe(relay: str, key: KeyPair, name: str, categories: Sequence[str], discovery: str = "") -> None:
    """Register a vendor at the relay and subscribe it to ``categories`` (docs/protocol.md 12.2)."""
    vendor: dict[str, Any] = {"name": name}
    if discovery:
        vendor["discovery"] = discovery
    assert signed_post(f"{relay}/vendors", key, vendor).status_code in (200, 201)
    assert signed_post(f"{relay}/subscriptions", key, {"categories": list(categories)}).status_code == 201


def send_offer(
    relay: str,
    vendor: KeyPair,
    intent: Mapping[str, Any],
    *,
    name: str,
    discovery: str,
    amount: str,
    currency: str = "EUR",
    per: str = "month",
    features: Sequence[Mapping[str, Any]] = (),
    contract_months: int | None = 0,
) -> dict[str, Any]:
    """Make, seal and post an offer to the relay, signed with the vendor's key; return the offer."""
    offer = make_offer(
        vendor,
        intent,
        vendor_name=name,
        discovery=discovery,
        price={"amount": amount, "currency": currency, "per": per},
        features=features,
        contract_months=contract_months,
        valid_until=m.now_utc() + timedelta(days=7),
    )
    response = signed_post(f"{relay}/offers", vendor, seal_offer(offer, intent))
    assert response.status_code == 201, response.text
    return offer


@dataclass
class IntentWorld:
    url: str
    app: FastAPI
    settings: Settings
    unlocked: UnlockedVault
    vendor_apps: dict[str, FastAPI]

    @property
    def relay(self) -> str:
        return f"{self.url}/relay"

    def service(self) -> IntentService:
        return IntentService(self.unlocked, relay_url=self.relay)

    def vendor_key(self, slug: str) -> KeyPair:
        key: KeyPair = self.vendor_apps[slug].state.kit.key
        return key

    def discovery(self, slug: str) -> str:
        return f"{self.url}{VENDOR_PREFIX}/{slug}/.well-known/vrm"


@pytest.fixture
def intent_world(settings: Settings, tmp_path: Path) -> Iterator[IntentWorld]:
    settings = replace(settings, allow_loopback_peers=True)
    vault = Vault.open(settings, create=True)
    unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
    profile = ProfileService(unlocked)
    profile.set("name", "Ada Lovelace")
    profile.set("email", "ada@example.org")
    with serve_app(settings, tmp_path / "intent-vendors") as (url, app, vendors):
        try:
            yield IntentWorld(url, app, settings, unlocked, vendors)
        finally:
            unlocked.lock()
            vault.close()
