"""Conformance checks of a vendor: the suite acts as a fresh person's agent against it.

:func:`check_vendor` fetches the discovery document, then sends the requests a conforming vendor must refuse
(unsigned, wrong key, expired, replayed, oversized, garbage) and the ones it must answer (a proffer, the
agreement, idempotent retries, a grant, an end of relationship), and checks every answer with the same
functions openvrm's own agent uses (:mod:`openvrm.protocol.messages`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import httpx

from openvrm.agent.service import discovery_url_of
from openvrm.conformance._http import (
    Sent,
    padding_body,
    problem_error,
    send,
    send_record,
    send_signed,
    signed_headers,
    with_keyid,
)
from openvrm.conformance.report import Progress, Report
from openvrm.errors import InvalidValue, OpenVRMError
from openvrm.net import UrlPolicy, check_url, guarded_client
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.records import canonical_json
from openvrm.protocol.terms import Term, roster

ClientFactory = Callable[[], httpx.Client]

S_SIG = "3.1"
S_DISCOVERY = "4"
S_PROFFER = "5.1"
S_ANSWER = "5.2"
S_AGREEMENT = "5.3"
S_LEDGER = "6"
S_END = "9"
BOGUS_HEAD = "sha256:" + "0" * 64

VENDOR_CHECKS: tuple[tuple[str, str], ...] = (
    ("discovery.fetch", S_DISCOVERY),
    ("discovery.schema", S_DISCOVERY),
    ("discovery.version", S_DISCOVERY),
    ("discovery.endpoints", S_DISCOVERY),
    ("signature.unsigned", S_SIG),
    ("signature.wrong-key", S_SIG),
    ("signature.expired", S_SIG),
    ("proffer.accept", S_ANSWER),
    ("signature.replay", S_SIG),
    ("idempotency.retry", S_SIG),
    ("idempotency.conflict", S_SIG),
    ("proffer.wrong-signer", S_PROFFER),
    ("proffer.unlisted-terms", S_ANSWER),
    ("body.too-large", S_SIG),
    ("body.garbage", S_SIG),
    ("agreement.countersigned", S_AGREEMENT),
    ("ledger.grant-ack", S_LEDGER),
    ("ledger.off-chain", S_LEDGER),
    ("ledger.end-ack", S_END),
    ("ledger.after-end", S_END),
)
"""Every vendor check, in the order it runs: (name, section of docs/protocol.md)."""


def check_vendor(
    url: str,
    *,
    policy: UrlPolicy | None = None,
    agent_url: str | None = None,
    client_factory: ClientFactory | None = None,
    progress: Progress | None = None,
) -> Report:
    """Run every vendor check against the vendor at ``url`` (its site or its ``/.well-known/vrm``).

    ``policy`` is the SSRF policy for the vendor's URLs (``UrlPolicy(allow_loopback=True)`` for a vendor on
    this machine). ``agent_url``, when given, is put in the proffers as the agent's base URL (the vendor may
    push to ``<agent_url>/vrm/p/conformance/ledger``); without it the proffers carry no agent URLs, which the
    protocol allows and none of these checks needs.
    """
    policy = policy or UrlPolicy()
    report = Report("vendor", url, progress=progress)
    try:
        target = discovery_url_of(url)
    except InvalidValue as exc:
        report.failed("discovery.fetch", S_DISCOVERY, str(exc))
        _skip_after(report, "discovery.fetch", "needs the discovery document")
        return report
    factory = client_factory or (lambda: guarded_client(policy))
    with factory() as client:
        _VendorRun(report, client, policy, agent_url).run(target)
    return report


def _skip_after(report: Report, name: str, why: str) -> None:
    names = [n for n, _ in VENDOR_CHECKS]
    for later, section in VENDOR_CHECKS[names.index(name) + 1 :]:
        report.skipped(later, section, why)


def _skip(report: Report, names: Sequence[str], why: str) -> None:
    sections = dict(VENDOR_CHECKS)
    for name in names:
        report.skipped(name, sections[name], why)


class _VendorRun:
    def __init__(self, report: Report, client: httpx.Client, policy: UrlPolicy, agent_url: str | None):
        self.report = report
        self.client = client
        self.policy = policy
        self.agent_url = agent_url.rstrip("/") if agent_url else None
        self.vendor_did = ""
        self.relationship_url = ""
        self.ledger_url = ""
        self.listed: list[Term] = []

    # -- helpers -------------------------------------------------------------------------------------

    def proffer(self, key: KeyPair, terms: Sequence[Term]) -> dict[str, Any]:
        agent = None
        if self.agent_url:
            base = f"{self.agent_url}/vrm/p/conformance-{key.did[-12:]}"
            agent = {"ledger": f"{base}/ledger", "grants": f"{base}/grants"}
        return m.make_proffer(key, self.vendor_did, terms, agent=agent)

    def expect_problem(self, name: str, section: str, sent: Sent, statuses: tuple[int, ...] | None) -> bool:
        why = problem_error(sent, statuses)
        if why is None:
            self.report.passed(name, section, f"refused with HTTP {sent.status} problem+json")
            return True
        self.report.failed(name, section, why)
        return False

    # -- the run -------------------------------------------------------------------------------------

    def run(self, target: str) -> None:
        if not self.discovery(target):
            return
        self.signatures()
        accepted = self.accept()
        if accepted is None:
            _skip(
                self.report,
                ["signature.replay", "idempotency.retry", "idempotency.conflict"],
                "needs an accepted proffer",
            )
        else:
            self.replay_and_idempotency(*accepted)
        self.wrong_signer()
        self.unlisted()
        self.bodies()
        agreement = self.agreement(accepted)
        if agreement is None:
            _skip_after(self.report, "agreement.countersigned", "needs a countersigned agreement")
            return
        self.ledger(*agreement)

    def discovery(self, target: str) -> bool:
        r = self.report
        try:
            check_url(target, self.policy)
        except InvalidValue as exc:
            r.failed("discovery.fetch", S_DISCOVERY, f"the discovery URL is refused: {exc}")
            _skip_after(r, "discovery.fetch", "needs the discovery document")
            return False
        sent = send(self.client, "GET", target, {"Accept": "application/json"}, b"")
        doc = sent.json()
        if sent.status != 200 or not isinstance(doc, dict):
            r.failed("discovery.fetch", S_DISCOVERY, f"GET {target}: {sent.describe()}")
            _skip_after(r, "discovery.fetch", "needs the discovery document")
            return False
        if not sent.content_type.lower().startswith("application/json"):
            r.failed("discovery.fetch", S_DISCOVERY, f"served as {sent.content_type!r}, not application/json")
        else:
            r.passed("discovery.fetch", S_DISCOVERY, f"GET {target}: 200 application/json")
        try:
            m.validate("discovery", doc)
        except m.ProtocolViolation as exc:
            r.failed("discovery.schema", S_DISCOVERY, str(exc))
            _skip_after(r, "discovery.schema", "needs a valid discovery document")
            return False
        r.passed("discovery.schema", S_DISCOVERY, "valid against discovery.schema.json")
        if m.VRM_VERSION not in doc["vrm_versions"]:
            r.failed("discovery.version", S_DISCOVERY, f"vrm_versions is {doc['vrm_versions']}, without 0.1")
            _skip_after(r, "discovery.version", "the vendor does not speak 0.1")
            return False
        r.passed("discovery.version", S_DISCOVERY, f"speaks {m.VRM_VERSION}")
        endpoints = doc["endpoints"]
        problems = [f"no {name!r} endpoint" for name in ("relationship", "ledger") if name not in endpoints]
        for name, endpoint in endpoints.items():
            try:
                check_url(str(endpoint), self.policy)
            except InvalidValue as exc:
                problems.append(f"{name} endpoint {endpoint!r} refused: {exc}")
        if problems:
            r.failed("discovery.endpoints", S_DISCOVERY, "; ".join(problems))
            _skip_after(r, "discovery.endpoints", "needs usable endpoints")
            return False
        r.passed("discovery.endpoints", S_DISCOVERY, f"{len(endpoints)} endpoint(s) pass the SSRF check")
        self.vendor_did = doc["vendor"]
        self.relationship_url = str(endpoints["relationship"])
        self.ledger_url = str(endpoints["ledger"])
        for ref in doc["terms"]:
            try:
                self.listed.append(m.roster_term(ref))
            except m.ProtocolViolation:
                continue
        return True

    def signatures(self) -> None:
        url = self.relationship_url
        person = KeyPair.generate()
        body = canonical_json(self.proffer(person, self.listed[:1] or roster()[:1]))
        headers = {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}
        sent = send(self.client, "POST", url, headers, body)
        self.expect_problem("signature.unsigned", S_SIG, sent, (401,))

        other = KeyPair.generate()
        signed = signed_headers("POST", url, body, other, idempotency_key=m.new_uuid())
        sent = send(self.client, "POST", url, with_keyid(signed, other, person), body)
        self.expect_problem("signature.wrong-key", S_SIG, sent, (401,))

        old = m.now_utc() - timedelta(hours=1)
        sent = send_signed(self.client, "POST", url, body, person, created=old)
        self.expect_problem("signature.expired", S_SIG, sent, (401,))

    def _answer(self, sent: Sent, proffer: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        if sent.status != 200:
            return None, f"the proffer was not answered: {sent.describe()}"
        answer = sent.json()
        try:
            m.check_answer(answer, proffer)
        except (m.ProtocolViolation, SignatureError) as exc:
            return None, f"the answer is not valid: {exc}"
        return answer, ""

    def accept(self) -> tuple[KeyPair, dict[str, Any], dict[str, Any], Sent] | None:
        if not self.listed:
            self.report.failed("proffer.accept", S_ANSWER, "the discovery document lists no roster term")
            return None
        person = KeyPair.generate()
        proffer = self.proffer(person, self.listed[:1])
        sent = send_record(self.client, self.relationship_url, proffer, person, m.new_uuid())
        answer, why = self._answer(sent, proffer)
        if answer is None:
            self.report.failed("proffer.accept", S_ANSWER, why)
            return None
        if answer["decision"] != "accept":
            self.report.failed(
                "proffer.accept",
                S_ANSWER,
                f"a proffer of listed {self.listed[0].id} was answered {answer['decision']}",
            )
            return None
        self.report.passed("proffer.accept", S_ANSWER, f"signed accept of {self.listed[0].id}")
        return person, proffer, answer, sent

    def replay_and_idempotency(
        self, person: KeyPair, proffer: dict[str, Any], answer: dict[str, Any], first: Sent
    ) -> None:
        replay = send(self.client, "POST", first.url, first.headers, first.body)
        self.expect_problem("signature.replay", S_SIG, replay, (401,))

        idem = first.headers["Idempotency-Key"]
        again = send_signed(self.client, "POST", first.url, first.body, person, idempotency_key=idem)
        if again.status == first.status and again.json() == first.json():
            self.report.passed("idempotency.retry", S_SIG, "the retry got the first response back")
        else:
            self.report.failed(
                "idempotency.retry", S_SIG, f"a retry with the same Idempotency-Key got {again.describe()}"
            )

        different = canonical_json(self.proffer(person, self.listed[:1]))
        sent = send_signed(self.client, "POST", first.url, different, person, idempotency_key=idem)
        self.expect_problem("idempotency.conflict", S_SIG, sent, (409,))

    def wrong_signer(self) -> None:
        person, sender = KeyPair.generate(), KeyPair.generate()
        proffer = self.proffer(person, self.listed[:1] or roster()[:1])
        sent = send_record(self.client, self.relationship_url, proffer, sender, m.new_uuid())
        self.expect_problem("proffer.wrong-signer", S_PROFFER, sent, None)

    def unlisted(self) -> None:
        listed = {t.id for t in self.listed}
        others = [t for t in roster() if t.id not in listed][: m.MAX_PROFFER_TERMS]
        if not others:
            _skip(self.report, ["proffer.unlisted-terms"], "the vendor lists every roster term")
            return
        person = KeyPair.generate()
        proffer = self.proffer(person, others)
        sent = send_record(self.client, self.relationship_url, proffer, person, m.new_uuid())
        answer, why = self._answer(sent, proffer)
        if answer is None:
            self.report.failed("proffer.unlisted-terms", S_ANSWER, why)
        elif answer["decision"] == "accept":
            self.report.failed(
                "proffer.unlisted-terms",
                S_ANSWER,
                f"accepted {answer['term']['id']}, which its discovery document does not list",
            )
        else:
            self.report.passed("proffer.unlisted-terms", S_ANSWER, f"signed {answer['decision']}")

    def bodies(self) -> None:
        person = KeyPair.generate()
        sent = send_signed(self.client, "POST", self.relationship_url, padding_body(), person)
        self.expect_problem("body.too-large", S_SIG, sent, (413,))
        sent = send_signed(self.client, "POST", self.relationship_url, b'{"type": "proffer", ', person)
        why = problem_error(sent, None)
        if why is None:
            self.report.passed("body.garbage", S_SIG, f"refused with HTTP {sent.status} problem+json")
        else:
            self.report.failed("body.garbage", S_SIG, f"garbage JSON: {why}")

    def agreement(
        self, accepted: tuple[KeyPair, dict[str, Any], dict[str, Any], Sent] | None
    ) -> tuple[KeyPair, dict[str, Any]] | None:
        if accepted is None:
            _skip(self.report, ["agreement.countersigned"], "needs an accepted proffer")
            return None
        person, proffer, answer, _first = accepted
        agreement = m.make_agreement(person, proffer, answer)
        sent = send_record(self.client, self.relationship_url, agreement, person, m.new_uuid())
        signed = sent.json()
        if sent.status != 200 or not isinstance(signed, dict):
            why = f"not countersigned: {sent.describe()}"
            self.report.failed("agreement.countersigned", S_AGREEMENT, why)
            return None
        try:
            m.check_agreement(signed, proffer=proffer, answer=answer)
        except (m.ProtocolViolation, SignatureError) as exc:
            self.report.failed("agreement.countersigned", S_AGREEMENT, f"the agreement is not valid: {exc}")
            return None
        if m.unsigned(signed) != m.unsigned(agreement):
            self.report.failed("agreement.countersigned", S_AGREEMENT, "the vendor signed a different body")
            return None
        self.report.passed("agreement.countersigned", S_AGREEMENT, "both signatures over the same body")
        return person, signed

    def _event_ack(
        self, name: str, section: str, person: KeyPair, event: dict[str, Any]
    ) -> tuple[Sent, dict[str, Any] | None, str]:
        sent = send_record(self.client, self.ledger_url, event, person, event["idempotency_key"])
        if sent.status != 200:
            return sent, None, sent.describe()
        ack = sent.json()
        try:
            m.check_ack(ack, event, author=self.vendor_did)
        except (m.ProtocolViolation, SignatureError) as exc:
            return sent, None, f"the acknowledgement is not valid: {exc}"
        return sent, ack, ""

    def ledger(self, person: KeyPair, agreement: dict[str, Any]) -> None:
        r = self.report
        aid = agreement["agreement_id"]
        payload = {
            "grant_id": m.new_uuid(),
            "fields": ["email"],
            "purpose": "https://w3id.org/dpv#ServiceProvision",
            "term": f"{agreement['term']['id']}@{agreement['term']['version']}",
            "sealed_to": m.kid_of(self.vendor_did),
        }
        grant = m.make_event(person, aid, "grant", payload, None)
        _sent, ack, why = self._event_ack("ledger.grant-ack", S_LEDGER, person, grant)
        head: str | None = None
        if ack is not None and ack["status"] == "accepted":
            r.passed("ledger.grant-ack", S_LEDGER, "signed accepted acknowledgement")
            head = grant["event_id"]
        else:
            why = why or f"the grant was refused: {ack and ack.get('reason')}"
            r.failed("ledger.grant-ack", S_LEDGER, why)

        stray = m.make_event(person, aid, "gdpr-request", _gdpr_payload(), BOGUS_HEAD)
        sent, ack, why = self._event_ack("ledger.off-chain", S_LEDGER, person, stray)
        if ack is not None and ack["status"] == "refused":
            r.passed("ledger.off-chain", S_LEDGER, "answered with a signed refused acknowledgement")
        elif ack is not None:
            r.failed("ledger.off-chain", S_LEDGER, "an event off the chain head was accepted")
        else:
            self.expect_problem("ledger.off-chain", S_LEDGER, sent, (422,))

        end_payload = {"reason": "openvrm conformance check", "effective": m.now_utc().date().isoformat()}
        end = m.make_event(person, aid, "end-of-relationship", end_payload, head)
        _sent, ack, why = self._event_ack("ledger.end-ack", S_END, person, end)
        if ack is not None and ack["status"] == "accepted":
            r.passed("ledger.end-ack", S_END, "signed accepted acknowledgement")
            head = end["event_id"]
        else:
            r.failed("ledger.end-ack", S_END, why or f"the end was refused: {ack and ack.get('reason')}")
            _skip(r, ["ledger.after-end"], "needs an acknowledged end of relationship")
            return

        late = m.make_event(person, aid, "grant", {**payload, "grant_id": m.new_uuid()}, head)
        sent, ack, why = self._event_ack("ledger.after-end", S_END, person, late)
        if ack is not None and ack["status"] == "refused":
            r.passed("ledger.after-end", S_END, "answered with a signed refused acknowledgement")
        elif ack is not None:
            r.failed("ledger.after-end", S_END, "a grant after the end of the relationship was accepted")
        else:
            self.expect_problem("ledger.after-end", S_END, sent, None)


def _gdpr_payload() -> dict[str, Any]:
    return {
        "right": "access",
        "article": "GDPR Art. 15",
        "scope": "openvrm conformance check",
        "respond_by": (m.now_utc() + timedelta(days=30)).date().isoformat(),
    }


def report_text(report: Report) -> str:
    """A plain-text rendering (for logs): one line per check."""
    verdict = "PASS" if report.ok else "FAIL"
    lines = [f"{report.kind} {report.target}: {verdict} {json.dumps(report.counts())}"]
    lines += [f"  [{c.outcome}] {c.name} ({c.section}) {c.detail}" for c in report.checks]
    return "\n".join(lines)


__all__ = ["VENDOR_CHECKS", "ClientFactory", "OpenVRMError", "check_vendor", "report_text"]
