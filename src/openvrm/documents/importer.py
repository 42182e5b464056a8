"""The import service: files in, documents out, each with a clear outcome.

For every file: read it (bounded), parse it through the parser registry, refuse nothing silently. A file
that cannot be parsed is still kept, sealed, as an ``unparsed`` document with the reason, so no bill is
ever lost; the same content twice is reported as ``duplicate``. Parsed bills are linked to a vendor (by VAT
id, then domain, then name; a new vendor is created from the seller when none matches) and to that
vendor's contract when it has exactly one active contract. E-mails are kept, then each attachment is
imported in turn (to a bounded depth), linked to the sender's vendor when it names no seller of its own.

The mail gateway and the protocol inbox hand their files to :meth:`ImportService.import_bytes` too, so
there is one way in.
"""

from __future__ import annotations

import logging
import mimetypes
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import insert as sa_insert
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from openvrm.directory.catalog import domain_of
from openvrm.documents.parsers import parse
from openvrm.documents.parsers.model import ParsedDocument
from openvrm.documents.parsers.pdf import pdf_lock
from openvrm.documents.parsers.registry import default_registry, sniff_format
from openvrm.documents.service import EXTRA_KEYS, KINDS, DocumentRecord, DocumentService, _record
from openvrm.errors import InvalidValue, NotFound, OpenVRMError
from openvrm.ledger.contracts import ContractService
from openvrm.ledger.terms import deadlines
from openvrm.profile.fields import _text
from openvrm.records import row_values
from openvrm.storage.models import Document, DocumentText, Relationship, Vendor
from openvrm.vault.core import MAX_FILE_BYTES, FileSealer, UnlockedVault
from openvrm.vendors.service import VendorRecord, VendorService, clean_vendor

log = logging.getLogger(__name__)

MAX_DEPTH = 3
# A folder import commits its files in groups: at most this many files, or this long after the first one.
BATCH_FILES = 32
BATCH_SECONDS = 0.25
# Files read and parsed ahead of the one being stored, at most this many bytes of them.
READ_AHEAD_BYTES = 64 * 2**20
# Threads reading and parsing ahead where no worker processes are used: two, so one can be in PDFium
# (which releases the GIL and allows one caller at a time) while the other reads XML.
READERS = 2
# Folder imports of at least this many files are parsed in worker processes (see parse_workers).
PROCESS_MIN_FILES = 8
MAX_PARSE_PROCESSES = 8
# At most this many files a task for a parse process (fewer when a folder holds few files a worker).
CHUNK_FILES = 4
# Threads writing the sealed files of one group.
BLOB_WRITERS = 4
_KIND = {"invoice": "invoice", "credit_note": "invoice", "receipt": "receipt", "email": "letter"}
# Parsed fields kept in the sealed document payload (JSON-ready).
_FIELDS = (
    "document_type",
    "profile",
    "seller",
    "seller_vat_id",
    "seller_siren",
    "seller_siret",
    "seller_email",
    "seller_website",
    "seller_domain",
    "buyer",
    "invoice_number",
    "issue_date",
    "due_date",
    "service_start",
    "service_end",
    "currency",
    "net_total",
    "tax_total",
    "gross_total",
    "due_total",
    "line_items",
    "email_subject",
    "email_from",
    "email_date",
)


@dataclass(frozen=True)
class ImportOutcome:
    path: str
    status: str  # "imported" | "duplicate" | "unparsed" | "rejected"
    reason: str | None = None
    format: str | None = None
    document_id: str | None = None
    vendor_id: str | None = None
    contract_id: str | None = None
    parent: str | None = None  # the e-mail this file was attached to
    fields: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        f = self.fields or {}
        return {
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "format": self.format,
            "document_id": self.document_id,
            "vendor_id": self.vendor_id,
            "contract_id": self.contract_id,
            "parent": self.parent,
            "seller": f.get("seller"),
            "seller_vat_id": f.get("seller_vat_id"),
            "invoice_number": f.get("invoice_number"),
            "issue_date": f.get("issue_date"),
            "due_date": f.get("due_date"),
            "currency": f.get("currency"),
            "net_total": f.get("net_total"),
            "tax_total": f.get("tax_total"),
            "grand_total": f.get("gross_total"),
            "due_total": f.get("due_total"),
        }


def _fields(parsed: ParsedDocument) -> dict[str, Any]:
    data = parsed.to_json()
    return {k: data[k] for k in _FIELDS if data.get(k) not in (None, [], "")}


