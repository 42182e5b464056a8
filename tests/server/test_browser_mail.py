"""The relationship mailbox in a real Chromium against a live server, with the SMTP gateway on loopback:
create an alias on the mailbox page, send mail to it with smtplib, see it arrive; then mail from another
company to the same alias, and see the leak flagged on the mailbox and on the relationship card. Same
skip/fail rule as test_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvrm.config import Settings
from openvrm.mail.gateway import Gateway
from openvrm.mail.keys import MailKeys
from openvrm.mail.service import MailService
from openvrm.server.smtp_gateway import GatewayServer, gateway_in_thread
from openvrm.vault.core import Vault
from openvrm.vendors.service import VendorService
from tests.conftest import PASSPHRASE, fast_kdf
from tests.mail.support import DOMAIN, REAL, message, send, zone_for
from tests.server.test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, serve

pytestmark = pytest.mark.browser


def test_mailbox_journey_in_chromium(sqlite_settings: Settings, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    settings = sqlite_settings
    with Vault.open(settings, create=True) as vault:
        unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
        shop = VendorService(unlocked).add("Shop", domains=["shop.example"])
        VendorService(unlocked).relate(shop.id)
        MailService(unlocked).setup(domains=[DOMAIN], forward_to=REAL, deliver="vault")
        unlocked.lock()
    console_errors: list[str] = []
    with (
        serve(settings) as base,
        Vault.open(settings) as gateway_vault,
        sync_playwright() as p,
    ):
        # The gateway holds only the mail key, as `vrm mail serve --mail-key` would.
        u = gateway_vault.unlock(PASSPHRASE)
        keys = MailKeys.from_vault(u)
        u.lock()
        gateway = Gateway(gateway_vault, keys, zone_for("shop.example", "other.example"), config_ttl=0)
        with gateway_in_thread(GatewayServer(gateway, port=0, poll_seconds=0.2)) as (_host, smtp_port):
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_context().new_page()
                page.on(
                    "console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None
                )
                page.on("pageerror", lambda exc: console_errors.append(str(exc)))
                page.goto(base + "/login")
                page.get_by_label("Passphrase").fill(PASSPHRASE)
                page.get_by_role("button", name="Unlock").click()
                expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

                # Create an alias for Shop on the mailbox page.
                page.get_by_role("navigation", name="Main").get_by_role("link", name="Mailbox").click()
                expect(page.get_by_role("heading", name="Mailbox", exact=True)).to_be_visible()
                expect(page.locator("#message-list")).to_contain_text("No mail yet")
                form = page.locator("#alias-form")
                form.get_by_label("Vendor").select_option(label="Shop")
                form.get_by_label("Style").select_option("vendor")
                form.get_by_role("button", name="Create alias").click()
                expect(page.locator("#mailbox-done")).to_contain_text("Alias created")
                address = page.locator("#alias-list .alias-address").first.inner_text().strip()
                assert address.startswith("shop.") and address.endswith("@" + DOMAIN)

                # The vendor writes to it: the message arrives, checked as the vendor's.
                raw = message(sender="billing@shop.example", to=address, subject="Your order 1042")
                assert send(smtp_port, "bounce@shop.example", [address], raw) == {}
                page.reload()
                expect(page.locator("#mailbox-filed")).to_contain_text("1 new message")
                rows = page.locator("#message-list tbody tr")
                expect(rows).to_have_count(1)
                expect(rows.first).to_contain_text("Your order 1042")
                expect(rows.first).to_contain_text("Vendor")

                # Another company writes to the same address: a leak.
                raw = message(sender="deals@other.example", to=address, subject="A deal just for you")
                assert send(smtp_port, "bounce@other.example", [address], raw) == {}
                page.reload()
                expect(rows).to_have_count(2)
                expect(rows.first).to_contain_text("A deal just for you")  # newest first
                expect(rows.first.locator(".leak-flag")).to_have_text("Leak: other.example")
                expect(page.locator("#message-list .leak-flag")).to_have_count(1)

                rows.first.get_by_role("link", name="A deal just for you").click()
                expect(page.locator("#leak-verdict")).to_contain_text("This address reached other.example")
                expect(page.locator("#message-auth")).to_contain_text("pass")
                expect(page.locator("#message-body")).to_contain_text("thanks for your order")

                # The relationship card shows the alias and the leak.
                page.get_by_role("link", name="Shop").first.click()
                page.get_by_role("link", name="Relationship card").click()
                expect(page.locator("#card-aliases")).to_contain_text(address)
                expect(page.locator("#card-leaks")).to_contain_text(
                    "This address reached other.example (1 message)"
                )
            finally:
                browser.close()
    assert console_errors == []
