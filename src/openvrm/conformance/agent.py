"""Conformance checks of a person's agent, run from the vendor side of a relationship the agent started.

:class:`AgentChecks` needs what a vendor holds after an agent connected to it: the vendor's key and the
relationship (proffer, answer, countersigned agreement, the agent's ledger and grants URLs).
:meth:`AgentChecks.from_kit` takes them from a :class:`~openvrm.vendor.kit.VendorKit`; the waiting loop
and the live conformance vendor are in :mod:`openvrm.conformance.live`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from openvrm.conformance._http import (
    Sent,
    padding_body,
    problem_error,
    send,
    send_signed,
    signed_headers,
)
from openvrm.conformance.report import Progress, Report
from openvrm.errors import IntegrityError, InvalidValue
from openvrm.net import UrlPolicy, check_url, guarded_client
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.records import canonical_json
from openvrm.protocol.sealing import open_sealed_json

if TYPE_CHECKING:
    from openvrm.vendor.kit import VendorKit

ClientFactory = Callable[[], httpx.Client]

S_SIG = "3.1"
S_AGREEMENT = "5.3"
S_LEDGER = "6"
S_GRANTS = "7"
BOGUS_HEAD = "sha256:" + "f" * 64

AGENT_CHECKS: tuple[tuple[str, str], ...] = (
    ("relationship.agreement", S_AGREEMENT),
    ("push.unsigned", S_SIG),
    ("push.wrong-key", S_SIG),
    ("push.expired", S_SIG),
    ("push.too-large", S_SIG),
    ("push.receipt", S_LEDGER),
    ("push.replay", S_SIG),
    ("push.off-chain", S_LEDGER),
    ("grants.fetch", S_GRANTS),
    ("grants.unsigned", S_GRANTS),
    ("grants.wrong-key", S_GRANTS),
)
"""Every agent check, in the order it runs: (name, section of docs/protocol.md)."""


@dataclass(frozen=True)
class AgentRelationship:
    """What the vendor holds about the relationship the agent started."""

    proffer: dict[str, Any]
    answer: dict[str, Any]
    agreement: dict[str, Any]
    ledger_url: str | None
    grants_url: str | None
    vendor_head: str | None = None
    """The vendor's last event already on the chain (``None`` before its first)."""


