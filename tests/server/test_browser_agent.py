"""The agent's pages in a real Chromium against a real uvicorn server with the reference vendors mounted:
connect to Example Telco from the Connections page, grant the e-mail and revoke it (checked from the
vendor's side), receipts pushed while logged in and while logged out, and a data request approved until
a date. Same skip/fail rule as test_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from openvrm.config import Settings
from openvrm.ledger.contracts import today_local
from openvrm.profile.service import ProfileService
from openvrm.protocol.terms import DPV
from openvrm.vault.core import Vault
from openvrm.vendor.kit import VendorKit
from tests.conftest import PASSPHRASE, fast_kdf
from tests.server.test_agent_pages import EMAIL, vendor_config
from tests.server.test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, serve

pytestmark = pytest.mark.browser


@pytest.fixture
def agent_server(sqlite_settings: Settings) -> Iterator[str]:
    with Vault.open(sqlite_settings, create=True) as vault:
        unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
        ProfileService(unlocked).set("name", "Ada Lovelace")
        ProfileService(unlocked).set("email", EMAIL)
        unlocked.lock()
    with serve(sqlite_settings, demo_vendors=True) as url:
        yield url


def test_agent_journeys_in_chromium(agent_server: str, sqlite_settings: Settings) -> None:
    require_chromium()
    from playwright.sync_api import Page, expect, sync_playwright

    base = agent_server
    telco = f"{base}/demo-vendors/telco"
    until = (today_local() + timedelta(days=60)).isoformat()
    console_errors: list[str] = []
    kit = VendorKit(vendor_config(base, sqlite_settings, "telco"))

    def log_in(page: Page) -> None:
        page.goto(base + "/login")
        page.get_by_label("Passphrase").fill(PASSPHRASE)
        page.get_by_role("button", name="Unlock").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))
            log_in(page)
            nav = page.get_by_role("navigation", name="Main")

            # (a) Connect to Example Telco from the Connections page and see the agreement.
            nav.get_by_role("link", name="Connections").click()
            expect(page.get_by_role("heading", name="Connections", level=1)).to_be_visible()
            expect(page.locator("#demo-vendors")).to_contain_text("Example Telco")
            expect(page.get_by_role("button", name="Open web+vrm links with openvrm")).to_be_visible()
            page.get_by_label("Vendor address").fill(telco)
            expect(page.get_by_label("Service delivery only", exact=True)).to_be_checked()
            page.get_by_role("button", name="Connect", exact=True).click()
            expect(page).to_have_url(re.compile(r"/connections/[^/?]+\?done=connected$"))
            expect(page.get_by_role("heading", name="Example Telco", level=1)).to_be_visible()
            expect(page.locator("#agreement-term")).to_contain_text("Service delivery only")
            (rel,) = kit.relationships()
            aid = rel.agreement_id
            expect(page.locator("#agreement-id")).to_have_text(aid)
            connection_url = page.url.split("?", 1)[0]

            # (b) Grant the e-mail: the vendor fetches it; revoke it: the vendor's next fetch has nothing.
            grant_form = page.locator("#grant-form")
            grant_form.get_by_role("checkbox", name=re.compile(r"^email\b")).check()
            grant_form.get_by_label("Purpose").select_option(value=DPV + "CustomerCare")
            grant_form.get_by_role("button", name="Grant").click()
            expect(page.get_by_role("status")).to_contain_text("Granted")
            expect(page.locator("#grants")).to_contain_text("email")
            (fetched,) = kit.fetch_grants(aid)
            assert fetched["fields"] == {"email": EMAIL}
            page.get_by_role("button", name="Revoke email").click()
            expect(page.get_by_role("status")).to_contain_text("Revoked")
            expect(page.locator("#grants")).to_contain_text("revoked")
            assert kit.fetch_grants(aid) == []

            # (c) A receipt pushed while the person is logged in is filed at once.
            kit.push_receipt(
                aid,
                "R-1",
                today_local(),
                "42.50",
                "EUR",
                lines=[{"description": "Mobile plan", "amount": "42.50"}],
            )
            page.reload()
            expect(page.locator("#ledger")).to_contain_text("42.50 EUR")
            expect(page.locator("#ledger")).to_contain_text("Mobile plan")

            # ... and one pushed while logged out is filed after the next login.
            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(base + "/login")
            queued = kit.push_receipt(aid, "R-2", today_local(), "17.25", "EUR")
            assert queued.state == "delivered"
            log_in(page)
            page.goto(connection_url)
            for _ in range(50):
                if "17.25 EUR" in page.locator("#ledger").inner_text():
                    break
                page.wait_for_timeout(200)
                page.reload()
            expect(page.locator("#ledger")).to_contain_text("17.25 EUR")

            # (d) A data request appears; the person approves it until a date; the vendor can fetch.
            kit.request_data(aid, ["email"], DPV + "ServiceProvision", "to send your invoices")
            page.reload()
            requests = page.locator("#data-requests")
            expect(requests).to_contain_text("to send your invoices")
            requests.get_by_label("Until").fill(until)
            requests.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("status")).to_contain_text("Approved")
            expect(page.locator("#data-requests")).to_have_count(0)
            (fetched,) = kit.fetch_grants(aid)
            assert fetched["fields"] == {"email": EMAIL}
            assert str(fetched["until"]).startswith(until)

            page.get_by_role("button", name="Verify ledger").click()
            expect(page.locator("#verify-report")).to_contain_text("check out")
        finally:
            browser.close()
            kit.close()
    assert console_errors == []
