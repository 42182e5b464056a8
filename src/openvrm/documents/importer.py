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

import mimetypes
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from openvrm.directory.catalog import domain_of
from openvrm.documents.parsers import parse
from openvrm.documents.parsers.model import ParsedDocument
from openvrm.documents.service import DocumentService
from openvrm.errors import InvalidValue, OpenVRMError
from openvrm.ledger.contracts import ContractService
from openvrm.ledger.terms import deadlines
from openvrm.vault.core import MAX_FILE_BYTES, UnlockedVault
from openvrm.vendors.service import VendorRecord, VendorService

MAX_DEPTH = 3
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

    # -- linking -----------------------------------------------------------------------------------

    def _known_vendors(self) -> list[VendorRecord]:
        if self._vendor_cache is None:
            self._vendor_cache = self.vendors.list()
        return self._vendor_cache

    def _link_vendor(self, parsed: ParsedDocument) -> VendorRecord | None:
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
            created = self.vendors.add(parsed.seller, domains=[d] if d else [], vat_ids=vat_ids)
        except InvalidValue:
            return None
        self._known_vendors().append(created)
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
    ) -> list[ImportOutcome]:
        """Import one file (and, for an e-mail, its attachments); one outcome per file."""
        label = path or filename
        if len(data) > MAX_FILE_BYTES:
            return [ImportOutcome(label, "rejected", f"larger than the {MAX_FILE_BYTES // 2**20} MiB limit")]
        media_type = media_type or mimetypes.guess_type(filename)[0]
        parsed = parse(data, filename=filename, media_type=media_type)
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
            if parsed.seller_vat_id or parsed.seller:
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
        """Import files and folders (recursively, hidden files skipped), in a stable order."""
        files = list(expand_paths(paths))
        outcomes: list[ImportOutcome] = []
        for n, f in enumerate(files, 1):
            try:
                size = f.stat().st_size
                if size > MAX_FILE_BYTES:
                    outcomes.append(
                        ImportOutcome(
                            str(f), "rejected", f"larger than the {MAX_FILE_BYTES // 2**20} MiB limit"
                        )
                    )
                else:
                    outcomes += self.import_bytes(f.read_bytes(), filename=f.name, path=str(f))
            except OSError as exc:
                outcomes.append(
                    ImportOutcome(str(f), "rejected", f"cannot read the file: {exc.strerror or exc}")
                )
            except OpenVRMError as exc:
                outcomes.append(ImportOutcome(str(f), "rejected", str(exc)))
            if progress is not None:
                progress(n, len(files), str(f))
        return outcomes


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
