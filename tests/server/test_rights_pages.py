"""The rights, moves, outbox and mail pages in-process, on SQLite and PostgreSQL: plain forms, previews
before anything is sent, errors shown on the page, CSRF on every change, and mail really arriving at a
loopback SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.outbox.support import Sink, free_port, smtp_sink
from tests.server.test_pages import page_login
from tests.server.test_rights_api import NEW, OLD, person, relate_directory

pytestmark = pytest.mark.anyio


@pytest.fixture
async def token(client: httpx.AsyncClient) -> str:
    return await page_login(client)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    with smtp_sink() as found:
        yield found


def hx(token: str) -> dict[str, str]:
    return {"X-CSRF-Token": token}


async def mail_form(client: httpx.AsyncClient, token: str, port: int) -> None:
    r = await client.post(
        "/mail",
        data={
            "csrf_token": token,
            "host": "127.0.0.1",
            "port": str(port),
            "tls": "none",
            "from_addr": "anna@example.org",
        },  # fmt: skip
    )
    assert r.status_code == 303 and r.headers["location"] == "/mail?saved=1", r.text


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in (
        "/rights",
        "/rights/new",
        "/rights/x",
        "/moves",
        "/moves/x",
        "/outbox",
        "/outbox/x",
        "/mail",
    ):
        r = await client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login", path


async def test_navigation_lists_rights_moves_outbox(client: httpx.AsyncClient, token: str) -> None:
    html = (await client.get("/")).text
    for label, path in (("Rights", "/rights"), ("Moves", "/moves"), ("Outbox", "/outbox")):
        assert f'<a href="{path}">{label}</a>' in html
    for path in ("/rights", "/rights/new", "/moves", "/outbox", "/mail"):
        page = await client.get(path)
        assert page.status_code == 200 and "<h1>" in page.text and "<script>" not in page.text, path


async def test_mail_page_keeps_the_password_secret(client: httpx.AsyncClient, token: str) -> None:
    assert "No mail server is set up" in (await client.get("/mail")).text
    data = {"host": "smtp.example.org", "from_addr": "anna@example.org", "username": "anna",
            "password": "hunter2-very-secret"}  # fmt: skip
    assert (await client.post("/mail", data=data)).status_code == 403
    r = await client.post("/mail", data=data | {"csrf_token": token})
    assert r.status_code == 303
    page = (await client.get("/mail")).text
    assert "hunter2" not in page and "a password is saved" in page and "smtp.example.org:587" in page
    r = await client.post("/mail", data=data | {"csrf_token": token, "from_addr": "nope"})
    assert r.status_code == 422 and "not a valid e-mail" in r.text and "hunter2" not in r.text
    r = await client.post("/mail", data=data | {"csrf_token": token, "port": "99999999"})
    assert r.status_code == 422


async def test_request_preview_then_send(
    client: httpx.AsyncClient, token: str, sink: tuple[Sink, int]
) -> None:
    messages, port = sink
    h = hx(token)
    # Missing identity elements are listed on the form, one by one.
    r = await client.post("/rights", data={"csrf_token": token, "vendor_slug": "7mind", "kind": "access"})
    assert r.status_code == 422
    missing = re.search(r'<ul id="missing-elements">(.*?)</ul>', r.text, re.S)
    assert missing and "<li>name" in missing.group(1) and "<li>email" in missing.group(1)
    await person(client, h)
    await mail_form(client, token, port)
    # The directory search offers the company; choosing it fills the form.
    page = await client.get("/rights/new", params={"q": "7mind"})
    assert 'href="/rights/new?vendor=7mind"' in page.text
    page = await client.get("/rights/new", params={"vendor": "7mind"})
    assert 'name="vendor_slug" value="7mind"' in page.text
    r = await client.post("/rights", data={"vendor_slug": "7mind", "kind": "erasure"})
    assert r.status_code == 403
    r = await client.post("/rights", data={"csrf_token": token, "vendor_slug": "7mind", "kind": "erasure"})
    assert r.status_code == 303
    rid = r.headers["location"].rsplit("/", 1)[1]
    preview = (await client.get(r.headers["location"])).text
    assert "Preview: not sent yet" in preview and "datenschutz@7mind.de" in preview
    assert "Article 17" in preview or "Artikel 17" in preview
    assert "Send the e-mail" in preview

    # The send form without its confirmation shows the preview again; nothing leaves.
    r = await client.post(f"/rights/{rid}/send", data={"csrf_token": token})
    assert r.status_code == 200 and "Nothing was sent" in r.text and messages.messages == []
    r = await client.post(f"/rights/{rid}/send", data={"csrf_token": token, "confirm": "yes"})
    assert r.status_code == 200, r.text
    assert 'id="request-status">Sent<' in r.text and "1 sent" in r.text
    assert len(messages.messages) == 1 and messages.messages[0]["To"] == "datenschutz@7mind.de"
    listing = (await client.get("/rights")).text
    assert "7Mind GmbH" in listing and "badge-sent" in listing and "email-state" not in listing

    for action in ("acknowledge", "extend"):
        r = await client.post(f"/rights/{rid}/{action}", data={"csrf_token": token, "note": "ok"})
        assert r.status_code == 303
    r = await client.post(f"/rights/{rid}/extend", data={"csrf_token": token})
    assert r.status_code == 409 and "already extended" in r.text
    r = await client.post(
        f"/rights/{rid}/answer",
        data={"csrf_token": token},
        files=[("file", ("answer.txt", b"Your data: none.", "text/plain"))],
    )
    assert r.status_code == 200 and 'id="import-outcomes"' in r.text and "Imported" in r.text
    shown = (await client.get(f"/rights/{rid}")).text
    assert "badge-answered" in shown and "Documents received" in shown
    r = await client.post(f"/rights/{rid}/close", data={"csrf_token": token})
    assert r.status_code == 303
    assert "badge-closed" in (await client.get(f"/rights/{rid}")).text


async def test_request_errors_on_pages(client: httpx.AsyncClient, token: str) -> None:
    h = hx(token)
    await person(client, h)
    r = await client.post("/rights", data={"csrf_token": token, "vendor_slug": "7mind", "kind": "dance"})
    assert r.status_code == 422 and "one of access" in r.text
    r = await client.post("/rights", data={"csrf_token": token, "vendor_slug": "7mind", "kind": "access",
                                           "elements": "no equals sign"})  # fmt: skip
    assert r.status_code == 422 and "Name = value" in r.text
    assert (await client.get("/rights/nope")).status_code == 404
    for action in ("send", "acknowledge", "close", "escalate"):
        r = await client.post(f"/rights/nope/{action}", data={"csrf_token": token, "confirm": "yes"})
        assert r.status_code == 404, action
    assert (await client.get("/rights/nope/escalate")).status_code == 404
    # Sending by e-mail without a mail server: a clear message, the request stays a draft.
    r = await client.post("/rights", data={"csrf_token": token, "vendor_slug": "7mind", "kind": "access"})
    rid = r.headers["location"].rsplit("/", 1)[1]
    r = await client.post(f"/rights/{rid}/send", data={"csrf_token": token, "confirm": "yes"})
    assert r.status_code == 409 and "No mail server is set up" in r.text and 'href="/mail"' in r.text
    assert "Preview: not sent yet" in r.text


async def test_escalation_preview_then_send(
    client: httpx.AsyncClient, token: str, sink: tuple[Sink, int]
) -> None:
    messages, port = sink
    await person(client, hx(token))
    await mail_form(client, token, port)
    r = await client.post("/rights", data={"csrf_token": token, "vendor_slug": "7mind", "kind": "access"})
    rid = r.headers["location"].rsplit("/", 1)[1]
    await client.post(f"/rights/{rid}/send", data={"csrf_token": token, "confirm": "yes"})
    page = await client.get(f"/rights/{rid}/escalate")
    assert page.status_code == 200 and ("77" in page.text) and "Download the complaint" in page.text
    r = await client.post(f"/rights/{rid}/escalate", data={"csrf_token": token})
    assert r.status_code == 200 and "Nothing was sent" in r.text and len(messages.messages) == 1
    r = await client.post(f"/rights/{rid}/escalate", data={"csrf_token": token, "confirm": "yes"})
    assert r.status_code == 200 and "badge-escalated" in r.text
    assert len(messages.messages) == 2


async def test_move_plan_opt_out_and_statuses(
    client: httpx.AsyncClient, token: str, sink: tuple[Sink, int]
) -> None:
    messages, port = sink
    h = hx(token)
    await person(client, h)
    await mail_form(client, token, port)
    mind = await relate_directory(client, h, "7mind")
    blu = await relate_directory(client, h, "1blu")
    page = await client.get("/moves")
    assert 'option value="address"' in page.text
    form = {"csrf_token": token, "field": "address", **NEW}
    r = await client.post("/moves/plan", data=form)
    assert r.status_code == 200
    assert f'name="exclude" value="{mind}"' in r.text and f'name="exclude" value="{blu}"' in r.text
    assert "Leave 7Mind GmbH out" in r.text and "E-mail to datenschutz@7mind.de" in r.text
    # Posting the move without its confirmation shows the list again; nothing changes.
    r = await client.post("/moves", data=form | {"exclude": blu})
    assert r.status_code == 200 and "Who to tell" in r.text
    assert (await client.get("/api/v1/profile")).json()["fields"]["address"] == OLD
    r = await client.post("/moves", data={**form, "exclude": blu, "confirm": "yes"})
    assert r.status_code == 200, r.text
    assert re.search(rf'id="notice-{mind}".*?badge-sent', r.text, re.S)
    assert re.search(rf'id="notice-{blu}".*?badge-skipped', r.text, re.S)
    assert [m["To"] for m in messages.messages] == ["datenschutz@7mind.de"]
    moves = (await client.get("/api/v1/moves")).json()["moves"]
    mid = moves[0]["id"]
    assert f'href="/moves/{mid}"' in (await client.get("/moves")).text
    r = await client.post(f"/moves/{mid}/vendors/{mind}/acknowledge", data={"csrf_token": token})
    assert r.status_code == 303
    shown = (await client.get(f"/moves/{mid}")).text
    assert re.search(rf'id="notice-{mind}".*?badge-acknowledged', shown, re.S)
    r = await client.post(f"/moves/{mid}/vendors/{blu}/acknowledge", data={"csrf_token": token})
    assert r.status_code == 409 and "was not notified" in r.text
    assert (await client.get("/moves/nope")).status_code == 404
    assert (await client.post("/moves/nope/retry", data={"csrf_token": token})).status_code == 404
    r = await client.post("/moves/plan", data={"csrf_token": token, "field": "iban", "value": "x"})
    assert r.status_code == 422
    assert (await client.post("/moves/plan", data={"field": "address", **NEW})).status_code == 403


async def test_the_list_tells_a_request_whose_email_has_not_left(
    client: httpx.AsyncClient, token: str
) -> None:
    """The request is sent once queued; while its e-mail waits (no server answers), the list says so."""
    await person(client, hx(token))
    await mail_form(client, token, free_port())  # nothing listens there: the e-mail waits for a retry
    r = await client.post("/rights", data={"csrf_token": token, "vendor_slug": "7mind", "kind": "access"})
    rid = r.headers["location"].rsplit("/", 1)[1]
    r = await client.post(f"/rights/{rid}/send", data={"csrf_token": token, "confirm": "yes"})
    assert 'id="request-status">Sent<' in r.text
    listing = (await client.get("/rights")).text
    assert "badge-sent" in listing and '<span class="reason email-state">(not sent yet)</span>' in listing


async def test_outbox_pages(client: httpx.AsyncClient, token: str, sink: tuple[Sink, int]) -> None:
    messages, port = sink
    h = hx(token)
    await person(client, h)
    await mail_form(client, token, port)
    r = await client.post("/api/v1/rights", json={"vendor": "7mind", "kind": "access"}, headers=h)
    rid = r.json()["id"]
    await client.post(f"/api/v1/rights/{rid}/send", json={"confirm": True}, headers=h)
    (entry,) = (await client.get("/api/v1/outbox")).json()["messages"]
    listing = (await client.get("/outbox")).text
    assert entry["subject"] in listing and "badge-sent" in listing
    assert "Yours faithfully" not in listing  # never the text of a message in the list
    detail = await client.get(f"/outbox/{entry['id']}")
    assert detail.status_code == 200 and "Yours faithfully" in detail.text
    r = await client.post(f"/outbox/{entry['id']}/cancel", data={"csrf_token": token})
    assert r.status_code == 409 and "cannot be cancelled" in r.text
    r = await client.post(f"/outbox/{entry['id']}/confirm", data={"csrf_token": token})
    assert r.status_code == 409
    r = await client.post("/outbox/send", data={"csrf_token": token})
    assert r.status_code == 200 and "0 sent" in r.text
    assert (await client.post("/outbox/send", data={})).status_code == 403
    assert (await client.get("/outbox/nope")).status_code == 404
    for action in ("retry", "confirm", "cancel"):
        assert (await client.post(f"/outbox/nope/{action}", data={"csrf_token": token})).status_code == 404
    assert len(messages.messages) == 1
