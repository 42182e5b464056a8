"""The bundled directory: complete, and searchable the way a person types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openvrm.directory import directory
from openvrm.directory.catalog import domain_of, main_label, normalise

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "datarequests"


def test_every_record_is_bundled() -> None:
    d = directory()
    assert len(d) == 3069
    assert len(d.authorities) == 57
    if (SHARED / "companies.jsonl").exists():
        slugs = {json.loads(line)["slug"] for line in (SHARED / "companies.jsonl").read_text().splitlines()}
        assert {e.slug for e in d.entries} == slugs


@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ("free mobile", "free-fr"),
        ("FREE", "free-fr"),
        ("deutsche bahn", "deutsche-bahn-ag"),
        ("Deutsche Bahn AG", "deutsche-bahn-ag"),
        ("deutsch bhan", "deutsche-bahn-ag"),  # two typos
        ("spotfy", "spotify"),  # a missing letter
        ("zalando se", "zalando"),  # legal form ignored
        ("free.fr", "free-fr"),  # a domain
        ("https://www.bahn.de/angebot", "deutsche-bahn"),  # a URL
        ("privacy@spotify.com", "spotify"),  # an e-mail address
        ("bahncard", "deutsche-bahn"),  # a brand the company runs
        ("orange", "orange"),
    ],
)
def test_search_finds_what_people_type(query: str, slug: str) -> None:
    hits = directory().search(query, limit=5)
    assert hits, query
    assert hits[0].entry.slug == slug, [(h.entry.slug, h.score) for h in hits]


def test_accents_and_case_do_not_matter() -> None:
    d = directory()
    name = next(e.name for e in d.entries if any(c in e.name for c in "éèöüä"))
    plain = normalise(name)
    assert plain.isascii()
    assert d.search(plain.upper(), limit=3)[0].entry.name == name


def test_filters() -> None:
    d = directory()
    fr = d.search("bank", country="FR", limit=20)
    assert fr and all(h.entry.serves("FR") for h in fr)
    cat = d.search("amazon", category="commerce", limit=20)
    assert cat and all("commerce" in h.entry.categories for h in cat)
    assert d.search("amazon", category="church") == []


def test_nonsense_finds_nothing_much() -> None:
    assert directory().search("qqqxxzzv") == []
    assert directory().search("") == []


def test_authorities_by_country() -> None:
    fr = directory().authorities_for("fr")
    assert [a.slug for a in fr] and "CNIL" in fr[0].name
    assert len(directory().authorities_for("DE")) > 1  # Germany has one per Land


def test_domain_helpers() -> None:
    assert domain_of("Privacy@Spotify.com") == "spotify.com"
    assert domain_of("https://www.bahn.de/x?y") == "bahn.de"
    assert domain_of("not a domain") is None
    assert main_label("amazon.co.uk") == "amazon"
    assert main_label("free.fr") == "free"
