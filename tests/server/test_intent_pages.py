"""The intent pages: in-process for drafts, CSRF and refused input; against a live server (relay and
vendors on loopback) for publish → offers side by side → accept."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from openvrm.agent.service import AgentService
from openvrm.config import Settings
from openvrm.intents.service import IntentService
from openvrm.profile.service import ProfileService
from openvrm.vault.core import Vault
from tests.conftest import PASSPHRASE, fast_kdf
from tests.intents.conftest import VENDOR_PREFIX, send_offer, serve_app, subscribe
from tests.server.test_pages import hidden_csrf, page_login


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    return await page_login(client)


def _form(csrf: str, **extra: str) -> dict[str, str]:
    base = {
        "csrf_token": csrf,
        "kind": "rfp",
        "category": "telecom.mobile",
        "text": "A SIM with lots of data",
        "price_amount": "15",
        "price_currency": "EUR",
        "price_per": "month",
        "feature_name_0": "data_gb",
        "feature_value_0": "50",
        "feature_required_0": "1",
        "contract_months_max": "0",
        "country": "FR",
        "expires_in_days": "14",
    }
    return base | extra


@pytest.mark.anyio
async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/intents", "/intents/x"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    r = await client.post("/intents", data={"category": "telecom.mobile"})
    assert r.status_code == 303 and r.headers["location"] == "/login"


@pytest.mark.anyio
async def test_write_and_edit_a_draft(client: httpx.AsyncClient, token: str) -> None:
    r = await client.get("/intents")
    assert r.status_code == 200 and 'id="intent-list"' in r.text and "Intents" in r.text
    assert 'href="/intents"' in r.text  # in the navigation
    r = await client.post("/intents", data=_form(token, csrf_token="wrong"))
    assert r.status_code == 403
    r = await client.post("/intents", data=_form(token))
    assert r.status_code == 303
    location = r.headers["location"]
    assert re.fullmatch(r"/intents/[0-9a-f]{32}\?done=created", location)
    page = await client.get(location)
    assert page.status_code == 200
    assert (
        "A SIM with lots of data" in page.text and "Draft" in page.text and 'id="publish-form"' in page.text
    )
    intent_id = location.split("/")[2].split("?")[0]
    r = await client.post(
        f"/intents/{intent_id}/edit", data=_form(token, text="A SIM, 100 GB", price_amount="")
    )
    assert r.status_code == 303
    page = await client.get(f"/intents/{intent_id}")
    assert "A SIM, 100 GB" in page.text and "Price ceiling</dt>" not in page.text
    # Refused input is shown on the form with a 422, the values kept.
    r = await client.post("/intents", data=_form(token, category="", text="kept text"))
    assert r.status_code == 422 and 'role="alert"' in r.text and "kept text" in r.text
    r = await client.post("/intents", data=_form(token, price_amount="ten"))
    assert r.status_code == 422 and "price ceiling" in r.text
    r = await client.post(f"/intents/{intent_id}/edit", data=_form(token, country="France"))
    assert r.status_code == 422 and "two-letter" in r.text
    # A relay that cannot be used is a 422 on the page, and the intent stays a draft.
    r = await client.post(f"/intents/{intent_id}/publish", data={"csrf_token": token})
    assert r.status_code == 422 and 'id="intent-error"' in r.text
    assert 'id="publish-form"' in r.text
    r = await client.get("/intents/nope")
    assert r.status_code == 404
    # An interest shows in the interests list; withdrawing a draft closes it.
    r = await client.post("/intents", data=_form(token, kind="interest", expires_in_days="300"))
    assert r.status_code == 303
    listing = await client.get("/intents")
    assert 'id="interest-list"' in listing.text and "<ul" in listing.text
    r = await client.post(f"/intents/{intent_id}/withdraw", data={"csrf_token": token})
    assert r.status_code == 303
    assert "Withdrawn" in (await client.get(f"/intents/{intent_id}")).text


@pytest.mark.anyio
async def test_the_api_mirrors_the_cli(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/session", json={"passphrase": PASSPHRASE})
    csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
    cats = await client.get("/api/v1/intents/categories")
    assert any(c["id"] == "telecom.mobile" for c in cats.json())
    body = {
        "category": "telecom.mobile",
        "text": "50 GB",
        "price_max": {"amount": "15", "currency": "EUR", "per": "month"},
        "features": [{"name": "data_gb", "value": "50", "required": True}],
    }
    r = await client.post("/api/v1/intents", json=body, headers=csrf)
    assert r.status_code == 201, r.text
    intent_id = r.json()["id"]
    r = await client.patch(f"/api/v1/intents/{intent_id}", json={"text": "60 GB"}, headers=csrf)
    assert r.status_code == 200 and r.json()["text"] == "60 GB"
    r = await client.get(f"/api/v1/intents/{intent_id}")
    assert r.status_code == 200 and r.json()["offers"] == []
    assert [i["id"] for i in (await client.get("/api/v1/intents")).json()] == [intent_id]
    r = await client.post("/api/v1/intents", json=body | {"category": "nope"}, headers=csrf)
    assert r.status_code == 422
    r = await client.post(f"/api/v1/intents/{intent_id}/mute", json={"muted": True}, headers=csrf)
    assert r.status_code == 422  # only interests mute
    r = await client.post(f"/api/v1/intents/{intent_id}/withdraw", headers=csrf)
    assert r.status_code == 200 and r.json()["state"] == "withdrawn"


def test_publish_offers_and_accept_through_the_pages(sqlite_settings: Settings, tmp_path: Path) -> None:
    settings = replace(sqlite_settings, allow_loopback_peers=True)
    with Vault.open(settings, create=True) as vault:
        unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
        ProfileService(unlocked).set("email", "ada@example.org")
        ProfileService(unlocked).set("name", "Ada Lovelace")
        unlocked.lock()
    with serve_app(settings, tmp_path / "vendors") as (url, _app, vendors), httpx.Client(base_url=url) as c:
        page = c.get("/login")
        r = c.post("/login", data={"passphrase": PASSPHRASE, "csrf_token": hidden_csrf(page.text)})
        assert r.status_code == 303
        csrf = hidden_csrf(c.get("/intents").text)
        relay = f"{url}/relay"
        for slug in ("fibre", "mobile"):
            discovery = f"{url}{VENDOR_PREFIX}/{slug}/.well-known/vrm"
            subscribe(relay, vendors[slug].state.kit.key, slug, ["telecom"], discovery)
        r = c.post("/intents", data=_form(csrf))
        intent_id = r.headers["location"].split("/")[2].split("?")[0]
        r = c.post(f"/intents/{intent_id}/publish", data={"csrf_token": csrf})
        assert r.status_code == 303, r.text
        page = c.get(f"/intents/{intent_id}")
        assert "Published" in page.text and 'id="fetch-form"' in page.text and "No offers yet" in page.text
        with Vault.open(settings) as vault:
            u = vault.unlock(PASSPHRASE)
            published = IntentService(u, relay_url=f"{url}/relay").get(intent_id).published
            u.lock()
        assert published is not None
        offers = {}
        for slug, amount, data in (("fibre", "12.99", "60"), ("mobile", "19.00", "20")):
            key = vendors[slug].state.kit.key
            discovery = f"{url}{VENDOR_PREFIX}/{slug}/.well-known/vrm"
            offers[slug] = send_offer(
                relay,
                key,
                published,
                name=f"Vendor {slug}",
                discovery=discovery,
                amount=amount,
                features=[{"name": "data_gb", "value": data}],
            )
        r = c.post(f"/intents/{intent_id}/fetch", data={"csrf_token": csrf})
        assert r.status_code == 303
        page = c.get(f"/intents/{intent_id}")
        assert page.text.index("Vendor fibre") < page.text.index("Vendor mobile")  # ranked
        assert "over your price ceiling" in page.text and "missing required feature data_gb" in page.text
        r = c.post(
            f"/intents/{intent_id}/accept",
            data={"csrf_token": csrf, "offer": offers["fibre"]["offer_id"], "fields": "email"},
        )
        assert r.status_code == 303, r.text
        page = c.get(f"/intents/{intent_id}")
        assert "Accepted" in page.text and 'id="intent-connection"' in page.text
    with Vault.open(settings) as vault:
        u = vault.unlock(PASSPHRASE)
        conns = AgentService(u).connections()
        assert [(cn.vendor_name, (cn.term or {}).get("id")) for cn in conns] == [
            ("Fibre & Co", "intent-only")
        ]
        assert [g.fields for g in AgentService(u).grants(conns[0].id)] == [["email"]]
        u.lock()
