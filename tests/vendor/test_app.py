"""The vendor app over ASGI, with real signed requests from a person's pairwise key."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.vendor import VendorKit, create_vendor_app, mount_reference_vendors
from openvrm.vendor.store import DataRequest, GrantRecord, LedgerEntry, PendingProffer, Relationship
from tests.vendor.helpers import BASE, Person, config, connect, signed_request

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


def count(kit: VendorKit, model: Any) -> int:
    with kit.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status and doc["type"].startswith("https://") and doc["detail"]
    return doc


async def test_discovery_home_snippet_and_health(client: httpx.AsyncClient, kit: VendorKit) -> None:
    r = await client.get("/.well-known/vrm")
    assert r.status_code == 200
    doc = r.json()
    m.validate("discovery", doc)
    assert doc["vendor"] == kit.did
    assert [t["id"] for t in doc["terms"]] == ["service-delivery-plus-portability", "service-delivery-only"]
    assert doc["endpoints"]["ledger"] == f"{BASE}/vrm/ledger"
    home = await client.get("/")
    assert "data-vrm-rbutton" in home.text and "/vrm/rbutton.js" in home.text
    assert "&lt;div data-vrm-rbutton&gt;" in home.text  # the copy-paste snippet, escaped
    js = await client.get("/vrm/rbutton.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "web+vrm:connect?" in js.text and "openvrm.agent" in js.text
    assert json.dumps(f"{BASE}/.well-known/vrm") in js.text
    assert (await client.get("/healthz")).text == "ok"
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/vrm/ledger"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "object"


async def test_proffer_accepts_first_acceptable_term(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    proffer = person.proffer(kit.did, "goods-and-services-only", "service-delivery-only")
    r = await client.send(signed_request(client, person.key, "/vrm/relationship", proffer))
    assert r.status_code == 200, r.text
    answer = r.json()
    chosen = m.check_answer(answer, proffer)
    assert answer["decision"] == "accept" and chosen is not None and chosen.id == "service-delivery-only"


async def test_proffer_alternative_or_reject(tmp_path: Any) -> None:
    person = Person()
    for alternative, decision in ((True, "alternative"), (False, "reject")):
        cfg = config(tmp_path / decision, alternative=alternative)
        app = create_vendor_app(cfg)
        kit: VendorKit = app.state.kit
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            proffer = person.proffer(kit.did, "goods-and-services-only")
            r = await c.send(signed_request(c, person.key, "/vrm/relationship", proffer))
            answer = r.json()
            assert answer["decision"] == decision
            chosen = m.check_answer(answer, proffer)
            if decision == "alternative":
                assert chosen is not None and chosen.id == "service-delivery-plus-portability"
            else:
                assert chosen is None
            # an agreement on a non-accepting answer is refused and stores nothing
            forged = m.make_agreement(
                person.key, proffer, {**answer, "decision": "accept", "term": proffer["terms"][0]}
            )
            r = await c.send(signed_request(c, person.key, "/vrm/relationship", forged))
            assert_problem(r, 422)
            assert count(kit, Relationship) == 0
        kit.close()


async def test_agreement_is_countersigned_and_stored(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    signed = await connect(client, person, kit.did)
    m.check_agreement(signed)
    assert [s["kid"] for s in signed["signatures"]] == [m.kid_of(person.key.did), m.kid_of(kit.did)]
    [info] = kit.relationships()
    assert info.agreement_id == signed["agreement_id"] and info.status == "active"
    assert info.ledger_url == f"{person.agent}/agent/ledger"
    assert kit.verify_chain(signed["agreement_id"]).ok


async def test_wrong_signer_is_refused_without_trace(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person, stranger = Person(), Person()
    proffer = person.proffer(kit.did, "service-delivery-only")
    r = await client.send(signed_request(client, stranger.key, "/vrm/relationship", proffer))
    assert_problem(r, 403)
    assert count(kit, PendingProffer) == 0
    await connect(client, person, kit.did)
    assert person.agreement is not None
    event = person.event("grant", {"grant_id": str(uuid.uuid4()), "fields": ["email"]})
    r = await client.send(signed_request(client, stranger.key, "/vrm/ledger", event))
    assert_problem(r, 403)
    # the stranger signs an event of their own for the person's agreement: still not a party
    forged = m.make_event(stranger.key, person.agreement["agreement_id"], "grant", {"fields": []}, None)
    r = await client.send(signed_request(client, stranger.key, "/vrm/ledger", forged))
    assert_problem(r, 403)
    assert count(kit, LedgerEntry) == 0 and count(kit, GrantRecord) == 0


async def test_unknown_relationship_is_404(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person(agreement={"agreement_id": "sha256:" + "0" * 64})
    event = person.event("grant", {"fields": ["email"]})
    r = await client.send(signed_request(client, person.key, "/vrm/ledger", event))
    assert_problem(r, 404)


async def test_person_events_are_acked_and_applied(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    agreement = await connect(client, person, kit.did)
    grant_id = str(uuid.uuid4())
    grant = person.event(
        "grant",
        {
            "grant_id": grant_id,
            "fields": ["email", "phone"],
            "purpose": "https://w3id.org/dpv#ServiceProvision",
        },
    )
    r = await client.send(signed_request(client, person.key, "/vrm/ledger", grant))
    assert r.status_code == 200, r.text
    ack = r.json()
    m.check_ack(ack, grant, author=kit.did)
    assert ack["status"] == "accepted"
    person.head = grant["event_id"]
    revocation = person.event("revocation", {"grant_id": grant_id, "fields": ["phone"]})
    r = await client.send(signed_request(client, person.key, "/vrm/ledger", revocation))
    assert r.status_code == 200
    person.head = revocation["event_id"]
    [g] = kit.grants(agreement["agreement_id"])
    assert g.fields == ["email"] and g.state == "active"
    assert kit.verify_chain(agreement["agreement_id"]).ok


async def test_chain_break_is_refused_and_nothing_stored(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    await connect(client, person, kit.did)
    first = person.event("grant", {"fields": ["email"]})
    assert (await client.send(signed_request(client, person.key, "/vrm/ledger", first))).status_code == 200
    broken = person.event("revocation", {"fields": ["email"]}, previous="sha256:" + "1" * 64)
    doc = assert_problem(await client.send(signed_request(client, person.key, "/vrm/ledger", broken)), 422)
    assert "chain" in doc["detail"]
    tampered = dict(person.event("revocation", {"fields": ["email"]}, previous=first["event_id"]))
    tampered["payload"] = {"fields": ["phone"]}
    assert_problem(await client.send(signed_request(client, person.key, "/vrm/ledger", tampered)), 422)
    assert count(kit, LedgerEntry) == 1


async def test_end_of_relationship(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    agreement = await connect(client, person, kit.did)
    end = person.event("end-of-relationship", {"reason": "moving", "effective": "2026-12-31"})
    assert (await client.send(signed_request(client, person.key, "/vrm/ledger", end))).status_code == 200
    person.head = end["event_id"]
    assert kit.relationship(agreement["agreement_id"]).status == "ended"
    late = person.event("grant", {"fields": ["email"]})
    assert_problem(await client.send(signed_request(client, person.key, "/vrm/ledger", late)), 422)
    gdpr = person.event("gdpr-request", {"right": "erasure", "article": "GDPR Art. 17"})
    assert (await client.send(signed_request(client, person.key, "/vrm/ledger", gdpr))).status_code == 200
    with pytest.raises(Exception, match="ended"):
        kit.push_notice(agreement["agreement_id"], "price-change", "up", "2027-01-01")


async def test_data_request_answer_updates_the_request(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    agreement = await connect(client, person, kit.did)
    aid = agreement["agreement_id"]
    with kit.db.write() as s:  # a request we sent earlier (delivery is tested over real HTTP)
        s.add(
            DataRequest(
                request_id="r-1",
                agreement_id=aid,
                event_id="sha256:" + "2" * 64,
                fields=["phone"],
                purpose="https://w3id.org/dpv#ServiceProvision",
                why="courier",
                state="pending",
                created_at=m.now_utc(),
            )
        )
    answer = person.event("data-request-answer", {"request_id": "r-1", "decision": "approved"})
    assert (await client.send(signed_request(client, person.key, "/vrm/ledger", answer))).status_code == 200
    assert kit.data_requests(aid)[0].state == "approved"


async def test_idempotent_retry_and_conflict(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    await connect(client, person, kit.did)
    event = person.event("grant", {"fields": ["email"]})
    key = str(uuid.uuid4())
    first = await client.send(signed_request(client, person.key, "/vrm/ledger", event, idem=key))
    again = await client.send(signed_request(client, person.key, "/vrm/ledger", event, idem=key))
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    assert count(kit, LedgerEntry) == 1
    other = person.event("grant", {"fields": ["phone"]}, previous=event["event_id"])
    r = await client.send(signed_request(client, person.key, "/vrm/ledger", other, idem=key))
    assert_problem(r, 409)
    assert count(kit, LedgerEntry) == 1
    # the same event under a new key (after the idempotency window) is recognised by its id
    r = await client.send(signed_request(client, person.key, "/vrm/ledger", event))
    assert r.status_code == 200 and r.json() == first.json()
    assert count(kit, LedgerEntry) == 1


async def test_signature_failures(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    proffer = person.proffer(kit.did, "service-delivery-only")
    request = signed_request(client, person.key, "/vrm/relationship", proffer)
    assert (await client.send(request)).status_code == 200
    replay = client.build_request("POST", str(request.url), content=request.content, headers=request.headers)
    assert_problem(await client.send(replay), 401)
    unsigned = await client.post(
        "/vrm/relationship", content=json.dumps(proffer), headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert_problem(unsigned, 401)
    altered = signed_request(client, person.key, "/vrm/relationship", proffer)
    tampered = client.build_request(
        "POST",
        str(altered.url),
        content=altered.content.replace(b"proffer", b"prOffer"),
        headers=altered.headers,
    )
    assert_problem(await client.send(tampered), 401)
    wrong_host = signed_request(
        client, person.key, "/vrm/relationship", proffer, base="http://elsewhere.test"
    )
    moved = client.build_request(
        "POST",
        BASE + "/vrm/relationship",
        content=wrong_host.content,
        headers={k: v for k, v in wrong_host.headers.items() if k.lower() != "host"},
    )
    assert_problem(await client.send(moved), 401)


async def test_bad_bodies_are_problems_never_500(client: httpx.AsyncClient, kit: VendorKit) -> None:
    key = KeyPair.generate()
    for raw in (
        b"not json",
        b"[1,2]",
        b"{}",
        b'{"type":"proffer"}',
        b'{"type":"event"}',
        b'{"type":"ack","agreement_id":1}',
    ):
        for path in ("/vrm/relationship", "/vrm/ledger"):
            r = await client.send(signed_request(client, key, path, raw=raw))
            assert r.status_code in (404, 422), (path, raw, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
    person = Person()
    odd = {
        "type": "agreement",
        "person": person.key.did,
        "vendor": kit.did,
        "proffer_hash": [1],
        "agreement_id": {},
    }
    r = await client.send(signed_request(client, person.key, "/vrm/relationship", odd))
    assert_problem(r, 422)
    odd_event = {"type": "event", "agreement_id": ["x"], "payload": None}
    assert_problem(await client.send(signed_request(client, person.key, "/vrm/ledger", odd_event)), 404)
    big = signed_request(client, key, "/vrm/ledger", raw=b"{" + b" " * (1024 * 1024) + b"}")
    assert_problem(await client.send(big), 413)
    assert_problem(await client.get("/nowhere"), 404)
    assert_problem(await client.get("/vrm/ledger"), 405)
    bad_key = signed_request(client, key, "/vrm/ledger", raw=b"{}", idem="x" * 100)
    assert_problem(await client.send(bad_key), 422)
    assert count(kit, LedgerEntry) == 0 and count(kit, PendingProffer) == 0


async def test_late_ack_of_our_event(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    agreement = await connect(client, person, kit.did)
    ours = m.make_event(
        kit.key, agreement["agreement_id"], "notice", {"notice": "other", "summary": "hi"}, None
    )
    with kit.db.write() as s:  # as a push leaves it when the agent answered 202
        now = m.now_utc()
        s.add(
            LedgerEntry(
                event_id=ours["event_id"],
                agreement_id=agreement["agreement_id"],
                position=1,
                author="vendor",
                subtype="notice",
                record=ours,
                ack=None,
                state="delivered",
                created_at=now,
                updated_at=now,
            )
        )
    stranger_ack = m.make_ack(KeyPair.generate(), ours)
    assert (
        await client.send(signed_request(client, person.key, "/vrm/ledger", stranger_ack))
    ).status_code in (401, 422)
    ack = m.make_ack(person.key, ours)
    r = await client.send(signed_request(client, person.key, "/vrm/ledger", ack))
    assert r.status_code == 200 and r.json()["status"] == "recorded"
    [entry] = kit.events(agreement["agreement_id"])
    assert entry.state == "acked" and entry.ack == ack
    assert kit.verify_chain(agreement["agreement_id"]).acknowledged == 1


async def test_reference_vendors_mount_in_a_parent_app(tmp_path: Any) -> None:
    parent = FastAPI()
    mounted = mount_reference_vendors("http://127.0.0.1:8765", tmp_path / "demo")
    assert [p for p, _ in mounted] == ["/demo-vendors/telco", "/demo-vendors/energy", "/demo-vendors/books"]
    for path, sub in mounted:
        parent.mount(path, sub)
    person = Person()
    base = "http://127.0.0.1:8765"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=parent), base_url=base) as c:
        doc = (await c.get("/demo-vendors/books/.well-known/vrm")).json()
        m.validate("discovery", doc)
        assert doc["endpoints"]["relationship"] == f"{base}/demo-vendors/books/vrm/relationship"
        proffer = person.proffer(doc["vendor"], "service-delivery-only")
        r = await c.send(
            signed_request(c, person.key, "/demo-vendors/books/vrm/relationship", proffer, base=base)
        )
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "reject"
        tel = (await c.get("/demo-vendors/telco/.well-known/vrm")).json()
        proffer = person.proffer(tel["vendor"], "no-ai-training", "service-delivery-only")
        r = await c.send(
            signed_request(c, person.key, "/demo-vendors/telco/vrm/relationship", proffer, base=base)
        )
        assert r.json()["decision"] == "accept"
    for _, sub in mounted:
        sub.state.kit.close()


async def test_unsafe_agent_urls_are_refused(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person(agent="http://169.254.169.254")
    proffer = person.proffer(kit.did, "service-delivery-only")
    r = await client.send(signed_request(client, person.key, "/vrm/relationship", proffer))
    assert_problem(r, 422)
    assert count(kit, PendingProffer) == 0


async def test_mutated_records_never_cause_500(client: httpx.AsyncClient, kit: VendorKit) -> None:
    person = Person()
    await connect(client, person, kit.did)
    valid = [
        ("/vrm/relationship", person.proffer(kit.did, "service-delivery-only")),
        ("/vrm/relationship", person.agreement),
        ("/vrm/ledger", person.event("grant", {"grant_id": "g", "fields": ["email"]})),
    ]
    odd_values: list[Any] = [None, 0, -1, 1.5, "", "x" * 3000, [], {}, [None], {"a": None}, True]
    for path, record in valid:
        assert record is not None
        for name in list(record):
            variants = [{k: v for k, v in record.items() if k != name}]
            variants += [{**record, name: value} for value in odd_values]
            for variant in variants:
                r = await client.send(signed_request(client, person.key, path, variant))
                assert r.status_code < 500, (path, name, r.text)
                if variant != record:
                    assert r.status_code >= 400 or path == "/vrm/relationship" or name == "previous_id"
                if r.status_code >= 400:
                    assert r.headers["content-type"].startswith(PROBLEM)
    # only the untouched event (a variant equal to it: previous_id None -> None) made it into the ledger
    assert [e.record for e in kit.events(valid[2][1]["agreement_id"])] == [valid[2][1]]
