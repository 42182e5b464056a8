"""The typed result every parser returns.

A :class:`ParsedDocument` is a plain, frozen value: it carries no file handle, no database row and no vault
reference, so the import service can seal it, index it or throw it away. Money is :class:`~decimal.Decimal`,
dates are :class:`datetime.date`, the e-mail date is timezone-aware. ``to_json()`` gives a JSON-ready dict
(ISO dates, amounts as strings) for storage inside the vault and for the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

Format = Literal["facturx", "cii", "ubl", "pdf", "email", "image", "text", "unknown"]
Status = Literal["parsed", "partial", "unparsed"]
DocumentType = Literal["invoice", "credit_note", "receipt", "email", "other"]

FORMATS: tuple[Format, ...] = ("facturx", "cii", "ubl", "pdf", "email", "image", "text", "unknown")
STATUSES: tuple[Status, ...] = ("parsed", "partial", "unparsed")
DOCUMENT_TYPES: tuple[DocumentType, ...] = ("invoice", "credit_note", "receipt", "email", "other")

#: Inputs larger than this are refused before any parser sees them.
MAX_INPUT_BYTES = 50 * 1024 * 1024
#: ``ParsedDocument.text`` never holds more characters than this.
MAX_TEXT_CHARS = 200_000
#: At most this many line items are kept; the rest are dropped with a warning.
MAX_LINE_ITEMS = 2_000
#: At most this many attachments are returned for one e-mail.
MAX_ATTACHMENTS = 100


@dataclass(frozen=True)
class LineItem:
    """One invoice line. Every field is optional because real files leave any of them out."""

    description: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    net_amount: Decimal | None = None
    tax_rate: Decimal | None = None  # percent, e.g. Decimal("19.00")
    unit: str | None = None  # UN/ECE rec. 20 code such as "C62" or "HUR", when given

    def to_json(self) -> dict[str, Any]:
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Attachment:
    """A file carried inside another one (an e-mail attachment, a nested e-mail).

    ``filename`` is a bare name (no directories), safe to show; ``data`` is the decoded content.
    """

    filename: str
    media_type: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "media_type": self.media_type, "size": self.size}


@dataclass(frozen=True)
class ParsedDocument:
    """What a parser could read from one file.

    ``status`` is ``"parsed"`` when the file was read as its format intends, ``"partial"`` when some of it
    could be read (``reason`` says what is missing), and ``"unparsed"`` when nothing useful could be read
    (``reason`` says why). ``warnings`` lists non-fatal oddities (a dropped line, a recovered encoding).
    """

    format: Format
    status: Status
    reason: str | None = None
    profile: str | None = None
    document_type: DocumentType = "other"
    seller: str | None = None
    seller_vat_id: str | None = None
    seller_siren: str | None = None
    seller_siret: str | None = None
    seller_email: str | None = None
    seller_website: str | None = None
    seller_domain: str | None = None
    buyer: str | None = None
    invoice_number: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    service_start: date | None = None
    service_end: date | None = None
    currency: str | None = None
    net_total: Decimal | None = None
    tax_total: Decimal | None = None
    gross_total: Decimal | None = None
    due_total: Decimal | None = None
    line_items: tuple[LineItem, ...] = ()
    text: str = field(default="", repr=False)
    email_subject: str | None = None
    email_from: str | None = None
    email_date: datetime | None = None
    attachments: tuple[Attachment, ...] = ()
    warnings: tuple[str, ...] = ()
    parser: str | None = None  # name of the parser that produced this result, set by the registry

    def __post_init__(self) -> None:
        # Cheap guards so a buggy parser cannot hand out a value that breaks the contract silently.
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.document_type not in DOCUMENT_TYPES:
            raise ValueError(f"unknown document type {self.document_type!r}")
        if self.status != "parsed" and not self.reason:
            raise ValueError("a result that is not 'parsed' needs a reason")
        if self.email_date is not None and self.email_date.tzinfo is None:
            raise ValueError("email_date must be timezone-aware")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "line_items":
                out[f.name] = [item.to_json() for item in value]
            elif f.name == "attachments":
                out[f.name] = [a.to_json() for a in value]
            elif f.name == "warnings":
                out[f.name] = list(value)
            else:
                out[f.name] = _json_value(value)
        return out


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):  # datetime is a date subclass; both have isoformat()
        return value.isoformat()
    return value
