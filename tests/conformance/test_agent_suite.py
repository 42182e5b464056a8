"""The agent checks pass against openvrm's own agent, and fail against an agent that checks nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openvrm.agent.service import AgentService
from openvrm.conformance import AGENT_CHECKS, AgentChecks, check_agent
from openvrm.conformance.live import ConformanceVendor, serve_factory_in_thread, serve_in_thread
from openvrm.conformance.vendor import report_text
from openvrm.server.app import create_app
from tests.conformance.conftest import LOOPBACK, Person, fake_connect, open_door_agent_app


@pytest.fixture
def person_server(person: Person) -> Iterator[str]:
    with serve_factory_in_thread(lambda url: create_app(person.settings)) as url:
        yield url


def test_openvrm_agent_conforms(person: Person, person_server: str) -> None:
    with ConformanceVendor() as vendor:
        agent = AgentService(person.unlocked, policy=LOOPBACK)
        result = agent.connect(vendor.url + "/", agent_base_url=person_server)
        assert result.decision == "accept" and result.connection is not None
        agreement_id = vendor.wait_for_agent(5)
        assert agreement_id == result.connection.agreement_id
        agent.grant(result.connection.id, ["email"])
        checks = vendor.checks(agreement_id, policy=LOOPBACK)
        assert isinstance(checks, AgentChecks)
        report = checks.run()
        assert report.ok, report_text(report)
        assert [c.name for c in report.checks] == [name for name, _ in AGENT_CHECKS]
        # No owner session is open on the server, so the agent queues pushes (202) as the spec allows.
        assert "queued" in report.get("push.receipt").detail
        assert report.get("grants.fetch").detail.startswith("1 grant")
        # The queued receipt is filed once the vault is used; the off-chain one is refused then.
        filed, refused = agent.process_inbox()
        assert (filed, refused) == (1, 1)


def test_open_door_agent_fails_the_signature_checks() -> None:
    with serve_in_thread(open_door_agent_app()) as agent_url, ConformanceVendor() as vendor:
        agreement_id = fake_connect(vendor.url, agent_url)
        report = vendor.checks(agreement_id, policy=LOOPBACK).run()
    assert not report.ok
    failed = {c.name for c in report.failures}
    assert {"push.unsigned", "push.wrong-key", "push.expired", "push.replay"} <= failed
    assert {"grants.unsigned", "grants.wrong-key"} <= failed
    assert report.get("relationship.agreement").outcome == "pass"
    assert "expected HTTP 401" in report.get("push.unsigned").detail


def test_check_agent_times_out_without_an_agent() -> None:
    ready: list[str] = []
    report = check_agent(timeout=0.3, policy=LOOPBACK, on_ready=ready.append)
    assert ready and ready[0].startswith("http://127.0.0.1:")
    assert not report.ok
    assert report.failures[0].name == "relationship.agreement"
    assert "no agent connected" in report.failures[0].detail
