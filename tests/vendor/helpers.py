"""Shared helpers of the vendor kit tests: a person with a pairwise key who signs real requests."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_httpx_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.terms import term
from openvrm.vendor import VendorConfig

BASE = "http://127.0.0.1:9001"
AGENT = "http://127.0.0.1:9"


def config(tmp_path: Path, **kw: Any) -> VendorConfig:
    options: dict[str, Any] = {
        "name": "Example Telco",
        "base_url": BASE,
        "store_dir": tmp_path / "vendor",
        "accepted_terms": ("service-delivery-plus-portability", "service-delivery-only"),
        "privacy_contact": "privacy@telco.example",
        "allow_loopback": True,
    }
    options.update(kw)
    return VendorConfig(**options)


def body_of(record: Any) -> bytes:
    return json.dumps(record).encode()


def signed_request(
    client: httpx.AsyncClient | httpx.Client,
    key: KeyPair,
    path: str,
    record: Any = None,
    *,
    raw: bytes | None = None,
    idem: str | None = None,
    method: str = "POST",
    base: str = BASE,
) -> httpx.Request:
    content = raw if raw is not None else (b"" if record is None else body_of(record))
    headers = {"Content-Type": "application/json"}
    if method == "POST":
        headers["Idempotency-Key"] = idem or str(uuid.uuid4())
    request = client.build_request(method, base + path, content=content, headers=headers)
    sign_httpx_request(request, key)
    return request


@dataclass
class Person:
    """A person's pairwise key for one vendor, and what they hold of the relationship."""

    key: KeyPair = field(default_factory=KeyPair.generate)
    agent: str = AGENT
    agreement: dict[str, Any] | None = None
    head: str | None = None

    def proffer(self, vendor_did: str, *term_ids: str) -> dict[str, Any]:
        return m.make_proffer(
            self.key,
            vendor_did,
            [term(t) for t in term_ids],
            agent={"ledger": f"{self.agent}/agent/ledger", "grants": f"{self.agent}/agent/grants"},
        )

    def event(self, subtype: str, payload: dict[str, Any], *, previous: str | None = None) -> dict[str, Any]:
        assert self.agreement is not None
        prev = self.head if previous is None else previous
        return m.make_event(self.key, self.agreement["agreement_id"], subtype, payload, prev)


async def connect(
    client: httpx.AsyncClient, person: Person, vendor_did: str, *term_ids: str
) -> dict[str, Any]:
    """Proffer, get an accept, send the agreement; return the countersigned agreement."""
    proffer = person.proffer(vendor_did, *(term_ids or ("service-delivery-only",)))
    r = await client.send(signed_request(client, person.key, "/vrm/relationship", proffer))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert m.check_answer(answer, proffer) is not None
    agreement = m.make_agreement(person.key, proffer, answer)
    r = await client.send(signed_request(client, person.key, "/vrm/relationship", agreement))
    assert r.status_code == 200, r.text
    signed: dict[str, Any] = r.json()
    m.check_agreement(signed, proffer=proffer, answer=answer)
    person.agreement = signed
    return signed
