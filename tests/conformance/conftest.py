"""Live peers on loopback for the conformance tests: the person's server, vendors, broken peers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse, Response

from openvrm.config import Settings
from openvrm.conformance._http import send_record
from openvrm.errors import OpenVRMError
from openvrm.net import UrlPolicy
from openvrm.profile.service import ProfileService
from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.terms import term
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendor.config import VendorConfig
from openvrm.vendor.kit import VendorKit
from tests.conftest import PASSPHRASE, fast_kdf

LOOPBACK = UrlPolicy(allow_loopback=True)


@dataclass
class Person:
    settings: Settings
    unlocked: UnlockedVault


@pytest.fixture
def person(sqlite_settings: Settings) -> Iterator[Person]:
    """A fresh vault (SQLite) with a profile, whose agent may talk to peers on loopback."""
    settings = replace(sqlite_settings, allow_loopback_peers=True)
    vault = Vault.open(settings, create=True)
    unlocked = vault.create(PASSPHRASE, kdf=fast_kdf())
    profile = ProfileService(unlocked)
    profile.set("name", "Ada Lovelace")
    profile.set("email", "ada@example.org")
    try:
        yield Person(settings, unlocked)
    finally:
        unlocked.lock()
        vault.close()


def vendor_config(url: str, store: Path, **kw: Any) -> VendorConfig:
    return VendorConfig(name="Test Vendor", base_url=url, store_dir=store, allow_loopback=True, **kw)


def _problem(exc: OpenVRMError) -> Response:
    status = int(getattr(exc, "status", 400))
    doc = {
        "type": "about:blank",
        "title": getattr(exc, "title", "error"),
        "status": status,
        "detail": str(exc),
    }
    return JSONResponse(doc, status_code=status, media_type="application/problem+json")


def broken_vendor_app(kit: VendorKit, flaw: str) -> FastAPI:
    """A vendor that runs the real kit but with one deliberate flaw.

    ``accepts-unsigned``: answers a proffer that carries no signature; ``unsigned-answer``: strips the
    signatures from its answers; ``crashes-on-garbage``: a 500 for a body that is not JSON.
    """
    app = FastAPI()

    @app.get("/.well-known/vrm")
    async def discovery() -> JSONResponse:
        return JSONResponse(kit.discovery())

    async def write(endpoint: str, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        if flaw == "crashes-on-garbage":
            try:
                json.loads(body)
            except ValueError:
                return PlainTextResponse("Internal Server Error", status_code=500)
        if flaw == "accepts-unsigned" and "signature" not in headers:
            record = json.loads(body)
            answer = await run_in_threadpool(kit.answer_proffer, record, record.get("person", ""))
            return JSONResponse(answer)
        url = kit.config.base_url + request.url.path
        try:
            stored = await run_in_threadpool(
                kit.handle_write, endpoint, "POST", url, request.url.path, headers, body
            )
        except OpenVRMError as exc:
            return _problem(exc)
        out = json.loads(stored.body)
        if flaw == "unsigned-answer" and out.get("type") == "answer":
            out.pop("signatures", None)
        return JSONResponse(out, status_code=stored.status_code)

    @app.post("/vrm/relationship")
    async def relationship(request: Request) -> Response:
        return await write("relationship", request)

    @app.post("/vrm/ledger")
    async def ledger(request: Request) -> Response:
        return await write("ledger", request)

    return app


def open_door_agent_app() -> FastAPI:
    """An agent that takes every push and serves its (empty) grants to anyone: no signature checks."""
    app = FastAPI()

    @app.post("/vrm/p/{handle}/ledger")
    async def ledger(handle: str, request: Request) -> JSONResponse:
        try:
            event = json.loads(await request.body())
        except ValueError:
            event = {}
        event_id = event.get("event_id") if isinstance(event, dict) else None
        return JSONResponse({"status": "queued", "event_id": event_id}, status_code=202)

    @app.get("/vrm/p/{handle}/grants")
    async def grants(handle: str) -> JSONResponse:
        return JSONResponse({"grants": []})

    return app


def fake_connect(vendor_url: str, agent_base: str) -> str:
    """Make a relationship with the vendor by hand, giving ``agent_base`` as the agent; the agreement id."""
    with httpx.Client(timeout=10) as client:
        doc = client.get(vendor_url + "/.well-known/vrm").json()
        person = KeyPair.generate()
        agent = {"ledger": f"{agent_base}/vrm/p/h/ledger", "grants": f"{agent_base}/vrm/p/h/grants"}
        proffer = m.make_proffer(person, doc["vendor"], [term("service-delivery-only")], agent=agent)
        endpoint = doc["endpoints"]["relationship"]
        answer = send_record(client, endpoint, proffer, person, m.new_uuid()).json()
        agreement = m.make_agreement(person, proffer, answer)
        signed = send_record(client, endpoint, agreement, person, m.new_uuid()).json()
    return str(signed["agreement_id"])
