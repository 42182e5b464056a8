"""Rights, moves and the outbox in the owner API, in-process on SQLite and PostgreSQL, with a real SMTP
server on loopback (aiosmtpd) receiving what is sent."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any, get_args

import httpx
import pytest
from dateutil.relativedelta import relativedelta
from fastapi import FastAPI
from sqlalchemy import update

from openvrm.ledger.contracts import today_local
from openvrm.outbox.service import STATUSES as OUTBOX_STATUSES
from openvrm.outbox.service import Outbox
from openvrm.rights.letters import LANGUAGES, REQUEST_TYPES
from openvrm.rights.service import STATES
from openvrm.server import rights_api
from openvrm.server.security import SESSION_COOKIE
from openvrm.storage.models import OutboxMessage
from openvrm.vault.core import UnlockedVault
from tests.outbox.support import Sink, smtp_sink
from tests.server.conftest import assert_problem, login, state

pytestmark = pytest.mark.anyio

OLD = {"street": "12 Lindenstraße", "postal_code": "20095", "city": "Hamburg", "country": "DE"}
NEW = {"street": "3 Allée des Chênes", "postal_code": "69003", "city": "Lyon", "country": "FR"}


@pytest.fixture
async def h(client: httpx.AsyncClient) -> dict[str, str]:
    """Log the client in; the headers a cookie-authenticated change needs."""
    return {"X-CSRF-Token": await login(client)}


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    with smtp_sink() as found:
        yield found


def session_vault(app: FastAPI, client: httpx.AsyncClient) -> UnlockedVault:
    session = state(app).sessions.get(client.cookies.get(SESSION_COOKIE))
    assert session is not None
    return session.unlocked


async def person(client: httpx.AsyncClient, h: dict[str, str]) -> None:
    for field, value in (("name", "Anna Example"), ("email", "anna@example.org"), ("address", OLD)):
        r = await client.put(f"/api/v1/profile/{field}", json={"value": value}, headers=h)
        assert r.status_code == 200, r.text


async def use_sink(client: httpx.AsyncClient, h: dict[str, str], port: int) -> None:
    r = await client.put(
        "/api/v1/mail/settings",
        json={"host": "127.0.0.1", "port": port, "tls": "none", "from_addr": "anna@example.org"},
        headers=h,
    )
    assert r.status_code == 200, r.text


async def new_request(client: httpx.AsyncClient, h: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/rights", json={"vendor": "7mind", "kind": "access"} | body, headers=h)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def test_vocabularies_match_the_core() -> None:
    assert set(get_args(rights_api.RequestKind)) == set(REQUEST_TYPES)
    assert set(get_args(rights_api.Language)) == set(LANGUAGES)
    assert set(get_args(rights_api.OutboxStatus)) == set(OUTBOX_STATUSES)
    assert set(get_args(rights_api.RequestStatus)) == set(STATES)


async def test_routes_need_the_owner(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/rights", "/api/v1/moves", "/api/v1/outbox", "/api/v1/mail/settings"):
        assert_problem(await client.get(path), 401)


async def test_mail_settings_never_return_the_password(client: httpx.AsyncClient, h: dict[str, str]) -> None:
    assert_problem(await client.get("/api/v1/mail/settings"), 404, "not-found")
    body = {
        "host": "smtp.example.org",
        "from_addr": "anna@example.org",
        "username": "anna",
        "password": "hunter2-very-secret",
    }
    assert_problem(await client.put("/api/v1/mail/settings", json=body), 403, "csrf-failed")
    r = await client.put("/api/v1/mail/settings", json=body, headers=h)
    assert r.status_code == 200 and "hunter2" not in r.text
    got = r.json()
    assert got["password_set"] is True and "password" not in got and got["port"] == 587
    # Saved again without a password (same login): the saved one is kept.
    r = await client.put("/api/v1/mail/settings", json=body | {"password": None, "tls": "tls"}, headers=h)
    assert r.json()["password_set"] is True and r.json()["port"] == 465
    r = await client.get("/api/v1/mail/settings")
    assert r.status_code == 200 and "hunter2" not in r.text and r.json()["password_set"] is True
    r = await client.put(
        "/api/v1/mail/settings", json=body | {"clear_password": True, "password": None}, headers=h
    )
    assert r.json()["password_set"] is False
    bad = [
        {**body, "port": 0},
        {**body, "tls": "ssl3"},
        {**body, "surprise": 1},
        {"host": "smtp.example.org"},
    ]
    for b in bad:
        assert_problem(await client.put("/api/v1/mail/settings", json=b, headers=h), 422, "validation-error")
    r = await client.put("/api/v1/mail/settings", json={**body, "from_addr": "not-an-address"}, headers=h)
    assert_problem(r, 422, "invalid-value")
    r = await client.put("/api/v1/mail/settings", json={**body, "host": "smtp example"}, headers=h)
    assert_problem(r, 422, "invalid-value")


async def test_request_by_email_from_preview_to_close(
    client: httpx.AsyncClient, h: dict[str, str], sink: tuple[Sink, int]
) -> None:
    messages, port = sink
    await person(client, h)
    await use_sink(client, h, port)
    draft = await new_request(client, h, kind="portability", language="fr")
    rid = draft["id"]
    assert draft["status"] == "draft" and draft["channel"] == "email" and draft["deadline"] is None
    assert draft["recipient"] == "datenschutz@7mind.de" and "Anna Example" in draft["letter"]["body"]
    assert "20" in draft["letter"]["body"]  # Article 20

    # Without an explicit confirmation, sending is a preview and nothing leaves.
    for body in (None, {"confirm": False}):
        r = await client.post(f"/api/v1/rights/{rid}/send", json=body, headers=h)
        assert r.status_code == 200 and r.json()["sent"] is False and r.json()["status"] == "draft"
    assert messages.messages == [] and (await client.get("/api/v1/outbox")).json()["messages"] == []

    r = await client.post(f"/api/v1/rights/{rid}/send", json={"confirm": True}, headers=h)
    assert r.status_code == 200, r.text
    sent = r.json()
    today = today_local()
    assert sent["sent"] is True and sent["status"] == "sent" and sent["sent_on"] == today.isoformat()
    assert sent["deadline"] == (today + relativedelta(months=1)).isoformat()
    assert sent["report"]["sent"] == 1 and sent["delivery"]["status"] == "sent"
    assert len(messages.messages) == 1
    mail = messages.messages[0]
    assert mail["To"] == "datenschutz@7mind.de" and str(mail["Message-ID"]) == sent["delivery"]["message_id"]
    # Sending twice is refused.
    assert_problem(await client.post(f"/api/v1/rights/{rid}/send", json={"confirm": True}, headers=h), 409)
    assert len(messages.messages) == 1

    listed = (await client.get("/api/v1/rights")).json()["requests"]
    assert [r["id"] for r in listed] == [rid] and listed[0]["status"] == "sent"
    assert (await client.get("/api/v1/rights", params={"status": "draft"})).json()["requests"] == []
    assert_problem(await client.get("/api/v1/rights", params={"status": "lost"}), 422)

    r = await client.post(f"/api/v1/rights/{rid}/acknowledge", json={"note": "ticket 42"}, headers=h)
    assert r.json()["status"] == "acknowledged"
    r = await client.post(f"/api/v1/rights/{rid}/extend", headers=h)
    assert r.json()["extended"] is True
    assert r.json()["deadline"] == (today + relativedelta(months=3)).isoformat()
    assert_problem(await client.post(f"/api/v1/rights/{rid}/extend", headers=h), 409, "conflict")
    assert_problem(await client.post(f"/api/v1/rights/{rid}/acknowledge", headers=h), 409)

    # The complaint: a preview changes nothing; confirm sends it to the authority with the history.
    r = await client.get(f"/api/v1/rights/{rid}/escalation")
    assert r.status_code == 200 and r.json()["sent"] is False and r.json()["channel"] == "email"
    authority = r.json()["authority"]
    assert "DE" in authority["countries"]
    pdf = await client.get(f"/api/v1/rights/{rid}/escalation.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    r = await client.post(f"/api/v1/rights/{rid}/escalate", json={}, headers=h)
    assert r.json()["sent"] is False and r.json()["request"]["status"] == "acknowledged"
    assert len(messages.messages) == 1
    r = await client.post(f"/api/v1/rights/{rid}/escalate", json={"confirm": True}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["request"]["status"] == "escalated" and r.json()["report"]["sent"] == 1
    assert len(messages.messages) == 2 and messages.messages[1]["To"] == authority["email"]
    assert messages.messages[1].is_multipart()
    r = await client.post(f"/api/v1/rights/{rid}/escalate", json={"authority": "nowhere"}, headers=h)
    assert_problem(r, 404)

    # The answer: each file, and each file of a ZIP, becomes a document.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/orders.csv", "order,total\n1,9.99\n")
        zf.writestr("../escape.txt", "no")
    files = [
        ("file", ("answer.txt", b"Here is your data.", "text/plain")),
        ("file", ("export.zip", archive.getvalue(), "application/zip")),
    ]
    r = await client.post(f"/api/v1/rights/{rid}/answer", files=files, data={"note": "by mail"}, headers=h)
    assert r.status_code == 200, r.text
    outcomes = {o["path"]: o["status"] for o in r.json()["files"]}
    assert outcomes["answer.txt"] == "imported" and outcomes["export.zip#data/orders.csv"] == "imported"
    assert outcomes["export.zip#../escape.txt"] == "rejected"
    assert len(r.json()["request"]["documents"]) >= 2
    r = await client.post(f"/api/v1/rights/{rid}/answer", data={"note": "x"}, files=[], headers=h)
    assert r.status_code in (415, 422)
    r = await client.post(f"/api/v1/rights/{rid}/close", json={"note": "done"}, headers=h)
    assert r.json()["status"] == "closed"
    assert [e["event"] for e in r.json()["events"]][:3] == ["created", "sent", "acknowledged"]
    assert_problem(await client.post(f"/api/v1/rights/{rid}/close", headers=h), 409)


async def test_request_bad_input(client: httpx.AsyncClient, h: dict[str, str]) -> None:
    # Nothing in the profile: one message lists every missing element.
    r = await client.post("/api/v1/rights", json={"vendor": "7mind", "kind": "access"}, headers=h)
    body = assert_problem(r, 422, "missing-identity")
    assert "name" in body["detail"] and "email" in body["detail"]
    await person(client, h)
    bad: list[dict[str, Any]] = [
        {"vendor": "7mind", "kind": "delete-everything"},
        {"vendor": "7mind", "kind": "access", "language": "es"},
        {"vendor": "7mind", "kind": "access", "channel": "pigeon"},
        {"vendor": "", "kind": "access"},
        {"vendor": "7mind", "kind": "access", "extra": True},
    ]
    for b in bad:
        assert_problem(await client.post("/api/v1/rights", json=b, headers=h), 422, "validation-error")
    r = await client.post(
        "/api/v1/rights", json={"vendor": "no-such-vendor-anywhere", "kind": "access"}, headers=h
    )
    assert_problem(r, 404)
    r = await client.post("/api/v1/rights", json={"vendor": "7mind", "kind": "rectification"}, headers=h)
    assert "details" in assert_problem(r, 422)["detail"]
    r = await client.post(
        "/api/v1/rights", json={"vendor": "7mind", "kind": "access", "channel": "webform"}, headers=h
    )
    assert_problem(r, 422)
    r = await client.post("/api/v1/rights", json={"vendor": "7mind", "kind": "access"})
    assert_problem(r, 403, "csrf-failed")
    for path in ("/api/v1/rights/nope", "/api/v1/rights/nope/letter.pdf", "/api/v1/rights/nope/escalation"):
        assert_problem(await client.get(path), 404)
    for action in ("send", "acknowledge", "extend", "close", "escalate"):
        assert_problem(await client.post(f"/api/v1/rights/nope/{action}", json={}, headers=h), 404)
    r = await client.post(
        "/api/v1/rights/nope/answer", files=[("file", ("a.txt", b"x", "text/plain"))], headers=h
    )
    assert_problem(r, 404)
    draft = await new_request(client, h)
    r = await client.post(f"/api/v1/rights/{draft['id']}/acknowledge", headers=h)
    assert_problem(r, 409)
    assert_problem(await client.get(f"/api/v1/rights/{draft['id']}/escalation"), 409)


async def test_sending_without_a_mail_server_is_a_clear_problem(
    client: httpx.AsyncClient, h: dict[str, str]
) -> None:
    await person(client, h)
    draft = await new_request(client, h)
    r = await client.post(f"/api/v1/rights/{draft['id']}/send", json={"confirm": True}, headers=h)
    body = assert_problem(r, 409, "mail-not-set-up")
    assert "mail server" in body["detail"]
    assert (await client.get(f"/api/v1/rights/{draft['id']}")).json()["status"] == "draft"
    assert_problem(await client.post("/api/v1/outbox/send", headers=h), 409, "mail-not-set-up")


async def test_post_and_web_form_requests(client: httpx.AsyncClient, h: dict[str, str]) -> None:
    await person(client, h)
    letter = await new_request(client, h, vendor="4wmarketplace", kind="erasure")
    assert letter["channel"] == "post" and letter["recipient"]
    pdf = await client.get(f"/api/v1/rights/{letter['id']}/letter.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert (
        pdf.headers["content-type"] == "application/pdf"
        and "attachment" in pdf.headers["content-disposition"]
    )
    r = await client.post(f"/api/v1/rights/{letter['id']}/send", json={"confirm": True}, headers=h)
    assert r.json()["status"] == "sent" and r.json()["delivery"] is None and r.json()["report"] is None
    form = await new_request(client, h, vendor="cisco", kind="objection")
    assert form["channel"] == "webform" and form["recipient"].startswith("https://")
    r = await client.post(f"/api/v1/rights/{form['id']}/send", json={"confirm": True}, headers=h)
    assert r.json()["status"] == "sent"
    assert (await client.get("/api/v1/outbox")).json()["messages"] == []
    # a request that went out keeps its history: it cannot be discarded, only closed
    assert_problem(await client.delete(f"/api/v1/rights/{letter['id']}", headers=h), 409)


async def relate_directory(client: httpx.AsyncClient, h: dict[str, str], slug: str) -> str:
    r = await client.post("/api/v1/vendors/from-directory", json={"slug": slug}, headers=h)
    assert r.status_code == 201, r.text
    vid = str(r.json()["id"])
    r = await client.post(f"/api/v1/vendors/{vid}/relationships", json={}, headers=h)
    assert r.status_code == 201, r.text
    return vid


async def test_move_from_preview_to_statuses(
    client: httpx.AsyncClient, h: dict[str, str], sink: tuple[Sink, int]
) -> None:
    messages, port = sink
    await person(client, h)
    await use_sink(client, h, port)
    mind = await relate_directory(client, h, "7mind")
    blu = await relate_directory(client, h, "1blu")
    post = await relate_directory(client, h, "4wmarketplace")
    body = {"field": "address", "value": NEW}
    r = await client.post("/api/v1/moves/plan", json=body, headers=h)
    assert r.status_code == 200, r.text
    found = {c["vendor_id"]: c for c in r.json()["candidates"]}
    assert set(found) == {mind, blu, post}
    assert found[post]["channel"] == "post" and found[mind]["channel"] == "email"
    assert "customer" in found[mind]["reasons"]

    # No confirmation: a preview, and nothing changes.
    r = await client.post("/api/v1/moves", json=body | {"exclude": [blu]}, headers=h)
    assert r.status_code == 200 and r.json()["started"] is False
    assert (await client.get("/api/v1/profile")).json()["fields"]["address"] == OLD
    assert messages.messages == []

    r = await client.post("/api/v1/moves", json=body | {"exclude": [blu], "confirm": True}, headers=h)
    assert r.status_code == 201, r.text
    move = r.json()
    status = {n["vendor_id"]: n["status"] for n in move["notices"]}
    assert status == {mind: "sent", blu: "skipped", post: "to-post"}
    assert move["summary"] == {"sent": 1, "skipped": 1, "to-post": 1}
    assert [m["To"] for m in messages.messages] == ["datenschutz@7mind.de"]
    assert "Lyon" in messages.messages[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert (await client.get("/api/v1/profile")).json()["fields"]["address"]["city"] == "Lyon"

    mid = move["id"]
    pdf = await client.get(f"/api/v1/moves/{mid}/vendors/{post}/letter.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    r = await client.post(f"/api/v1/moves/{mid}/vendors/{post}/posted", headers=h)
    assert {n["vendor_id"]: n["status"] for n in r.json()["notices"]}[post] == "sent"
    r = await client.post(f"/api/v1/moves/{mid}/vendors/{mind}/acknowledge", headers=h)
    assert {n["vendor_id"]: n["status"] for n in r.json()["notices"]}[mind] == "acknowledged"
    assert_problem(await client.post(f"/api/v1/moves/{mid}/vendors/{blu}/acknowledge", headers=h), 409)
    assert_problem(await client.post(f"/api/v1/moves/{mid}/vendors/{mind}/posted", headers=h), 409)
    r = await client.post(f"/api/v1/moves/{mid}/retry", json={"confirm": True}, headers=h)
    assert r.json()["retried"] == 0
    assert [m["id"] for m in (await client.get("/api/v1/moves")).json()["moves"]] == [mid]
    assert (await client.get(f"/api/v1/moves/{mid}")).json()["summary"] == {
        "acknowledged": 1,
        "skipped": 1,
        "sent": 1,
    }
    assert len(messages.messages) == 1

    # Bad input.
    assert_problem(await client.get("/api/v1/moves/nope"), 404)
    assert_problem(await client.post("/api/v1/moves/nope/vendors/x/posted", headers=h), 404)
    assert_problem(await client.post(f"/api/v1/moves/{mid}/vendors/nope/acknowledge", headers=h), 404)
    assert_problem(await client.get(f"/api/v1/moves/{mid}/vendors/nope/letter.pdf"), 404)
    assert_problem(await client.post("/api/v1/moves/nope/retry", json={"confirm": True}, headers=h), 404)
    bad_plans: list[dict[str, Any]] = [
        {"field": "birth-date", "value": "1990-01-01"},
        {"field": "address", "value": {"planet": "Mars"}},
        {"field": "email", "value": "not-an-address"},
        {"field": "phone", "value": "+33 6 12 34 56 78"},  # no phone in the profile
    ]
    for b in bad_plans:
        assert_problem(await client.post("/api/v1/moves/plan", json=b, headers=h), 422, "invalid-value")
    assert_problem(await client.post("/api/v1/moves", json={"field": "email"}, headers=h), 422)
    r = await client.post("/api/v1/moves", json={"field": "email", "value": "a@b.example", "confirm": True})
    assert_problem(r, 403, "csrf-failed")


async def test_move_needs_a_mail_server_for_email(client: httpx.AsyncClient, h: dict[str, str]) -> None:
    await person(client, h)
    await relate_directory(client, h, "7mind")
    r = await client.post(
        "/api/v1/moves", json={"field": "address", "value": NEW, "confirm": True}, headers=h
    )
    assert_problem(r, 409, "mail-not-set-up")
    assert (await client.get("/api/v1/profile")).json()["fields"]["address"] == OLD


async def test_outbox_lists_without_text_and_handles_decisions(
    app: FastAPI, client: httpx.AsyncClient, h: dict[str, str], sink: tuple[Sink, int]
) -> None:
    messages, port = sink
    await person(client, h)
    await use_sink(client, h, port)
    rid = (await new_request(client, h))["id"]
    uv = session_vault(app, client)
    # Queued by the core (as the CLI does without --yes delivery), not yet delivered.
    from openvrm.rights.service import RightsService

    RightsService(uv).send(rid)
    listed = (await client.get("/api/v1/outbox")).json()
    assert listed["counts"] == {"pending": 1}
    (entry,) = listed["messages"]
    assert "body" not in entry and "Anna Example" not in str(entry)
    detail = (await client.get(f"/api/v1/outbox/{entry['id']}")).json()
    assert "Anna Example" in detail["body"] and detail["status"] == "pending"
    assert (await client.get("/api/v1/outbox", params={"status": "sent"})).json()["messages"] == []
    assert_problem(await client.get("/api/v1/outbox", params={"status": "lost"}), 422)

    # Cancel, then send again on purpose.
    r = await client.post(f"/api/v1/outbox/{entry['id']}/cancel", headers=h)
    assert r.json()["status"] == "cancelled"
    r = await client.post("/api/v1/outbox/send", headers=h)
    assert r.json()["sent"] == 0 and messages.messages == []
    r = await client.post(f"/api/v1/outbox/{entry['id']}/retry", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "sent" and len(messages.messages) == 1
    assert_problem(await client.post(f"/api/v1/outbox/{entry['id']}/cancel", headers=h), 409)
    assert_problem(await client.post(f"/api/v1/outbox/{entry['id']}/confirm", headers=h), 409)
    assert_problem(await client.post(f"/api/v1/outbox/{entry['id']}/retry", headers=h), 409)

    # A message left "sending" by a sender that stopped becomes unconfirmed; the person confirms it.
    with uv.db.write() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == entry["id"]).values(status="sending"))
    assert Outbox(uv).recover() == 1
    r = await client.post(f"/api/v1/outbox/{entry['id']}/confirm", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "sent"
    assert len(messages.messages) == 1

    for path in ("/api/v1/outbox/nope",):
        assert_problem(await client.get(path), 404)
    for action in ("retry", "confirm", "cancel"):
        assert_problem(await client.post(f"/api/v1/outbox/nope/{action}", headers=h), 404)
    assert_problem(await client.post("/api/v1/outbox/send"), 403, "csrf-failed")


async def test_a_draft_can_be_discarded_a_sent_request_cannot(
    client: httpx.AsyncClient, h: dict[str, str]
) -> None:
    await person(client, h)
    r = await client.post(
        "/api/v1/rights", json={"vendor": "7mind", "kind": "access", "channel": "post"}, headers=h
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert (await client.delete(f"/api/v1/rights/{rid}", headers=h)).status_code == 204
    assert_problem(await client.get(f"/api/v1/rights/{rid}", headers=h), 404)
    assert_problem(await client.delete(f"/api/v1/rights/{rid}", headers=h), 404)
