"""The bundled terms roster: it loads, it is complete, and its legal hashes hold."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from typing import Any

import pytest

from openvrm.errors import IntegrityError, InvalidValue, NotFound
from openvrm.protocol.terms import DPV, Term, legal_hash, parse_roster, roster, term

REQUIRED = {
    "service-delivery-only",
    "service-delivery-plus-portability",
    "no-ai-training",
    "goods-and-services-only",
    "intent-only",
}


def _raw() -> dict[str, Any]:
    text = resources.files("openvrm.protocol.terms").joinpath("roster.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def test_roster_loads_with_the_required_terms() -> None:
    terms = roster()
    assert {t.id for t in terms} >= REQUIRED
    assert all(isinstance(t, Term) for t in terms)


@pytest.mark.parametrize("t", roster(), ids=lambda t: t.ref)
def test_every_term_has_every_field(t: Term) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", t.version)
    assert t.title and t.plain_text and t.legal_text
    assert re.search(r"^1\. ", t.legal_text, flags=re.M) and re.search(r"^2\. ", t.legal_text, flags=re.M)
    assert len(t.plain_text) < 4000, "the plain text should fit on one page"
    assert t.legal_sha256 == hashlib.sha256(t.legal_text.encode("utf-8")).hexdigest()
    m = t.machine
    every_iri = (
        m.purposes + m.prohibited_purposes + m.prohibited_processing + m.recipients + m.prohibited_recipients
    )
    assert m.prohibited_purposes, "each term forbids something"
    assert all(iri.startswith((DPV, "urn:openvrm:")) for iri in every_iri + m.obligations)
    assert not set(m.purposes) & set(m.prohibited_purposes)
    assert t.to_json() == next(r for r in _raw()["terms"] if r["id"] == t.id and r["version"] == t.version)


def test_machine_forms_say_what_the_titles_say() -> None:
    sdo = term("service-delivery-only").machine
    assert DPV + "ServiceProvision" in sdo.purposes
    assert DPV + "Profiling" in sdo.prohibited_processing
    assert {DPV + "Marketing", DPV + "Personalisation"} <= set(sdo.prohibited_purposes)
    assert DPV + "ThirdParty" in sdo.prohibited_recipients
    assert (
        "urn:openvrm:obligation:data-portability"
        in term("service-delivery-plus-portability").machine.obligations
    )
    assert "urn:openvrm:purpose:ai-model-training" in term("no-ai-training").machine.prohibited_purposes
    assert DPV + "SellProducts" in term("goods-and-services-only").machine.purposes
    intent = term("intent-only").machine
    assert intent.retention is not None and intent.retention.until == "intent-expiry"


def test_term_lookup_by_id_and_version() -> None:
    t = term("no-ai-training")
    assert term("no-ai-training", t.version) is t
    assert t.ref == f"no-ai-training@{t.version}"
    with pytest.raises(NotFound):
        term("sell-everything")
    with pytest.raises(NotFound):
        term("no-ai-training", "99.0.0")


def test_highest_version_wins() -> None:
    doc = _raw()
    newer = dict(doc["terms"][0], version="1.10.0")
    older = dict(doc["terms"][0], version="1.9.3")
    terms = parse_roster(json.dumps({"terms": [older, newer, doc["terms"][0]]}))
    assert max(terms, key=Term.version_key).version == "1.10.0"


def test_a_tampered_legal_text_is_refused() -> None:
    doc = _raw()
    doc["terms"][0]["legal_text"] = doc["terms"][0]["legal_text"].replace("must not", "may")
    with pytest.raises(IntegrityError, match="SHA-256"):
        parse_roster(json.dumps(doc))


def test_a_tampered_hash_is_refused() -> None:
    doc = _raw()
    doc["terms"][1]["legal_sha256"] = legal_hash("something else")
    with pytest.raises(IntegrityError):
        parse_roster(json.dumps(doc))


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.pop("title"),
        lambda t: t.update(version="1.0"),
        lambda t: t.update(id="Not An Id"),
        lambda t: t["machine"].update(purposes=["dpv:ServiceProvision"]),
        lambda t: t["machine"].update(retention={"concept": "x", "until": "y", "grace": "P1D"}),
    ],
)
def test_malformed_terms_are_refused(change: Any) -> None:
    doc = _raw()
    change(doc["terms"][0])
    with pytest.raises(InvalidValue):
        parse_roster(json.dumps(doc))


def test_duplicates_and_garbage_are_refused() -> None:
    doc = _raw()
    with pytest.raises(InvalidValue):
        parse_roster(json.dumps({"terms": [doc["terms"][0], doc["terms"][0]]}))
    with pytest.raises(InvalidValue):
        parse_roster(b"{not json")
    with pytest.raises(InvalidValue):
        parse_roster("[]")
