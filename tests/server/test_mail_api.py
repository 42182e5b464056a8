"""The relationship mailbox in the owner API and its pages, in-process on SQLite and PostgreSQL, with the
SMTP gateway running on loopback (a real smtplib client sends to it) in front of a real SMTP sink."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from openvrm.mail.gateway import Gateway
from openvrm.mail.keys import MailKeys
from openvrm.mail.service import MailService
from openvrm.server.security import SESSION_COOKIE
from openvrm.server.smtp_gateway import GatewayServer, gateway_in_thread
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.mail.support import DOMAIN, REAL, mail_world, message, send, zone_for
from tests.server.conftest import assert_problem, login, state
from tests.server.test_pages import hidden_csrf, page_login

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(client: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": await login(client)}


def session_vault(app: FastAPI, client: httpx.AsyncClient) -> UnlockedVault:
    session = state(app).sessions.get(client.cookies.get(SESSION_COOKIE))
    assert session is not None
    return session.unlocked


GATEWAY = {
    "domains": [DOMAIN],
    "forward_to": REAL,
    "downstream": {"host": "smtp.real.example", "port": 587, "username": "anna", "password": "s3cret-pw"},
}


async def test_routes_need_the_owner(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/mail/gateway", "/api/v1/mail/aliases", "/api/v1/mail/messages"):
        assert_problem(await client.get(path), 401)
    assert_problem(await client.post("/api/v1/mail/aliases", json={"vendor_id": "x"}), 401)


async def test_gateway_settings_never_return_the_password(
    app: FastAPI, client: httpx.AsyncClient, h: dict[str, str]
) -> None:
    assert_problem(await client.get("/api/v1/mail/gateway"), 404, "not-found")
    r = await client.put("/api/v1/mail/gateway", json=GATEWAY, headers=h)
    assert r.status_code == 200, r.text
    assert "s3cret-pw" not in r.text
    body = r.json()
    assert body["domains"] == [DOMAIN] and body["forward_to"] == REAL and body["deliver"] == "forward"
    assert body["downstream"]["password_set"] is True and "password" not in body["downstream"]
    got = await client.get("/api/v1/mail/gateway")
    assert got.json() == body and "s3cret-pw" not in got.text
    # Saving again without the password keeps it (same host and login); clear_password forgets it.
    downstream = {"host": "smtp.real.example", "port": 587, "username": "anna"}
    again = GATEWAY | {"deliver": "vault", "downstream": downstream}
    r = await client.put("/api/v1/mail/gateway", json=again, headers=h)
    assert r.status_code == 200 and r.json()["deliver"] == "vault"
    cfg = MailService(session_vault(app, client)).config()
    assert cfg is not None and cfg.downstream is not None and cfg.downstream.password == "s3cret-pw"
    cleared = again | {"downstream": downstream | {"clear_password": True}}
    r = await client.put("/api/v1/mail/gateway", json=cleared, headers=h)
    assert r.json()["downstream"]["password_set"] is False
    # Refused input is a problem document.
    for bad in (
        GATEWAY | {"domains": ["not a domain"]},
        GATEWAY | {"forward_to": f"me@{DOMAIN}"},
        GATEWAY | {"forward_to": "nope"},
        GATEWAY | {"domains": []},
        GATEWAY | {"deliver": "pigeon"},
        GATEWAY | {"surprise": 1},
    ):
        assert_problem(await client.put("/api/v1/mail/gateway", json=bad, headers=h), 422)
    # CSRF: a cookie session must send the token on changes.
    assert_problem(await client.put("/api/v1/mail/gateway", json=GATEWAY), 403)


async def test_alias_lifecycle(app: FastAPI, client: httpx.AsyncClient, h: dict[str, str]) -> None:
    uv = session_vault(app, client)
    vendor = VendorService(uv).add("Shöp & Co", domains=["shop.example"])
    # No gateway yet: a clear 404.
    assert_problem(await client.post("/api/v1/mail/aliases", json={"vendor_id": vendor.id}, headers=h), 404)
    assert (await client.put("/api/v1/mail/gateway", json=GATEWAY, headers=h)).status_code == 200

    r = await client.post("/api/v1/mail/aliases", json={"vendor_id": vendor.id, "note": "orders"}, headers=h)
    assert r.status_code == 201, r.text
    alias = r.json()
    assert alias["address"].startswith("shop-co.") and alias["address"].endswith("@" + DOMAIN)
    assert alias["state"] == "active" and alias["vendor_id"] == vendor.id and alias["note"] == "orders"
    r = await client.post("/api/v1/mail/aliases", json={"vendor_id": vendor.id, "style": "words"}, headers=h)
    words = r.json()
    assert r.status_code == 201 and words["style"] == "words" and words["address"].count(".") >= 3

    listed = (await client.get("/api/v1/mail/aliases", params={"vendor_id": vendor.id})).json()
    assert {a["id"] for a in listed} == {alias["id"], words["id"]}
    assert (await client.get("/api/v1/mail/aliases", params={"vendor_id": "other"})).json() == []
    assert (await client.get(f"/api/v1/mail/aliases/{alias['id']}")).json()["address"] == alias["address"]

    url = f"/api/v1/mail/aliases/{alias['id']}"
    r = await client.patch(url, json={"enabled": False}, headers=h)
    assert r.status_code == 200 and r.json()["state"] == "disabled"
    r = await client.patch(
        url, json={"enabled": True, "mode": "transactional_only", "deliver": "vault"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active" and r.json()["mode"] == "transactional_only"
    assert r.json()["deliver"] == "vault"

    for bad in (
        {"vendor_id": vendor.id, "style": "emoji"},
        {"vendor_id": vendor.id, "domain": "elsewhere.example"},
        {"vendor_id": vendor.id, "note": "x" * 201},
        {"vendor_id": ""},
    ):
        assert_problem(await client.post("/api/v1/mail/aliases", json=bad, headers=h), 422)
    assert_problem(await client.post("/api/v1/mail/aliases", json={"vendor_id": "nope"}, headers=h), 404)
    assert_problem(await client.patch(url, json={}, headers=h), 422)
    assert_problem(await client.patch(url, json={"mode": "everything"}, headers=h), 422)
    assert_problem(await client.patch("/api/v1/mail/aliases/nope", json={"enabled": True}, headers=h), 404)

    assert (await client.delete(url, headers=h)).status_code == 204
    assert_problem(await client.get(url), 404)
    assert_problem(await client.delete(url, headers=h), 404)


async def test_messages_leaks_and_sending(app: FastAPI, client: httpx.AsyncClient, h: dict[str, str]) -> None:
    uv = session_vault(app, client)
    with mail_world(uv, deliver="vault") as w:
        vendor_mail = message(sender="billing@shop.example", to=w.alias.address, body="<b>Hi</b> from Shop\n")
        assert send(w.port, "bounce@shop.example", [w.alias.address], vendor_mail) == {}
        spam = message(sender="deals@other.example", to=w.alias.address, subject="A deal for you")
        assert send(w.port, "bounce@other.example", [w.alias.address], spam) == {}

    # Reading the list files the gateway's inbox: newest first.
    r = await client.get("/api/v1/mail/messages")
    assert r.status_code == 200, r.text
    first, second = r.json()
    assert first["subject"] == "A deal for you" and second["subject"] == "Your order"
    assert first["leak"]["leaked"] is True and first["leak"]["reached"] == "other.example"
    assert second["leak"]["leaked"] is False and second["vendor_id"] == w.vendor_id
    leaks = (await client.get("/api/v1/mail/messages", params={"leaks": "true"})).json()
    assert [m["id"] for m in leaks] == [first["id"]]
    by_vendor = (await client.get("/api/v1/mail/messages", params={"vendor_id": w.vendor_id})).json()
    assert len(by_vendor) == 2
    assert (await client.get("/api/v1/mail/messages", params={"vendor_id": "nope"})).json() == []

    one = (await client.get(f"/api/v1/mail/messages/{second['id']}")).json()
    assert one["auth"]["spf"] == "pass" and one["auth"]["dkim"][0]["result"] == "pass"
    assert one["kept"] is True and "<b>Hi</b> from Shop" in one["body"]
    assert_problem(await client.get("/api/v1/mail/messages/nope"), 404)

    # The relationship card names who the address reached.
    [rel] = VendorService(uv).relationships(w.vendor_id)
    card = (await client.get(f"/api/v1/relationships/{rel.id}/card")).json()
    assert [a["address"] for a in card["mail"]["aliases"]] == [w.alias.address]
    assert card["mail"]["leaks"][0]["reached"] == "other.example" and card["mail"]["leaks"][0]["count"] == 1

    # Not a leak: the sender is the vendor after all.
    assert_problem(await client.post(f"/api/v1/mail/messages/{second['id']}/not-a-leak", headers=h), 409)
    r = await client.post(f"/api/v1/mail/messages/{first['id']}/not-a-leak", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["leak"]["leaked"] is False and r.json()["leak"]["cleared"] is True
    assert (await client.get("/api/v1/mail/messages", params={"leaks": "true"})).json() == []
    assert "other.example" in VendorService(uv).get(w.vendor_id).domains

    # Writing to the vendor as the alias: queued in the gateway's spool, filed as sent.
    sent = {"alias_id": w.alias.id, "to": "help@shop.example", "subject": "My order", "body": "Where is it?"}
    r = await client.post("/api/v1/mail/send", json=sent, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["sender"] == w.alias.address and r.json()["recipients"] == ["help@shop.example"]
    assert REAL not in r.text
    out = (await client.get("/api/v1/mail/messages")).json()[0]
    assert out["direction"] == "out" and out["subject"] == "My order"
    for bad in (sent | {"to": "nope"}, sent | {"to": f"x@{DOMAIN}"}, sent | {"subject": ""}):
        assert_problem(await client.post("/api/v1/mail/send", json=bad, headers=h), 422)
    assert_problem(await client.post("/api/v1/mail/send", json=sent | {"alias_id": "nope"}, headers=h), 404)
    MailService(uv).set_enabled(w.alias.id, False)
    assert_problem(await client.post("/api/v1/mail/send", json=sent, headers=h), 409)


# -- the pages -------------------------------------------------------------------------------------


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/mailbox", "/mailbox/messages/x"):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    r = await client.post("/mailbox/aliases", data={"vendor_id": "x"})
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_mailbox_pages(app: FastAPI, client: httpx.AsyncClient) -> None:
    csrf = await page_login(client)
    uv = session_vault(app, client)
    vendor = VendorService(uv).add("Shop", domains=["shop.example"])
    VendorService(uv).relate(vendor.id)

    page = await client.get("/mailbox")
    assert page.status_code == 200 and 'href="/mailbox"' in page.text and "not set up yet" in page.text
    data = {"domains": DOMAIN, "forward_to": REAL, "deliver": "vault"}
    assert (await client.post("/mailbox/gateway", data=data)).status_code == 403  # no CSRF token
    r = await client.post("/mailbox/gateway", data=data | {"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/mailbox?done=setup"
    r = await client.post("/mailbox/gateway", data=data | {"csrf_token": csrf, "forward_to": f"a@{DOMAIN}"})
    assert r.status_code == 422 and "real mailbox" in r.text

    r = await client.post("/mailbox/aliases", data={"csrf_token": csrf, "vendor_id": ""})
    assert r.status_code == 422 and "choose the vendor" in r.text.lower()
    r = await client.post("/mailbox/aliases", data={"csrf_token": csrf, "vendor_id": vendor.id, "style": "x"})
    assert r.status_code == 422 and "alias style" in r.text
    r = await client.post("/mailbox/aliases", data={"csrf_token": csrf, "vendor_id": vendor.id})
    assert r.status_code == 303 and r.headers["location"] == "/mailbox?done=created"
    [alias] = MailService(uv).aliases()
    page = await client.get("/mailbox?done=created")
    assert alias.address in page.text and "Alias created" in page.text

    # From the vendor page: back to the vendor page.
    vpage = await client.get(f"/vendors/{vendor.id}")
    assert "Create alias" in vpage.text and alias.address in vpage.text
    r = await client.post(
        "/mailbox/aliases",
        data={"csrf_token": csrf, "vendor_id": vendor.id, "back": "vendor", "style": "words"},
    )
    assert r.status_code == 303 and r.headers["location"] == f"/vendors/{vendor.id}?alias=1"
    assert len(MailService(uv).aliases(vendor_id=vendor.id)) == 2

    base = f"/mailbox/aliases/{alias.id}"
    assert (await client.post(f"{base}/disable", data={"csrf_token": csrf})).status_code == 303
    assert MailService(uv).alias(alias.id).state == "disabled"
    assert (await client.post(f"{base}/enable", data={"csrf_token": csrf})).status_code == 303
    r = await client.post(
        f"{base}/rules", data={"csrf_token": csrf, "mode": "mute_promotions", "deliver": "vault"}
    )
    assert r.status_code == 303 and MailService(uv).alias(alias.id).mode == "mute_promotions"
    r = await client.post(f"{base}/rules", data={"csrf_token": csrf, "mode": "bogus"})
    assert r.status_code == 422
    assert (await client.post("/mailbox/aliases/nope/delete", data={"csrf_token": csrf})).status_code == 404

    # A message whose text is HTML is shown as text; a leak has its button.
    with mail_world_for(uv) as port:
        raw = message(
            sender="x@other.example",
            to=alias.address,
            subject="<i>Win</i>",
            body="<script>alert(1)</script>\n",
        )
        assert send(port, "bounce@other.example", [alias.address], raw) == {}
    page = await client.get("/mailbox")
    assert "1 new message filed" in page.text and "Leak: other.example" in page.text
    assert "<i>Win</i>" not in page.text and "&lt;i&gt;Win&lt;/i&gt;" in page.text
    [m] = MailService(uv).messages()
    detail = await client.get(f"/mailbox/messages/{m.id}")
    assert detail.status_code == 200
    assert "This address reached other.example" in detail.text and "This sender is the vendor" in detail.text
    assert (
        "<script>alert(1)</script>" not in detail.text
        and "&lt;script&gt;alert(1)&lt;/script&gt;" in detail.text
    )
    [rel] = VendorService(uv).relationships(vendor.id)
    card = await client.get(f"/relationships/{rel.id}/card")
    assert "This address reached other.example (1 message)" in card.text and alias.address in card.text

    token = hidden_csrf(detail.text)
    r = await client.post(f"/mailbox/messages/{m.id}/not-a-leak", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == f"/mailbox/messages/{m.id}?done=cleared"
    r = await client.post(f"/mailbox/messages/{m.id}/not-a-leak", data={"csrf_token": token})
    assert r.status_code == 409 and "not flagged as a leak" in r.text
    assert (await client.get("/mailbox/messages/nope")).status_code == 404

    # Reply as the alias: the message page links to a prefilled form; sending queues it in the spool.
    detail = await client.get(f"/mailbox/messages/{m.id}")
    assert "Reply as " + alias.address in detail.text
    form = await client.get(
        "/mailbox", params={"reply_alias": alias.id, "reply_to": "x@other.example", "reply_subject": "Hi"}
    )
    assert 'value="x@other.example"' in form.text and 'value="Re: Hi"' in form.text
    r = await client.post(
        "/mailbox/send",
        data={
            "csrf_token": csrf,
            "alias_id": alias.id,
            "to": "x@other.example",
            "subject": "Re: Hi",
            "body": "No.",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/mailbox?done=sent"
    [queued] = [e for e in MailService(uv).spool().entries() if e.recipients == ["x@other.example"]]
    assert queued.sender == alias.address
    r = await client.post(
        "/mailbox/send",
        data={"csrf_token": csrf, "alias_id": alias.id, "to": "not-an-address", "subject": "S", "body": "B"},
    )
    assert r.status_code == 422 and "not a valid e-mail address" in r.text and 'value="S"' in r.text

    assert (await client.post(f"{base}/delete", data={"csrf_token": csrf})).status_code == 303
    assert [a.id for a in MailService(uv).aliases()] != [alias.id]


@contextlib.contextmanager
def mail_world_for(uv: UnlockedVault) -> Iterator[int]:
    """A running gateway on loopback for a vault whose gateway is already set up; yields its port."""
    gateway = Gateway(
        uv.vault, MailKeys.from_vault(uv), zone_for("shop.example", "other.example"), config_ttl=0
    )
    with gateway_in_thread(GatewayServer(gateway, port=0, poll_seconds=0.2)) as (_host, port):
        yield port
