"""Every exchange between the person's agent and the vendor kit, over real HTTP on loopback.

The person's server runs under uvicorn with the three reference vendors mounted; the agent (this process)
and the vendors talk only through signed HTTP requests. The vault runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.agent.conftest import World
from tests.conftest import PASSPHRASE

from openvrm.agent.service import ACK_SENDERS, PeerError
from openvrm.errors import Conflict, InvalidValue
from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_request
from openvrm.records import payload_of, update
from openvrm.storage.models import ConnectionEvent, InboxItem
from openvrm.vendor.errors import AgentRefused
from openvrm.vendors.service import VendorService

EINVOICE = (
    Path(__file__).resolve().parents[3]
    / "shared/data/einvoices/ZUGFeRDv1/correct/Intarsys/ZUGFeRD_1p0_BASIC_Einfach.pdf"
)


def _connect(world: World, slug: str = "telco", terms: list[str] | None = None) -> str:
    result = world.agent.connect(world.vendor_url(slug), agent_base_url=world.url, terms=terms)
    assert result.decision == "accept", result
    assert result.connection is not None
    return result.connection.id


def test_connect_gives_both_sides_the_same_signed_agreement(world: World) -> None:
    cid = _connect(world)
    conn = world.agent.get(cid)
    assert (conn.vendor_name, conn.status, conn.term["id"]) == (
        "Example Telco",
        "active",
        "service-delivery-only",
    )  # type: ignore[index]
    kit = world.vendors["telco"]
    (rel,) = kit.relationships()
    assert rel.agreement_id == conn.agreement_id and rel.person == conn.person_did
    assert kit.relationship(rel.agreement_id).agreement == world.agent.agreement(cid)
    m.check_agreement(world.agent.agreement(cid))
    # Pairwise keys: a second vendor sees another person key.
    other = world.agent.get(_connect(world, "energy"))
    assert other.person_did != conn.person_did
    # The vendor became one of the person's vendors.
    assert "Example Telco" in [v.name for v in VendorService(world.unlocked).list()]
    with pytest.raises(Conflict, match="already a connection"):
        world.agent.connect(world.vendor_url("telco"), agent_base_url=world.url)


def test_alternative_and_rejection_bind_nobody(world: World) -> None:
    books = world.agent.connect(world.vendor_url("books"), agent_base_url=world.url)
    assert (books.decision, books.connection) == ("reject", None)
    energy = world.agent.connect(
        world.vendor_url("energy"), agent_base_url=world.url, terms=["goods-and-services-only"]
    )
    assert energy.decision == "alternative" and energy.term["id"] == "service-delivery-only"  # type: ignore[index]
    assert world.agent.connections() == []
    assert world.vendors["energy"].relationships() == []
    accepted = _connect(world, "books", ["goods-and-services-only"])
    assert world.agent.get(accepted).term["id"] == "goods-and-services-only"  # type: ignore[index]


def test_grant_fetch_revoke_at_once(world: World) -> None:
    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    grant = world.agent.grant(cid, ["email"], until=datetime.now(UTC).date() + timedelta(days=30))
    (fetched,) = kit.fetch_grants(aid)
    assert fetched["fields"] == {"email": "ada@example.org"}
    assert fetched["grant_id"] == grant.id and fetched["term"] == "service-delivery-only@1.0.0"
    assert [h.vendor_name for h in world.agent.holders("email")] == ["Example Telco"]
    assert world.agent.holders(" Email ") == world.agent.holders("email")  # typed as people type it
    with pytest.raises(InvalidValue, match="unknown field type"):
        world.agent.holders("emial")
    world.agent.revoke(grant.id)
    assert kit.fetch_grants(aid) == []
    assert world.agent.holders("email") == []
    ledger = world.agent.ledger(cid)
    assert [(e.subtype, e.state) for e in ledger] == [("grant", "acked"), ("revocation", "acked")]
    assert [e.subtype for e in kit.events(aid)] == ["grant", "revocation"]
    receipt = world.agent.kantara_receipt(grant.id)
    assert receipt["version"] == "KI-CR-v1.1.0" and receipt["revoked"] is True
    assert receipt["services"][0]["purposes"][0]["piiCategory"] == ["email"]
    consent = world.agent.get_grant(grant.id).consent
    assert [c["status"] for c in consent] == ["dpv:ConsentGiven", "dpv:ConsentWithdrawn"]


def test_a_receipt_pushed_while_locked_is_filed_on_unlock(world: World) -> None:
    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    pushed = kit.push_receipt(
        aid,
        "INV-1",
        "2026-11-21",
        "19.99",
        "EUR",
        [{"description": "Mobile plan", "amount": "19.99"}],
        attachment=EINVOICE.read_bytes(),
        profile="factur-x",
    )
    assert pushed.state == "delivered", "no session is open: the agent queues it"
    with world.unlocked.db.read() as s:
        assert len(list(s.scalars(select(InboxItem)))) == 1
    filed, refused = world.agent.process_inbox()
    assert (filed, refused) == (1, 0)
    (entry,) = world.agent.ledger(cid)
    assert (entry.subtype, entry.author, entry.event["payload"]["total"]) == ("receipt", "vendor", "19.99")
    doc_ids = entry.note["attachment"]["document_ids"]
    assert doc_ids, "the attached Factur-X invoice became a document"
    from openvrm.documents.service import DocumentService

    doc = DocumentService(world.unlocked).get(doc_ids[0])
    assert doc.vendor_id == world.agent.get(cid).vendor_id
    (vendor_side,) = kit.events(aid)
    assert vendor_side.state == "acked" and vendor_side.ack is not None
    m.check_ack(vendor_side.ack, vendor_side.record, author=world.agent.get(cid).person_did)


def test_a_push_while_a_session_is_open_gets_a_signed_ack_at_once(world: World) -> None:
    cid = _connect(world)
    with httpx.Client(base_url=world.url) as client:
        r = client.post("/api/v1/session", json={"passphrase": PASSPHRASE})
        assert r.status_code == 200, r.text
        kit = world.vendors["telco"]
        aid = world.agent.get(cid).agreement_id
        assert aid is not None
        result = kit.push_notice(aid, "price-change", "19.99 becomes 21.99 EUR", "2027-01-01")
        assert result.state == "acked"
        (entry,) = world.agent.ledger(cid)
        assert entry.subtype == "notice" and entry.state == "received"


def test_data_request_approved_until_a_date(world: World) -> None:
    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    kit.request_data(aid, ["phone"], "https://w3id.org/dpv#ServiceProvision", "for the courier")
    world.agent.process_inbox()
    ((conn, entry),) = world.agent.data_requests()
    assert conn.id == cid and entry.event["payload"]["fields"] == ["phone"]
    assert kit.fetch_grants(aid) == [], "nothing is shared before the person decides"
    until = datetime.now(UTC).date() + timedelta(days=7)
    world.agent.answer_data_request(entry.id, approve=True, until=until)
    (fetched,) = kit.fetch_grants(aid)
    from openvrm.profile.service import ProfileService

    assert fetched["fields"] == {"phone": ProfileService(world.unlocked).get("phone")}
    assert fetched["until"].startswith(until.isoformat())
    assert world.agent.data_requests() == []
    (request,) = kit.data_requests(aid)
    assert request.state == "approved"


def test_a_denied_request_shares_nothing(world: World) -> None:
    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    kit.request_data(aid, ["phone"], "https://w3id.org/dpv#ServiceProvision", "marketing calls")
    world.agent.process_inbox()
    ((_, entry),) = world.agent.data_requests()
    world.agent.answer_data_request(entry.id, approve=False)
    assert kit.fetch_grants(aid) == []
    assert kit.data_requests(aid)[0].state == "denied"


def test_many_events_queued_while_locked_are_filed_in_order_and_each_acknowledged(world: World) -> None:
    # Acknowledgements go out several at a time (agent.service.ACK_SENDERS): every one must still reach
    # the vendor, once, and the ledger keep the order the events came in.
    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    n = 3 * ACK_SENDERS + 5
    for i in range(n):
        pushed = kit.push_receipt(
            aid, f"INV-{i:03d}", "2026-11-21", "9.99", "EUR", [{"description": "Plan", "amount": "9.99"}]
        )
        assert pushed.state == "delivered"
    assert world.agent.process_inbox() == (n, 0)
    with world.unlocked.db.read() as s:
        assert list(s.scalars(select(InboxItem))) == []
    ledger = world.agent.ledger(cid)
    assert [e.event["payload"]["receipt_id"] for e in ledger] == [f"INV-{i:03d}" for i in range(n)]
    vendor_side = kit.events(aid)
    assert len(vendor_side) == n
    assert {e.state for e in vendor_side} == {"acked"}
    for entry in vendor_side:
        assert entry.ack is not None
        m.check_ack(entry.ack, entry.record, author=world.agent.get(cid).person_did)
    assert world.agent.process_inbox() == (0, 0)  # nothing left, nothing sent twice


def test_a_blocked_vendor_gets_nothing_and_can_push_nothing(world: World) -> None:
    cid = _connect(world)
    kit = world.vendors["telco"]
    conn = world.agent.get(cid)
    assert conn.agreement_id is not None and conn.vendor_id is not None
    world.agent.grant(cid, ["email"])
    vendors = VendorService(world.unlocked)
    rel = vendors.relate(conn.vendor_id)
    vendors.edit_relationship(rel.id, stance="blocked")
    assert world.agent.get(cid).status == "blocked"
    with pytest.raises(AgentRefused):
        kit.fetch_grants(conn.agreement_id)
    with pytest.raises(AgentRefused):
        kit.push_notice(conn.agreement_id, "other", "hello", None)
    assert world.agent.process_inbox() == (0, 0)
    assert [e.subtype for e in world.agent.ledger(cid)] == ["grant"]
    vendors.edit_relationship(rel.id, stance="neutral")
    assert kit.fetch_grants(conn.agreement_id)[0]["fields"] == {"email": "ada@example.org"}


def test_end_of_relationship_is_acknowledged_and_closes_the_door(world: World) -> None:
    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    world.agent.grant(cid, ["email"])
    gdpr = world.agent.gdpr_request(cid, "erasure", scope="everything")
    assert gdpr.state == "acked"
    end = world.agent.end(cid, reason="moving to another provider")
    assert end.state == "acked"
    assert world.agent.get(cid).status == "ended"
    (ended_grant,) = world.agent.grants(cid)
    assert not ended_grant.active
    assert [c["status"] for c in ended_grant.consent] == ["dpv:ConsentGiven", "dpv:ConsentWithdrawn"]
    assert ended_grant.consent[-1]["ledger_event"] == end.event["event_id"]
    assert kit.relationships()[0].status == "ended"
    with pytest.raises(AgentRefused):
        kit.fetch_grants(aid)
    with pytest.raises(InvalidValue, match="ended"):
        kit.push_notice(aid, "other", "come back", None)
    # Even a vendor that ignores its own kit's rule is refused by the agent.
    late = m.make_event(kit.key, aid, "notice", {"notice": "other", "summary": "come back"}, None)
    ledger_url = kit.relationship(aid).ledger_url
    assert ledger_url is not None
    body = m.canonical_json(late)
    headers = sign_request(
        "POST",
        ledger_url,
        {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()},
        body,
        kit.key,
    )
    refused = httpx.post(ledger_url, content=body, headers=headers)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/ended")
    # A GDPR answer may still follow the end.
    kit.respond_gdpr(aid, gdpr.event["event_id"], "completed", "all erased")
    world.agent.process_inbox()
    assert world.agent.ledger(cid)[-1].subtype == "gdpr-response"
    (report,) = world.agent.verify(cid)
    assert report.ok, report


def test_ledger_verify_names_a_tampered_event(world: World) -> None:
    from typer.testing import CliRunner

    from openvrm.cli.main import app

    cid = _connect(world)
    world.agent.grant(cid, ["email"])
    world.agent.gdpr_request(cid, "access", scope="all")
    env = {"OPENVRM_PASSPHRASE": PASSPHRASE, "OPENVRM_DATABASE_URL": world.settings.database_url}
    runner = CliRunner()
    ok = runner.invoke(app, ["--home", str(world.settings.home), "ledger", "verify", "--json"], env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)[0]["ok"] is True
    with world.unlocked.db.write() as s:
        row = s.scalars(select(ConnectionEvent).where(ConnectionEvent.position == 1)).one()
        p = payload_of(world.unlocked, row)
        p["event"]["payload"]["fields"] = ["email", "phone"]  # claim more was granted than was signed
        update(world.unlocked, row, p)
    bad = runner.invoke(app, ["--home", str(world.settings.home), "ledger", "verify"], env=env)
    assert bad.exit_code == 4
    assert "BROKEN" in bad.output and "event 1" in bad.output


def test_a_vendor_that_is_down_leaves_the_event_pending_then_it_is_resent(world: World) -> None:
    cid = _connect(world)
    conn = world.agent.get(cid)
    # Point the connection at a port nobody listens on, as if the vendor were down.
    from openvrm.records import get_row
    from openvrm.storage.models import Connection

    with world.unlocked.db.write() as s:
        row = get_row(s, Connection, cid, "connection")
        p = payload_of(world.unlocked, row)
        real = p["endpoints"]["ledger"]
        p["endpoints"]["ledger"] = "http://127.0.0.1:9/vrm/ledger"
        update(world.unlocked, row, p)
    entry = world.agent.gdpr_request(cid, "access", scope="all")
    assert entry.state == "pending" and "reach" in str(entry.note.get("error"))
    with world.unlocked.db.write() as s:
        row = get_row(s, Connection, cid, "connection")
        p = payload_of(world.unlocked, row)
        p["endpoints"]["ledger"] = real
        update(world.unlocked, row, p)
    assert world.agent.deliver_pending() == 1
    assert world.agent.deliver_pending() == 0
    assert [e.state for e in world.agent.ledger(cid)] == ["acked"]
    assert len(world.vendors["telco"].events(conn.agreement_id or "")) == 1, "delivered once"


def test_a_move_reaches_protocol_vendors_as_a_signed_update(world: World) -> None:
    from openvrm.moves.service import MoveService

    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    world.agent.grant(cid, ["email"])
    plan = MoveService(world.unlocked).plan("email", "ada@new.example")
    (cand,) = [c for c in plan.candidates if c.vendor_name == "Example Telco"]
    assert cand.channel == "protocol"
    move = MoveService(world.unlocked).start("email", "ada@new.example")
    (notice,) = [n for n in move.notices if n.vendor_name == "Example Telco"]
    assert notice.status == "acknowledged"
    assert kit.fetch_grants(aid)[0]["fields"] == {"email": "ada@new.example"}
    assert [e.subtype for e in kit.events(aid)] == ["grant", "profile-update"]


def test_unlocked_refusals_leave_no_trace(world: World) -> None:
    """A chain-breaking push is refused with 422 while a session is open, and nothing is filed."""
    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    with httpx.Client(base_url=world.url) as client:
        assert client.post("/api/v1/session", json={"passphrase": PASSPHRASE}).status_code == 200
        kit.push_notice(aid, "other", "first", None)
        forged = m.make_event(kit.key, aid, "notice", {"notice": "other", "summary": "fork"}, None)
        ledger_url = kit.relationship(aid).ledger_url
        assert ledger_url is not None
        body = m.canonical_json(forged)
        headers = sign_request(
            "POST",
            ledger_url,
            {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()},
            body,
            kit.key,
        )
        r = client.post(ledger_url, content=body, headers=headers)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert [e.event["payload"]["summary"] for e in world.agent.ledger(cid)] == ["first"]


def test_a_vendor_cannot_connect_on_its_own_terms_via_a_bad_discovery(world: World) -> None:
    with pytest.raises(PeerError):
        world.agent.connect(world.url + "/no-vendor-here", agent_base_url=world.url)


def test_no_personal_value_reaches_the_vault_store_in_the_clear(world: World) -> None:
    """Connections, ledgers, grants, pushed receipts and the inbox are all sealed on disk."""
    from sqlalchemy import text

    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    grant = world.agent.grant(cid, ["email", "phone"])
    kit.push_receipt(
        aid,
        "RCPT-PRIVATE-5521",
        "2026-11-21",
        "77.31",
        "EUR",
        [{"description": "Sofa Zorblax", "amount": "77.31"}],
    )
    kit.request_data(aid, ["name"], "https://w3id.org/dpv#ServiceProvision", "engraving Lovelace-Secret")
    world.agent.process_inbox()
    world.agent.revoke(grant.id)
    secrets = [
        "ada@example.org",
        "Ada Lovelace",
        "RCPT-PRIVATE-5521",
        "Sofa Zorblax",
        "Lovelace-Secret",
        "77.31",
    ]
    chunks: list[bytes] = []
    if world.settings.is_sqlite:
        for f in sorted(world.settings.home.glob("vault.db*")):
            chunks.append(f.read_bytes())
    else:
        with world.unlocked.db.engine.connect() as conn:
            for table in (
                "connections",
                "connection_events",
                "grants",
                "inbox_items",
                "protocol_idempotency",
            ):
                for row in conn.execute(text(f'select * from "{table}"')):  # noqa: S608 - fixed names
                    chunks += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    raw = b"\n".join(chunks)
    assert len(raw) > 5_000
    for s in secrets:
        for needle in (s.encode(), s.encode("utf-16-le")):
            assert needle not in raw, f"{s!r} found in the clear"
    assert any(e.event["payload"].get("receipt_id") == "RCPT-PRIVATE-5521" for e in world.agent.ledger(cid))


def test_notices_grants_and_gdpr_requests_show_in_upcoming(world: World) -> None:
    from openvrm.ledger.upcoming import to_ics, upcoming

    cid = _connect(world)
    kit = world.vendors["telco"]
    aid = world.agent.get(cid).agreement_id
    assert aid is not None
    today = datetime.now(UTC).date()
    kit.push_notice(
        aid, "price-change", "19.99 becomes 21.99", today + timedelta(days=40), today + timedelta(days=20)
    )
    world.agent.process_inbox()
    world.agent.grant(cid, ["email"], until=today + timedelta(days=10))
    gdpr = world.agent.gdpr_request(cid, "access", scope="all", respond_by=today + timedelta(days=30))
    events = upcoming(world.unlocked, today=today, days=60)
    kinds = {(e.kind, e.day) for e in events}
    assert ("notice-cancel-by", today + timedelta(days=20)) in kinds
    assert ("notice-effective", today + timedelta(days=40)) in kinds
    assert ("grant-ends", today + timedelta(days=10)) in kinds
    assert ("protocol-gdpr-due", today + timedelta(days=30)) in kinds
    assert b"Last day to cancel: Example Telco" in to_ics(events)
    # Once the vendor answers, the GDPR date goes away.
    kit.respond_gdpr(aid, gdpr.event["event_id"], "completed", "here is your data")
    world.agent.process_inbox()
    after = {e.kind for e in upcoming(world.unlocked, today=today, days=60)}
    assert "protocol-gdpr-due" not in after
