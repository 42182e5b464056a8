"""Storing and reading documents.

A document row links a sealed file (by its keyed content address) to a vendor and relationship, and
seals what describes it (file name, media type, size, title, kind). Adding the same content twice is
detected by address. Parsing invoices into fields is the ledger issue's work; it builds on this.
"""

from __future__ import annotations

import builtins
import mimetypes
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from openvrm.errors import InvalidValue, NotFound
from openvrm.profile.fields import _text
from openvrm.records import get_row, insert, payload_of, update
from openvrm.storage.models import Document, DocumentText, Relationship, Vendor
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
    # What the import service read from the file (absent for files added as-is):
    format: str | None = None
    parse_status: str | None = None  # "parsed" | "partial" | "unparsed"
    reason: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # invoice fields, JSON-ready (dates/amounts as text)
    contract_id: str | None = None
    warranty_until: str | None = None
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d

    def field_value(self, name: str) -> Any:
        return self.fields.get(name)


@dataclass(frozen=True)
class AddResult:
    document: DocumentRecord
    duplicate_of: str | None


def _record(vault: UnlockedVault, row: Any) -> DocumentRecord:
    """From a ``Document`` or a plain result row with the same columns."""
    p = vault.open("documents", row.id, row.sealed)
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
        format=p.get("format"),
        parse_status=p.get("parse_status"),
        reason=p.get("reason"),
        fields=p.get("fields", {}),
        contract_id=p.get("contract_id"),
        warranty_until=p.get("warranty_until"),
        notes=p.get("notes", ""),
    )


# The columns a listing reads: plain rows rather than ORM objects, since listing every document is on the
# search index's path.
_LISTED = (
    Document.id,
    Document.blob_address,
    Document.vendor_id,
    Document.relationship_id,
    Document.created_at,
    Document.updated_at,
    Document.sealed,
)

# payload keys beyond the basic ones, written by the import service and editable later
EXTRA_KEYS = ("format", "parse_status", "reason", "fields", "contract_id", "warranty_until", "notes")


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
        extra: dict[str, Any] | None = None,
        text: str | None = None,
    ) -> AddResult:
        """Seal and store a file with its description.

        ``extra`` carries what an importer read (see :data:`EXTRA_KEYS`); ``text`` is the extracted text,
        sealed in its own row for search.
        """
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
        unknown = set(extra or {}) - set(EXTRA_KEYS)
        if unknown:
            raise InvalidValue(f"unknown document keys: {', '.join(sorted(unknown))}")
        payload |= {k: v for k, v in (extra or {}).items() if v not in (None, {}, "")}
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
            if text:
                insert(self.vault, s, DocumentText, {"text": text}, record_id=row.id)
            rec = _record(self.vault, row)
        return AddResult(rec, dup)

    def list(self, *, vendor_id: str | None = None) -> list[DocumentRecord]:
        with self.vault.db.read() as s:
            q = select(*_LISTED).order_by(Document.id)
            if vendor_id is not None:
                q = q.where(Document.vendor_id == vendor_id)
            rows = s.execute(q).all()
        return [_record(self.vault, r) for r in rows]

    def newest(self, *, limit: int, offset: int = 0) -> tuple[builtins.list[DocumentRecord], int]:
        """One page of documents, the most recently added first, and how many there are in all.

        Only the page's rows are read and opened, so the documents page stays quick with years of bills.
        """
        if limit < 1 or offset < 0:
            raise InvalidValue("a page needs a positive size and an offset of at least 0")
        with self.vault.db.read() as s:
            total = s.execute(select(func.count()).select_from(Document)).scalar_one()
            rows = s.execute(select(*_LISTED).order_by(Document.id.desc()).limit(limit).offset(offset)).all()
        return [_record(self.vault, r) for r in rows], total

    def get(self, document_id: str) -> DocumentRecord:
        with self.vault.db.read() as s:
            row = get_row(s, Document, document_id, "document")
        return _record(self.vault, row)

    def content(self, document_id: str) -> tuple[DocumentRecord, bytes]:
        doc = self.get(document_id)
        return doc, self.vault.get_file(doc.blob_address)

    def text(self, document_id: str) -> str:
        """The extracted text of a document ('' when none was extracted)."""
        with self.vault.db.read() as s:
            row = s.get(DocumentText, document_id)
        return str(payload_of(self.vault, row).get("text", "")) if row is not None else ""

    def texts(self) -> dict[str, str]:
        # Plain rows, not ORM objects: this runs over every document when the search index is built.
        with self.vault.db.read() as s:
            rows = s.execute(select(DocumentText.id, DocumentText.sealed)).all()
        return {
            rid: str(self.vault.open("document_texts", rid, sealed).get("text", "")) for rid, sealed in rows
        }

    def edit(self, document_id: str, **changes: Any) -> DocumentRecord:
        """Change a document's title, kind, links, warranty end or notes."""
        allowed = {"title", "kind", "vendor_id", "relationship_id", "contract_id", "warranty_until", "notes"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidValue(f"cannot change {', '.join(sorted(unknown))} of a document")
        with self.vault.db.write() as s:
            row = get_row(s, Document, document_id, "document")
            p = payload_of(self.vault, row)
            if "title" in changes and changes["title"] is not None:
                p["title"] = _text(changes["title"], "a title", max_len=300)
            if "kind" in changes and changes["kind"] is not None:
                if changes["kind"] not in KINDS:
                    raise InvalidValue(f"kind must be one of {', '.join(KINDS)}")
                p["kind"] = changes["kind"]
            if "warranty_until" in changes:
                from openvrm.ledger.money import optional_date

                until = optional_date(changes["warranty_until"], "the warranty end")
                p["warranty_until"] = until.isoformat() if until else None
            if "notes" in changes and changes["notes"] is not None:
                p["notes"] = str(changes["notes"]).strip()[:10000]
            if changes.get("vendor_id") is not None:
                row.vendor_id = get_row(s, Vendor, changes["vendor_id"], "vendor").id
            if changes.get("relationship_id") is not None:
                row.relationship_id = get_row(s, Relationship, changes["relationship_id"], "relationship").id
            if changes.get("contract_id") is not None:
                from openvrm.storage.models import Contract

                p["contract_id"] = get_row(s, Contract, changes["contract_id"], "contract").id
            update(self.vault, row, p)
            return _record(self.vault, row)

    def find_by_content(self, data: bytes) -> DocumentRecord | None:
        """The document holding exactly these bytes, if any (looked up by keyed address, not by scanning)."""
        address = self.vault.address_of(data)
        with self.vault.db.read() as s:
            row = s.scalars(select(Document).where(Document.blob_address == address).limit(1)).first()
        return _record(self.vault, row) if row is not None else None
