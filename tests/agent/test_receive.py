"""Filing a vendor's events (AgentService.receive): a resent event gets its acknowledgement again."""

from __future__ import annotations

from typing import Any

import pytest
from tests.exchange.support import connect_in_memory

from openvrm.agent.service import AgentService
from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.vault.core import UnlockedVault


def _connected(vault: UnlockedVault) -> tuple[AgentService, KeyPair, str, str]:
    agent, vendor, connected = connect_in_memory(vault, name="Shop")
    assert connected.connection is not None
    return agent, vendor, connected.connection.id, str(connected.connection.agreement_id)


def _receipt(vendor: KeyPair, agreement_id: str, n: int, previous: str | None) -> dict[str, Any]:
    return m.make_event(vendor, agreement_id, "receipt", {"receipt_id": f"R-{n}"}, previous)


def test_a_resent_event_gets_its_first_acknowledgement_and_is_filed_once(unlocked: UnlockedVault) -> None:
    agent, vendor, cid, aid = _connected(unlocked)
    first = _receipt(vendor, aid, 1, None)
    ack = agent.receive(cid, first)
    assert agent.receive(cid, first) == ack  # at once
    second = _receipt(vendor, aid, 2, first["event_id"])
    agent.receive(cid, second)
    assert agent.receive(cid, first) == ack  # once the head has moved on
    assert [e.event["event_id"] for e in agent.ledger(cid) if e.author == "vendor"] == [
        first["event_id"],
        second["event_id"],
    ]


def test_an_event_that_claims_a_filed_id_but_follows_the_head_is_checked_and_refused(
    unlocked: UnlockedVault,
) -> None:
    """Only an event off the head can be a resent one; one on the head is checked like any new event."""
    agent, vendor, cid, aid = _connected(unlocked)
    first = _receipt(vendor, aid, 1, None)
    agent.receive(cid, first)
    forged = m.sign(
        {**m.unsigned(_receipt(vendor, aid, 2, first["event_id"])), "event_id": first["event_id"]}, vendor
    )
    with pytest.raises(m.ProtocolViolation, match="event_id"):
        agent.receive(cid, forged)
    assert len([e for e in agent.ledger(cid) if e.author == "vendor"]) == 1


def test_the_opened_connection_is_kept_for_its_exact_sealed_bytes_until_the_lock(
    unlocked: UnlockedVault,
) -> None:
    """Filing opens a connection's sealed part once per unlock; sealed anew, it is opened anew."""
    from sqlalchemy import select

    from openvrm.records import payload_of, update
    from openvrm.storage.models import Connection

    agent, vendor, cid, aid = _connected(unlocked)
    first = _receipt(vendor, aid, 1, None)
    agent.receive(cid, first)
    agent.receive(cid, _receipt(vendor, aid, 2, first["event_id"]))
    memo = unlocked.caches["opened-connections"]
    assert [c for c, _sealed in memo] == [cid]
    with unlocked.db.write() as s:
        row = s.scalars(select(Connection).where(Connection.id == cid)).one()
        update(unlocked, row, payload_of(unlocked, row))  # the same values under a new ciphertext
    head = agent.ledger(cid)[-1].event["event_id"]
    ack = agent.receive(cid, _receipt(vendor, aid, 3, head))
    assert ack["status"] == "accepted"
    assert [c for c, _sealed in memo] == [cid, cid]
    unlocked.lock()
    assert "opened-connections" not in unlocked.caches