def _title(parsed: ParsedDocument, filename: str, vendor: VendorRecord | None) -> str:
    who = (vendor.name if vendor else None) or parsed.seller
    if parsed.document_type in ("invoice", "credit_note") and (who or parsed.invoice_number):
        label = "Credit note" if parsed.document_type == "credit_note" else "Invoice"
        parts = [label, parsed.invoice_number or "", f"from {who}" if who else ""]
        return " ".join(p for p in parts if p)[:300]
    if parsed.document_type == "email" and parsed.email_subject:
        return parsed.email_subject[:300]
    return filename[:300]


class ImportService:
    def __init__(
        self, vault: UnlockedVault, *, create_vendors: bool = True, today: date | None = None
    ) -> None:
        self.vault = vault
        self.create_vendors = create_vendors
        self.today = today or date.today()  # noqa: DTZ011 - calendar day for "active contract"
        self.docs = DocumentService(vault)
        self.vendors = VendorService(vault)
        self.contracts = ContractService(vault)
        self._vendor_cache: list[VendorRecord] | None = None
        # Vendors this import created: they have no contract and no relationship yet, so a folder import
        # does not ask the store for them.
        self._created: set[str] = set()
        # Rows of vendors created for the group being stored, inserted with its documents.
        self._pending_vendors: list[dict[str, Any]] = []

    # -- linking -----------------------------------------------------------------------------------

    def _known_vendors(self) -> list[VendorRecord]:
        if self._vendor_cache is None:
            self._vendor_cache = self.vendors.list()
        return self._vendor_cache

    def _link_vendor(self, parsed: ParsedDocument, *, defer: bool = False) -> VendorRecord | None:
        """The vendor of a bill, created from its seller when none matches.

        With ``defer`` (a folder import's group) a new vendor's row is only prepared, and inserted in the
        group's write transaction, before the documents that link to it (see :meth:`_write_rows`).
        """
        domain = parsed.seller_domain or parsed.seller_website or parsed.seller_email or parsed.email_from
        found = self.vendors.match(
            vat_id=parsed.seller_vat_id, domain=domain, name=parsed.seller, vendors=self._known_vendors()
        )
        if found is not None or not self.create_vendors or not parsed.seller:
            return found
        vat_ids = []
        if parsed.seller_vat_id:
            try:
                from openvrm.vendors.service import _vat_id

                vat_ids = [_vat_id(parsed.seller_vat_id)]
            except InvalidValue:
                vat_ids = []
        d = domain_of(domain) if domain else None
        try:
            if defer:
                payload = clean_vendor(parsed.seller, domains=[d] if d else [], vat_ids=vat_ids)
                values = row_values(self.vault, Vendor, payload)
                created = VendorRecord(id=values["id"], created_at=values["created_at"], **payload)
                self._pending_vendors.append(values)
            else:
                created = self.vendors.add(parsed.seller, domains=[d] if d else [], vat_ids=vat_ids)
        except InvalidValue:
            return None
        self._known_vendors().append(created)
        self._created.add(created.id)
        return created

    def _link_contract(self, vendor_id: str | None) -> str | None:
        if vendor_id is None:
            return None
        active = [
            c for c in self.contracts.list(vendor_id=vendor_id) if deadlines(c.terms(), self.today).active
        ]
        return active[0].id if len(active) == 1 else None

    # -- import ------------------------------------------------------------------------------------

    def import_bytes(
        self,
        data: bytes,
        *,
        filename: str,
        media_type: str | None = None,
        path: str | None = None,
        vendor_id: str | None = None,
        parent: str | None = None,
        depth: int = 0,
        vendor_is_sender: bool = False,
    ) -> list[ImportOutcome]:
        """Import one file (and, for an e-mail, its attachments); one outcome per file.

        ``vendor_id`` is a hint that the seller named in the file may override, unless
        ``vendor_is_sender``: the file came from that vendor over an authenticated channel (a signed
        protocol push), so it is filed under that vendor whatever it says inside.
        """
        label = path or filename
        if len(data) > MAX_FILE_BYTES:
            return [ImportOutcome(label, "rejected", f"larger than the {MAX_FILE_BYTES // 2**20} MiB limit")]
        media_type = media_type or mimetypes.guess_type(filename)[0]
        parsed = parse(data, filename=filename, media_type=media_type)
        return self._import_parsed(
            data,
            parsed,
            filename=filename,
            media_type=media_type,
            label=label,
            vendor_id=vendor_id,
            parent=parent,
            depth=depth,
            vendor_is_sender=vendor_is_sender,
        )

    def _import_parsed(
        self,
        data: bytes,
        parsed: ParsedDocument,
        *,
        filename: str,
        media_type: str | None,
        label: str,
        vendor_id: str | None,
        parent: str | None,
        depth: int,
        vendor_is_sender: bool = False,
    ) -> list[ImportOutcome]:
        existing = self.docs.find_by_content(data)
        if existing is not None:
            return [
                ImportOutcome(
                    label,
                    "duplicate",
                    f"same content as document {existing.id}",
                    parsed.format,
                    existing.id,
                    existing.vendor_id,
                    existing.contract_id,
                    parent,
                    existing.fields,
                )
            ]
        vendor: VendorRecord | None = None
        if vendor_id is not None:
            vendor = self.vendors.get(vendor_id)
            if not vendor_is_sender and (parsed.seller_vat_id or parsed.seller):
                vendor = self._link_vendor(parsed) or vendor
        elif parsed.status != "unparsed":
            vendor = self._link_vendor(parsed)
        contract_id = self._link_contract(vendor.id if vendor else None)
        fields = _fields(parsed)
        relationship = None
        if vendor is not None:
            rels = self.vendors.relationships(vendor.id)
            relationship = rels[0].id if rels else None
        result = self.docs.add(
            data,
            filename=filename,
            media_type=media_type,
            title=_title(parsed, filename, vendor),
            kind=_KIND.get(parsed.document_type, "other"),
            vendor_id=vendor.id if vendor else None,
            relationship_id=relationship,
            allow_duplicate=True,
            extra={
                "format": parsed.format,
                "parse_status": parsed.status,
                "reason": parsed.reason,
                "fields": fields,
                "contract_id": contract_id,
            },
            text=parsed.text or None,
        )
        doc = result.document
        status = "unparsed" if parsed.status == "unparsed" else "imported"
        outcomes = [
            ImportOutcome(
                label,
                status,
                parsed.reason,
                parsed.format,
                doc.id,
                doc.vendor_id,
                contract_id,
                parent,
                fields,
            )
        ]
        if parsed.attachments:
            if depth >= MAX_DEPTH:
                outcomes.append(
                    ImportOutcome(
                        f"{label}#attachments",
                        "rejected",
                        f"attachments nested deeper than {MAX_DEPTH} levels were not opened",
                    )
                )
            else:
                for att in parsed.attachments:
                    outcomes += self.import_bytes(
                        att.data,
                        filename=att.filename,
                        media_type=att.media_type,
                        path=f"{label}#{att.filename}",
                        vendor_id=doc.vendor_id,
                        parent=doc.id,
                        depth=depth + 1,
                    )
        return outcomes

    def import_paths(
        self, paths: Iterable[Path], *, progress: Callable[[int, int, str], None] | None = None
    ) -> list[ImportOutcome]:
        """Import files and folders (recursively, hidden files skipped), in a stable order.

        Files are read, sealed into the blob store (with a folder blob store) and parsed ahead by workers
        (see :class:`_Parsers`) while the ones before them are stored, and stored in groups
        (:data:`BATCH_FILES` files or :data:`BATCH_SECONDS`): every sealed file of a group is durable
        (the workers fsync each file, the folders holding them are fsync'd here once a group) before their
        rows, and the rows of vendors new in the group, are inserted in one transaction; should it fail,
        each file's rows go in its own savepoint, so a file that fails is reported ``rejected`` without
        losing the others. A file is reported (and ``progress`` called for it) only once its blob is on
        disk and its row committed. E-mails, whose attachments are imported in turn, are stored one by one.
        """
        files = list(expand_paths(paths))
        outcomes: list[ImportOutcome] = []
        batch: list[_Prepared] = []
        done = 0
        first_at = 0.0

        def report(results: list[list[ImportOutcome]]) -> None:
            nonlocal done
            for result in results:
                outcomes.extend(result)
                done += 1
                if progress is not None:
                    progress(done, len(files), result[0].path)

        def flush() -> None:
            if batch:
                report(self._store_batch(batch))
                batch.clear()

        for prep in _read_ahead(files, self.vault.file_sealer()):
            if prep.early is not None:
                flush()
                report([[prep.early]])
            elif prep.parsed.attachments:
                flush()
                try:
                    if prep.address is not None:  # sealed by a worker: its name made durable first
                        self.vault.sync_files([prep.address])
                    result = self._import_parsed(
                        prep.data,
                        prep.parsed,
                        filename=prep.path.name,
                        media_type=prep.media_type,
                        label=str(prep.path),
                        vendor_id=None,
                        parent=None,
                        depth=0,
                    )
                except OpenVRMError as exc:
                    result = [ImportOutcome(str(prep.path), "rejected", str(exc))]
                report([result])
            else:
                if not batch:
                    first_at = time.monotonic()
                batch.append(prep)
                if len(batch) >= BATCH_FILES or time.monotonic() - first_at >= BATCH_SECONDS:
                    flush()
        flush()
        return outcomes

    def _store_batch(self, batch: list[_Prepared]) -> list[list[ImportOutcome]]:
        """Store parsed files (no attachments) as one group; one outcome list per file, in order."""
        try:
            return self._store_group(batch)
        finally:
            if self._pending_vendors:
                # Their transaction never committed: forget them, so no later file links to them.
                lost = {values["id"] for values in self._pending_vendors}
                self._pending_vendors.clear()
                self._created -= lost
                if self._vendor_cache is not None:
                    self._vendor_cache = [v for v in self._vendor_cache if v.id not in lost]

    def _store_group(self, batch: list[_Prepared]) -> list[list[ImportOutcome]]:
        results: list[list[ImportOutcome] | None] = [None] * len(batch)
        # A worker that sealed a file gives its address; the others are addressed here.
        addresses = [p.address or self.vault.address_of(p.data) for p in batch]
        with self.vault.db.read() as s:
            rows = s.execute(
                select(
                    Document.id,
                    Document.blob_address,
                    Document.vendor_id,
                    Document.relationship_id,
                    Document.created_at,
                    Document.sealed,
                ).where(Document.blob_address.in_(set(addresses)))
            ).all()
        stored: dict[str, DocumentRecord] = {}
        for row in sorted(rows, key=lambda r: r.id):
            if row.blob_address not in stored:
                stored[row.blob_address] = _record(self.vault, row)
        contracts: dict[str | None, str | None] = {}
        relationships: dict[str, str | None] = {}
        plans: list[_Plan] = []
        first_of: dict[str, int] = {}  # address -> index of the first file of this group holding it
        for i, (prep, address) in enumerate(zip(batch, addresses, strict=True)):
            label = str(prep.path)
            existing = stored.get(address)
            if existing is not None:
                results[i] = [_duplicate(label, prep.parsed, existing)]
                continue
            if address in first_of:
                continue  # a copy of an earlier file of this group: settled once that one is stored
            try:
                plan = self._plan(i, prep, address, contracts, relationships)
            except OpenVRMError as exc:
                results[i] = [ImportOutcome(label, "rejected", str(exc))]
                continue
            first_of[address] = i
            plans.append(plan)
        # Every blob is durable (written, fsync'd, renamed, its folder fsync'd) before the rows that point
        # at it are committed. Files sealed by a read-ahead worker are written and fsync'd already (their
        # folders are synced below); the others are written here, side by side (the fsyncs wait on the
        # disk, not on Python), all before the write transaction opens (a SQL blob store writes in its
        # own).
        written = [plan for plan in plans if plan.prep.address is not None]
        unsealed = [plan for plan in plans if plan.prep.address is None]
        if unsealed:
            with ThreadPoolExecutor(max_workers=BLOB_WRITERS, thread_name_prefix="openvrm-blobs") as pool:
                puts = [(plan, pool.submit(self.vault.put_file, plan.prep.data)) for plan in unsealed]
                for plan, put in puts:
                    try:
                        put.result()
                    except OpenVRMError as exc:
                        results[plan.index] = [ImportOutcome(str(plan.prep.path), "rejected", str(exc))]
                        continue
                    written.append(plan)
            written.sort(key=lambda plan: plan.index)
        # The workers fsync'd each file before renaming it into place; the folders holding the new names
        # are fsync'd here, once each for the group, before the commit.
        self.vault.sync_files(plan.address for plan in written if plan.prep.address is not None)
        ids = self._write_rows(written, results)
        for plan in written:
            doc_id = ids.get(plan.index)
            if doc_id is None:
                continue
            parsed = plan.prep.parsed
            status = "unparsed" if parsed.status == "unparsed" else "imported"
            results[plan.index] = [
                ImportOutcome(
                    str(plan.prep.path),
                    status,
                    parsed.reason,
                    parsed.format,
                    doc_id,
                    plan.vendor_id,
                    plan.contract_id,
                    None,
                    plan.fields,
                )
            ]
        for i, (prep, address) in enumerate(zip(batch, addresses, strict=True)):
            if results[i] is None:
                first = results[first_of[address]] or []
                if first and first[0].status in ("imported", "unparsed"):
                    # A copy of a file this group stored: described as that document is.
                    results[i] = [
                        replace(
                            first[0],
                            path=str(prep.path),
                            status="duplicate",
                            reason=f"same content as document {first[0].document_id}",
                            format=prep.parsed.format,
                        )
                    ]
                else:
                    # The first copy could not be stored: this one meets the same fate.
                    results[i] = [replace(o, path=str(prep.path)) for o in first]
        return [r or [] for r in results]

    @staticmethod
    def _links(s: Session, plans: list[_Plan]) -> _Links:
        """The vendors and relationships of a group that still exist, read in its write transaction."""
        vendor_ids = {p.vendor_id for p in plans if p.vendor_id is not None}
        relationship_ids = {p.relationship_id for p in plans if p.relationship_id is not None}
        vendors = set(s.scalars(select(Vendor.id).where(Vendor.id.in_(vendor_ids)))) if vendor_ids else set()
        relationships = (
            set(s.scalars(select(Relationship.id).where(Relationship.id.in_(relationship_ids))))
            if relationship_ids
            else set()
        )
        return _Links(vendors, relationships)

    def _row_values(self, plan: _Plan, links: _Links) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The sealed ``documents`` row of a file, and its ``document_texts`` row when it has text."""
        # As DocumentService.add does: the links must still hold in this transaction (a vendor deleted
        # since it was matched is refused here, not stored as a dangling id).
        if plan.vendor_id is not None and plan.vendor_id not in links.vendors:
            raise NotFound(f"no vendor with id {plan.vendor_id[:40]!r}")
        if plan.relationship_id is not None and plan.relationship_id not in links.relationships:
            raise NotFound(f"no relationship with id {plan.relationship_id[:40]!r}")
        doc = row_values(
            self.vault,
            Document,
            plan.payload,
            blob_address=plan.address,
            vendor_id=plan.vendor_id,
            relationship_id=plan.relationship_id,
        )
        text = plan.prep.parsed.text
        if not text:
            return doc, None
        return doc, row_values(self.vault, DocumentText, {"text": text}, record_id=doc["id"])

    def _write_rows(self, plans: list[_Plan], results: list[list[ImportOutcome] | None]) -> dict[int, str]:
        """Insert the rows of a group in one transaction; the new document ids by file index.

        All rows go in at once, two multi-row statements (Core, no ORM objects); should that transaction
        fail, it is rolled back whole and the rows are inserted again each file in its own savepoint, so
        only the files at fault are reported ``rejected``.
        """
        vendors = self._pending_vendors
        if not plans and not vendors:
            return {}
        try:
            ids: dict[int, str] = {}
            with self.vault.db.write() as s:
                conn = s.connection()
                if vendors:  # vendors new in this group first: its documents link to them
                    conn.execute(sa_insert(Vendor), vendors)
                if plans:
                    links = self._links(s, plans)
                    values = [self._row_values(plan, links) for plan in plans]
                    conn.execute(sa_insert(Document), [doc for doc, _ in values])
                    texts = [text for _, text in values if text is not None]
                    if texts:
                        conn.execute(sa_insert(DocumentText), texts)
                    ids = {plan.index: doc["id"] for plan, (doc, _) in zip(plans, values, strict=True)}
            vendors.clear()
            return ids
        except (OpenVRMError, SQLAlchemyError):
            if not plans:
                raise
            # nothing of the group was written: each file is tried on its own below
        ids = {}
        with self.vault.db.write() as s:
            if vendors:
                s.connection().execute(sa_insert(Vendor), vendors)
            links = self._links(s, plans)
            for plan in plans:
                try:
                    with s.begin_nested():
                        doc, text = self._row_values(plan, links)
                        conn = s.connection()
                        conn.execute(sa_insert(Document), doc)
                        if text is not None:
                            conn.execute(sa_insert(DocumentText), text)
                    ids[plan.index] = doc["id"]
                except (OpenVRMError, SQLAlchemyError) as exc:
                    reason = str(exc) if isinstance(exc, OpenVRMError) else _db_refusal(exc)
                    results[plan.index] = [ImportOutcome(str(plan.prep.path), "rejected", reason)]
        vendors.clear()
        return ids

    def _plan(
        self,
        index: int,
        prep: _Prepared,
        address: str,
        contracts: dict[str | None, str | None],
        relationships: dict[str, str | None],
    ) -> _Plan:
        """Link and describe one file of a group, checking all that can be checked before writing."""
        parsed = prep.parsed
        vendor = self._link_vendor(parsed, defer=True) if parsed.status != "unparsed" else None
        vendor_id = vendor.id if vendor else None
        if vendor_id is not None and vendor_id in self._created:
            contracts.setdefault(vendor_id, None)
            relationships.setdefault(vendor_id, None)
        if vendor_id not in contracts:
            contracts[vendor_id] = self._link_contract(vendor_id)
        relationship: str | None = None
        if vendor is not None:
            if vendor.id not in relationships:
                rels = self.vendors.relationships(vendor.id)
                relationships[vendor.id] = rels[0].id if rels else None
            relationship = relationships[vendor.id]
        fields = _fields(parsed)
        # The same description DocumentService.add seals.
        filename = _text(Path(prep.path.name).name, "a file name", max_len=255)
        title = _title(parsed, prep.path.name, vendor)
        kind = _KIND.get(parsed.document_type, "other")
        if kind not in KINDS:
            raise InvalidValue(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        extra = {
            "format": parsed.format,
            "parse_status": parsed.status,
            "reason": parsed.reason,
            "fields": fields,
            "contract_id": contracts[vendor_id],
        }
        payload: dict[str, Any] = {
            "filename": filename,
            "media_type": prep.media_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "size": prep.size,
            "title": _text(title, "a title", max_len=300) if title else filename,
            "kind": kind,
        }
        payload |= {k: v for k, v in extra.items() if k in EXTRA_KEYS and v not in (None, {}, "")}
        return _Plan(index, prep, address, payload, vendor_id, relationship, contracts[vendor_id], fields)


@dataclass
class _Prepared:
    """A file read and parsed ahead of storing, or the outcome that stopped it (``early``)."""

    path: Path
    data: bytes = b""  # b"" once the file is sealed in the blob store, unless its attachments need it
    parsed: ParsedDocument = ParsedDocument(format="unknown", status="unparsed", reason="not read")
    media_type: str | None = None
    early: ImportOutcome | None = None
    size: int = 0
    address: str | None = None  # set once the sealed file is durable in the blob store


@dataclass(frozen=True)
class _Links:
    vendors: set[str]
    relationships: set[str]


@dataclass
class _Plan:
    """One file of a group, linked and described, ready for its row."""

    index: int
    prep: _Prepared
    address: str
    payload: dict[str, Any]
    vendor_id: str | None
    relationship_id: str | None
    contract_id: str | None
    fields: dict[str, Any]


def _read_only(path: Path) -> _Prepared:
    """Read one file, bounded; the outcome that stops it (``early``) when it cannot be read."""
    label = str(path)
    too_big = f"larger than the {MAX_FILE_BYTES // 2**20} MiB limit"
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return _Prepared(path, early=ImportOutcome(label, "rejected", too_big))
        data = path.read_bytes()
    except OSError as exc:
        return _Prepared(
            path, early=ImportOutcome(label, "rejected", f"cannot read the file: {exc.strerror or exc}")
        )
    if len(data) > MAX_FILE_BYTES:
        return _Prepared(path, early=ImportOutcome(label, "rejected", too_big))
    return _Prepared(path, data, media_type=mimetypes.guess_type(path.name)[0], size=len(data))


def _prepare(path: Path, sealer: FileSealer | None = None) -> _Prepared:
    """Read, seal and parse one file (in a read-ahead worker); never raises for a bad file.

    With a ``sealer`` the file is sealed and written to the blob store here (durable on return, as
    :meth:`UnlockedVault.put_file` writes it), before it is parsed, and its bytes are not sent back
    unless its attachments need them: only the address travels to the importing process. A file whose
    name no document may carry is not written (it will be rejected), nor is one the store fails to
    take (the importing process tries again and reports what fails).
    """
    prep = _read_only(path)
    if prep.early is not None:
        return prep
    address = None
    if sealer is not None:
        try:
            _text(path.name, "a file name", max_len=255)
            address = sealer.put(prep.data)[0]
        except (OpenVRMError, OSError):
            address = None
    parsed = parse(prep.data, filename=path.name, media_type=prep.media_type)
    keep = address is None or bool(parsed.attachments)
    return replace(prep, parsed=parsed, address=address, data=prep.data if keep else b"")


# The sealer of the import a forked worker serves, set in the worker by _worker_init (fork inheritance).
_worker_sealer: FileSealer | None = None


def _prepare_in_worker(path: Path) -> _Prepared:
    return _prepare(path, _worker_sealer)


def _prepare_many(paths: tuple[Path, ...], sealer: FileSealer | None) -> list[_Prepared]:
    return [_prepare(path, sealer) for path in paths]


def _prepare_many_in_worker(paths: tuple[Path, ...]) -> list[_Prepared]:
    return [_prepare(path, _worker_sealer) for path in paths]


def parse_only(paths: Iterable[Path]) -> Iterator[tuple[Path, ParsedDocument | None]]:
    """Read and parse files as a folder import does (same order, same workers), storing nothing.

    Yields each file with what its parsers found, or None when it could not be read. ``bench/ingest.py``
    uses it for the ceiling of an import: the cost of extraction alone.
    """
    for prep in _read_ahead(list(expand_paths(paths))):
        yield prep.path, (None if prep.early is not None else prep.parsed)


def _read_ahead(files: list[Path], sealer: FileSealer | None = None) -> Iterator[_Prepared]:
    """The files read (sealed and stored, given a ``sealer``) and parsed, in order, by workers that keep
    ahead of the caller.

    At most :data:`READ_AHEAD_BYTES` (and at least one file) are held ahead. Parsing overlaps with the
    caller's linking and commits; see :class:`_Parsers` for where it runs.
    """
    if not files:
        return
    pending: deque[tuple[_Job, int]] = deque()
    held = 0
    queued = 0
    with _Parsers(len(files), sealer) as parsers:
        try:
            while queued < len(files) or pending:
                while queued < len(files) and (not pending or held < READ_AHEAD_BYTES):
                    paths = tuple(files[queued : queued + parsers.chunk])
                    size = 0
                    for path in paths:
                        try:
                            size += min(path.stat().st_size, MAX_FILE_BYTES)
                        except OSError:
                            pass
                    pending.append((parsers.submit(paths), size))
                    held += size
                    queued += len(paths)
                job, size = pending.popleft()
                held -= size
                yield from parsers.result(job)
        finally:
            for job, _ in pending:
                parsers.cancel(job)


def parse_workers(n_files: int) -> int:
    """How many worker processes parse a folder import of ``n_files`` files; 0 means threads.

    Processes are used on Linux, where ``fork`` starts one in a few milliseconds, for imports of at
    least :data:`PROCESS_MIN_FILES` files, one per core (at most :data:`MAX_PARSE_PROCESSES`).
    ``OPENVRM_IMPORT_PROCESSES`` overrides the count (``0``: threads only).
    """
    override = os.environ.get("OPENVRM_IMPORT_PROCESSES", "").strip()
    if override:
        try:
            return max(0, min(int(override), MAX_PARSE_PROCESSES))
        except ValueError:
            raise InvalidValue(f"OPENVRM_IMPORT_PROCESSES must be a whole number, not {override!r}") from None
    if sys.platform != "linux" or n_files < PROCESS_MIN_FILES:
        return 0
    return min(os.cpu_count() or 1, MAX_PARSE_PROCESSES)


class _Parsers:
    """Where the files of a folder import are parsed: worker processes, or threads as a fallback.

    PDFium, the costliest step, allows one caller per process, so threads cannot parse two PDFs at once;
    forked worker processes can, one per core, and a crash inside a native parser (a hostile PDF) then
    kills a worker, not the import. When a worker dies, every file it may have been parsing is parsed
    again alone in a fresh process; the file that kills that one too is kept ``unparsed``, with the
    reason, and the import goes on with a new pool. Workers are forked while the parent holds PDFium's
    lock, so no PDFium call is ever half-done in a child; the locks the parsers keep are replaced in
    the child (``os.register_at_fork``). A worker holds the unlocked vault's memory as the parent does,
    and ends with the import; it is given the import's :class:`FileSealer` (by fork inheritance, as an
    initializer argument, which ``fork`` does not pickle), seals and stores each file it reads, and
    never uses the database. Each task carries up to :data:`CHUNK_FILES` files.
    """

    def __init__(self, n_files: int, sealer: FileSealer | None = None) -> None:
        self.processes = parse_workers(n_files)
        self.sealer = sealer
        # Files handed to a worker process at a time: fewer round trips through the pool (each costs the
        # importing process ≈ 0.4 ms of CPU), while every worker still gets several tasks.
        self.chunk = max(1, min(CHUNK_FILES, n_files // (4 * self.processes))) if self.processes else 1
        self._pool: Executor | None = None
        self._generation = 0  # bumped each time the pool is replaced

    def __enter__(self) -> _Parsers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self) -> Executor:
        if self._pool is None:
            if self.processes:
                # Built once here rather than in every worker: the registry (entry points, plug-ins) is
                # inherited by the fork.
                default_registry()
                self._pool = _fork_pool(self.processes, self.sealer)
            else:
                self._pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="openvrm-import")
        return self._pool

    def submit(self, paths: tuple[Path, ...]) -> _Job:
        """Hand out a few files (at most :attr:`chunk`) as one task."""
        if not self.processes:
            future = self._executor().submit(_prepare_many, paths, self.sealer)
            return _Job(paths, future, self._generation)
        for _ in range(2):
            pool = self._executor()
            with pdf_lock():  # a fork may happen inside submit (the pool starts its workers on first use)
                try:
                    return _Job(paths, pool.submit(_prepare_many_in_worker, paths), self._generation)
                except BrokenExecutor:
                    pass
            self._restart()
        return _Job(paths, None, self._generation)  # two pools broke in a row: parse them alone

    def result(self, job: _Job) -> list[_Prepared]:
        if job.future is None:
            return [_parse_alone(path, self.sealer) for path in job.paths]
        try:
            return job.future.result()
        except BrokenExecutor:
            # A worker died, and the pool with it; these files may or may not be the cause. Files sent to
            # that pool are parsed again, each alone; files sent since went to a new one, which stays.
            if job.generation == self._generation:
                self._restart()
            return [_parse_alone(path, self.sealer) for path in job.paths]
        except Exception as exc:
            # The worker parsed the files but its result could not come back (a plug-in's result that
            # does not pickle, say): they are parsed here instead, as the thread fallback would.
            log.warning("a parser worker's result was lost (%s); parsing in process", type(exc).__name__)
            return _prepare_many(job.paths, self.sealer)

    def cancel(self, job: _Job) -> None:
        if job.future is not None:
            job.future.cancel()

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._generation += 1


@dataclass(frozen=True)
class _Job:
    paths: tuple[Path, ...]
    future: Future[list[_Prepared]] | None
    generation: int


def _fork_pool(workers: int, sealer: FileSealer | None) -> ProcessPoolExecutor:
    # With "fork", a worker's initializer arguments are inherited in memory, never pickled: the sealer's
    # keys do not pass through a pipe (and FileSealer refuses to be pickled, should that ever change).
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_worker_init,
        initargs=(sealer,),
    )


def _worker_init(sealer: FileSealer | None) -> None:
    global _worker_sealer
    _worker_sealer = sealer
    # Ctrl-C reaches the whole process group. Only the importing process acts on it (it stops handing out
    # files and lets the workers finish the one they hold); a worker interrupted while it holds the
    # result queue's lock would leave the others, and the import, waiting forever.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parse_alone(path: Path, sealer: FileSealer | None) -> _Prepared:
    """Parse one file in a process of its own; a file that kills it is kept ``unparsed``."""
    pool = _fork_pool(1, sealer)
    try:
        with pdf_lock():
            future = pool.submit(_prepare_in_worker, path)
        return future.result()
    except BrokenExecutor:
        prep = _read_only(path)
        if prep.early is not None:
            return prep
        reason = "the parser stopped on this file (its worker process died); the file is kept unread"
        log.warning("a document parser worker died on one file of an import")
        parsed = ParsedDocument(format=sniff_format(prep.data), status="unparsed", reason=reason)
        return replace(prep, parsed=parsed)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _duplicate(label: str, parsed: ParsedDocument, existing: DocumentRecord) -> ImportOutcome:
    return ImportOutcome(
        label,
        "duplicate",
        f"same content as document {existing.id}",
        parsed.format,
        existing.id,
        existing.vendor_id,
        existing.contract_id,
        None,
        existing.fields,
    )


def _db_refusal(exc: SQLAlchemyError) -> str:
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]
    return f"the store refused the document: {text}"


def expand_paths(paths: Iterable[Path]) -> Iterable[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.exists():
            yield p
        else:
            from openvrm.errors import NotFound

            raise NotFound(f"no such file or folder: {p}")
