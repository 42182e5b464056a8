"""End to end over loopback: the vendor app under uvicorn and a stand-in person's agent under uvicorn.

The stand-in agent is written here to the wire contract the person's agent follows: it verifies the
vendor's signed requests with RequestVerifier, answers a pushed event with a signed ack (200) or, while
"locked", queues it (202) and later POSTs the ack to the vendor's ledger; it serves sealed grants.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import MemoryNonceStore, RequestVerifier, known_keys
from openvrm.protocol.identity import KeyPair, public_key_from_did
from openvrm.protocol.sealing import seal_json_for
from openvrm.vendor import AgentRefused, VendorKit, create_vendor_app
from tests.vendor.helpers import Person, config, signed_request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


def serve(app: FastAPI, port: int) -> Served:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread)


def stop(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(timeout=10)


@dataclass
class StandInAgent:
    """What the person's agent does for one relationship, reduced to the wire contract."""

    person: KeyPair
    vendor_did: str = ""
    agreement: dict[str, Any] | None = None
    locked: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    grant_values: dict[str, str] = field(default_factory=dict)
    head: str | None = None

    def app(self) -> FastAPI:
        app = FastAPI()
        nonces = MemoryNonceStore()

        def verify(request: Request, body: bytes) -> None:
            verifier = RequestVerifier(
                known_keys({self.vendor_did: public_key_from_did(self.vendor_did)}), nonces
            )
            verifier.verify(request.method, str(request.url), dict(request.headers), body)

        @app.post("/agent/ledger")
        async def ledger(request: Request) -> JSONResponse:
            body = await request.body()
            try:
                verify(request, body)
                event = json.loads(body)
                assert self.agreement is not None
                m.check_event(event, self.agreement, author=self.vendor_did, previous_id=self.head)
                assert request.headers["idempotency-key"] == event["idempotency_key"]
            except Exception as exc:  # the stand-in answers every refusal with a problem
                return JSONResponse(
                    {"status": 422, "detail": str(exc)}, 422, media_type="application/problem+json"
                )
            self.head = event["event_id"]
            self.received.append(event)
            if self.locked:
                self.queued.append(event)
                return JSONResponse({"status": "queued", "event_id": event["event_id"]}, 202)
            return JSONResponse(m.make_ack(self.person, event))

        @app.get("/agent/grants")
        async def grants(request: Request) -> JSONResponse:
            try:
                verify(request, await request.body())
            except Exception as exc:
                return JSONResponse(
                    {"status": 401, "detail": str(exc)}, 401, media_type="application/problem+json"
                )
            grant_id = str(uuid.uuid4())
            value = {
                "grant_id": grant_id,
                "fields": self.grant_values,
                "purpose": "https://w3id.org/dpv#ServiceProvision",
                "term": "service-delivery-only@1.0.0",
                "until": "2027-11-20T00:00:00Z",
                "issued_at": m.timestamp(m.now_utc()),
            }
            sealed = seal_json_for(self.vendor_did, value)
            return JSONResponse(
                {"grants": [{"grant_id": grant_id, "until": value["until"], "sealed": sealed}]}
            )

        return app


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Served, Served, VendorKit, StandInAgent, Person]]:
    vport, aport = free_port(), free_port()
    cfg = config(tmp_path, base_url=f"http://127.0.0.1:{vport}")
    vendor_app = create_vendor_app(cfg)
    kit: VendorKit = vendor_app.state.kit
    person = Person(agent=f"http://127.0.0.1:{aport}")
    agent = StandInAgent(person.key, vendor_did=kit.did)
    v, a = serve(vendor_app, vport), serve(agent.app(), aport)
    try:
        yield v, a, kit, agent, person
    finally:
        stop(v)
        stop(a)
        kit.close()


def _connect(vendor: Served, person: Person, vendor_did: str) -> dict[str, Any]:
    with httpx.Client() as c:
        discovery = c.get(vendor.url + "/.well-known/vrm").json()
        assert discovery["vendor"] == vendor_did
        proffer = person.proffer(vendor_did, "service-delivery-only")
        answer = c.send(signed_request(c, person.key, "/vrm/relationship", proffer, base=vendor.url)).json()
        agreement = m.make_agreement(person.key, proffer, answer)
        r = c.send(signed_request(c, person.key, "/vrm/relationship", agreement, base=vendor.url))
        assert r.status_code == 200, r.text
        signed: dict[str, Any] = r.json()
    m.check_agreement(signed, proffer=proffer, answer=answer)
    return signed