class AgentChecks:
    """Runs every agent check as the vendor ``key`` of ``relationship``."""

    def __init__(
        self,
        key: KeyPair,
        relationship: AgentRelationship,
        *,
        policy: UrlPolicy | None = None,
        client_factory: ClientFactory | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.key = key
        self.rel = relationship
        self.policy = policy or UrlPolicy()
        self._factory = client_factory or (lambda: guarded_client(self.policy))
        self.progress = progress

    @classmethod
    def from_kit(cls, kit: VendorKit, agreement_id: str, **options: Any) -> AgentChecks:
        """The checks for relationship ``agreement_id`` of a vendor kit (its key, store and chain head)."""
        row = kit.relationship(agreement_id)
        ours = [e for e in kit.events(agreement_id) if e.author == "vendor" and e.state != "refused"]
        rel = AgentRelationship(
            dict(row.proffer),
            dict(row.answer),
            dict(row.agreement),
            row.ledger_url,
            row.grants_url,
            ours[-1].event_id if ours else None,
        )
        return cls(kit.key, rel, **options)

    def run(self) -> Report:
        target = self.rel.ledger_url or self.rel.agreement.get("person", "?")
        report = Report("agent", str(target), progress=self.progress)
        with self._factory() as client:
            _AgentRun(self, report, client).run()
        return report


def _receipt_payload() -> dict[str, Any]:
    return {
        "receipt_id": f"CONFORMANCE-{secrets.token_hex(4).upper()}",
        "issued": m.now_utc().date().isoformat(),
        "total": "1.00",
        "currency": "EUR",
        "lines": [{"description": "openvrm conformance check", "amount": "1.00"}],
    }


class _AgentRun:
    def __init__(self, checks: AgentChecks, report: Report, client: httpx.Client) -> None:
        self.key = checks.key
        self.rel = checks.rel
        self.policy = checks.policy
        self.report = report
        self.client = client
        self.head = checks.rel.vendor_head
        self.person = str(checks.rel.agreement.get("person", ""))
        self.aid = str(checks.rel.agreement.get("agreement_id", ""))

    def expect_problem(self, name: str, section: str, sent: Sent, statuses: tuple[int, ...] | None) -> bool:
        why = problem_error(sent, statuses)
        if why is None:
            self.report.passed(name, section, f"refused with HTTP {sent.status} problem+json")
            return True
        self.report.failed(name, section, why)
        return False

    def skip(self, names: list[str], why: str) -> None:
        sections = dict(AGENT_CHECKS)
        for name in names:
            self.report.skipped(name, sections[name], why)

    def receipt(self, previous: str | None = None) -> dict[str, Any]:
        prev = self.head if previous is None else previous
        return m.make_event(self.key, self.aid, "receipt", _receipt_payload(), prev)

    def run(self) -> None:
        if not self.agreement():
            self.skip([n for n, _ in AGENT_CHECKS[1:]], "needs a valid relationship")
            return
        if self.rel.ledger_url:
            self.pushes(self.rel.ledger_url)
        else:
            self.skip([n for n, _ in AGENT_CHECKS[1:8]], "the proffer gave no ledger URL")
        if self.rel.grants_url:
            self.grants(self.rel.grants_url)
        else:
            self.skip([n for n, _ in AGENT_CHECKS[8:]], "the proffer gave no grants URL")

    def agreement(self) -> bool:
        name = "relationship.agreement"
        try:
            m.check_agreement(self.rel.agreement, proffer=self.rel.proffer, answer=self.rel.answer)
        except (m.ProtocolViolation, SignatureError) as exc:
            self.report.failed(name, S_AGREEMENT, f"the agreement is not valid: {exc}")
            return False
        problems = []
        for what, url in (("ledger", self.rel.ledger_url), ("grants", self.rel.grants_url)):
            if url is None:
                problems.append(f"no {what} URL in the proffer")
                continue
            try:
                check_url(url, self.policy)
            except InvalidValue as exc:
                problems.append(f"the {what} URL is refused: {exc}")
        if problems:
            self.report.failed(name, S_AGREEMENT, "; ".join(problems))
            return False
        self.report.passed(name, S_AGREEMENT, "valid agreement signed by both sides; agent URLs pass")
        return True

    def post_event(self, url: str, event: dict[str, Any], *, created: Any = None) -> Sent:
        body = canonical_json(event)
        idem = event["idempotency_key"]
        return send_signed(self.client, "POST", url, body, self.key, idempotency_key=idem, created=created)

    def pushes(self, url: str) -> None:
        event = self.receipt()
        body = canonical_json(event)
        headers = {"Content-Type": "application/json", "Idempotency-Key": event["idempotency_key"]}
        self.expect_problem("push.unsigned", S_SIG, send(self.client, "POST", url, headers, body), (401,))

        stranger = KeyPair.generate()
        sent = send_signed(self.client, "POST", url, body, stranger, idempotency_key=event["idempotency_key"])
        self.expect_problem("push.wrong-key", S_SIG, sent, (401,))

        old = m.now_utc() - timedelta(hours=1)
        self.expect_problem("push.expired", S_SIG, self.post_event(url, self.receipt(), created=old), (401,))

        sent = send_signed(self.client, "POST", url, padding_body(), self.key)
        self.expect_problem("push.too-large", S_SIG, sent, (413,))

        event = self.receipt()
        first = self.post_event(url, event)
        if self.receipt_answer(first, event):
            self.head = event["event_id"]
            replay = send(self.client, "POST", first.url, first.headers, first.body)
            self.expect_problem("push.replay", S_SIG, replay, (401,))
        else:
            self.skip(["push.replay"], "needs a delivered receipt")

        stray = self.receipt(previous=BOGUS_HEAD)
        sent = self.post_event(url, stray)
        body_json = sent.json()
        if sent.status == 200 and isinstance(body_json, dict):
            try:
                m.check_ack(body_json, stray, author=self.person)
            except (m.ProtocolViolation, SignatureError) as exc:
                self.report.failed("push.off-chain", S_LEDGER, f"invalid acknowledgement: {exc}")
                return
            if body_json["status"] == "refused":
                self.report.passed("push.off-chain", S_LEDGER, "a signed refused acknowledgement")
            else:
                self.report.failed("push.off-chain", S_LEDGER, "an event off the chain head was accepted")
        elif sent.status == 202:
            self.report.skipped(
                "push.off-chain",
                S_LEDGER,
                "queued (HTTP 202: the vault is locked); the agent must refuse it with a signed "
                "'refused' acknowledgement once opened, which this run cannot wait for",
            )
        else:
            self.expect_problem("push.off-chain", S_LEDGER, sent, (422,))

    def receipt_answer(self, sent: Sent, event: Mapping[str, Any]) -> bool:
        name = "push.receipt"
        body = sent.json()
        if sent.status == 202:
            if isinstance(body, dict) and body.get("event_id") == event["event_id"]:
                self.report.passed(name, S_LEDGER, "queued (HTTP 202) for when the vault is opened")
                return True
            self.report.failed(name, S_LEDGER, f"a 202 must name the queued event_id: {sent.describe()}")
            return False
        if sent.status != 200:
            self.report.failed(name, S_LEDGER, f"a valid receipt was not taken: {sent.describe()}")
            return False
        try:
            m.check_ack(body, event, author=self.person)
        except (m.ProtocolViolation, SignatureError) as exc:
            self.report.failed(name, S_LEDGER, f"the acknowledgement is not valid: {exc}")
            return False
        if body["status"] != "accepted":
            self.report.failed(name, S_LEDGER, f"a valid receipt was refused: {body.get('reason')}")
            return False
        self.report.passed(name, S_LEDGER, "HTTP 200 with the person's signed acknowledgement")
        return True

    def grants(self, url: str) -> None:
        sent = send_signed(self.client, "GET", url, b"", self.key)
        doc = sent.json()
        items = doc.get("grants") if isinstance(doc, dict) else None
        if sent.status != 200 or not isinstance(items, list):
            why = f"expected 200 {{'grants': [...]}}: {sent.describe()}"
            self.report.failed("grants.fetch", S_GRANTS, why)
        else:
            unopened = self.open_all(items)
            if unopened:
                self.report.failed("grants.fetch", S_GRANTS, unopened)
            else:
                done = f"{len(items)} grant(s), each opens with the vendor key"
                self.report.passed("grants.fetch", S_GRANTS, done)

        headers = {"Accept": "application/json"}
        self.expect_problem("grants.unsigned", S_GRANTS, send(self.client, "GET", url, headers, b""), (401,))
        stranger = KeyPair.generate()
        signed = signed_headers("GET", url, b"", stranger)
        self.expect_problem("grants.wrong-key", S_GRANTS, send(self.client, "GET", url, signed, b""), (401,))

    def open_all(self, items: list[Any]) -> str | None:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("sealed"), dict):
                return "a grant has no sealed value"
            try:
                value = open_sealed_json(self.key, item["sealed"])
            except (InvalidValue, IntegrityError) as exc:
                return f"grant {item.get('grant_id')} does not open with the vendor key: {exc}"
            if not isinstance(value, dict) or value.get("grant_id") != item.get("grant_id"):
                return f"the sealed grant does not match grant {item.get('grant_id')}"
            if not isinstance(value.get("fields"), dict):
                return f"the sealed grant {item.get('grant_id')} holds no fields"
        return None
