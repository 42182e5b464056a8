"""Loading and searching the bundled directory.

Search is tolerant of case, accents, punctuation, legal forms ("SAS", "GmbH") and small typos. It works
on words: every record is indexed by the words of its name, of the brands it runs, and of its domains.
Each query word is matched exactly, as a prefix, or fuzzily (rapidfuzz's normalised Levenshtein ratio)
against that vocabulary, never by scanning every record. A record's score is the mean strength of its best
match for each query word, raised when the match is the record's own name or the main label of one of
its domains (so "free mobile" finds Free SAS, whose domain is free.fr).
"""

from __future__ import annotations

import bisect
import gzip
import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from rapidfuzz import fuzz, process

_STOP = frozenset(
    """a ab ag and as bv co corp company das de der des di die du e eu ev gmbh group groupe holding inc kg
    la le les limited llc ltd mbh nv of oy plc s sa sarl sas sasu se sl spa srl sro the und v""".split()
)
_DOMAIN = re.compile(r"(?<![@\w.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})(?![\w-])")
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "gov", "ac", "gouv", "edu"})


_NON_WORD = re.compile(r"[^\w]+")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")


# ASCII punctuation and control characters to spaces, in one C-level pass (the common case).
_ASCII_TO_SPACE = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})


def normalise(text: str) -> str:
    """Case-folded, accents removed, punctuation to spaces (fast path for ASCII text)."""
    if text.isascii():
        return text.lower().translate(_ASCII_TO_SPACE).strip()
    text = _COMBINING.sub("", unicodedata.normalize("NFKD", text)).replace("ß", "ss")
    return _NON_WORD.sub(" ", text.casefold()).strip()


def words(text: str) -> list[str]:
    return normalise(text).split()


def main_label(domain: str) -> str:
    """The label a person would call the site by: free.fr -> free, amazon.co.uk -> amazon."""
    labels = domain.removeprefix("www.").split(".")
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL:
        return labels[-3]
    return labels[-2] if len(labels) >= 2 else labels[0]


def domain_of(value: str) -> str | None:
    v = value.strip().lower()
    if "@" in v:
        v = v.rsplit("@", 1)[1]
    v = re.sub(r"^[a-z]+://", "", v).split("/")[0].split(":")[0].removeprefix("www.")
    return v if _DOMAIN.fullmatch(v) else None


@dataclass(frozen=True)
class DirectoryEntry:
    slug: str
    name: str
    runs: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    address: str | None = None
    email: str | None = None
    phone: str | None = None
    fax: str | None = None
    web: str | None = None
    webform: str | None = None
    required_elements: tuple[dict[str, str], ...] = ()
    transport: str | None = None
    request_language: str | None = None
    quality: str | None = None
    needs_id_document: bool = False
    domains: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> DirectoryEntry:
        domains: list[str] = []
        for source in [r.get("web") or "", r.get("email") or "", *r.get("runs", [])]:
            d = domain_of(source)
            found = [d] if d else [m.removeprefix("www.") for m in _DOMAIN.findall(source.lower())]
            for dom in found:
                if dom not in domains:
                    domains.append(dom)
        return cls(
            slug=r["slug"],
            name=r["name"],
            runs=tuple(r.get("runs", [])),
            categories=tuple(r.get("categories", [])),
            countries=tuple(c.upper() if c != "all" else "all" for c in r.get("relevant-countries", [])),
            address=r.get("address"),
            email=r.get("email"),
            phone=r.get("phone"),
            fax=r.get("fax"),
            web=r.get("web"),
            webform=r.get("webform"),
            required_elements=tuple(
                {"type": str(e.get("type", "")), "desc": str(e.get("desc", ""))}
                for e in r.get("required-elements", [])
            ),
            transport=r.get("suggested-transport-medium"),
            request_language=r.get("request-language"),
            quality=r.get("quality"),
            needs_id_document=bool(r.get("needs-id-document", False)),
            domains=tuple(domains),
        )

    def serves(self, country: str) -> bool:
        return "all" in self.countries or country.upper() in self.countries

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "runs": list(self.runs),
            "categories": list(self.categories),
            "countries": list(self.countries),
            "address": self.address,
            "email": self.email,
            "phone": self.phone,
            "fax": self.fax,
            "web": self.web,
            "webform": self.webform,
            "required_elements": [dict(e) for e in self.required_elements],
            "suggested_transport": self.transport,
            "request_language": self.request_language,
            "quality": self.quality,
            "needs_id_document": self.needs_id_document,
            "domains": list(self.domains),
        }


