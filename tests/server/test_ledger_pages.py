"""The ledger's pages in-process, on SQLite and PostgreSQL: forms without JavaScript, htmx fragments,
errors shown on the page, and CSRF on every change."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
from dateutil.relativedelta import relativedelta

from openvrm.ledger.contracts import today_local
from tests.server.test_ledger_api import require_facturx
from tests.server.test_pages import page_login

pytestmark = pytest.mark.anyio
HX = {"HX-Request": "true"}


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    """Log in through the form; the session's CSRF token (for the hidden field)."""
    return await page_login(client)


async def new_vendor(client: httpx.AsyncClient, token: str, name: str = "Fibre Co") -> str:
    r = await client.post("/api/v1/vendors", json={"name": name}, headers={"X-CSRF-Token": token})
    assert r.status_code == 201
    return str(r.json()["id"])


async def new_contract(client: httpx.AsyncClient, token: str, vendor_id: str, start: date) -> str:
    r = await client.post(
        "/contracts",
        data={
            "csrf_token": token,
            "vendor_id": vendor_id,
            "plan": "Fibre 1G",
            "price": "29.99",
            "currency": "EUR",
            "billing_cycle": "monthly",
            "start": start.isoformat(),
            "minimum_term_months": "12",
            "notice_value": "1",
            "notice_unit": "months",
            "auto_renewal": "on",
        },
    )
    assert r.status_code == 303, r.text
    match = re.fullmatch(r"/contracts/([0-9a-f]+)", r.headers["location"])
    assert match
    return match.group(1)


async def test_ledger_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/contracts", "/upcoming", "/spending", "/vendors/x", "/documents/x", "/documents/search"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    r = await client.post("/documents/import", files=[("file", ("a.txt", b"x", "text/plain"))])
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_navigation_lists_the_ledger(client: httpx.AsyncClient, token: str) -> None:
    html = (await client.get("/")).text
    for label, path in (("Contracts", "/contracts"), ("Upcoming", "/upcoming"), ("Spending", "/spending")):
        assert f'<a href="{path}">{label}</a>' in html
    assert 'href="/spending"' in html and 'href="/upcoming"' in html


