"""Intentcasting in a real Chromium against a live server with the relay and vendors mounted: write an
intent, publish it, watch two offers arrive, compare them ranked, accept one, and find the connection
made under the intent's terms. Same skip/fail rule as test_browser.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from openvrm.agent.service import AgentService
from openvrm.config import Settings
from openvrm.intents.service import IntentService
from openvrm.profile.service import ProfileService
from openvrm.vault.core import Vault
from tests.conftest import PASSPHRASE, fast_kdf
from tests.intents.conftest import VENDOR_PREFIX, send_offer, serve_app, subscribe
from tests.server.test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.browser


def test_intent_journey_in_chromium(sqlite_settings: Settings, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    settings = replace(sqlite_settings, allow_loopback_peers=True)
    with Vault.open(settings, create=True) as vault:
        unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
        ProfileService(unlocked).set("name", "Ada Lovelace")
        ProfileService(unlocked).set("email", "ada@example.org")
        unlocked.lock()
    console_errors: list[str] = []
    with serve_app(settings, tmp_path / "vendors") as (base, _app, vendors), sync_playwright() as p:
        relay = f"{base}/relay"
        keys = {slug: vendors[slug].state.kit.key for slug in vendors}
        discovery = {slug: f"{base}{VENDOR_PREFIX}/{slug}/.well-known/vrm" for slug in vendors}
        for slug in vendors:
            subscribe(relay, keys[slug], slug, ["telecom"], discovery[slug])
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))
            page.goto(base + "/login")
            page.get_by_label("Passphrase").fill(PASSPHRASE)
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

            # Write an intent.
            page.get_by_role("link", name="Intents").click()
            expect(page.get_by_role("heading", name="Intents", exact=True)).to_be_visible()
            form = page.locator("#intent-form")
            form.get_by_label("What are you looking for?").select_option("telecom.mobile")
            form.get_by_label("In your words").fill("A mobile plan with 50 GB, no lock-in")
            form.get_by_label("At most").fill("15")
            form.get_by_label("Feature 1").fill("data_gb")
            form.get_by_label("Value").first.fill("50")
            form.get_by_label("Required").first.check()
            form.get_by_label("Longest contract, in months").fill("0")
            form.get_by_label("Country").fill("FR")
            form.get_by_role("button", name="Save draft").click()
            expect(page.locator("#intent-done")).to_contain_text("Draft saved")
            expect(page.locator("#intent-state")).to_have_text("Draft")

            # Publish it.
            page.get_by_role("button", name="Publish").click()
            expect(page.locator("#intent-done")).to_contain_text("Published")
            expect(page.locator("#intent-state")).to_have_text("Published")
            intent_id = page.url.split("/intents/")[1].split("?")[0]

            # Two vendors answer through the relay.
            with Vault.open(settings) as vault:
                u = vault.unlock(PASSPHRASE)
                published = IntentService(u, relay_url=relay).get(intent_id).published
                u.lock()
            assert published is not None
            good = send_offer(
                relay,
                keys["fibre"],
                published,
                name="Fibre & Co",
                discovery=discovery["fibre"],
                amount="12.99",
                features=[{"name": "data_gb", "value": "60"}],
            )
            send_offer(
                relay,
                keys["mobile"],
                published,
                name="Mobile Max",
                discovery=discovery["mobile"],
                amount="9.99",
                features=[{"name": "data_gb", "value": "20"}],
                contract_months=12,
            )

            # Watch them arrive, compare.
            page.get_by_role("button", name="Fetch offers").click()
            rows = page.locator("#offer-list tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text("Fibre & Co")
            expect(rows.nth(1)).to_contain_text("Mobile Max")
            expect(rows.nth(1)).to_contain_text("missing required feature data_gb")
            expect(rows.nth(1)).to_contain_text("contract longer than you allow")
            expect(rows.nth(0).locator(".breakdown")).to_contain_text("Price")

            # Accept the best one, granting only the e-mail.
            accept = page.locator("#accept-form")
            accept.get_by_label("Fibre & Co: 12.99 EUR").check()
            accept.get_by_label("email").check()
            accept.get_by_role("button", name="Accept and connect").click()
            expect(page.locator("#intent-done")).to_contain_text("Accepted")
            expect(page.locator("#intent-state")).to_have_text("Accepted")

            # The connection is there, under the intent's terms.
            page.locator("#intent-connection").click()
            expect(page.get_by_role("heading", name="Fibre & Co")).to_be_visible()
            expect(page.locator("#agreement-term")).to_contain_text("Intent only")
        finally:
            browser.close()
    assert console_errors == []
    with Vault.open(settings) as vault:
        u = vault.unlock(PASSPHRASE)
        conns = AgentService(u).connections()
        assert len(conns) == 1 and (conns[0].term or {}).get("id") == "intent-only"
        assert [g.fields for g in AgentService(u).grants(conns[0].id)] == [["email"]]
        offers = {o.offer_id: o.state for o in IntentService(u, relay_url=relay).offers(intent_id)}
        assert offers[good["offer_id"]] == "accepted" and sorted(offers.values()) == ["accepted", "declined"]
        u.lock()
