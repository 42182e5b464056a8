"""Search over documents without a plaintext index on disk.

The index lives in memory only: it is built from the decrypted documents when asked for (after unlock)
and dropped with the process or the session. Words are normalised like the directory's (case, accents and
punctuation ignored); every query word must match a whole word, or the start of one when it has three
letters or more. Field filters (vendor, kind, dates, amounts) narrow the hits; results rank by how many
query words hit the title and parsed fields rather than only the body text, then by date, newest first.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from openvrm.directory.catalog import words
from openvrm.documents.service import DocumentRecord, DocumentService
from openvrm.vault.core import UnlockedVault

_FIELD_KEYS = (
    "seller",
    "seller_vat_id",
    "invoice_number",
    "buyer",
    "email_subject",
    "email_from",
    "currency",
)


@dataclass(frozen=True)
class Hit:
    document: DocumentRecord
    score: float

    def to_json(self) -> dict[str, Any]:
        return self.document.to_json() | {"score": self.score}


def _date_of(d: DocumentRecord) -> str:
    return str(d.fields.get("issue_date") or (d.created_at.date().isoformat() if d.created_at else ""))


class DocumentIndex:
    def __init__(
        self, documents: list[DocumentRecord], texts: dict[str, str], vendor_names: dict[str, str]
    ) -> None:
        self.documents = {d.id: d for d in documents}
        self._postings: dict[str, dict[str, float]] = defaultdict(dict)  # word -> {doc id: weight}
        for d in documents:
            strong = " ".join(
                [d.title, d.filename, vendor_names.get(d.vendor_id or "", "")]
                + [str(d.fields.get(k) or "") for k in _FIELD_KEYS]
            )
            for w in words(texts.get(d.id, "")):
                self._postings[w].setdefault(d.id, 1.0)
            for w in words(strong):
                self._postings[w][d.id] = 2.0
        self._vocab = sorted(self._postings)

    @classmethod
    def build(cls, vault: UnlockedVault) -> DocumentIndex:
        from openvrm.vendors.service import VendorService

        svc = DocumentService(vault)
        names = {v.id: v.name for v in VendorService(vault).list()}
        return cls(svc.list(), svc.texts(), names)

    def __len__(self) -> int:
        return len(self.documents)

    def _matches(self, q: str) -> dict[str, float]:
        found: dict[str, float] = dict(self._postings.get(q, {}))
        if len(q) >= 3:
            start = bisect.bisect_left(self._vocab, q)
            for w in self._vocab[start : start + 500]:
                if not w.startswith(q):
                    break
                for doc_id, weight in self._postings[w].items():
                    found[doc_id] = max(found.get(doc_id, 0.0), weight * 0.8)
        return found

    def search(
        self,
        query: str = "",
        *,
        vendor_id: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
        min_total: Decimal | None = None,
        max_total: Decimal | None = None,
        limit: int = 50,
    ) -> list[Hit]:
        qwords = words(query)
        scores: dict[str, float]
        if qwords:
            per_word = [self._matches(q) for q in qwords]
            common = set(per_word[0]).intersection(*per_word[1:])
            scores = {doc_id: sum(m[doc_id] for m in per_word) for doc_id in common}
        else:
            scores = dict.fromkeys(self.documents, 0.0)
        hits = []
        for doc_id, score in scores.items():
            d = self.documents[doc_id]
            if vendor_id and d.vendor_id != vendor_id:
                continue
            if kind and d.kind != kind:
                continue
            day = _date_of(d)
            if (since and day < since) or (until and day > until):
                continue
            if min_total is not None or max_total is not None:
                total = d.fields.get("gross_total") or d.fields.get("due_total")
                if total is None:
                    continue
                amount = Decimal(total)
                if (min_total is not None and amount < min_total) or (
                    max_total is not None and amount > max_total
                ):
                    continue
            hits.append(Hit(d, round(score, 3)))
        # best score first; among equal scores, newest first (two stable sorts)
        hits.sort(key=lambda h: _date_of(h.document), reverse=True)
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]
