"""The agent's pages: connections, one connection's agreement/ledger/grants, data requests, who holds my data.

In-process (httpx over ASGI, on SQLite and PostgreSQL) for what needs no vendor: sessions, CSRF, empty
lists, refused input. Against a live uvicorn server with the vendor kit's reference vendors mounted for
the protocol itself: the vendor is real, reached over loopback, and its side is checked with a VendorKit
over the same store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from openvrm.config import Settings
from openvrm.ledger.contracts import today_local
from openvrm.profile.service import ProfileService
from openvrm.protocol.terms import DPV
from openvrm.vault.core import Vault
from openvrm.vendor.config import VendorConfig
from openvrm.vendor.demo import reference_configs
from openvrm.vendor.kit import VendorKit
from tests.conftest import PASSPHRASE, fast_kdf
from tests.server.test_browser import serve
from tests.server.test_pages import hidden_csrf, page_login

EMAIL = "ada@example.org"


# -- in-process: no vendor needed ------------------------------------------------------------------


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    return await page_login(client)


@pytest.mark.anyio
async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in (
        "/connections",
        "/connections/x",
        "/connect?discovery=https://shop.example",
        "/holders",
        "/data-requests",
        "/grants/x/receipt.json",
    ):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    r = await client.post("/connections", data={"url": "https://shop.example"})
    assert r.status_code == 303 and r.headers["location"] == "/login"


@pytest.mark.anyio
async def test_lists_render_empty(client: httpx.AsyncClient, token: str) -> None:
    home = (await client.get("/")).text
    assert '<a href="/connections">Connections</a>' in home
    assert home.index('href="/vendors"') < home.index('href="/connections"') < home.index('href="/contracts"')
    page = await client.get("/connections")
    assert page.status_code == 200
    assert "<h1>Connections</h1>" in page.text and "No connections yet" in page.text
    assert 'value="service-delivery-only" checked' in page.text
    assert 'value="no-ai-training">' in page.text
    assert '<script src="/static/connect.js" defer></script>' in page.text
    assert "<script>" not in page.text and "onclick" not in page.text and "style=" not in page.text
    assert "Demo vendors" not in page.text  # none mounted in this app
    for path, text in (
        ("/holders", "Who holds my data?"),
        ("/data-requests", "No data requests are waiting"),
    ):
        r = await client.get(path)
        assert r.status_code == 200 and text in r.text, path
    js = await client.get("/static/connect.js")
    assert js.status_code == 200 and 'registerProtocolHandler("web+vrm"' in js.text


@pytest.mark.anyio
async def test_connect_form_refuses_bad_input(client: httpx.AsyncClient, token: str) -> None:
    good = {"url": "https://shop.example", "terms": "service-delivery-only"}
    r = await client.post("/connections", data=good)
    assert r.status_code == 403  # no CSRF token
    cases = [
        ({"terms": "service-delivery-only"}, "Enter the vendor"),
        ({"url": "not a url", "terms": "service-delivery-only"}, "not an absolute URL"),
        ({"url": "https://shop.example"}, "Choose at least one"),
        ({"url": "https://shop.example", "terms": "sell-everything"}, "not a term of the roster"),
        # loopback is refused by the SSRF guard (no demo vendors here, so no loopback allowance)
        ({"url": "http://127.0.0.1:9/", "terms": "service-delivery-only"}, None),
    ]
    for data, text in cases:
        r = await client.post("/connections", data=data | {"csrf_token": token})
        assert r.status_code == 422, (data, r.text)
        assert 'role="alert"' in r.text and 'aria-invalid="true"' in r.text
        if text:
            assert text in r.text, data
        if data.get("url"):
            assert f'value="{data["url"]}"' in r.text  # the form keeps what was typed
    listing = (await client.get("/connections")).text
    assert "No connections yet" in listing


@pytest.mark.anyio
async def test_landing_page_refuses_bad_links(client: httpx.AsyncClient, token: str) -> None:
    for query, text in (
        ("", "no discovery address"),
        ("?uri=" + quote("mailto:shop@example.org"), "not a web+vrm: link"),
        ("?uri=" + quote("web+vrm:pay?discovery=https://shop.example"), "only &#39;connect&#39; is known"),
        ("?discovery=" + quote("http://127.0.0.1:9/.well-known/vrm"), None),
    ):
        r = await client.get("/connect" + query)
        assert r.status_code == 422, (query, r.text)
        assert 'role="alert"' in r.text
        if text:
            assert text in r.text, query


@pytest.mark.anyio
async def test_unknown_ids_are_not_found(client: httpx.AsyncClient, token: str) -> None:
    assert (await client.get("/connections/nope")).status_code == 404
    assert (await client.get("/grants/nope/receipt.json")).status_code == 404
    r = await client.post("/grants/nope/revoke", data={"csrf_token": token})
    assert r.status_code == 404
    r = await client.post("/connections/nope/grants", data={"csrf_token": token, "fields": "email"})
    assert r.status_code == 404
    r = await client.post("/data-requests/nope", data={"csrf_token": token, "decision": "approve"})
    assert r.status_code == 409 and "not waiting for your decision" in r.text
    r = await client.post("/data-requests/nope", data={"csrf_token": token, "decision": "maybe"})
    assert r.status_code == 422 and "Approve or deny" in r.text
    r = await client.post("/data-requests/nope", data={"decision": "deny"})
    assert r.status_code == 403


# -- against a live server with the reference vendors --------------------------------------------


@pytest.fixture
def demo_server(sqlite_settings: Settings) -> Iterator[tuple[str, Settings]]:
    with Vault.open(sqlite_settings, create=True) as vault:
        unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
        ProfileService(unlocked).set("name", "Ada Lovelace")
        ProfileService(unlocked).set("email", EMAIL)
        unlocked.lock()
    with serve(sqlite_settings, demo_vendors=True) as url:
        yield url, sqlite_settings


def vendor_config(url: str, settings: Settings, slug: str) -> VendorConfig:
    for config in reference_configs(url, settings.home / "demo-vendors"):
        if config.base_url.endswith("/" + slug):
            return config
    raise AssertionError(slug)


@pytest.fixture
def person(demo_server: tuple[str, Settings]) -> Iterator[tuple[httpx.Client, str]]:
    url, _ = demo_server
    with httpx.Client(base_url=url, timeout=30) as c:
        login = c.get("/login")
        r = c.post("/login", data={"passphrase": PASSPHRASE, "csrf_token": hidden_csrf(login.text)})
        assert r.status_code == 303, r.text
        yield c, hidden_csrf(c.get("/").text)


def connection_id(location: str) -> str:
    match = re.fullmatch(r"/connections/([^/?]+)\?done=connected", location)
    assert match, location
    return match.group(1)


def test_connecting_answers_accept_alternative_and_reject(
    demo_server: tuple[str, Settings], person: tuple[httpx.Client, str]
) -> None:
    url, settings = demo_server
    c, token = person
    telco = f"{url}/demo-vendors/telco"
    listing = c.get("/connections").text
    assert "Example Telco" in listing and "Example Books" in listing  # the mounted demo vendors

    # The landing page only reads the discovery document: the vendor hears nothing.
    kit = VendorKit(vendor_config(url, settings, "telco"))
    try:
        discovery = quote(telco + "/.well-known/vrm", safe="")
        for query in (
            "discovery=" + discovery,
            "uri=" + quote("web+vrm:connect?discovery=" + discovery, safe=""),
        ):
            landing = c.get("/connect?" + query)
            assert landing.status_code == 200, landing.text
            assert "Connect to Example Telco?" in landing.text
            assert "Service delivery, plus portability" in landing.text
            assert landing.text.count("accepted by the vendor") == 2
            assert 'value="service-delivery-only" checked' in landing.text
        assert kit.relationships() == []

        r = c.post("/connections", data={"csrf_token": token, "url": telco, "terms": "service-delivery-only"})
        assert r.status_code == 303, r.text
        cid = connection_id(r.headers["location"])
        page = c.get(r.headers["location"]).text
        assert "Connected: you and the vendor signed the agreement." in page
        assert "Service delivery only" in page
        (rel,) = kit.relationships()
        assert rel.agreement_id in page and rel.term.startswith("service-delivery-only@")
        assert rel.person in page

        # A second connection to the same vendor is refused on the form.
        form = {"csrf_token": token, "url": telco, "terms": "service-delivery-only"}
        again = c.post("/connections", data=form)
        assert again.status_code == 409 and "already a connection" in again.text
        assert len(kit.relationships()) == 1
        assert f'href="/connections/{cid}"' in c.get("/connections").text
    finally:
        kit.close()

    # Example Books accepts only goods-and-services-only and offers no alternative: a rejection.
    books = f"{url}/demo-vendors/books"
    r = c.post("/connections", data={"csrf_token": token, "url": books, "terms": "service-delivery-only"})
    assert r.status_code == 200 and "The vendor refused your terms" in r.text
    assert "accepts only: goods-and-services-only" in r.text

    # Example Energy answers an intent-only proffer with an alternative; one click accepts it.
    energy = f"{url}/demo-vendors/energy"
    r = c.post("/connections", data={"csrf_token": token, "url": energy, "terms": "intent-only"})
    assert r.status_code == 200 and "The vendor proposes other terms" in r.text
    assert "Accept Service delivery only" in r.text
    offered = re.search(r'name="terms" value="([^"]+)">\s*<button type="submit">Accept', r.text)
    assert offered and offered.group(1) == "service-delivery-only"
    r = c.post("/connections", data={"csrf_token": token, "url": energy, "terms": offered.group(1)})
    assert r.status_code == 303
    listing = c.get("/connections").text
    assert listing.count('class="status-active"') == 2


def test_grants_data_requests_receipts_and_the_end(
    demo_server: tuple[str, Settings], person: tuple[httpx.Client, str]
) -> None:
    url, settings = demo_server
    c, token = person
    telco = f"{url}/demo-vendors/telco"
    r = c.post("/connections", data={"csrf_token": token, "url": telco, "terms": "service-delivery-only"})
    cid = connection_id(r.headers["location"])
    path = f"/connections/{cid}"
    kit = VendorKit(vendor_config(url, settings, "telco"))
    try:
        (rel,) = kit.relationships()
        aid = rel.agreement_id
        page = c.get(path).text
        assert 'value="email"' in page and EMAIL in page  # profile fields to grant

        # Refused grants change nothing.
        yesterday = (today_local() - timedelta(days=1)).isoformat()
        for data, text in (
            ({}, "Choose at least one profile field"),
            ({"fields": "email", "purpose": "https://evil.example/sell"}, "Choose one of the purposes"),
            ({"fields": "email", "until": "soon"}, "a date like"),
            ({"fields": "email", "until": yesterday}, "in the past"),
            ({"fields": "phone"}, "no &#39;phone&#39;"),
        ):
            bad = c.post(f"{path}/grants", data=data | {"csrf_token": token})
            assert bad.status_code == 422, (data, bad.text)
            assert text in bad.text, data
        assert c.post(f"{path}/grants", data={"fields": "email"}).status_code == 403
        assert kit.fetch_grants(aid) == []
        assert "Nothing granted." in c.get(path).text

        # Grant the e-mail: the vendor can fetch it; the consent receipt downloads; revoke ends it.
        r = c.post(
            f"{path}/grants",
            data={"csrf_token": token, "fields": "email", "purpose": DPV + "CustomerCare"},
        )
        assert r.status_code == 303 and r.headers["location"] == f"{path}?done=granted"
        (fetched,) = kit.fetch_grants(aid)
        assert fetched["fields"] == {"email": EMAIL} and fetched["purpose"] == DPV + "CustomerCare"
        page = c.get(path).text
        grant_id = fetched["grant_id"]
        assert f'href="/grants/{grant_id}/receipt.json"' in page
        receipt = c.get(f"/grants/{grant_id}/receipt.json")
        assert receipt.status_code == 200
        assert receipt.headers["content-disposition"].startswith("attachment;")
        assert receipt.json()["version"] == "KI-CR-v1.1.0" and receipt.json()["revoked"] is False
        holders = c.get("/holders").text
        assert "Example Telco" in holders and f'href="{path}"' in holders
        r = c.post(f"/grants/{grant_id}/revoke", data={"csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == f"{path}?done=revoked"
        assert kit.fetch_grants(aid) == []
        assert c.get(f"/grants/{grant_id}/receipt.json").json()["revoked"] is True
        assert "Example Telco" not in c.get("/holders").text

        # A data request (filed at once: the person is logged in), refused input, then approval until a date.
        kit.request_data(aid, ["email"], DPV + "ServiceProvision", "to send your invoices")
        listing = c.get("/data-requests").text
        assert "to send your invoices" in listing and "Example Telco" in listing
        entry = re.search(r'action="/data-requests/([^"]+)"', listing)
        assert entry
        assert "1 waiting" in c.get("/connections").text
        bad = c.post(
            f"/data-requests/{entry.group(1)}",
            data={"csrf_token": token, "decision": "approve", "until": "next week", "back": "list"},
        )
        assert bad.status_code == 422 and "a date like" in bad.text
        assert kit.fetch_grants(aid) == []
        until = (today_local() + timedelta(days=30)).isoformat()
        r = c.post(
            f"/data-requests/{entry.group(1)}",
            data={"csrf_token": token, "decision": "approve", "until": until},
        )
        assert r.status_code == 303 and r.headers["location"] == f"{path}?done=approved"
        (fetched,) = kit.fetch_grants(aid)
        assert fetched["fields"] == {"email": EMAIL} and str(fetched["until"]).startswith(until)
        (request,) = kit.data_requests(aid)
        assert request.state == "approved"
        assert "No data requests are waiting" in c.get("/data-requests").text

        # A receipt pushed by the vendor shows on the connection page with its total and lines.
        kit.push_receipt(
            aid,
            "R-2031-001",
            "2031-01-31",
            "42.50",
            "EUR",
            lines=[{"description": "Mobile plan, January", "amount": "42.50"}],
        )
        kit.push_notice(aid, "price-change", "Your plan costs 45.00 EUR from March.", "2031-03-01")
        page = c.get(path).text
        assert "R-2031-001" in page and "42.50 EUR" in page and "Mobile plan, January" in page
        assert "Your plan costs 45.00 EUR from March." in page

        # Verify, GDPR request, block and unblock.
        verified = c.get(f"{path}?verify=1").text
        assert "check out" in verified
        bad = c.post(f"{path}/gdpr", data={"csrf_token": token, "right": "revenge"})
        assert bad.status_code == 422 and "Choose one of the rights" in bad.text
        r = c.post(f"{path}/gdpr", data={"csrf_token": token, "right": "access"})
        assert r.status_code == 303
        assert "GDPR Art. 15" in c.get(path).text
        assert any(e.subtype == "gdpr-request" for e in kit.events(aid))
        assert c.post(f"{path}/block", data={"csrf_token": token, "blocked": "maybe"}).status_code == 422
        r = c.post(f"{path}/block", data={"csrf_token": token, "blocked": "1"})
        assert r.status_code == 303 and "Unblock Example Telco" in c.get(path).text
        r = c.post(f"{path}/block", data={"csrf_token": token, "blocked": "0"})
        assert r.status_code == 303 and "Block Example Telco" in c.get(path).text

        # Ending asks first; only the confirmation sends.
        ask = c.post(f"{path}/end", data={"csrf_token": token, "reason": "moving abroad"})
        assert ask.status_code == 200 and "End the relationship with Example Telco?" in ask.text
        assert kit.relationships()[0].status == "active"
        r = c.post(f"{path}/end", data={"csrf_token": token, "reason": "moving abroad", "confirm": "yes"})
        assert r.status_code == 303 and r.headers["location"] == f"{path}?done=ended"
        page = c.get(path).text
        assert "This relationship has ended." in page and 'id="connection-status">Ended' in page
        assert kit.relationships()[0].status == "ended"
        assert c.get(f"{path}?verify=1").status_code == 200
    finally:
        kit.close()


def test_demo_store_dir_matches_the_app(demo_server: tuple[str, Settings]) -> None:
    url, settings = demo_server
    config = vendor_config(url, settings, "telco")
    assert Path(config.store_dir).parent == settings.home / "demo-vendors"
    discovery = httpx.get(f"{url}/demo-vendors/telco/.well-known/vrm", timeout=10).json()
    kit = VendorKit(config)
    try:
        assert discovery["vendor"] == kit.did  # same key as the mounted vendor
    finally:
        kit.close()
