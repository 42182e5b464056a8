"""The ledger's owner API in-process, on SQLite and PostgreSQL: directory, vendors, relationships and their
card, contracts and payments, imports and search, reminders and the calendar feed, spending."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from dateutil.relativedelta import relativedelta
from fastapi import FastAPI

from openvrm.documents.service import KINDS as DOCUMENT_KINDS
from openvrm.ledger.contracts import today_local
from openvrm.ledger.terms import CYCLES, NOTICE_UNITS
from openvrm.server import ledger_api
from openvrm.vendors.service import STANCES, STATUSES
from tests.server.conftest import assert_problem, login, state

pytestmark = pytest.mark.anyio

FACTURX = Path("/work/shared/data/einvoices/ZUGFeRDv2/correct/FNFE-factur-x-examples/Facture_FR_BASICWL.pdf")


def require_facturx() -> bytes:
    if not FACTURX.exists():
        pytest.skip(f"{FACTURX} is missing; the Factur-X import checks need the shared e-invoice data")
    return FACTURX.read_bytes()


@pytest.fixture
async def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    """Log the client in; the headers a cookie-authenticated change needs."""
    return {"X-CSRF-Token": await login(client)}


async def add_vendor(client: httpx.AsyncClient, h: dict[str, str], name: str = "Fibre Co") -> str:
    r = await client.post("/api/v1/vendors", json={"name": name}, headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def relate(client: httpx.AsyncClient, h: dict[str, str], vendor_id: str) -> str:
    r = await client.post(f"/api/v1/vendors/{vendor_id}/relationships", json={}, headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def add_contract(
    client: httpx.AsyncClient, h: dict[str, str], vendor_id: str, **overrides: Any
) -> dict[str, Any]:
    body = {
        "vendor_id": vendor_id,
        "plan": "Fibre 1G",
        "price": "29.99",
        "start": (today_local() - relativedelta(months=2)).isoformat(),
    } | overrides
    r = await client.post("/api/v1/contracts", json=body, headers=h)
    assert r.status_code == 201, r.text
    data = r.json()
    assert isinstance(data, dict)
    return data


def test_api_vocabularies_match_the_core() -> None:
    assert get_args(ledger_api.RelationshipStatus) == STATUSES
    assert get_args(ledger_api.Stance) == STANCES
    assert get_args(ledger_api.BillingCycle) == tuple(CYCLES)
    assert get_args(ledger_api.NoticeUnit) == NOTICE_UNITS
    assert get_args(ledger_api.DocumentKind) == DOCUMENT_KINDS


async def test_ledger_routes_need_authentication(client: httpx.AsyncClient) -> None:
    for path in (
        "/api/v1/directory?q=free",
        "/api/v1/contracts",
        "/api/v1/costs",
        "/api/v1/upcoming",
        "/api/v1/upcoming.ics",
        "/api/v1/spending",
        "/api/v1/documents/search?q=x",
        "/api/v1/feeds",
    ):
        assert_problem(await client.get(path), 401)
    assert_problem(await client.post("/api/v1/contracts", json={}), 401)


async def test_openapi_lists_the_ledger(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/directory",
        "/api/v1/directory/{slug}",
        "/api/v1/vendors/from-directory",
        "/api/v1/vendors/{vendor_id}/merge",
        "/api/v1/relationships/{relationship_id}",
        "/api/v1/relationships/{relationship_id}/card",
        "/api/v1/contracts",
        "/api/v1/contracts/{contract_id}",
        "/api/v1/contracts/{contract_id}/price",
        "/api/v1/contracts/{contract_id}/cancel",
        "/api/v1/contracts/{contract_id}/payments",
        "/api/v1/costs",
        "/api/v1/documents/import",
        "/api/v1/documents/search",
        "/api/v1/upcoming",
        "/api/v1/upcoming.ics",
        "/api/v1/spending",
        "/feeds/calendar.ics",
    ):
        assert path in paths, path
    assert "multipart/form-data" in paths["/api/v1/documents/import"]["post"]["requestBody"]["content"]


# -- directory and vendors ----------------------------------------------------------------------


async def test_directory_search_and_entry(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    r = await client.get("/api/v1/directory", params={"q": "free mobile", "country": "fr"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results and all("slug" in hit and "score" in hit for hit in results)
    slug = results[0]["slug"]
    entry = (await client.get(f"/api/v1/directory/{slug}")).json()
    assert entry["slug"] == slug and entry["name"] == results[0]["name"]
    assert_problem(await client.get("/api/v1/directory/no-such-company-anywhere"), 404, "not-found")
    assert_problem(await client.get("/api/v1/directory"), 422, "validation-error")
    assert_problem(await client.get("/api/v1/directory", params={"q": "x", "country": "FRA"}), 422)


async def test_add_from_directory_once(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    slug = (await client.get("/api/v1/directory", params={"q": "deutsche bahn"})).json()["results"][0]["slug"]
    assert_problem(
        await client.post("/api/v1/vendors/from-directory", json={"slug": slug}), 403, "csrf-failed"
    )
    r = await client.post("/api/v1/vendors/from-directory", json={"slug": slug}, headers=csrf)
    assert r.status_code == 201, r.text
    vendor = r.json()
    assert vendor["directory_slug"] == slug and vendor["domains"]
    again = await client.post("/api/v1/vendors/from-directory", json={"slug": slug}, headers=csrf)
    assert again.json()["id"] == vendor["id"]
    assert len((await client.get("/api/v1/vendors")).json()["vendors"]) == 1
    r = await client.post("/api/v1/vendors/from-directory", json={"slug": "nope-nope"}, headers=csrf)
    assert_problem(r, 404, "not-found")
    r = await client.post("/api/v1/vendors/from-directory", json={"slug": ""}, headers=csrf)
    assert_problem(r, 422, "validation-error")


async def test_merge_vendors(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    keep = await add_vendor(client, csrf, "Acme")
    other = await add_vendor(client, csrf, "ACME SAS")
    rel = await relate(client, csrf, other)
    r = await client.post(f"/api/v1/vendors/{keep}/merge", json={"other_id": other}, headers=csrf)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == keep
    rels = (await client.get(f"/api/v1/vendors/{keep}")).json()["relationships"]
    assert [x["id"] for x in rels] == [rel]
    assert_problem(await client.get(f"/api/v1/vendors/{other}"), 404)
    r = await client.post(f"/api/v1/vendors/{keep}/merge", json={"other_id": other}, headers=csrf)
    assert_problem(r, 404, "not-found")
    r = await client.post(f"/api/v1/vendors/{keep}/merge", json={"other_id": keep}, headers=csrf)
    assert_problem(r, 422, "invalid-value")
    r = await client.post(f"/api/v1/vendors/{keep}/merge", json={}, headers=csrf)
    assert_problem(r, 422, "validation-error")


async def test_patch_relationship(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    vendor = await add_vendor(client, csrf)
    rel = await relate(client, csrf, vendor)
    body = {
        "status": "ended",
        "stance": "trusted",
        "tags": ["Internet", "home"],
        "folder": "home/utilities",
        "notes": "called twice",
        "customer_number": "C-123",
        "account": "me@example.org",
        "since": "2019-04-01",
    }
    r = await client.patch(f"/api/v1/relationships/{rel}", json=body, headers=csrf)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["tags"] == ["internet", "home"] and got["folder"] == "home/utilities"
    assert (got["status"], got["stance"], got["since"]) == ("ended", "trusted", "2019-04-01")
    # Only the fields sent change; an empty string clears a text field.
    r = await client.patch(
        f"/api/v1/relationships/{rel}", json={"folder": "", "stance": "blocked"}, headers=csrf
    )
    got = r.json()
    assert got["folder"] is None and got["stance"] == "blocked" and got["customer_number"] == "C-123"
    assert_problem(await client.patch("/api/v1/relationships/nope", json={}, headers=csrf), 404, "not-found")
    for bad in ({"status": "paused"}, {"since": "2019-13-01"}, {"tags": "notalist"}, {"colour": "red"}):
        assert_problem(await client.patch(f"/api/v1/relationships/{rel}", json=bad, headers=csrf), 422)
    r = await client.patch(f"/api/v1/relationships/{rel}", json={"folder": "a//b/c/d/e/f/g"}, headers=csrf)
    assert_problem(r, 422, "invalid-value")


async def test_relationship_card(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    vendor = await add_vendor(client, csrf)
    rel = await relate(client, csrf, vendor)
    contract = await add_contract(client, csrf, vendor)
    first_due = contract["start"]
    r = await client.post(
        f"/api/v1/contracts/{contract['id']}/payments", json={"due_date": first_due}, headers=csrf
    )
    assert r.status_code == 201
    r = await client.post(
        "/api/v1/documents",
        files={"file": ("bill.txt", b"a bill", "text/plain")},
        data={"vendor_id": vendor},
        headers=csrf,
    )
    assert r.status_code == 201
    r = await client.get(f"/api/v1/relationships/{rel}/card")
    assert r.status_code == 200 and "content-disposition" not in r.headers
    card = r.json()
    assert card["format"] == "openvrm-relationship-card" and card["version"] == 1
    assert card["generated_at"] and card["as_of"] == today_local().isoformat()
    assert card["vendor"]["id"] == vendor and card["relationship"]["id"] == rel
    assert [c["id"] for c in card["contracts"]] == [contract["id"]]
    assert "cancellation_deadline" in card["contracts"][0]
    assert [d["filename"] for d in card["documents"]] == ["bill.txt"]
    assert "blob_address" not in card["documents"][0]
    assert [p["due_date"] for p in card["payments"]] == [first_due]
    assert card["shares"] == []
    r = await client.get(f"/api/v1/relationships/{rel}/card", params={"download": "true"})
    assert r.headers["content-disposition"].startswith("attachment;")
    assert ".json" in r.headers["content-disposition"]
    assert_problem(await client.get("/api/v1/relationships/nope/card"), 404, "not-found")


# -- contracts ----------------------------------------------------------------------------------


async def test_contract_lifecycle(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    today = today_local()
    vendor = await add_vendor(client, csrf)
    start = today - relativedelta(months=1)
    c = await add_contract(
        client,
        csrf,
        vendor,
        start=start.isoformat(),
        minimum_term_months=12,
        notice_value=1,
        notice_unit="months",
        category="Internet",
    )
    term_end = start + relativedelta(months=12) - relativedelta(days=1)
    assert c["term_end"] == term_end.isoformat()
    assert c["cancellation_deadline"] == (term_end - relativedelta(months=1)).isoformat()
    assert c["monthly_cost"] == "29.99" and c["yearly_cost"] == "359.88" and c["category"] == "internet"

    listed = (await client.get("/api/v1/contracts")).json()
    assert [x["id"] for x in listed["contracts"]] == [c["id"]]
    assert listed["contracts"][0]["cancellation_deadline"] == c["cancellation_deadline"]

    detail = (await client.get(f"/api/v1/contracts/{c['id']}")).json()
    dues = [e["due_date"] for e in detail["expected"]]
    assert dues[0] == start.isoformat() and len(dues) >= 13  # the past and the next year
    assert detail["expected"][0]["status"] == "overdue" and detail["payments"] == []

    r = await client.post(
        f"/api/v1/contracts/{c['id']}/payments",
        json={"due_date": start.isoformat(), "amount": "29,99", "paid_on": start.isoformat()},
        headers=csrf,
    )
    assert r.status_code == 201, r.text
    assert r.json()["amount"] == "29.99" and r.json()["due_date"] == start.isoformat()
    detail = (await client.get(f"/api/v1/contracts/{c['id']}")).json()
    assert detail["expected"][0]["status"] == "paid" and detail["expected"][0]["paid"] == "29.99"
    assert len(detail["payments"]) == 1
    r = await client.post(
        f"/api/v1/contracts/{c['id']}/payments", json={"due_date": start.isoformat()}, headers=csrf
    )
    assert_problem(r, 409, "conflict")

    effective = (today + relativedelta(days=10)).isoformat()
    r = await client.post(
        f"/api/v1/contracts/{c['id']}/price", json={"price": "34.99", "effective": effective}, headers=csrf
    )
    assert r.status_code == 200, r.text
    assert r.json()["price_history"] == [{"effective": effective, "price": "34.99", "currency": "EUR"}]

    r = await client.post(f"/api/v1/contracts/{c['id']}/cancel", headers=csrf)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["end_date"] == term_end.isoformat()
    assert_problem(await client.post(f"/api/v1/contracts/{c['id']}/cancel", headers=csrf), 409, "conflict")

    costs = (await client.get("/api/v1/costs", params={"by": "category"})).json()
    assert costs["by"] == "category" and costs["costs"][0]["key"] == "internet"
    costs = (await client.get("/api/v1/costs")).json()
    assert costs["costs"][0]["key"] == "Fibre Co" and costs["costs"][0]["contracts"] == 1
    assert_problem(await client.get("/api/v1/costs", params={"by": "month"}), 422, "validation-error")


async def test_contract_cancel_with_end_date(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    vendor = await add_vendor(client, csrf)
    c = await add_contract(client, csrf, vendor)
    end = (today_local() + relativedelta(days=5)).isoformat()
    r = await client.post(f"/api/v1/contracts/{c['id']}/cancel", json={"end": end}, headers=csrf)
    assert r.json()["end_date"] == end
    assert_problem(
        await client.post(f"/api/v1/contracts/{c['id']}/cancel", json={"end": "soon"}, headers=csrf), 422
    )


async def test_contract_bad_input(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    vendor = await add_vendor(client, csrf)
    base = {"vendor_id": vendor, "plan": "Mobile", "price": "9.99", "start": "2024-01-15"}
    for bad in (
        {"price": "nine"},
        {"price": 9.99},  # money is text, never a float
        {"price": "-3"},
        {"start": "2024-02-30"},
        {"currency": "EURO"},
        {"billing_cycle": "fortnightly"},
        {"notice_value": -1},
        {"surprise": True},
    ):
        r = await client.post("/api/v1/contracts", json=base | bad, headers=csrf)
        assert_problem(r, 422)
    r = await client.post("/api/v1/contracts", json=base | {"vendor_id": "nope"}, headers=csrf)
    assert_problem(r, 404, "not-found")
    c = await add_contract(client, csrf, vendor)
    cid = c["id"]
    for path in ("", "/price", "/cancel", "/payments"):
        method = client.get if path == "" else client.post
        kwargs: dict[str, Any] = (
            {}
            if path == ""
            else {
                "headers": csrf,
                "json": {"price": "1", "effective": "2024-01-01"} if path == "/price" else {},
            }
        )
        assert_problem(await method(f"/api/v1/contracts/nope{path}", **kwargs), 404, "not-found")
    bad_payments = ({"amount": "lots"}, {"due_date": "yesterday"}, {"paid_on": "2024-13-01"})
    for bad in bad_payments:
        assert_problem(await client.post(f"/api/v1/contracts/{cid}/payments", json=bad, headers=csrf), 422)
    r = await client.post(f"/api/v1/contracts/{cid}/payments", json={"due_date": "1999-01-01"}, headers=csrf)
    assert_problem(r, 422, "invalid-value")
    r = await client.post(
        f"/api/v1/contracts/{cid}/price", json={"price": "5", "effective": "1999-01-01"}, headers=csrf
    )
    assert_problem(r, 422, "invalid-value")
    r = await client.post(
        f"/api/v1/contracts/{cid}/price", json={"price": "abc", "effective": "2030-01-01"}, headers=csrf
    )
    assert_problem(r, 422, "validation-error")


# -- documents ----------------------------------------------------------------------------------


async def test_import_search_and_edit(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    pdf = require_facturx()
    files = [
        ("file", ("Facture_FR_BASICWL.pdf", pdf, "application/pdf")),
        ("file", ("broken.pdf", b"%PDF-1.4 broken", "application/pdf")),
        ("file", ("notes.txt", b"kettle warranty two years", "text/plain")),
    ]
    r = await client.post("/api/v1/documents/import", files=files, headers=csrf)
    assert r.status_code == 200, r.text
    outcomes = r.json()["outcomes"]
    assert [o["status"] for o in outcomes] == ["imported", "unparsed", "imported"]
    bill = outcomes[0]
    assert bill["format"] == "facturx" and bill["seller"] == "Au bon moulin"
    assert bill["grand_total"] == "671.15" and bill["invoice_number"] == "FA-2017-0010"
    assert bill["vendor_id"] and bill["document_id"]
    assert outcomes[1]["reason"] and outcomes[1]["document_id"]

    again = await client.post(
        "/api/v1/documents/import", files=[("file", ("copy.pdf", pdf, "application/pdf"))], headers=csrf
    )
    assert [o["status"] for o in again.json()["outcomes"]] == ["duplicate"]
    assert again.json()["outcomes"][0]["document_id"] == bill["document_id"]

    hits = (await client.get("/api/v1/documents/search", params={"q": "moulin"})).json()["results"]
    assert [h["id"] for h in hits] == [bill["document_id"]]
    hits = (await client.get("/api/v1/documents/search", params={"q": "FA-2017-0010"})).json()["results"]
    assert [h["id"] for h in hits] == [bill["document_id"]]
    params = {
        "kind": "invoice",
        "min_total": "600",
        "max_total": "700",
        "since": "2017-11-01",
        "until": "2017-11-30",
    }
    hits = (await client.get("/api/v1/documents/search", params=params)).json()["results"]
    assert [h["id"] for h in hits] == [bill["document_id"]]
    hits = (await client.get("/api/v1/documents/search", params={"min_total": "1000"})).json()["results"]
    assert hits == []
    hits = (await client.get("/api/v1/documents/search", params={"vendor_id": bill["vendor_id"]})).json()
    assert [h["id"] for h in hits["results"]] == [bill["document_id"]]
    for bad in ({"min_total": "lots"}, {"since": "2017-02-30"}, {"kind": "poem"}, {"max_total": "-1"}):
        assert_problem(await client.get("/api/v1/documents/search", params=bad), 422, "validation-error")

    doc = bill["document_id"]
    r = await client.patch(
        f"/api/v1/documents/{doc}",
        json={"warranty_until": "2030-01-31", "title": "Nougat", "kind": "receipt"},
        headers=csrf,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["warranty_until"], r.json()["title"], r.json()["kind"]) == (
        "2030-01-31",
        "Nougat",
        "receipt",
    )
    r = await client.patch(f"/api/v1/documents/{doc}", json={"warranty_until": None}, headers=csrf)
    assert r.json()["warranty_until"] is None
    assert_problem(await client.patch("/api/v1/documents/nope", json={"title": "x"}, headers=csrf), 404)
    r = await client.patch(f"/api/v1/documents/{doc}", json={"warranty_until": "someday"}, headers=csrf)
    assert_problem(r, 422, "validation-error")
    r = await client.patch(f"/api/v1/documents/{doc}", json={"vendor_id": "nope"}, headers=csrf)
    assert_problem(r, 404, "not-found")


async def test_import_guards(app: FastAPI, client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    files = [("file", ("a.txt", b"hello", "text/plain"))]
    assert_problem(await client.post("/api/v1/documents/import", files=files), 403, "csrf-failed")
    # A plain form may carry the CSRF token as a field instead of the header.
    r = await client.post("/api/v1/documents/import", files=files, data={"csrf_token": csrf["X-CSRF-Token"]})
    assert r.status_code == 200 and r.json()["outcomes"][0]["status"] == "imported"
    r = await client.post(
        "/api/v1/documents/import",
        data={"nothing": "here"},
        files=[("x", ("", b"", "text/plain"))],
        headers=csrf,
    )
    assert_problem(r, 422, "invalid-value")
    r = await client.post("/api/v1/documents/import", json={"file": "x"}, headers=csrf)
    assert_problem(r, 415)
    state(app).max_upload_bytes = 1024
    files = [
        ("file", ("big.txt", b"x" * 2000, "text/plain")),
        ("file", ("small.txt", b"small one", "text/plain")),
        ("file", ("empty.txt", b"", "text/plain")),
    ]
    r = await client.post("/api/v1/documents/import", files=files, headers=csrf)
    assert r.status_code == 200, r.text
    outcomes = r.json()["outcomes"]
    assert [o["status"] for o in outcomes] == ["rejected", "imported", "rejected"]
    assert "1 KiB" in outcomes[0]["reason"]
    huge = [
        (
            "file",
            (
                "huge.txt",
                b"x" * (ledger_api.IMPORT_BODY_FACTOR * 1024 + ledger_api.FORM_OVERHEAD + 1),
                "text/plain",
            ),
        )
    ]
    assert_problem(
        await client.post("/api/v1/documents/import", files=huge, headers=csrf), 413, "payload-too-large"
    )
    many = [("file", (f"f{i}.txt", b"x", "text/plain")) for i in range(ledger_api.MAX_IMPORT_FILES + 1)]
    assert_problem(await client.post("/api/v1/documents/import", files=many, headers=csrf), 400, "bad-form")


async def test_import_with_api_token(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    token = (await client.post("/api/v1/tokens", json={"name": "script"}, headers=csrf)).json()["token"]
    client.cookies.clear()
    r = await client.post(
        "/api/v1/documents/import",
        files=[("file", ("a.txt", b"by token", "text/plain"))],
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200 and r.json()["outcomes"][0]["status"] == "imported"


# -- reminders and the calendar feed -------------------------------------------------------------


async def test_upcoming_json_and_ics(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    vendor = await add_vendor(client, csrf)
    today = today_local()
    # A yearly contract: missing its deadline locks the person in for another year, so it is news.
    start = today - relativedelta(years=1) + relativedelta(days=20)
    c = await add_contract(
        client, csrf, vendor, start=start.isoformat(), billing_cycle="yearly", notice_value=7
    )
    r = await client.get("/api/v1/upcoming", params={"days": 60})
    assert r.status_code == 200
    body = r.json()
    assert body["today"] == today.isoformat() and body["days"] == 60
    kinds = {e["kind"] for e in body["events"]}
    assert {"cancellation-deadline", "renewal", "payment-overdue"} <= kinds
    assert all(e["contract_id"] == c["id"] for e in body["events"])
    for bad in ("0", "5000", "soon"):
        assert_problem(await client.get("/api/v1/upcoming", params={"days": bad}), 422, "validation-error")
    r = await client.get("/api/v1/upcoming.ics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    assert r.headers["content-disposition"].startswith("attachment;")
    assert b"BEGIN:VCALENDAR" in r.content and b"Last day to cancel" in r.content


async def test_calendar_feed_tokens(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    vendor = await add_vendor(client, csrf)
    await add_contract(client, csrf, vendor, notice_value=7)
    r = await client.post("/api/v1/feeds", json={"name": "phone"}, headers=csrf)
    assert r.status_code == 201, r.text
    feed = r.json()
    assert feed["kind"] == "feed" and feed["token"].startswith("vrm_")
    assert feed["url"] == f"http://testserver/feeds/calendar.ics?token={feed['token']}"
    listed = (await client.get("/api/v1/feeds")).json()["feeds"]
    assert [f["id"] for f in listed] == [feed["id"]] and "token" not in listed[0]
    api_token = (await client.post("/api/v1/tokens", json={"name": "script"}, headers=csrf)).json()["token"]

    client.cookies.clear()  # a calendar app has no session
    r = await client.get("/feeds/calendar.ics", params={"token": feed["token"]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/calendar")
    assert b"BEGIN:VCALENDAR" in r.content and b"Payment" in r.content
    assert_problem(
        await client.get("/feeds/calendar.ics", params={"token": api_token}), 401, "not-authenticated"
    )
    assert_problem(await client.get("/feeds/calendar.ics"), 401)
    assert_problem(await client.get("/feeds/calendar.ics", params={"token": "vrm_garbage"}), 401)
    # The feed token opens the feed and nothing else.
    r = await client.get("/api/v1/summary", headers={"Authorization": f"Bearer {feed['token']}"})
    assert_problem(r, 401)
    # Feeds are managed from a login session only.
    r = await client.post("/api/v1/feeds", json={}, headers={"Authorization": f"Bearer {api_token}"})
    assert_problem(r, 403, "session-required")

    csrf = {"X-CSRF-Token": await login(client)}
    assert (await client.delete(f"/api/v1/feeds/{feed['id']}", headers=csrf)).status_code == 204
    assert_problem(await client.delete(f"/api/v1/feeds/{feed['id']}", headers=csrf), 404)
    client.cookies.clear()
    assert_problem(await client.get("/feeds/calendar.ics", params={"token": feed["token"]}), 401)


# -- spending -----------------------------------------------------------------------------------


async def test_spending_json_and_csv(client: httpx.AsyncClient, csrf: dict[str, str]) -> None:
    vendor = await add_vendor(client, csrf)
    c = await add_contract(client, csrf, vendor, category="internet")
    start = date.fromisoformat(c["start"])
    for due in (start, start + relativedelta(months=1)):
        r = await client.post(
            f"/api/v1/contracts/{c['id']}/payments",
            json={"due_date": due.isoformat(), "paid_on": due.isoformat()},
            headers=csrf,
        )
        assert r.status_code == 201
    body = (await client.get("/api/v1/spending")).json()
    assert body["by"] == "vendor"
    assert body["rows"] == [{"key": "Fibre Co", "currency": "EUR", "total": "59.98", "count": 2}]
    months = (await client.get("/api/v1/spending", params={"by": "month"})).json()["rows"]
    assert [m["key"] for m in months] == [
        start.strftime("%Y-%m"),
        (start + relativedelta(months=1)).strftime("%Y-%m"),
    ]
    since = (start + relativedelta(days=1)).isoformat()
    body = (await client.get("/api/v1/spending", params={"by": "category", "since": since})).json()
    assert body["since"] == since and body["rows"] == [
        {"key": "internet", "currency": "EUR", "total": "29.99", "count": 1}
    ]
    r = await client.get("/api/v1/spending", params={"by": "vendor", "format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert "spending-by-vendor.csv" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows == [["vendor", "currency", "total", "count"], ["Fibre Co", "EUR", "59.98", "2"]]
    for bad in ({"by": "weekday"}, {"since": "last week"}, {"format": "xml"}):
        assert_problem(await client.get("/api/v1/spending", params=bad), 422, "validation-error")
