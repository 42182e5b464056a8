"""Structured logs: one JSON object per line, route templates, and no personal data at all."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import threading

import httpx
import pytest
from fastapi import FastAPI

from openvrm.config import Settings
from openvrm.logs import JsonFormatter, get_logger, log_event
from openvrm.vault.core import Vault
from tests.conftest import PASSPHRASE, fast_kdf
from tests.server.conftest import login

pytestmark = pytest.mark.anyio

EMAIL = "zelda.quartermain@example.org"
NAME = "Zelda Quartermain"
PHONE_INPUT = "+33 6 12 34 56 78"
VENDOR = "Xylophone Brothers Ltd"
CUSTOMER_NO = "CUST-998877"
DOC_TITLE = "Quartermain mortgage deed"
DOC_NAME = "deed-quartermain.txt"
DOC_BODY = b"confidential: account 5566778899"
BAD_EMAIL = "zelda-at-nowhere"


async def test_logs_carry_no_personal_data(
    app: FastAPI, client: httpx.AsyncClient, captured_logs: io.StringIO
) -> None:
    r = await client.post("/api/v1/session", json={"passphrase": "Wrong " + PASSPHRASE})
    assert r.status_code == 401
    csrf = await login(client)
    h = {"X-CSRF-Token": csrf}
    await client.put("/api/v1/profile/email", json={"value": EMAIL}, headers=h)
    await client.put("/api/v1/profile/name", json={"value": NAME}, headers=h)
    await client.put("/api/v1/profile/phone", json={"value": PHONE_INPUT}, headers=h)
    r = await client.put("/api/v1/profile/email", json={"value": BAD_EMAIL}, headers=h)
    assert r.status_code == 422  # the problem quotes the value to its owner; the log must not
    await client.get("/api/v1/profile/history", params={"field": "email", "q": EMAIL})
    vendor = (await client.post("/api/v1/vendors", json={"name": VENDOR}, headers=h)).json()
    await client.post(
        f"/api/v1/vendors/{vendor['id']}/relationships", json={"customer_number": CUSTOMER_NO}, headers=h
    )
    await client.get(f"/api/v1/vendors/{vendor['id']}")
    doc = (
        await client.post(
            "/api/v1/documents",
            files={"file": (DOC_NAME, DOC_BODY, "text/plain")},
            data={"title": DOC_TITLE},
            headers=h,
        )
    ).json()["document"]
    await client.get(f"/api/v1/documents/{doc['id']}/content")
    token = (await client.post("/api/v1/tokens", json={"name": "ci"}, headers=h)).json()["token"]
    await client.get("/api/v1/summary", headers={"Authorization": f"Bearer {token}"})
    await client.get("/api/v1/summary", headers={"Authorization": f"Bearer {token}x"})
    page = await client.get("/profile")
    assert NAME in page.text

    @app.get("/explode")
    def explode() -> None:
        raise ValueError(f"cannot handle {EMAIL}")

    assert (await client.get("/explode")).status_code == 500
    session_cookie = client.cookies.get("openvrm_session")
    await client.delete("/api/v1/session", headers=h)

    text = captured_logs.getvalue()
    secrets = [
        PASSPHRASE,
        EMAIL,
        NAME,
        "Zelda",
        "Quartermain",
        PHONE_INPUT,
        "+33612345678",
        VENDOR,
        CUSTOMER_NO,
        DOC_TITLE,
        DOC_NAME,
        DOC_BODY.decode(),
        BAD_EMAIL,
        token,
        token.split("_", 2)[2],
        csrf,
        str(session_cookie),
        vendor["id"],
        doc["id"],
        "field=email",
        "?",
    ]
    for value in secrets:
        assert value not in text, f"{value!r} leaked into the logs"

    entries = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "event"} <= set(e) for e in entries)
    requests = [e for e in entries if e["event"] == "http.request"]
    routes = {e["route"] for e in requests}
    assert {
        "/api/v1/vendors/{vendor_id}",
        "/api/v1/documents/{document_id}/content",
        "/api/v1/profile/history",
        "/api/v1/profile/{field}",
        "/api/v1/session",
        "/profile",
    } <= routes
    for e in requests:
        assert set(e) == {
            "time",
            "level",
            "logger",
            "event",
            "method",
            "route",
            "status",
            "duration_ms",
            "request_id",
        }
    crash = [e for e in entries if e["event"] == "http.unhandled_error"]
    assert crash and crash[0]["error_type"] == "ValueError" and crash[0]["route"] == "/explode"
    assert {"auth.login", "auth.login_failed", "auth.logout"} <= {e["event"] for e in entries}


def test_formatter_drops_exception_messages() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logger = get_logger("openvrm.test.formatter")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        try:
            raise KeyError("secret@example.org")
        except KeyError:
            logger.exception("job.failed")
        log_event(logger, "job.done", count=3, obj=object(), time="overridden?")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in buf.getvalue().splitlines())
    assert first["event"] == "job.failed" and first["error_type"] == "KeyError"
    assert "secret@example.org" not in buf.getvalue() and "Traceback" not in buf.getvalue()
    assert second["count"] == 3 and "obj" not in second and second["time"] != "overridden?"


def test_run_serves_with_json_logs_only(sqlite_settings: Settings) -> None:
    """``run`` under a real uvicorn: every stderr line is JSON, access logs are ours, no query strings."""
    with Vault.open(sqlite_settings, create=True) as vault:
        vault.create(PASSPHRASE, kdf=fast_kdf())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "from openvrm.config import Settings; from openvrm.server.app import run; "
        f"run(Settings.resolve({str(sqlite_settings.home)!r}), port={port})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        body = None
        for _ in range(300):
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/healthz?probe=secret-query", timeout=2).json()
                break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        assert body is not None and body["vault"] == "locked"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # fails on any non-JSON line
    requests = [e for e in entries if e["event"] == "http.request"]
    assert requests and requests[-1]["route"] == "/healthz" and requests[-1]["status"] == 200
    assert "secret-query" not in err and "probe" not in err
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's own messages, as JSON too
