"""Search over documents without a plaintext index on disk.

The index lives in memory only: it is built from the decrypted documents when asked for (after unlock)
and dropped with the process or the session. Words are normalised like the directory's (case, accents and
punctuation ignored); every query word must match a whole word, or the start of one when it has three
letters or more. Field filters (vendor, kind, dates, amounts) narrow the hits; results rank by how many
query words hit the title and parsed fields rather than only the body text, then by date, newest first.
"""

from __future__ import annotations

import bisect
import heapq
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


def _stamp(vault: UnlockedVault) -> tuple[Any, ...]:
    """A cheap fingerprint of everything the index is built from: row counts and latest changes."""
    from sqlalchemy import func, select

    from openvrm.storage.models import Document, DocumentText, Vendor

    with vault.db.read() as s:
        docs = s.execute(select(func.count(), func.max(Document.updated_at))).one()
        texts = s.execute(select(func.count(), func.max(DocumentText.updated_at))).one()
        vendors = s.execute(select(func.count(), func.max(Vendor.updated_at))).one()
    return (*docs, *texts, *vendors)


class DocumentIndex:
    def __init__(
        self, documents: list[DocumentRecord], texts: dict[str, str], vendor_names: dict[str, str]
    ) -> None:
        self.documents = {d.id: d for d in documents}
        self._dates = {d.id: _date_of(d) for d in documents}
        # word -> ids of documents containing it anywhere / in their title or parsed fields
        self._any: dict[str, set[str]] = defaultdict(set)
        self._strong: dict[str, set[str]] = defaultdict(set)
        for d in documents:
            strong = " ".join(
                [d.title, d.filename, vendor_names.get(d.vendor_id or "", "")]
                + [str(d.fields.get(k) or "") for k in _FIELD_KEYS]
            )
            strong_words = set(words(strong))
            for w in strong_words:
                self._strong[w].add(d.id)
            for w in strong_words.union(words(texts.get(d.id, ""))):
                self._any[w].add(d.id)
        self._vocab = sorted(self._any)

    @classmethod
    def for_vault(cls, vault: UnlockedVault) -> DocumentIndex:
        """The index for this unlock, rebuilt only when documents, texts or vendors changed.

        It is kept on the unlocked vault (memory only) and dropped when the vault locks.
        """
        stamp = _stamp(vault)
        cached = vault.caches.get("document-index")
        if cached is not None and cached[0] == stamp:
            return cached[1]  # type: ignore[no-any-return]
        index = cls.build(vault)
        vault.caches["document-index"] = (stamp, index)
        return index

    @classmethod
    def build(cls, vault: UnlockedVault) -> DocumentIndex:
        from openvrm.vendors.service import VendorService

        svc = DocumentService(vault)
        names = {v.id: v.name for v in VendorService(vault).list()}
        return cls(svc.list(), svc.texts(), names)

    def __len__(self) -> int:
        return len(self.documents)

    def _expand(self, q: str) -> list[str]:
        """Vocabulary words matching query word ``q``: itself, and words it starts (3+ letters)."""
        found = [q] if q in self._any else []
        if len(q) >= 3:
            start = bisect.bisect_left(self._vocab, q)
            for w in self._vocab[start : start + 500]:
                if not w.startswith(q):
                    break
                if w != q:
                    found.append(w)
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
        candidates: set[str]
        strong_hits: list[set[str]] = []
        if qwords:
            per_word: list[set[str]] = []
            for q in qwords:
                expanded = self._expand(q)
                per_word.append(set().union(*(self._any[w] for w in expanded)) if expanded else set())
                strong_hits.append(
                    set().union(*(self._strong.get(w, set()) for w in expanded)) if expanded else set()
                )
            per_word.sort(key=len)
            candidates = per_word[0].intersection(*per_word[1:]) if per_word[0] else set()
        else:
            candidates = set(self.documents)
        hits: list[tuple[float, str, str]] = []
        for doc_id in candidates:
            d = self.documents[doc_id]
            if vendor_id and d.vendor_id != vendor_id:
                continue
            if kind and d.kind != kind:
                continue
            day = self._dates[doc_id]
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
            # each query word scores 1, or 2 when it is in the title or parsed fields
            score = float(len(qwords) + sum(1 for s in strong_hits if doc_id in s))
            hits.append((score, day, doc_id))
        best = heapq.nlargest(limit, hits)  # best score first; among equal scores, newest first
        return [Hit(self.documents[doc_id], score) for score, _, doc_id in best]
