"""The web pages in-process: login with its double-submit cookie, CSRF on forms, redirects, content."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import PASSPHRASE

pytestmark = pytest.mark.anyio


def hidden_csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token field in the page"
    return match.group(1)


async def page_login(client: httpx.AsyncClient) -> str:
    """Log in through the login form; return the session's CSRF token read from the next page."""
    page = await client.get("/login")
    r = await client.post("/login", data={"passphrase": PASSPHRASE, "csrf_token": hidden_csrf(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/"
    home = await client.get("/")
    assert home.status_code == 200
    return hidden_csrf(home.text)


async def test_pages_redirect_to_login(client: httpx.AsyncClient) -> None:
    for path in ("/", "/profile", "/vendors", "/documents"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login"
    r = await client.get("/profile/history?field=email", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["hx-redirect"] == "/login"
    r = await client.post("/vendors", data={"name": "x"})
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_login_form_needs_its_double_submit_cookie(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    assert page.status_code == 200 and 'name="passphrase"' in page.text
    field = hidden_csrf(page.text)
    assert client.cookies.get("openvrm_login_csrf") == field
    # A forged form from another site has neither the cookie's value nor, here, the right field.
    r = await client.post("/login", data={"passphrase": PASSPHRASE, "csrf_token": "forged"})
    assert r.status_code == 403 and "expired" in r.text
    assert "openvrm_session" not in client.cookies
    client.cookies.delete("openvrm_login_csrf")
    r = await client.post("/login", data={"passphrase": PASSPHRASE, "csrf_token": field})
    assert r.status_code == 403
    assert "openvrm_session" not in client.cookies


async def test_login_page_wrong_passphrase(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    r = await client.post("/login", data={"passphrase": "nope nope", "csrf_token": hidden_csrf(page.text)})
    assert r.status_code == 401
    assert "does not unlock" in r.text and 'role="alert"' in r.text
    assert "nope nope" not in r.text


async def test_dashboard_profile_vendor_and_document_pages(client: httpx.AsyncClient) -> None:
    csrf = await page_login(client)
    home = await client.get("/")
    assert 'hx-headers=\'{"X-CSRF-Token": "' in home.text
    for label in ("Dashboard", "Profile", "Vendors", "Documents"):
        assert f">{label}</a>" in home.text
    assert '<script src="/static/vendor/htmx/htmx.min.js" defer></script>' in home.text
    assert "<script>" not in home.text and "style=" not in home.text

    # The profile form through htmx: CSRF header, a fragment back with the field and its history.
    r = await client.post(
        "/profile", data={"field": "email", "value": "ada@example.org"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 403
    r = await client.post(
        "/profile",
        data={"field": "email", "value": "ada@example.org"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and "ada@example.org" in r.text and 'hx-swap-oob="true"' in r.text
    r = await client.post(
        "/profile",
        data={"field": "phone", "value": "12"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert r.status_code == 422 and 'role="alert"' in r.text
    r = await client.post(
        "/profile",
        data={
            "field": "address.home",
            "street": "1 High St",
            "city": "Bath",
            "country": "gb",
            "csrf_token": csrf,
        },
    )
    assert r.status_code == 303
    page = await client.get("/profile")
    assert "1 High St, Bath, GB" in page.text and "ada@example.org" in page.text
    hist = await client.get("/profile/history?field=email", headers={"HX-Request": "true"})
    assert "set to <strong>ada@example.org</strong>" in hist.text

    # Plain forms carry the token as a field.
    r = await client.post("/vendors", data={"name": "La Poste", "domain": "laposte.fr", "country": "fr"})
    assert r.status_code == 403
    r = await client.post(
        "/vendors", data={"name": "La Poste", "domain": "laposte.fr", "country": "fr", "csrf_token": csrf}
    )
    assert r.status_code == 303 and r.headers["location"] == "/vendors"
    assert "La Poste" in (await client.get("/vendors")).text
    r = await client.post("/vendors", data={"name": "Bad", "domain": "not a domain", "csrf_token": csrf})
    assert r.status_code == 422 and "not a domain name" in r.text

    r = await client.post(
        "/documents",
        data={"csrf_token": csrf, "title": "Lease", "kind": "contract"},
        files={"file": ("lease.txt", b"the lease", "text/plain")},
    )
    assert r.status_code == 303
    docs = await client.get("/documents")
    assert "Lease" in docs.text and "/content" in docs.text

    home = await client.get("/")
    for key, count in (("vendors", 1), ("documents", 1), ("profile_fields", 2)):
        assert f'id="count-{key}">{count}<' in home.text

    r = await client.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert (await client.get("/")).status_code == 303


async def test_static_files_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/static/vendor/htmx/htmx.min.js")
    assert r.status_code == 200 and "htmx" in r.text[:2000]
    css = await client.get("/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
