"""A real Chromium against a real uvicorn server: log in, dashboard, profile via htmx, documents, log out."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from openvrm.config import Settings
from openvrm.conformance.live import serve_factory_in_thread
from openvrm.documents.service import DocumentService
from openvrm.profile.service import ProfileService
from openvrm.server.app import create_app
from openvrm.summary import vault_summary
from openvrm.vault.core import Vault
from openvrm.vendors.service import VendorService
from tests.conftest import PASSPHRASE, fast_kdf

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing; install Chromium to run the browser tests"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def live_server(sqlite_settings: Settings) -> Iterator[str]:
    """A uvicorn server on a free loopback port, in a background thread, over a seeded SQLite vault."""
    with Vault.open(sqlite_settings, create=True) as vault:
        unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
        VendorService(unlocked).add("Seed Telecom", domains=["seed-telecom.example"])
        ProfileService(unlocked).set("name", "Grace Hopper")
        unlocked.lock()
    with serve(sqlite_settings) as url:
        yield url


@contextlib.contextmanager
def serve(settings: Settings, *, demo_vendors: bool = False) -> Iterator[str]:
    """Run the real app under uvicorn on a free loopback port in a background thread; yield its URL.

    With ``demo_vendors``, the vendor kit's reference vendors are mounted under ``/demo-vendors/``.
    """

    def app_for(url: str) -> FastAPI:
        return create_app(settings, demo_vendors_url=url if demo_vendors else None)

    with serve_factory_in_thread(app_for) as url:
        yield url


def test_owner_journey_in_chromium(live_server: str, sqlite_settings: Settings, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with Vault.open(sqlite_settings) as vault:
        unlocked = vault.unlock(PASSPHRASE)
        expected = vault_summary(unlocked)
        unlocked.lock()

    upload = tmp_path / "warranty.txt"
    upload.write_bytes(b"two years on the kettle\n")
    console_errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

            page.goto(live_server + "/")
            expect(page).to_have_url(live_server + "/login")
            page.get_by_label("Passphrase").fill("not it at all")
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_role("alert")).to_contain_text("does not unlock")
            page.get_by_label("Passphrase").fill(PASSPHRASE)
            page.get_by_role("button", name="Unlock").click()

            expect(page).to_have_url(live_server + "/")
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            for key, count in expected.items():
                expect(page.locator(f"#count-{key}")).to_have_text(str(count))

            page.get_by_role("navigation", name="Main").get_by_role("link", name="Profile").click()
            expect(page).to_have_url(live_server + "/profile")
            expect(page.locator("#profile-fields")).to_contain_text("Grace Hopper")
            page.get_by_label("Field").fill("email")
            page.get_by_label("Value", exact=True).fill("grace@example.org")
            page.get_by_role("button", name="Save").click()
            expect(page.locator("#profile-fields")).to_contain_text("grace@example.org")
            expect(page.get_by_role("status")).to_contain_text("Saved email")
            expect(page.locator("#history")).to_contain_text("set to grace@example.org")
            expect(page).to_have_url(live_server + "/profile")  # updated in place by htmx

            page.get_by_role("navigation", name="Main").get_by_role("link", name="Documents").click()
            page.get_by_label("File").set_input_files(str(upload))
            page.get_by_label("Title").fill("Kettle warranty")
            page.get_by_label("Kind").select_option("warranty")
            page.get_by_role("button", name="Upload").click()
            expect(page).to_have_url(live_server + "/documents")
            row = page.locator("#document-list tbody tr", has_text="Kettle warranty")
            expect(row).to_contain_text("warranty")
            with page.expect_download() as info:
                row.get_by_role("link", name="Download").click()
            saved = tmp_path / "downloaded.txt"
            info.value.save_as(saved)
            assert saved.read_bytes() == upload.read_bytes()
            assert info.value.suggested_filename == "warranty.txt"

            page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
            expect(page.locator("#count-documents")).to_have_text(str(expected["documents"] + 1))
            expect(page.locator("#count-profile_fields")).to_have_text(str(expected["profile_fields"] + 1))

            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(live_server + "/login")
            page.goto(live_server + "/profile")
            expect(page).to_have_url(live_server + "/login")
        finally:
            browser.close()
    # The wrong passphrase above is a 401 page load, which Chromium reports; anything else (a CSP
    # violation by htmx, a script error) is a bug.
    assert [e for e in console_errors if not e.startswith("Failed to load resource")] == []


def test_every_page_fits_a_phone_screen(live_server: str, sqlite_settings: Settings) -> None:
    """At 390 CSS pixels no page scrolls sideways: wide tables scroll inside their card (with what is
    visually hidden in them, which once widened the whole page)."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with Vault.open(sqlite_settings) as vault:
        unlocked = vault.unlock(PASSPHRASE)
        DocumentService(unlocked).add(
            b"a long bill", filename="a-rather-long-file-name-for-a-bill-2026-11.pdf", title="Invoice 2026-11"
        )
        unlocked.lock()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(live_server + "/login")
            page.get_by_label("Passphrase").fill(PASSPHRASE)
            page.get_by_role("button", name="Unlock").click()
            expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            nav = page.get_by_role("navigation", name="Main").get_by_role("link")
            paths = [str(nav.nth(i).get_attribute("href")) for i in range(nav.count())]
            assert "/documents" in paths and "/profile" in paths
            wide = {}
            for path in paths:
                page.goto(live_server + path)
                page.wait_for_load_state("networkidle")
                width = page.evaluate("document.documentElement.scrollWidth")
                if width > 390:
                    wide[path] = width
            assert wide == {}
        finally:
            browser.close()
