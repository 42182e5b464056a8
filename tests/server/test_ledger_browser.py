"""The ledger in a real Chromium against a real uvicorn server: find a company in the directory and add
it, add a contract and see its cancellation deadline, mark a payment paid, import a Factur-X invoice and
find it, and read the upcoming list. Same skip/fail rule as test_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta

from openvrm.ledger.contracts import today_local
from tests.conftest import PASSPHRASE
from tests.server.test_browser import CHROMIUM, CHROMIUM_ARGS, live_server, require_chromium
from tests.server.test_ledger_api import FACTURX

pytestmark = pytest.mark.browser
__all__ = ["live_server"]  # the fixture, shared with test_browser.py


def test_ledger_journey_in_chromium(live_server: str) -> None:  # noqa: F811 - the imported fixture
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    today = today_local()
    start = today - relativedelta(months=11) + relativedelta(days=20)
    term_end = start + relativedelta(months=12) - relativedelta(days=1)
    deadline = (term_end - relativedelta(days=7)).isoformat()
    console_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.goto(live_server + "/login")
            page.get_by_label("Passphrase").fill(PASSPHRASE)
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            nav = page.get_by_role("navigation", name="Main")

            # The directory: live results as you type (htmx), then add one.
            nav.get_by_role("link", name="Vendors").click()
            page.get_by_label("Company, brand or web address").fill("deutsche bahn")
            results = page.locator("#directory-results")
            expect(results).to_contain_text("Deutsche Bahn AG")
            expect(page).to_have_url(live_server + "/vendors")  # updated in place
            results.get_by_role("button", name="Add Deutsche Bahn AG").click()
            expect(page.get_by_role("heading", name="Deutsche Bahn AG", level=1)).to_be_visible()
            page.get_by_role("button", name="Start a relationship").click()
            page.get_by_label("Tags").fill("travel")
            page.get_by_role("button", name="Save relationship").click()
            expect(page.get_by_role("status")).to_contain_text("Relationship saved")

            # A contract with a twelve-month minimum term and a week's notice.
            nav.get_by_role("link", name="Contracts").click()
            page.get_by_label("Vendor").select_option(label="Deutsche Bahn AG")
            page.get_by_label("Plan").fill("BahnCard 50")
            page.get_by_label("Price per billing period").fill("24,90")
            page.get_by_label("Start date").fill(start.isoformat())
            page.get_by_label("Minimum term").fill("12")
            page.get_by_label("Length").fill("7")
            page.get_by_role("button", name="Add contract").click()
            expect(page.get_by_role("heading", name="BahnCard 50")).to_be_visible()
            expect(page.locator("#cancellation-deadline")).to_have_text(deadline)

            # Mark the first payment paid, in place.
            row = page.locator(f"#due-{start.isoformat()}")
            expect(row).to_contain_text("Overdue")
            page.get_by_role("button", name=f"Mark paid (due {start.isoformat()})").click()
            expect(page.locator(f"#due-{start.isoformat()}")).to_contain_text("Paid")
            expect(page.get_by_role("status")).to_contain_text(f"Payment due on {start.isoformat()} recorded")

            # Import a real Factur-X invoice and find it by search.
            nav.get_by_role("link", name="Documents").click()
            if FACTURX.exists():
                page.get_by_label("Bills and documents to import").set_input_files(str(FACTURX))
                page.get_by_role("button", name="Import", exact=True).click()
                outcomes = page.locator("#import-outcomes")
                expect(outcomes).to_contain_text("Imported")
                expect(outcomes).to_contain_text("Au bon moulin")
                page.get_by_label("Words, invoice number, seller").fill("FA-2017-0010")
                hits = page.locator("#document-hits")
                expect(hits).to_contain_text("Invoice FA-2017-0010")
                hits.get_by_role("link", name=re.compile("Invoice FA-2017-0010")).click()
                expect(page.locator("#document-fields")).to_contain_text("671.15 EUR")
            else:
                print(f"skipped the import step: {FACTURX} is missing")  # noqa: T201

            # The reminders.
            nav.get_by_role("link", name="Upcoming").click()
            expect(page.get_by_role("heading", name="Upcoming", level=1)).to_be_visible()
            expect(page.locator("#event-list")).to_contain_text(
                "Last day to cancel Deutsche Bahn AG: BahnCard 50"
            )
            page.get_by_role("button", name="Create a feed address").click()
            expect(page.get_by_label("Feed address")).to_have_value(
                re.compile(r"/feeds/calendar\.ics\?token=vrm_")
            )
        finally:
            browser.close()
    assert [e for e in console_errors if not e.startswith("Failed to load resource")] == []


def test_facturx_sample_is_where_the_journey_expects_it() -> None:
    if not Path(FACTURX).exists():
        pytest.skip(f"{FACTURX} is missing; the browser journey skips its import step")
    assert FACTURX.read_bytes().startswith(b"%PDF")