def test_push_receipt_notice_data_request_and_grants_over_loopback(world: Any) -> None:
    vendor, _agent_served, kit, agent, person = world
    agreement = _connect(vendor, person, kit.did)
    agent.agreement = person.agreement = agreement
    aid = agreement["agreement_id"]

    pdf = b"%PDF-1.7 a tiny invoice"
    result = kit.push_receipt(
        aid,
        "INV-1",
        "2026-11-21",
        "19.99",
        "eur",
        [{"description": "Plan", "amount": "19.99"}],
        pdf,
        "application/pdf",
        "factur-x",
    )
    assert result.state == "acked" and result.ack is not None
    [got] = agent.received
    attachment = got["payload"]["attachment"]
    assert base64.b64decode(attachment["content"]) == pdf
    assert attachment["sha256"] == hashlib.sha256(pdf).hexdigest() and attachment["size"] == len(pdf)
    assert got["payload"]["currency"] == "EUR"

    # the vault is locked: the agent queues (202), then delivers its ack later to our ledger
    agent.locked = True
    notice = kit.push_notice(aid, "price-change", "21.99 EUR from January", "2027-01-01", "2026-12-31")
    assert notice.state == "delivered"
    assert notice.event["previous_id"] == result.event_id
    late_ack = m.make_ack(person.key, agent.queued[0])
    with httpx.Client() as c:
        r = c.send(signed_request(c, person.key, "/vrm/ledger", late_ack, base=vendor.url))
    assert r.status_code == 200, r.text
    states = {e.event_id: e.state for e in kit.events(aid)}
    assert states[notice.event_id] == "acked"
    agent.locked = False

    request_id = kit.request_data(aid, ["phone"], "https://w3id.org/dpv#ServiceProvision", "courier")
    assert kit.data_requests(aid)[0].request_id == request_id
    assert agent.received[-1]["payload"]["fields"] == ["phone"]

    agent.grant_values = {"email": "ada@example.org"}
    [grant] = kit.fetch_grants(aid)
    assert grant["fields"] == {"email": "ada@example.org"}
    assert grant["purpose"].endswith("ServiceProvision") and grant["until"]

    gdpr = person.event("gdpr-request", {"right": "access", "article": "GDPR Art. 15"})
    with httpx.Client() as c:
        r = c.send(signed_request(c, person.key, "/vrm/ledger", gdpr, base=vendor.url))
    assert r.status_code == 200, r.text
    response = kit.respond_gdpr(aid, gdpr["event_id"], "completed", "attached", attachment=b'{"email": "x"}')
    assert response.state == "acked"
    assert agent.received[-1]["payload"]["request_event_id"] == gdpr["event_id"]

    report = kit.verify_chain(aid)
    assert report.ok and report.events == 5 and report.acknowledged == 5


def test_unreachable_agent_keeps_event_pending_then_retry(world: Any) -> None:
    vendor, agent_served, kit, agent, person = world
    agreement = _connect(vendor, person, kit.did)
    agent.agreement = agreement
    aid = agreement["agreement_id"]
    stop(agent_served)
    from openvrm.vendor import AgentUnreachable

    with pytest.raises(AgentUnreachable):
        kit.push_notice(aid, "other", "hello", "2027-01-01")
    [entry] = kit.events(aid)
    assert entry.state == "pending"
    port = int(person.agent.rsplit(":", 1)[1])
    restarted = serve(agent.app(), port)
    try:
        [res] = kit.retry_pending()
        assert res.state == "acked" and res.event_id == entry.event_id
        assert agent.received[0]["idempotency_key"] == entry.record["idempotency_key"]
        # the agent refuses an event that does not follow its chain head: AgentRefused, not part of our lane
        agent.head = "sha256:" + "9" * 64
        with pytest.raises(AgentRefused, match="422"):
            kit.push_notice(aid, "other", "again", "2027-01-01")
        assert kit.verify_chain(aid).ok
    finally:
        stop(restarted)
