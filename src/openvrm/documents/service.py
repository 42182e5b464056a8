"""Storing and reading documents.

A document row links a sealed file (by its keyed content address) to a vendor and relationship, and
seals what describes it (file name, media type, size, title, kind). Adding the same content twice is
detected by address. Parsing invoices into fields is the ledger issue's work; it builds on this.
"""

from __future__ import annotations

import mimetypes
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from openvrm.errors import InvalidValue, NotFound
from openvrm.profile.fields import _text
from openvrm.records import get_row, insert, payload_of
from openvrm.storage.models import Document, Relationship, Vendor
from openvrm.vault.core import MAX_FILE_BYTES, UnlockedVault

KINDS = ("invoice", "receipt", "contract", "letter", "warranty", "statement", "other")


@dataclass
class DocumentRecord:
    id: str
    blob_address: str
    filename: str
    media_type: str
    size: int
    title: str
    kind: str
    vendor_id: str | None = None
    relationship_id: str | None = None
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d


@dataclass(frozen=True)
class AddResult:
    document: DocumentRecord
    duplicate_of: str | None


def _record(vault: UnlockedVault, row: Document) -> DocumentRecord:
    p = payload_of(vault, row)
    return DocumentRecord(
        id=row.id,
        blob_address=row.blob_address,
        vendor_id=row.vendor_id,
        relationship_id=row.relationship_id,
        created_at=row.created_at,
        filename=p["filename"],
        media_type=p["media_type"],
        size=p["size"],
        title=p["title"],
        kind=p["kind"],
    )


class DocumentService:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault

    def add_file(self, path: Path, **kw: Any) -> AddResult:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no such file: {path}") from None
        if not path.is_file():
            raise InvalidValue(f"not a file: {path}")
        if size > MAX_FILE_BYTES:
            raise InvalidValue(f"{path.name} is larger than the {MAX_FILE_BYTES // (1024 * 1024)} MiB limit")
        return self.add(path.read_bytes(), filename=path.name, **kw)

    def add(
        self,
        data: bytes,
        *,
        filename: str,
        media_type: str | None = None,
        title: str | None = None,
        kind: str = "other",
        vendor_id: str | None = None,
        relationship_id: str | None = None,
        allow_duplicate: bool = False,
    ) -> AddResult:
        filename = _text(Path(filename).name, "a file name", max_len=255)
        if kind not in KINDS:
            raise InvalidValue(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        media_type = media_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        address = self.vault.address_of(data)
        with self.vault.db.read() as s:
            dup = s.scalar(select(Document.id).where(Document.blob_address == address).limit(1))
            if vendor_id is not None:
                get_row(s, Vendor, vendor_id, "vendor")
            if relationship_id is not None:
                rel = get_row(s, Relationship, relationship_id, "relationship")
                vendor_id = vendor_id or rel.vendor_id
        if dup is not None and not allow_duplicate:
            return AddResult(self.get(dup), dup)
        # The file goes to the blob store first: if the row insert fails, an unreferenced blob is left
        # (reported by `vrm check`), never a row pointing at a missing file.
        self.vault.put_file(data)
        payload = {
            "filename": filename,
            "media_type": media_type,
            "size": len(data),
            "title": _text(title, "a title", max_len=300) if title else filename,
            "kind": kind,
        }
        with self.vault.db.write() as s:
            row = insert(
                self.vault,
                s,
                Document,
                payload,
                blob_address=address,
                vendor_id=vendor_id,
                relationship_id=relationship_id,
            )
            rec = _record(self.vault, row)
        return AddResult(rec, dup)

    def list(self, *, vendor_id: str | None = None) -> list[DocumentRecord]:
        with self.vault.db.read() as s:
            q = select(Document).order_by(Document.id)
            if vendor_id is not None:
                q = q.where(Document.vendor_id == vendor_id)
            rows = list(s.scalars(q))
        return [_record(self.vault, r) for r in rows]

    def get(self, document_id: str) -> DocumentRecord:
        with self.vault.db.read() as s:
            row = get_row(s, Document, document_id, "document")
        return _record(self.vault, row)

    def content(self, document_id: str) -> tuple[DocumentRecord, bytes]:
        doc = self.get(document_id)
        return doc, self.vault.get_file(doc.blob_address)
