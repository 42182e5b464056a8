"""Rights and moves in a real Chromium against a real uvicorn server, with a real SMTP server on loopback:
write a GDPR request, read its preview, send it and see it arrive and become "sent" with its deadline;
move the postal address across two vendors with one left out, and see each vendor's status.
Same skip/fail rule as test_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from dateutil.relativedelta import relativedelta

from openvrm.config import Settings
from openvrm.ledger.contracts import today_local
from openvrm.profile.service import ProfileService
from openvrm.vault.core import Vault
from openvrm.vendors.service import VendorService
from tests.conftest import PASSPHRASE, fast_kdf
from tests.outbox.support import Sink, smtp_sink, use_sink
from tests.server.test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, serve
from tests.server.test_rights_api import OLD

pytestmark = pytest.mark.browser


@pytest.fixture
def mail_sink() -> Iterator[tuple[Sink, int]]:
    with smtp_sink() as found:
        yield found


@pytest.fixture
def rights_server(
    sqlite_settings: Settings, mail_sink: tuple[Sink, int]
) -> Iterator[tuple[str, dict[str, str]]]:
    """A uvicorn server on a free loopback port over a vault with a person, two vendors and mail settings."""
    with Vault.open(sqlite_settings, create=True) as vault:
        unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
        profile = ProfileService(unlocked)
        profile.set("name", "Anna Example")
        profile.set("email", "anna@example.org")
        profile.set("address", OLD)
        vendors = VendorService(unlocked)
        ids = {}
        for slug in ("7mind", "1blu"):
            v = vendors.add_from_directory(slug)
            vendors.relate(v.id)
            ids[slug] = v.id
        use_sink(unlocked, mail_sink[1])
        unlocked.lock()
    with serve(sqlite_settings) as url:
        yield url, ids


def test_rights_and_move_in_chromium(
    rights_server: tuple[str, dict[str, str]], mail_sink: tuple[Sink, int]
) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    base, ids = rights_server
    sink, _ = mail_sink
    deadline = (today_local() + relativedelta(months=1)).isoformat()
    console_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.goto(base + "/login")
            page.get_by_label("Passphrase").fill(PASSPHRASE)
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            nav = page.get_by_role("navigation", name="Main")

            # A GDPR request: the form, the preview, then the explicit send.
            nav.get_by_role("link", name="Rights").click()
            expect(page.get_by_role("heading", name="Rights", level=1)).to_be_visible()
            page.get_by_role("link", name="Write a new request").click()
            page.get_by_label("Vendor", exact=True).select_option(label="7Mind GmbH")
            page.get_by_label("What you ask for").select_option(value="access")
            page.get_by_role("button", name="Preview the letter").click()
            expect(page.get_by_role("heading", name="Preview: not sent yet")).to_be_visible()
            expect(page.locator("#request-recipient")).to_have_text("datenschutz@7mind.de")
            expect(page.get_by_label("Text")).to_have_value(re.compile(r"Article 15|Artikel 15"))
            assert sink.messages == []  # the preview sends nothing
            page.get_by_role("button", name="Send the e-mail").click()
            expect(page.locator("#request-status")).to_have_text("Sent")
            expect(page.locator("#request-deadline")).to_contain_text(deadline)
            expect(page.get_by_role("status")).to_contain_text("1 sent")
            assert [m["To"] for m in sink.messages] == ["datenschutz@7mind.de"]
            nav.get_by_role("link", name="Rights").click()
            expect(page.locator("#request-list")).to_contain_text("7Mind GmbH")
            expect(page.locator("#request-list")).to_contain_text(deadline)

            # A move of the postal address: two vendors hold it, one is left out.
            nav.get_by_role("link", name="Moves").click()
            page.get_by_label("Field", exact=True).select_option(value="address")
            page.get_by_label("Street", exact=True).fill("3 Allée des Chênes")
            page.get_by_label("Postal code").fill("69003")
            page.get_by_label("City", exact=True).fill("Lyon")
            page.get_by_label("Country", exact=True).fill("FR")
            page.get_by_role("button", name="Find the vendors to tell").click()
            expect(page.get_by_role("heading", name="Who to tell")).to_be_visible()
            plan = page.locator("#move-plan")
            expect(plan).to_contain_text("7Mind GmbH")
            expect(plan).to_contain_text("1blu AG")
            page.get_by_label("Leave 1blu AG out").check()
            page.get_by_role("button", name="Change it and tell these vendors").click()
            expect(page.locator(f"#notice-{ids['7mind']}")).to_contain_text("Sent")
            expect(page.locator(f"#notice-{ids['1blu']}")).to_contain_text("Left out")
            expect(page.locator("#move-summary")).to_contain_text("Sent: 1")
            expect(page.locator("#move-summary")).to_contain_text("Left out: 1")
            assert [m["To"] for m in sink.messages] == ["datenschutz@7mind.de"] * 2
            assert "Lyon" in sink.messages[1].get_payload(decode=True).decode()  # type: ignore[union-attr]

            # The outbox lists both messages, without their text.
            nav.get_by_role("link", name="Outbox").click()
            expect(page.locator("#outbox-list tbody tr")).to_have_count(2)
            expect(page.locator("#outbox-list")).not_to_contain_text("Yours faithfully")
        finally:
            browser.close()
    assert [e for e in console_errors if not e.startswith("Failed to load resource")] == []