async def test_directory_search_and_add(client: httpx.AsyncClient, token: str) -> None:
    page = await client.get("/vendors", params={"q": "deutsche bahn"})  # without JavaScript
    assert page.status_code == 200 and "Deutsche Bahn" in page.text
    fragment = await client.get("/vendors/directory", params={"q": "deutsche bahn"}, headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    slug = re.search(r'name="slug" value="([^"]+)"', fragment.text)
    assert slug
    r = await client.get("/vendors/directory", params={"q": "x"})
    assert r.status_code == 303 and r.headers["location"] == "/vendors?q=x"
    r = await client.post("/vendors/from-directory", data={"slug": slug.group(1)})
    assert r.status_code == 403
    r = await client.post("/vendors/from-directory", data={"slug": slug.group(1), "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/vendors/")
    vendor_page = await client.get(r.headers["location"])
    assert vendor_page.status_code == 200 and "Deutsche Bahn" in vendor_page.text
    assert "Start a relationship" in vendor_page.text
    # Once added, the directory links to it instead of offering it again.
    fragment = await client.get("/vendors/directory", params={"q": "deutsche bahn"}, headers=HX)
    assert f'href="{r.headers["location"]}"' in fragment.text
    r = await client.post("/vendors/from-directory", data={"slug": "nope-nope", "csrf_token": token})
    assert r.status_code == 404 and 'role="alert"' in r.text


async def test_vendor_page_relationship_filter_merge_and_card(client: httpx.AsyncClient, token: str) -> None:
    vendor = await new_vendor(client, token, "Acme")
    dup = await new_vendor(client, token, "ACME duplicate")
    r = await client.post(f"/vendors/{vendor}/relationships", data={"csrf_token": token})
    assert r.status_code == 303
    html = (await client.get(f"/vendors/{vendor}")).text
    rel = re.search(r'action="/relationships/([0-9a-f]+)"', html)
    assert rel
    form = {
        "csrf_token": token,
        "status": "active",
        "stance": "trusted",
        "tags": "Internet, home",
        "folder": "home/utilities",
        "customer_number": "C-9",
        "account": "",
        "since": "2020-02-02",
        "notes": "fine so far",
    }
    r = await client.post(f"/relationships/{rel.group(1)}", data=form)
    assert r.status_code == 303
    html = (await client.get(r.headers["location"].split("#")[0])).text
    assert "Relationship saved" in html and 'value="internet, home"' in html and "C-9" in html
    r = await client.post(f"/relationships/{rel.group(1)}", data=form | {"since": "2020-02-31"})
    assert r.status_code == 422 and "YYYY-MM-DD" in r.text
    r = await client.post("/relationships/nope", data=form)
    assert r.status_code == 404

    listing = await client.get("/vendors", params={"tag": "internet"})
    assert f'href="/vendors/{vendor}"' in listing.text and f'href="/vendors/{dup}"' not in listing.text
    listing = await client.get("/vendors", params={"folder": "home"})
    assert f'href="/vendors/{vendor}"' in listing.text and f'href="/vendors/{dup}"' not in listing.text
    listing = await client.get("/vendors", params={"tag": "nothing"})
    assert "No vendor has a relationship" in listing.text

    card = await client.get(f"/relationships/{rel.group(1)}/card")
    assert card.status_code == 200 and "Relationship card: Acme" in card.text
    assert f"/api/v1/relationships/{rel.group(1)}/card?download=true" in card.text
    assert (await client.get("/relationships/nope/card")).status_code == 404

    r = await client.post(f"/vendors/{vendor}/merge", data={"csrf_token": token, "other_id": dup})
    assert r.status_code == 303
    assert "Vendors merged" in (await client.get(r.headers["location"])).text
    assert (await client.get(f"/vendors/{dup}")).status_code == 404
    r = await client.post(f"/vendors/{vendor}/merge", data={"csrf_token": token, "other_id": vendor})
    assert r.status_code == 422 and "merged with itself" in r.text


async def test_contract_pages(client: httpx.AsyncClient, token: str) -> None:
    vendor = await new_vendor(client, token)
    today = today_local()
    start = today - relativedelta(months=2)
    cid = await new_contract(client, token, vendor, start)
    term_end = start + relativedelta(months=12) - relativedelta(days=1)
    deadline = (term_end - relativedelta(months=1)).isoformat()

    listing = (await client.get("/contracts")).text
    assert f'href="/contracts/{cid}"' in listing and deadline in listing and "29.99 EUR" in listing
    page = (await client.get(f"/contracts/{cid}")).text
    assert f'<time datetime="{deadline}">' in page
    assert f'id="due-{start.isoformat()}"' in page and 'class="status-overdue"' in page

    r = await client.post(
        f"/contracts/{cid}/payments", data={"csrf_token": token, "due_date": start.isoformat()}
    )
    assert r.status_code == 303
    page = (await client.get(f"/contracts/{cid}")).text
    row = re.search(rf'<tr class="status-(\w+)" id="due-{start.isoformat()}"', page)
    assert row and row.group(1) == "paid"
    second = (start + relativedelta(months=1)).isoformat()
    r = await client.post(
        f"/contracts/{cid}/payments", data={"csrf_token": token, "due_date": second}, headers=HX
    )
    assert r.status_code == 200 and "<html" not in r.text and f"Payment due on {second} recorded" in r.text
    r = await client.post(
        f"/contracts/{cid}/payments", data={"csrf_token": token, "due_date": second}, headers=HX
    )
    assert r.status_code == 422 and "already recorded" in r.text

    r = await client.post(
        f"/contracts/{cid}/price",
        data={"csrf_token": token, "price": "31.50", "effective": today.isoformat()},
    )
    assert r.status_code == 303
    assert "31.50 EUR" in (await client.get(f"/contracts/{cid}")).text
    r = await client.post(
        f"/contracts/{cid}/price", data={"csrf_token": token, "price": "lots", "effective": ""}
    )
    assert r.status_code == 422 and 'role="alert"' in r.text
    r = await client.post(f"/contracts/{cid}/cancel", data={"csrf_token": token})
    assert r.status_code == 303
    assert "Cancelled" in (await client.get(f"/contracts/{cid}")).text
    r = await client.post(f"/contracts/{cid}/cancel", data={"csrf_token": token})
    assert r.status_code == 409 and "already cancelled" in r.text
    assert (await client.get("/contracts/nope")).status_code == 404


async def test_contract_form_errors(client: httpx.AsyncClient, token: str) -> None:
    vendor = await new_vendor(client, token)
    base = {
        "csrf_token": token,
        "vendor_id": vendor,
        "plan": "Mobile",
        "price": "9.99",
        "start": "2024-01-01",
    }
    for bad, message in (
        ({"price": "nine"}, "not a number"),
        ({"start": "2024-02-30"}, "YYYY-MM-DD"),
        ({"notice_value": "-2"}, "whole number"),
        ({"currency": "EURO"}, "ISO 4217"),
    ):
        r = await client.post("/contracts", data=base | bad)
        assert r.status_code == 422, bad
        assert message in r.text and 'role="alert"' in r.text
        assert 'value="Mobile"' in r.text  # what was typed is kept
    r = await client.post("/contracts", data=base | {"vendor_id": "nope"})
    assert r.status_code == 404
    r = await client.post("/contracts", data=base | {"csrf_token": "forged"})
    assert r.status_code == 403


async def test_import_search_and_document_pages(client: httpx.AsyncClient, token: str) -> None:
    pdf = require_facturx()
    files = [
        ("file", ("Facture_FR_BASICWL.pdf", pdf, "application/pdf")),
        ("file", ("broken.pdf", b"%PDF-1.4 broken", "application/pdf")),
    ]
    r = await client.post("/documents/import", files=files, data={"csrf_token": token})
    assert r.status_code == 200 and "<h1>Import</h1>" in r.text
    assert "badge-imported" in r.text and "badge-unparsed" in r.text and "could not be read" in r.text
    doc = re.search(r'href="/documents/([0-9a-f]+)">Open<span class="visually-hidden"> Facture_FR', r.text)
    assert doc
    r = await client.post("/documents/import", files=files[:1], data={"csrf_token": token}, headers=HX)
    assert r.status_code == 200 and "<html" not in r.text and "badge-duplicate" in r.text
    r = await client.post("/documents/import", files=files[:1])
    assert r.status_code == 403

    r = await client.get("/documents/search", params={"q": "moulin"}, headers=HX)
    assert r.status_code == 200 and "<html" not in r.text and f'href="/documents/{doc.group(1)}"' in r.text
    r = await client.get("/documents/search", params={"q": "moulin", "kind": "invoice"})
    assert "<h1>Search documents</h1>" in r.text and f'href="/documents/{doc.group(1)}"' in r.text
    r = await client.get("/documents/search", params={"q": "zzzz"}, headers=HX)
    assert "No document matches" in r.text

    page = (await client.get(f"/documents/{doc.group(1)}")).text
    assert "Au bon moulin" in page and "FA-2017-0010" in page and "671.15 EUR" in page
    assert "Warranty until" in page
    documents = (await client.get("/documents")).text
    assert (
        f'href="/documents/{doc.group(1)}"' in documents and 'name="file" type="file" multiple' in documents
    )

    form = {"csrf_token": token, "title": "Nougat order", "kind": "receipt", "warranty_until": "2030-06-30"}
    r = await client.post(f"/documents/{doc.group(1)}", data=form)
    assert r.status_code == 303
    page = (await client.get(r.headers["location"])).text
    assert "Nougat order" in page and "2030-06-30" in page and "Saved." in page
    r = await client.post(f"/documents/{doc.group(1)}", data=form | {"warranty_until": "2030-02-31"})
    assert r.status_code == 422 and "YYYY-MM-DD" in r.text
    assert (await client.get("/documents/nope")).status_code == 404
    assert (await client.post("/documents/nope", data=form)).status_code == 404


async def test_upcoming_page_and_feeds(client: httpx.AsyncClient, token: str) -> None:
    vendor = await new_vendor(client, token)
    today = today_local()
    # The twelve-month minimum term ends within a month: its cancellation deadline is coming up.
    cid = await new_contract(client, token, vendor, today - relativedelta(months=11) + relativedelta(days=20))
    page = (await client.get("/upcoming")).text
    assert "Last day to cancel Fibre Co: Fibre 1G" in page and f'href="/contracts/{cid}"' in page
    assert "No feed yet" in page
    assert (await client.get("/upcoming", params={"days": "abc"})).status_code == 200

    r = await client.post("/upcoming/feeds", data={"csrf_token": token, "name": "phone"})
    assert r.status_code == 201
    url = re.search(r'id="feed-url" readonly value="([^"]+)"', r.text)
    assert url and "/feeds/calendar.ics?token=vrm_" in url.group(1)
    page = (await client.get("/upcoming")).text
    assert "phone" in page and url.group(1) not in page  # shown once
    feed = await client.get(url.group(1).replace("http://testserver", ""))
    assert feed.status_code == 200 and b"Last day to cancel" in feed.content

    feed_id = re.search(r'action="/upcoming/feeds/([0-9a-f]+)/revoke"', page)
    assert feed_id
    r = await client.post(f"/upcoming/feeds/{feed_id.group(1)}/revoke", data={"csrf_token": token})
    assert r.status_code == 303
    assert (await client.get(url.group(1).replace("http://testserver", ""))).status_code == 401
    r = await client.post(f"/upcoming/feeds/{feed_id.group(1)}/revoke", data={"csrf_token": token})
    assert r.status_code == 404


async def test_spending_page_and_dashboard_chart(client: httpx.AsyncClient, token: str) -> None:
    html = (await client.get("/")).text
    assert "No spending recorded" in html and "<svg" not in html
    vendor = await new_vendor(client, token)
    today = today_local()
    start = today - relativedelta(months=1)
    cid = await new_contract(client, token, vendor, start)
    for due in (start, today):
        r = await client.post(
            f"/contracts/{cid}/payments",
            data={"csrf_token": token, "due_date": due.isoformat(), "paid_on": due.isoformat()},
        )
        assert r.status_code == 303

    page = (await client.get("/spending")).text
    assert "Fibre Co" in page and "59.98 EUR" in page
    assert 'href="/api/v1/spending?by=vendor&amp;format=csv"' in page
    page = (await client.get("/spending", params={"by": "month", "since": "not a date"})).text
    assert today.strftime("%Y-%m") in page and "was left out" in page

    html = (await client.get("/")).text
    svg = re.search(r"<svg[^>]*>.*?</svg>", html, re.S)
    assert svg
    assert 'role="img"' in svg.group(0) and "<title id=" in svg.group(0) and "<desc id=" in svg.group(0)
    assert svg.group(0).count('class="bar"') == 12
    assert "style=" not in svg.group(0)  # the CSP forbids inline styles
    table = re.search(r'<table class="spending-by-month">.*?</table>', html, re.S)
    assert table and f'<th scope="row">{today.strftime("%Y-%m")}</th>' in table.group(0)
    assert "29.99 EUR" in table.group(0)
    assert 'id="dashboard-events"' in html


async def test_documents_page_lists_a_page_at_a_time(client: httpx.AsyncClient, token: str) -> None:
    for i in range(53):
        r = await client.post(
            "/api/v1/documents",
            files={"file": (f"note-{i}.txt", f"note {i}".encode(), "text/plain")},
            data={"title": f"Note {i:02d}"},
            headers={"X-CSRF-Token": token},
        )
        assert r.status_code == 201, r.text

    def titles(html: str) -> list[str]:
        return re.findall(r'<th scope="row"><a href="/documents/[0-9a-f]+">(Note \d\d)</a>', html)

    first = (await client.get("/documents")).text
    assert titles(first) == [f"Note {i:02d}" for i in range(52, 2, -1)]
    assert "Showing 1–50 of 53" in first and "Page 1 of 2" in first
    assert 'href="/documents?page=2" rel="next"' in first and 'rel="prev"' not in first
    second = (await client.get("/documents", params={"page": "2"})).text
    assert titles(second) == ["Note 02", "Note 01", "Note 00"]
    assert "Showing 51–53 of 53" in second and 'href="/documents?page=1" rel="prev"' in second
    assert 'rel="next"' not in second
    # a page past the end shows the last one; anything that is not a page number shows the first
    for past in ("3", "999999"):
        assert titles((await client.get("/documents", params={"page": past})).text) == titles(second)
    for junk in ("0", "-1", "abc", "1e9", "2.0", "99999999"):
        r = await client.get("/documents", params={"page": junk})
        assert r.status_code == 200 and titles(r.text) == titles(first)
