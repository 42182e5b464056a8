"""Re-derive every worked example of docs/protocol.md with the real protocol code.

The examples are written by hand for their content (names, payloads, times, ids), but their DIDs, hashes,
chains and signatures are computed here by :mod:`openvrm.protocol.messages` with two fixed example keys.
Ed25519 signatures are deterministic, so the result is stable: the test suite checks that the document
equals what this module derives, and ``python -m tests.protocol.spec_examples --write`` rewrites it after
an edit.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.terms import term

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
EXAMPLE = re.compile(r"(<!-- schema: ([a-z-]+) -->\n```json\n)(.*?)(\n```)", flags=re.S)
PERSON = KeyPair.from_private_bytes(hashlib.sha256(b"openvrm protocol example key: person").digest())
VENDOR = KeyPair.from_private_bytes(hashlib.sha256(b"openvrm protocol example key: vendor").digest())
INTENT = KeyPair.from_private_bytes(hashlib.sha256(b"openvrm protocol example key: intent").digest())
DID = re.compile(r"did:key:z[1-9A-HJ-NP-Za-km-z]+")


def _swap_keys(text: str, person_did: str, vendor_did: str) -> str:
    for old, new in ((person_did, PERSON.did), (vendor_did, VENDOR.did)):
        text = text.replace(old.removeprefix("did:key:"), new.removeprefix("did:key:"))
    return text


def derive(doc: str) -> str:
    """The document with every example's keys, hashes, chains and signatures recomputed."""
    blocks = [(mt.group(2), json.loads(mt.group(3))) for mt in EXAMPLE.finditer(doc)]
    discovery = next(b for n, b in blocks if n == "discovery")
    proffer_old = next(b for n, b in blocks if n == "proffer")
    vendor_did, person_did = discovery["vendor"], proffer_old["person"]
    swapped = [(n, json.loads(_swap_keys(json.dumps(b), person_did, vendor_did))) for n, b in blocks]
    keys = {PERSON.did: PERSON, VENDOR.did: VENDOR}

    proffer = m.sign(m.unsigned(next(b for n, b in swapped if n == "proffer")), PERSON)
    answers = []
    for n, b in swapped:
        if n == "answer":
            b = m.unsigned(b) | {"proffer_hash": m.h(m.unsigned(proffer))}
            answers.append(m.sign(b, VENDOR))
    accept = next(a for a in answers if a["decision"] == "accept")
    agreement = next(b for n, b in swapped if n == "agreement")
    body = m.unsigned(agreement, "agreement_id") | {
        "proffer_hash": m.h(m.unsigned(proffer)),
        "answer_hash": m.h(m.unsigned(accept)),
    }
    agreement = {"type": body["type"], "vrm": body["vrm"], "agreement_id": m.h(body), **body}
    agreement = m.sign(m.sign(agreement, PERSON), VENDOR)

    events_old = sorted((b for n, b in swapped if n == "ledger-event"), key=lambda e: e["created_at"])
    heads: dict[str, str | None] = {PERSON.did: None, VENDOR.did: None}
    new_ids: dict[str, str] = {}
    events: dict[str, dict[str, Any]] = {}
    for e in events_old:
        author = e["author"]
        payload_hash = m.h(e["payload"])
        previous = heads[author]
        eid = m.event_id_of(agreement["agreement_id"], payload_hash, previous, e["created_at"])
        record = m.unsigned(e) | {
            "agreement_id": agreement["agreement_id"],
            "payload_hash": payload_hash,
            "previous_id": previous,
            "event_id": eid,
        }
        signed = m.sign(record, keys[author])
        new_ids[e["event_id"]] = eid
        events[eid] = signed
        heads[author] = eid

    out: list[dict[str, Any]] = []
    answer_iter = iter(answers)
    for n, b in swapped:
        if n == "discovery":
            out.append(b)
        elif n == "proffer":
            out.append(proffer)
        elif n == "answer":
            out.append(next(answer_iter))
        elif n == "agreement":
            out.append(agreement)
        elif n == "ledger-event":
            out.append(events[new_ids[b["event_id"]]])
        elif n in ("intent", "decision"):
            record = m.unsigned(b) | {"author": INTENT.did}
            if n == "intent":
                record["terms"] = [m.term_ref(term(ref["id"], ref["version"])) for ref in b["terms"]]
            out.append(m.sign(record, INTENT))
        elif n == "offer":
            record = m.unsigned(b) | {
                "vendor": VENDOR.did,
                "terms": [m.term_ref(term(ref["id"], ref["version"])) for ref in b["terms"]],
            }
            out.append(m.sign(record, VENDOR))
        elif n == "acknowledgement":
            ack = m.unsigned(b) | {
                "event_id": new_ids[b["event_id"]],
                "agreement_id": agreement["agreement_id"],
            }
            out.append(m.sign(ack, keys[ack["author"]]))
    rendered = iter(out)

    def replace(mt: re.Match[str]) -> str:
        return mt.group(1) + json.dumps(next(rendered), indent=2, ensure_ascii=False) + mt.group(4)

    return EXAMPLE.sub(replace, doc)


def main(argv: list[str]) -> int:
    text = DOC.read_text("utf-8")
    derived = derive(text)
    if "--write" in argv:
        DOC.write_text(derived, "utf-8")
        return 0
    return 0 if derived == text else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