@dataclass(frozen=True)
class Authority:
    """A data-protection supervisory authority."""

    slug: str
    name: str
    countries: tuple[str, ...]
    address: str | None
    email: str | None
    phone: str | None
    web: str | None
    webform: str | None
    complaint_language: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "countries": list(self.countries),
            "address": self.address,
            "email": self.email,
            "phone": self.phone,
            "web": self.web,
            "webform": self.webform,
            "complaint_language": self.complaint_language,
        }


@dataclass(frozen=True)
class SearchHit:
    entry: DirectoryEntry
    score: float
    matched: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return self.entry.to_json() | {"score": round(self.score, 3), "matched": list(self.matched)}


# where a word came from, and how much a match there is worth
_BRAND, _NAME, _DOMAIN_LABEL, _RUNS = 1.0, 0.9, 0.9, 0.75
_PREFIX, _FUZZY = 0.7, 0.8
_BONUS_BRAND, _BONUS_DOMAIN, _BONUS_WHOLE_NAME = 0.25, 0.3, 0.3


class Directory:
    def __init__(self, entries: list[DirectoryEntry], authorities: list[Authority]) -> None:
        self.entries = entries
        self.authorities = authorities
        self._by_slug = {e.slug: e for e in entries}
        self._by_domain: dict[str, list[int]] = defaultdict(list)
        self._labels = [frozenset(main_label(d) for d in e.domains) for e in entries]
        self._name_words = [frozenset(words(e.name)) for e in entries]
        # word -> {entry index: (weight, where)}
        self._index: dict[str, dict[int, tuple[float, str]]] = defaultdict(dict)
        for i, e in enumerate(entries):
            for d in e.domains:
                self._by_domain[d].append(i)
            name_words = [w for w in words(e.name) if w not in _STOP] or words(e.name)
            for pos, w in enumerate(name_words):
                self._add(w, i, _BRAND if pos == 0 else _NAME, "brand" if pos == 0 else "name")
            compact = "".join(name_words)
            if len(name_words) > 1:
                self._add(compact, i, _BRAND, "brand")
            for run in e.runs:
                for w in words(run):
                    if w not in _STOP:
                        self._add(w, i, _RUNS, "runs")
            for d in e.domains:
                self._add(main_label(d), i, _DOMAIN_LABEL, "domain")
        self._vocab = sorted(self._index)

    def _add(self, word: str, i: int, weight: float, where: str) -> None:
        current = self._index[word].get(i)
        if current is None or current[0] < weight:
            self._index[word][i] = (weight, where)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, slug: str) -> DirectoryEntry | None:
        return self._by_slug.get(slug)

    def by_domain(self, value: str) -> list[DirectoryEntry]:
        """Records whose domains include ``value`` (a domain, URL or e-mail) or one of its parents."""
        d = domain_of(value)
        if not d:
            return []
        labels = d.split(".")
        for k in range(len(labels) - 1):
            hits = self._by_domain.get(".".join(labels[k:]))
            if hits:
                return [self.entries[i] for i in hits]
        return []

    def _candidates(self, q: str) -> list[tuple[str, float]]:
        """Vocabulary words matching query word ``q``, with match strength in (0, 1]."""
        found: dict[str, float] = {}
        if q in self._index:
            found[q] = 1.0
        if len(q) >= 3:
            start = bisect.bisect_left(self._vocab, q)
            for w in self._vocab[start : start + 200]:
                if not w.startswith(q):
                    break
                found.setdefault(w, _PREFIX)
        if len(q) >= 4:
            for w, score, _ in process.extract(q, self._vocab, scorer=fuzz.ratio, score_cutoff=75, limit=30):
                found.setdefault(w, _FUZZY * score / 100)
        return list(found.items())

    def search(
        self,
        query: str,
        *,
        country: str | None = None,
        category: str | None = None,
        limit: int = 10,
    ) -> list[SearchHit]:
        def keep(e: DirectoryEntry) -> bool:
            return (country is None or e.serves(country)) and (category is None or category in e.categories)

        hits: dict[int, SearchHit] = {}
        if "." in query or "@" in query:
            for e in self.by_domain(query):
                if keep(e):
                    hits[self.entries.index(e)] = SearchHit(e, 2.0, ("domain",))
        qwords = [w for w in words(query) if w not in _STOP] or words(query)
        if qwords:
            best: dict[int, list[float]] = defaultdict(lambda: [0.0] * len(qwords))
            exact_where: dict[int, set[str]] = defaultdict(set)
            for qi, q in enumerate(qwords):
                for word, strength in self._candidates(q):
                    for i, (weight, where) in self._index[word].items():
                        slots = best[i]
                        slots[qi] = max(slots[qi], strength * weight)
                        if strength == 1.0:
                            exact_where[i].add(where)
            # "deutsche bahn" also as one word, for records indexed by their compacted name
            compact = "".join(qwords)
            if len(qwords) > 1 and compact in self._index:
                for i, (weight, where) in self._index[compact].items():
                    best[i] = [max(v, weight) for v in best[i]]
                    exact_where[i].add(where)
            for i, slots in best.items():
                e = self.entries[i]
                if i in hits or not keep(e):
                    continue
                score = sum(slots) / len(qwords)
                wheres = exact_where.get(i, set())
                if "brand" in wheres:
                    score += _BONUS_BRAND / len(qwords)
                if any(q in self._labels[i] for q in qwords) or compact in self._labels[i]:
                    score += _BONUS_DOMAIN / len(qwords)
                    wheres = wheres | {"domain"}
                if len(qwords) > 1 and all(q in self._name_words[i] for q in qwords):
                    score += _BONUS_WHOLE_NAME
                if len(qwords) > 1 and (qwords[0] in self._name_words[i] or qwords[0] in self._labels[i]):
                    score += 0.05  # people name the brand first: "free mobile", "amazon fr"
                if e.quality == "verified":
                    score += 0.01
                hits[i] = SearchHit(e, score, tuple(sorted(wheres)))
        ranked = sorted(hits.values(), key=lambda h: (-h.score, len(h.entry.name), h.entry.slug))
        return ranked[:limit]

    def authorities_for(self, country: str) -> list[Authority]:
        c = country.upper()
        return [a for a in self.authorities if c in a.countries]


def _read_jsonl(name: str) -> list[dict[str, Any]]:
    raw = resources.files("openvrm.directory").joinpath("data", name).read_bytes()
    return [json.loads(line) for line in gzip.decompress(raw).decode("utf-8").splitlines() if line.strip()]


@cache
def directory() -> Directory:
    """The bundled directory, loaded and indexed once per process."""
    entries = [DirectoryEntry.from_record(r) for r in _read_jsonl("companies.jsonl.gz")]
    authorities = [
        Authority(
            slug=r["slug"],
            name=r["name"],
            countries=tuple(c.upper() for c in r.get("relevant-countries", [])),
            address=r.get("address"),
            email=r.get("email"),
            phone=r.get("phone"),
            web=r.get("web"),
            webform=r.get("webform"),
            complaint_language=r.get("complaint-language"),
        )
        for r in _read_jsonl("supervisory-authorities.jsonl.gz")
    ]
    return Directory(entries, authorities)
