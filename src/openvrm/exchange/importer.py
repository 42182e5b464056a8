"""Import an export archive into an unlocked vault, all or nothing.

Everything is checked before anything is written: the ZIP's integrity and entry names, sizes against
the limits (counted from the bytes actually decompressed, so a lying header cannot slip a zip bomb
through), the manifest against its JSON Schema, each file's sha256 and size, every reference between
records, and every value through the same validators the services use. Only then are the files sealed
into the blob store and all rows inserted in one write transaction. If that transaction fails, the blobs
this import added are removed again, so a rejected import leaves the vault exactly as it was.

Records whose ids already exist in the vault are skipped and counted, so importing the same archive
twice, or an archive of this very vault, adds nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from pyrage import DecryptError
from pyrage import passphrase as age_passphrase
from sqlalchemy import select
from sqlalchemy.orm import Session

from openvrm.agent.service import discovery_url_of
from openvrm.crypto import seal_to
from openvrm.documents.service import KINDS as DOCUMENT_KINDS
from openvrm.errors import ArchiveError, IntegrityError, InvalidValue, NotFound, VaultLocked
from openvrm.exchange.format import (
    AGE_ARMOR,
    AGE_HEADER,
    DEFAULT_LIMITS,
    INTENT_DRAFT_KEYS,
    INTENT_PUBLISHED_KEYS,
    KINDS,
    MAIL_MESSAGE_KEYS,
    MANIFEST,
    OPTIONAL_KINDS,
    ImportLimits,
    PassphraseNeeded,
    Progress,
    WrongArchivePassphrase,
    check_entry_name,
    file_entry,
    parse_time,
    sha_of_entry,
    validate_manifest,
)
from openvrm.intents.service import KINDS as INTENT_KINDS
from openvrm.intents.service import MAX_TEXT
from openvrm.intents.service import STATES as INTENT_STATES
from openvrm.ledger.contracts import STATUSES as CONTRACT_STATUSES
from openvrm.ledger.money import optional_date, parse_amount, parse_currency, parse_date
from openvrm.ledger.terms import ContractTerms, PricePoint
from openvrm.mail.keys import MailKeys, normalise_address
from openvrm.mail.routing import (
    CONFIG_ID,
    DELIVERIES,
    MODES,
    Alias,
    Downstream,
    clean_config,
    clean_domain,
    clean_mailbox,
)
from openvrm.mail.service import STYLES as ALIAS_STYLES
from openvrm.moves.service import NOTICE_STATUSES, movable_key
from openvrm.outbox.settings import SMTP_SETTING, clean_mail_settings
from openvrm.profile.fields import _text, normalise_key, validate
from openvrm.protocol import messages as pm
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair, public_key_from_did
from openvrm.protocol.intents import MAX_INTENT_DAYS, MAX_INTEREST_DAYS, make_intent
from openvrm.protocol.sealing import SEAL_ALG, open_sealed_json
from openvrm.protocol.terms import term as roster_term
from openvrm.records import insert, table_of
from openvrm.rights.contacts import CHANNELS, Contact
from openvrm.rights.letters import REQUEST_TYPES, pick_language
from openvrm.rights.service import STATES as REQUEST_STATES
from openvrm.rights.service import RightsRequestRecord
from openvrm.storage.models import (
    Base,
    Connection,
    ConnectionEvent,
    Contract,
    Document,
    DocumentText,
    Grant,
    InboxItem,
    Intent,
    IntentOffer,
    MailAlias,
    MailMessage,
    MailReverseAlias,
    MailState,
    Move,
    Payment,
    ProfileChange,
    ProfileShare,
    Relationship,
    RightsRequest,
    SealedSetting,
    Vendor,
)
from openvrm.vault.core import MAX_INBOX_ITEM_BYTES, UnlockedVault, encode_payload
from openvrm.vendors.service import clean_relationship, clean_vendor

_CHUNK = 1024 * 1024
_MODELS: dict[str, type[Base]] = {
    "profile_changes": ProfileChange,
    "vendors": Vendor,
    "relationships": Relationship,
    "contracts": Contract,
    "documents": Document,
    "payments": Payment,
    "shares": ProfileShare,
    "rights_requests": RightsRequest,
    "moves": Move,
    "connections": Connection,
    "connection_events": ConnectionEvent,
    "grants": Grant,
    "intents": Intent,
    "intent_offers": IntentOffer,
    "mail_gateway": MailState,
    "mail_aliases": MailAlias,
    "mail_reverse_aliases": MailReverseAlias,
    "mail_messages": MailMessage,
    "settings": SealedSetting,
    "inbox": InboxItem,
}


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: records added and skipped (their ids already existed) per kind, and files."""

    path: Path
    encrypted: bool
    bytes: int
    source_vault_id: str
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    files_added: int = 0  # files sealed into the vault's blob store by this import
    files_present: int = 0  # files the new documents need that the vault already held
    file_bytes: int = 0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def added_total(self) -> int:
        return sum(self.added.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "encrypted": self.encrypted,
            "bytes": self.bytes,
            "source_vault_id": self.source_vault_id,
            "added": dict(self.added),
            "skipped": dict(self.skipped),
            "added_total": self.added_total,
            "skipped_total": self.skipped_total,
            "files_added": self.files_added,
            "files_present": self.files_present,
            "file_bytes": self.file_bytes,
        }


# -- reading the container ----------------------------------------------------------------------------


def is_encrypted(path: Path) -> bool:
    """Whether the file at ``path`` is an age-encrypted archive (so a passphrase must be asked for)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(len(AGE_ARMOR))
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    return head.startswith(AGE_HEADER) or head.startswith(AGE_ARMOR)


def _decrypt(data: bytes, passphrase: str | None) -> bytes:
    if data.startswith(AGE_ARMOR):
        raise ArchiveError(
            "this archive is an ASCII-armoured age file; turn it back into binary with `age -d` first"
        )
    if passphrase is None:
        raise PassphraseNeeded("this archive is encrypted: a passphrase is needed to import it")
    try:
        return bytes(age_passphrase.decrypt(data, passphrase))
    except DecryptError as exc:
        if "failed" in str(exc).lower():
            raise WrongArchivePassphrase(
                "wrong passphrase for this archive (or its encryption header is damaged)"
            ) from None
        raise ArchiveError(f"the encrypted archive is damaged or truncated ({exc})") from None


@contextmanager
def _zip_errors() -> Iterator[None]:
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ArchiveError(f"the archive is damaged or truncated: {str(exc)[:200]}") from None


class _Entries:
    """The ZIP's entries, checked for names, duplicates, count and declared sizes."""

    def __init__(self, zf: zipfile.ZipFile, limits: ImportLimits) -> None:
        self.zf = zf
        self.limits = limits
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise ArchiveError(
                f"the archive holds {len(infos)} entries, more than the {limits.max_entries} allowed"
            )
        self.files: dict[str, zipfile.ZipInfo] = {}
        manifest: zipfile.ZipInfo | None = None
        seen: set[str] = set()
        declared = 0
        for info in infos:
            name = info.filename
            check_entry_name(name)
            if name in seen:
                raise ArchiveError(f"the archive holds the entry {name!r} twice")
            seen.add(name)
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{name} uses ZIP encryption, which openvrm archives never use")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArchiveError(f"{name} uses a compression method openvrm archives never use")
            limit = limits.max_manifest_bytes if name == MANIFEST else limits.max_entry_bytes
            if info.file_size > limit:
                raise ArchiveError(f"{name} is {info.file_size} bytes, more than the {limit} allowed")
            declared += info.file_size
            if name == MANIFEST:
                manifest = info
            else:
                # check_entry_name let only manifest.json, files/ and files/<sha256> through
                self.files[sha_of_entry(name) or name] = info
        if declared > limits.max_total_bytes:
            raise ArchiveError(f"the archive unpacks to more than the {limits.max_total_bytes} bytes allowed")
        if manifest is None:
            raise ArchiveError("the archive has no manifest.json: it is not an openvrm export")
        self.manifest: zipfile.ZipInfo = manifest
        self.total_read = 0

    def _chunks(self, info: zipfile.ZipInfo, limit: int) -> Iterator[bytes]:
        """Yield the entry's bytes, stopping as soon as it or the archive goes over its limit."""
        size = 0
        with _zip_errors(), self.zf.open(info) as fh:
            while chunk := fh.read(_CHUNK):
                size += len(chunk)
                self.total_read += len(chunk)
                if size > limit:
                    raise ArchiveError(f"{info.filename} unpacks to more than the {limit} bytes allowed")
                if self.total_read > self.limits.max_total_bytes:
                    raise ArchiveError(
                        f"the archive unpacks to more than the {self.limits.max_total_bytes} bytes allowed"
                    )
                yield chunk

    def read_manifest(self) -> Any:
        data = b"".join(self._chunks(self.manifest, self.limits.max_manifest_bytes))
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ArchiveError(f"manifest.json is not valid JSON: {str(exc)[:200]}") from None

    def digest(self, sha: str) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        for chunk in self._chunks(self.files[sha], self.limits.max_entry_bytes):
            h.update(chunk)
            size += len(chunk)
        return h.hexdigest(), size

    def read_file(self, sha: str) -> bytes:
        data = b"".join(self._chunks(self.files[sha], self.limits.max_entry_bytes))
        if hashlib.sha256(data).hexdigest() != sha:
            raise ArchiveError(f"{file_entry(sha)} changed while it was being imported")
        return data


# -- checking the records -----------------------------------------------------------------------------


@dataclass
class _Row:
    id: str
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any]
    plain: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # documents and kept mail messages: the sha256 of the file
    text: str = ""  # documents only: the extracted text ("" when there is none)
    attachment: bytes | None = None  # ledger entries only: the file a vendor's receipt event carried
    size: int = 0  # kept mail messages: the size of the file (a document's is in its payload)


@contextmanager
def _at(where: str) -> Iterator[None]:
    """Name the record when a core validator rejects one of its values."""
    try:
        yield
    except InvalidValue as exc:
        raise ArchiveError(f"{where}: {exc}") from None


def _label(kind: str, index: int, rec: dict[str, Any]) -> str:
    return f"{kind}[{index}] (id {rec.get('id')})"


def _stamps(rec: dict[str, Any], where: str) -> tuple[datetime, datetime]:
    return parse_time(rec["created_at"], where), parse_time(rec["updated_at"], where)


def _date(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidValue(f"{what} must be a date in YYYY-MM-DD form, not {value!r}") from None


def _check_profile_change(rec: dict[str, Any], where: str) -> _Row:
    at = parse_time(rec["at"], where)
    with _at(where):
        if rec["action"] == "set":
            if rec["value"] is None:
                raise InvalidValue("a 'set' change needs a value")
            key, value = validate(rec["field"], rec["value"])
        else:
            if rec["value"] is not None:
                raise InvalidValue("an 'unset' change has no value")
            key, value = normalise_key(rec["field"]), None
        source = _text(rec["source"], "the source", max_len=200) if rec["source"] else ""
    payload = {"field": key, "action": rec["action"], "value": value, "source": source}
    return _Row(rec["id"], at, at, payload)


def _check_vendor(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        payload = clean_vendor(
            rec["name"],
            domains=rec["domains"],
            country=rec["country"],
            categories=rec["categories"],
            directory_slug=rec["directory_slug"],
            website=rec["website"],
            notes=rec["notes"],
            vat_ids=rec["vat_ids"],
        )
    return _Row(rec["id"], created, updated, payload)


def _check_relationship(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        payload = clean_relationship(
            status=rec["status"],
            stance=rec["stance"],
            customer_number=rec["customer_number"],
            account=rec["account"],
            since=rec["since"],
            tags=rec["tags"],
            notes=rec["notes"],
            folder=rec["folder"],
        )
    return _Row(rec["id"], created, updated, payload, {"vendor_id": rec["vendor_id"]})


def _check_document(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        filename = _text(Path(rec["filename"]).name, "a file name", max_len=255)
        if filename != rec["filename"]:
            raise InvalidValue(f"the file name {rec['filename'][:80]!r} is not a plain file name")
        if rec["kind"] not in DOCUMENT_KINDS:
            raise InvalidValue(f"kind must be one of {', '.join(DOCUMENT_KINDS)}, not {rec['kind']!r}")
        payload = {
            "filename": filename,
            "media_type": _text(rec["media_type"], "a media type", max_len=255),
            "size": rec["size"],
            "title": _text(rec["title"], "a title", max_len=300),
            "kind": rec["kind"],
        }
        until = optional_date(rec["warranty_until"], "the warranty end")
        extra = {
            "format": rec["format"],
            "parse_status": rec["parse_status"],
            "reason": rec["reason"],
            "fields": _document_fields(rec["fields"]),
            "contract_id": rec["contract_id"],
            "warranty_until": until.isoformat() if until else None,
            "notes": rec["notes"].strip()[:10000],
        }
    # Like DocumentService.add: what the import service did not read is left out, not stored empty.
    payload |= {k: v for k, v in extra.items() if v not in (None, {}, "")}
    if rec["file"] != file_entry(rec["sha256"]):
        raise ArchiveError(f"{where}: its file {rec['file']!r} does not match its sha256")
    plain = {"vendor_id": rec["vendor_id"], "relationship_id": rec["relationship_id"]}
    return _Row(rec["id"], created, updated, payload, plain, rec["sha256"], rec["text"])


# The parsed invoice fields a document may carry (openvrm.documents.importer._FIELDS), by the kind of value.
_FIELD_DATES = ("issue_date", "due_date", "service_start", "service_end")
_FIELD_AMOUNTS = ("net_total", "tax_total", "gross_total", "due_total")
_LINE_DECIMALS = ("quantity", "unit_price", "net_amount", "tax_rate")


_DECIMAL_PLACES = 40  # parsed numbers stay within 10**±40, so none can blow up later arithmetic


def _decimal_text(value: str, what: str) -> str:
    """A decimal number as the parsers write it, kept as written.

    ``str(Decimal)`` may use an exponent (``1E-7``), so one is accepted, but only within 10**±40: a
    parsed amount such as ``1e999999999`` is refused as the parsers themselves refuse it.
    """
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise InvalidValue(f"{what} is not a number: {value[:40]!r}") from None
    if not number.is_finite() or value != value.strip():
        raise InvalidValue(f"{what} is not a finite number: {value[:40]!r}")
    exponent = number.as_tuple().exponent
    if number.adjusted() > _DECIMAL_PLACES or not isinstance(exponent, int) or exponent < -_DECIMAL_PLACES:
        raise InvalidValue(f"{what} is out of range: {value[:40]!r}")
    return value


def _document_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Check the parsed fields (the schema already fixed their names and JSON types); keep them as is."""
    for key in _FIELD_DATES:
        if key in fields:
            parse_date(fields[key], f"the field {key}")
    for key in _FIELD_AMOUNTS:
        if key in fields:
            _decimal_text(fields[key], f"the field {key}")
    if "currency" in fields and parse_currency(fields["currency"]) != fields["currency"]:
        raise InvalidValue(f"the field currency must be an upper-case ISO 4217 code: {fields['currency']!r}")
    if "email_date" in fields:
        try:
            stamp = datetime.fromisoformat(fields["email_date"])
        except ValueError:
            raise InvalidValue(
                f"the field email_date is not a timestamp: {fields['email_date'][:40]!r}"
            ) from None
        if stamp.tzinfo is None:
            raise InvalidValue("the field email_date has no time zone")
    for n, item in enumerate(fields.get("line_items", [])):
        for key in _LINE_DECIMALS:
            if item.get(key) is not None:
                _decimal_text(item[key], f"line item {n + 1}'s {key}")
    return fields


def _check_contract(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        start = parse_date(rec["start"], "the start date")
        end = optional_date(rec["end_date"], "the end date")
        price = parse_amount(rec["price"], "the price")
        currency = parse_currency(rec["currency"])
        history: list[PricePoint] = []
        for n, point in enumerate(rec["price_history"]):
            what = f"price change {n + 1}"
            pp = PricePoint(
                parse_date(point["effective"], f"the effective date of {what}"),
                parse_amount(point["price"], f"the price of {what}"),
                parse_currency(point["currency"]),
            )
            if pp.effective < start:
                raise InvalidValue(f"{what} takes effect before the contract starts")
            if any(h.effective == pp.effective for h in history):
                raise InvalidValue(f"two price changes take effect on {pp.effective.isoformat()}")
            history.append(pp)
        history.sort(key=lambda h: h.effective)
        if rec["status"] not in CONTRACT_STATUSES:
            raise InvalidValue(f"status must be one of {', '.join(CONTRACT_STATUSES)}, not {rec['status']!r}")
        # The ledger's own rules: billing cycle, notice unit, no negative terms, no end before the start.
        ContractTerms(
            start=start,
            price=price,
            currency=currency,
            billing_cycle=rec["billing_cycle"],
            minimum_term_months=rec["minimum_term_months"],
            auto_renewal=rec["auto_renewal"],
            renewal_term_months=rec["renewal_term_months"],
            notice_value=rec["notice_value"],
            notice_unit=rec["notice_unit"],
            end_date=end,
            price_history=tuple(history),
        )
        category = rec["category"]
        payload = {
            "plan": _text(rec["plan"], "a plan name", max_len=200),
            "category": _text(category, "a category", max_len=60).lower() if category else None,
            "price": str(price),
            "currency": currency,
            "billing_cycle": rec["billing_cycle"],
            "start": start.isoformat(),
            "minimum_term_months": rec["minimum_term_months"],
            "auto_renewal": rec["auto_renewal"],
            "renewal_term_months": rec["renewal_term_months"],
            "notice_value": rec["notice_value"],
            "notice_unit": rec["notice_unit"],
            "end_date": end.isoformat() if end else None,
            "status": rec["status"],
            "variable": rec["variable"],
            "price_history": [
                {"effective": h.effective.isoformat(), "price": str(h.price), "currency": h.currency}
                for h in history
            ],
            "notes": rec["notes"].strip()[:10000],
        }
    plain = {"vendor_id": rec["vendor_id"], "relationship_id": rec["relationship_id"]}
    return _Row(rec["id"], created, updated, payload, plain)


def _check_payment(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        due = optional_date(rec["due_date"], "the due date")
        payload = {
            "due_date": due.isoformat() if due else None,
            "paid_on": parse_date(rec["paid_on"], "the payment date").isoformat(),
            "amount": str(parse_amount(rec["amount"], "the amount")),
            "currency": parse_currency(rec["currency"]),
            "note": rec["note"].strip()[:1000],
        }
    plain = {k: rec[k] for k in ("contract_id", "vendor_id", "document_id")}
    return _Row(rec["id"], created, updated, payload, plain)


def _check_share(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        payload = {
            "field": normalise_key(rec["field"]),
            "purpose": _text(rec["purpose"], "a purpose", max_len=300),
            "until": _date(rec["until"], "'until'"),
            "revoked_at": rec["revoked_at"],
        }
    if rec["revoked_at"] is not None:
        parse_time(rec["revoked_at"], where)
    return _Row(rec["id"], created, updated, payload, {"relationship_id": rec["relationship_id"]})


# "overdue" is computed from the deadline when a request is read, never stored (openvrm.rights.service).
_STORED_REQUEST_STATES = tuple(s for s in REQUEST_STATES if s != "overdue")
# The events RightsService writes into a request's history (its ``_event`` calls); a test keeps them in step.
REQUEST_EVENTS = ("created", "sent", "acknowledged", "extended", "answered", "escalated", "closed")
# How a move's notice reaches its vendor (openvrm.moves.service.Candidate.channel).
NOTICE_CHANNELS = ("email", "post", "none", "protocol")


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InvalidValue(f"{what} must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def _optional_text(value: str | None, what: str, max_len: int = 500) -> str | None:
    return _text(value, what, max_len=max_len) if value is not None else None


def _language(value: str) -> str:
    """A letter's language, checked by the rights package (which refuses any it cannot write)."""
    if not value.strip():
        raise InvalidValue("the language is empty")
    return pick_language(None, None, value)


def _check_rights_request(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    for n, event in enumerate(rec["events"]):
        parse_time(event["at"], f"{where}, event {n + 1}")
    with _at(where):
        kind = _one_of(rec["kind"], tuple(REQUEST_TYPES), "the request type")
        status = _one_of(rec["status"], _STORED_REQUEST_STATES, "the request status")
        details = rec["details"].strip()
        if len(details) > 5000:
            raise InvalidValue("the details are longer than 5000 characters")
        if kind in ("rectification", "restriction") and not details:
            raise InvalidValue(f"a {kind} request needs details")
        c = rec["contact"]
        contact = Contact(
            name=_text(c["name"], "the contact's name"),
            email=_optional_text(c["email"], "the contact's e-mail address", 254),
            address=c["address"] or None,  # several lines, as the directory writes it
            webform=_optional_text(c["webform"], "the contact's web form", 2000),
            suggested=c["suggested"],
            slug=c["slug"],
        )
        channel = contact.choose(rec["channel"])  # a known channel, and one the contact can be reached on
        sent_on = _date(rec["sent_on"], "the day it was sent")
        # The request's life cycle (RightsService): a draft was never sent; a sent one has its day.
        if status == "draft" and (sent_on or rec["extended"] or rec["complaint"]):
            raise InvalidValue("a draft request was never sent, extended or escalated")
        if status in ("sent", "acknowledged", "answered", "escalated") and sent_on is None:
            raise InvalidValue(f"a request that is {status} needs the day it was sent")
        if rec["extended"] and sent_on is None:
            raise InvalidValue("only a sent request can have its deadline extended")
        if status == "escalated" and rec["complaint"] is None:
            raise InvalidValue("an escalated request needs its complaint")
        events: list[dict[str, Any]] = []
        for event in rec["events"]:
            entry = {
                "at": event["at"],
                "event": _one_of(event["event"], REQUEST_EVENTS, "an event"),
                "note": event["note"],
            }
            if event["documents"] is not None:
                entry["documents"] = event["documents"]
            events.append(entry)
        complaint = rec["complaint"]
        if complaint is not None:
            complaint = {
                "authority": _text(complaint["authority"], "the supervisory authority", max_len=100),
                "channel": _one_of(complaint["channel"], CHANNELS, "the complaint's channel"),
                "on": _date(complaint["on"], "the day of the complaint"),
                # The outbox is not carried over: the message it names is not in this vault.
                "outbox_id": None,
            }
        request = RightsRequestRecord(
            id=rec["id"],
            vendor_id=rec["vendor_id"],
            vendor_name=_text(rec["vendor_name"], "the vendor's name"),
            kind=kind,
            language=_language(rec["language"]),
            channel=channel,
            stored_status=status,
            contact=contact.to_json(),
            identity=[(label, value) for label, value in rec["identity"]],
            details=details,
            customer_number=rec["customer_number"],
            sent_on=sent_on,
            extended=rec["extended"],
            outbox_id=None,  # likewise: the request's e-mail stays in the outbox it was queued in
            documents=list(rec["documents"]),
            events=events,
            complaint=complaint,
        )
    return _Row(rec["id"], created, updated, request.payload(), {"vendor_id": rec["vendor_id"]})


def _check_move(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        key = movable_key(rec["field"])
        key, old = validate(key, rec["old"])
        _, new = validate(key, rec["new"])
        if old == new:
            raise InvalidValue("a move changes a value: the old and the new one are the same")
        on = parse_date(rec["on"], "the day of the move").isoformat()
        notices: list[dict[str, Any]] = []
        seen: set[str] = set()
        for n, notice in enumerate(rec["notices"]):
            what = f"notice {n + 1}"
            vendor_id = notice["vendor_id"]
            if vendor_id is not None:
                if vendor_id in seen:
                    raise InvalidValue(f"{what} is a second notice to vendor {vendor_id}")
                seen.add(vendor_id)
            channel = _one_of(notice["channel"], NOTICE_CHANNELS, f"the channel of {what}")
            to = _optional_text(notice["to"], f"the address of {what}", 2000)
            if channel not in ("none", "protocol") and to is None:
                raise InvalidValue(f"{what} goes by {channel} but says nowhere to")
            notices.append(
                {
                    "vendor_id": vendor_id,
                    "vendor_name": _text(notice["vendor_name"], f"the vendor's name in {what}"),
                    "channel": channel,
                    "status": _one_of(notice["status"], NOTICE_STATUSES, f"the status of {what}"),
                    "to": to,
                    "customer_number": notice["customer_number"],
                    "language": _language(notice["language"]),
                    "reasons": list(notice["reasons"]),
                    "missing": notice["missing"],
                    "outbox_id": None,  # the outbox is not carried over (see _check_rights_request)
                    "last_error": notice["last_error"],
                }
            )
    payload = {"field": key, "old": old, "new": new, "on": on, "notices": notices}
    return _Row(rec["id"], created, updated, payload)


def _check_setting(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    if rec["id"] != SMTP_SETTING:  # the schema lets only the settings it describes through
        raise ArchiveError(f"{where}: unknown setting {rec['id'][:40]!r}")
    with _at(where):
        payload = clean_mail_settings(**rec["value"]).to_json(reveal=True)
    return _Row(rec["id"], created, updated, payload)


def _check_inbox(rec: dict[str, Any], where: str) -> _Row:
    received = parse_time(rec["received_at"], where)
    if len(encode_payload(rec["item"])) > MAX_INBOX_ITEM_BYTES:
        raise ArchiveError(
            f"{where}: the item is larger than the {MAX_INBOX_ITEM_BYTES} bytes an inbox item may be"
        )
    return _Row(rec["id"], received, received, rec["item"])


# -- the relationship mailbox (openvrm.mail): gateway settings, aliases, reverse aliases, filed messages ----

ALIAS_STATES = ("active", "disabled")
MESSAGE_DIRECTIONS = ("in", "out")


def _check_mail_gateway(rec: dict[str, Any], where: str) -> _Row:
    updated = parse_time(rec["updated_at"], where)
    if rec["id"] != CONFIG_ID:  # the schema lets only the gateway's settings through
        raise ArchiveError(f"{where}: unknown mail gateway state {rec['id'][:40]!r}")
    value = rec["value"]
    with _at(where):
        ds = value["downstream"]
        downstream = Downstream(**ds) if ds is not None else None
        if downstream is not None and downstream.host != _text(downstream.host, "the downstream host"):
            raise InvalidValue("the downstream host has spaces around it")
        cfg = clean_config(
            domains=value["domains"],
            forward_to=value["forward_to"],
            deliver=value["deliver"],
            downstream=downstream,
            max_message_bytes=value["max_message_bytes"],
            max_recipients=value["max_recipients"],
            auto_alias=value["auto_alias"],
        )
    return _Row(rec["id"], updated, updated, cfg.to_json(reveal=True))


def _domains(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(clean_domain(v) for v in values))


def _check_mail_alias(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        _one_of(rec["state"], ALIAS_STATES, "the alias's state")
        _one_of(rec["mode"], MODES, "the alias's mode")
        _one_of(rec["deliver"], DELIVERIES, "the alias's delivery")
        _one_of(rec["style"], ALIAS_STYLES, "the alias's style")
        alias = Alias(
            id=rec["id"],
            address=clean_mailbox(rec["address"], "the alias"),
            vendor_id=rec["vendor_id"],
            vendor_name=rec["vendor_name"].strip(),
            state=rec["state"],
            created_at=created,
            vendor_domains=_domains(rec["vendor_domains"]),
            learned_domains=_domains(rec["learned_domains"]),
            blocked=rec["blocked"],
            mode=rec["mode"],
            deliver=rec["deliver"],
            style=rec["style"],
            note=rec["note"],
            relationship_id=rec["relationship_id"],
        )
    plain = {"vendor_id": rec["vendor_id"], "state": rec["state"]}
    return _Row(rec["id"], created, updated, alias.payload(), plain)


def _check_mail_reverse_alias(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _at(where):
        address = clean_mailbox(rec["address"], "the reverse alias")
        contact = normalise_address(rec["contact"])
    payload = {"address": address, "contact": contact}
    return _Row(rec["id"], created, updated, payload, {"alias_id": rec["alias_id"]})


def _check_mail_message(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    received = parse_time(rec["received_at"], where)
    with _at(where):
        _one_of(rec["direction"], MESSAGE_DIRECTIONS, "the message's direction")
    kept = [rec[k] is not None for k in ("file", "sha256", "size")]
    if any(kept) and not all(kept):
        raise ArchiveError(f"{where}: a kept message names its file, sha256 and size; one without, none")
    sha256 = rec["sha256"] or ""
    if sha256 and rec["file"] != file_entry(sha256):
        raise ArchiveError(f"{where}: its file {rec['file']!r} does not match its sha256")
    payload = {k: rec[k] for k in MAIL_MESSAGE_KEYS}
    plain = {"vendor_id": rec["vendor_id"], "alias_id": rec["alias_id"], "received_at": received}
    return _Row(rec["id"], created, updated, payload, plain, sha256, size=rec["size"] or 0)


def _check_mail_references(vault: UnlockedVault, plan: dict[str, list[_Row]]) -> None:
    """Aliases' and messages' vendors, reverse aliases' and messages' aliases, in the archive or the vault;
    each address once, in the archive and beside the vault's own (found by the vault's own keyed hash)."""
    if not (plan["mail_aliases"] or plan["mail_reverse_aliases"] or plan["mail_messages"]):
        return
    keys = MailKeys.from_vault(vault)
    with vault.db.read() as s:
        vendors = set(s.scalars(select(Vendor.id)))
        relationship_ids = set(s.scalars(select(Relationship.id)))
        aliases = set(s.scalars(select(MailAlias.id)))
        reverse = set(s.scalars(select(MailReverseAlias.id)))
        taken = {lookup: rid for rid, lookup in s.execute(select(MailAlias.id, MailAlias.lookup))}
        pairs: dict[str, str] = {}
        taken |= {
            lookup: rid for rid, lookup in s.execute(select(MailReverseAlias.id, MailReverseAlias.lookup))
        }
        pairs = {pair: rid for rid, pair in s.execute(select(MailReverseAlias.id, MailReverseAlias.pair))}
    vendors |= {r.id for r in plan["vendors"]}
    relationships = {r.id for r in plan["relationships"]} | relationship_ids
    in_vault = aliases | reverse
    aliases |= {r.id for r in plan["mail_aliases"]}

    def need(what: str, r: _Row, kind: str, target: str | None, known: set[str]) -> None:
        if target is not None and target not in known:
            raise ArchiveError(
                f"{what} {r.id} refers to {kind} {target}, which is not in the archive or the vault"
            )

    addresses: dict[str, str] = {}

    def claim(what: str, r: _Row) -> None:
        address = r.payload["address"]
        lookup = keys.lookup(address)
        if lookup in addresses:
            raise ArchiveError(f"mail aliases {addresses[lookup]} and {r.id} have the same address {address}")
        addresses[lookup] = r.id
        if r.id not in in_vault and taken.get(lookup, r.id) != r.id:
            raise ArchiveError(
                f"{what} {r.id}: the address {address} is already an alias in this vault "
                f"({taken[lookup]}); remove one of them before importing"
            )

    for r in plan["mail_aliases"]:
        need("mail alias", r, "vendor", r.plain["vendor_id"], vendors)
        need("mail alias", r, "relationship", r.payload["relationship_id"], relationships)
        claim("mail alias", r)
    slots: dict[str, str] = {}
    for r in plan["mail_reverse_aliases"]:
        need("reverse alias", r, "mail alias", r.plain["alias_id"], aliases)
        claim("reverse alias", r)
        pair = keys.pair(r.plain["alias_id"], r.payload["contact"])
        if pair in slots:
            raise ArchiveError(f"reverse aliases {slots[pair]} and {r.id} are for the same alias and contact")
        slots[pair] = r.id
        if r.id not in in_vault and pairs.get(pair, r.id) != r.id:
            raise ArchiveError(
                f"reverse alias {r.id} is for the alias and contact of the vault's reverse alias "
                f"{pairs[pair]}"
            )
    for r in plan["mail_messages"]:
        need("mail message", r, "vendor", r.plain["vendor_id"], vendors)
        need("mail message", r, "mail alias", r.plain["alias_id"], aliases)


# -- protocol connections, their ledgers and grants (openvrm.agent.service) ----------------------------

CONNECTION_STATES = ("active", "blocked", "ended")
# A ledger entry's state, by who wrote the event: the person's wait for, then carry, the vendor's
# acknowledgement; the vendor's are acknowledged by the person when filed, data requests then decided.
PERSON_ENTRY_STATES = ("pending", "acked", "refused")
VENDOR_ENTRY_STATES = ("received", "pending-decision", "approved", "denied")
CONNECTION_KEYS = (
    "vendor_name",
    "discovery_url",
    "discovery",
    "endpoints",
    "person_seed",
    "person_did",
    "proffer",
    "answer",
    "agreement",
)


@contextmanager
def _protocol(where: str) -> Iterator[None]:
    """Name the record when a value, a signed record or a signature is refused."""
    try:
        yield
    except (InvalidValue, NotFound, SignatureError) as exc:
        raise ArchiveError(f"{where}: {exc}") from None


def _base64(value: str, what: str) -> bytes:
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(f"{what} is not base64") from None
    if base64.b64encode(data).decode("ascii") != value:
        raise InvalidValue(f"{what} is not canonical base64")
    return data


def _web_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidValue(f"{what} is not an http(s) URL: {value[:80]!r}")
    return value


def _check_connection(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    with _protocol(where):
        _one_of(rec["status"], CONNECTION_STATES, "the connection's status")
        _text(rec["vendor_name"], "the vendor's name")
        public_key_from_did(rec["vendor_did"])
        key = KeyPair.from_private_bytes(_base64(rec["person_seed"], "the person's key (person_seed)"))
        if key.did != rec["person_did"]:
            raise InvalidValue("the person's key (person_seed) is not the key of person_did")
        if discovery_url_of(rec["discovery_url"]) != rec["discovery_url"]:
            raise InvalidValue(f"{rec['discovery_url'][:80]!r} is not a discovery URL")
        _web_url(rec["discovery_url"], "the discovery URL")
        discovery = rec["discovery"]
        pm.validate("discovery", discovery)
        if discovery["vendor"] != rec["vendor_did"]:
            raise InvalidValue("the discovery document is another vendor's")
        for name, url in rec["endpoints"].items():
            _web_url(url, f"the {name} endpoint")
        if "ledger" not in rec["endpoints"]:
            raise InvalidValue("the vendor's endpoints name no ledger")
        proffer, answer, agreement = rec["proffer"], rec["answer"], rec["agreement"]
        pm.validate("proffer", proffer)
        if proffer["person"] != key.did or proffer["vendor"] != rec["vendor_did"]:
            raise InvalidValue("the proffer is not between this person's key and this vendor")
        pm.verify_signers(proffer, [proffer["person"]])
        if pm.check_answer(answer, proffer) is None or answer["decision"] != "accept":
            raise InvalidValue("a connection rests on an accepting answer")
        pm.check_agreement(agreement, proffer=proffer, answer=answer)
    plain = {k: rec[k] for k in ("handle", "vendor_did", "status", "vendor_id")}
    return _Row(rec["id"], created, updated, {k: rec[k] for k in CONNECTION_KEYS}, plain)


def _check_connection_event(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    attachment: bytes | None = None
    with _protocol(where):
        event, ack, note = rec["event"], rec["ack"], rec["note"]
        pm.validate("ledger-event", event)
        if event["event_id"] != rec["event_id"]:
            raise InvalidValue("the entry's event_id is not its event's")
        person = rec["author"] == "person"
        if event["subtype"] not in (pm.PERSON_SUBTYPES if person else pm.VENDOR_SUBTYPES):
            raise InvalidValue(f"a {event['subtype']} event cannot come from the {rec['author']}")
        pm.check_event_hashes(event)
        pm.verify_signers(event, [event["author"]])
        state = _one_of(
            rec["state"], PERSON_ENTRY_STATES if person else VENDOR_ENTRY_STATES, "the entry's state"
        )
        if ack is not None:
            pm.check_ack(ack, event, author=str(ack.get("author")))
        status = ack["status"] if ack is not None else None
        expected = {"pending": None, "acked": "accepted", "refused": "refused"}.get(state, "accepted")
        if status != expected:
            raise InvalidValue(
                f"a {state} entry cannot carry {'no' if status is None else 'this'} acknowledgement"
            )
        if "attachment" in note:
            content = event["payload"].get("attachment", {})
            if event["subtype"] not in ("receipt", "invoice") or not isinstance(content, dict):
                raise InvalidValue("the note names an attachment the event does not carry")
            attachment = _base64(str(content.get("content")), "the event's attachment")
            if note["attachment"]["size"] != len(attachment):
                raise InvalidValue("the note's attachment size is not the event's attachment's")
    plain = {k: rec[k] for k in ("connection_id", "position", "event_id", "author", "state")}
    payload = {"event": event, "ack": ack, "note": note}
    return _Row(rec["id"], created, updated, payload, plain, attachment=attachment)


def _check_grant(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    until = parse_time(rec["until"], where) if rec["until"] is not None else None
    revoked = parse_time(rec["revoked_at"], where) if rec["revoked_at"] is not None else None
    box: bytes | None = None
    with _protocol(where):
        fields = rec["fields"]
        if [normalise_key(f) for f in fields] != sorted(set(fields)) or not fields:
            raise InvalidValue("the granted fields are profile keys, sorted, each once")
        if not rec["purpose"].startswith(("https://", "urn:")):
            raise InvalidValue("the purpose is an IRI")
        term_id, _, version = rec["term"].partition("@")
        roster_term(term_id, version)
        if rec["vendor_box"] is not None:
            if revoked is not None:
                raise InvalidValue("a revoked grant keeps no values for the vendor")
            box = _base64(rec["vendor_box"], "the vendor box")
            try:
                sealed = json.loads(box)
            except ValueError:
                raise InvalidValue("the vendor box is not JSON") from None
            if (
                not isinstance(sealed, dict)
                or set(sealed) != {"alg", "to", "ciphertext"}
                or sealed["alg"] != SEAL_ALG
                or not all(isinstance(v, str) for v in sealed.values())
            ):
                raise InvalidValue(f"the vendor box is not a value sealed with {SEAL_ALG}")
        for n, consent in enumerate(rec["consent"]):
            pm.parse_time(consent["timestamp"])
            if consent["notice"]["term"] != rec["term"] or consent["personal_data"] != fields:
                raise InvalidValue(f"consent record {n + 1} is for another term or other fields")
    plain = {"connection_id": rec["connection_id"], "until": until, "revoked_at": revoked, "vendor_box": box}
    payload = {k: rec[k] for k in ("fields", "purpose", "term", "until", "consent")}
    return _Row(rec["id"], created, updated, payload, plain)


@dataclass(frozen=True)
class _Parties:
    person_did: str
    vendor_did: str
    agreement_id: str


def _check_protocol(vault: UnlockedVault, plan: dict[str, list[_Row]]) -> None:
    """The connections' references, which may also resolve in the vault: vendors, connections, positions."""
    if not (plan["connections"] or plan["connection_events"] or plan["grants"]):
        return
    with vault.db.read() as s:
        vendors = set(s.scalars(select(Vendor.id)))
        parties: dict[str, _Parties] = {}
        handles: dict[str, str] = {}
        for row in s.scalars(select(Connection)):
            p = vault.open("connections", row.id, row.sealed)
            parties[row.id] = _Parties(p["person_did"], row.vendor_did, p["agreement"]["agreement_id"])
            handles[row.handle] = row.id
        taken = {
            (cid, pos): eid
            for eid, cid, pos in s.execute(
                select(ConnectionEvent.id, ConnectionEvent.connection_id, ConnectionEvent.position)
            )
        }
    entries = set(taken.values())
    vendors |= {r.id for r in plan["vendors"]}
    in_vault = set(parties)
    archive_handles: dict[str, str] = {}
    for r in plan["connections"]:
        vendor_id, handle = r.plain["vendor_id"], r.plain["handle"]
        if vendor_id is not None and vendor_id not in vendors:
            raise ArchiveError(
                f"connection {r.id} refers to vendor {vendor_id}, which is not in the archive or the vault"
            )
        if handle in archive_handles:
            raise ArchiveError(f"connections {archive_handles[handle]} and {r.id} have the same handle")
        archive_handles[handle] = r.id
        if r.id in in_vault:
            continue  # skipped: the vault's own connection stays
        if handle in handles:
            raise ArchiveError(
                f"connection {r.id} has the handle of connection {handles[handle]} in the vault"
            )
        agreement = r.payload["agreement"]
        parties[r.id] = _Parties(r.payload["person_did"], r.plain["vendor_did"], agreement["agreement_id"])

    def party(what: str, r: _Row) -> _Parties:
        cid = r.plain["connection_id"]
        if cid not in parties:
            raise ArchiveError(
                f"{what} {r.id} refers to connection {cid}, which is not in the archive or the vault"
            )
        return parties[cid]

    slots: dict[tuple[str, int], str] = {}
    event_ids: set[tuple[str, str]] = set()
    for r in plan["connection_events"]:
        who = party("ledger entry", r)
        cid, position = r.plain["connection_id"], r.plain["position"]
        if (cid, position) in slots:
            raise ArchiveError(
                f"ledger entries {slots[cid, position]} and {r.id} both hold position {position} "
                f"of connection {cid}"
            )
        slots[cid, position] = r.id
        if r.id not in entries and taken.get((cid, position), r.id) != r.id:
            raise ArchiveError(
                f"ledger entry {r.id} holds position {position} of connection {cid}, which the vault's "
                f"entry {taken[cid, position]} holds"
            )
        if (cid, r.plain["event_id"]) in event_ids:
            raise ArchiveError(f"ledger entry {r.id} records event {r.plain['event_id']} a second time")
        event_ids.add((cid, r.plain["event_id"]))
        event, ack = r.payload["event"], r.payload["ack"]
        author, other = (
            (who.person_did, who.vendor_did)
            if r.plain["author"] == "person"
            else (who.vendor_did, who.person_did)
        )
        if event["agreement_id"] != who.agreement_id:
            raise ArchiveError(
                f"ledger entry {r.id}: the event belongs to another agreement than its connection"
            )
        if event["author"] != author:
            raise ArchiveError(
                f"ledger entry {r.id}: the event is not by the connection's {r.plain['author']}"
            )
        if ack is not None and ack["author"] != other:
            raise ArchiveError(f"ledger entry {r.id}: the acknowledgement is not by the other party")
    for r in plan["grants"]:
        who = party("grant", r)
        box = r.plain["vendor_box"]
        if box is not None and json.loads(box)["to"] != pm.kid_of(who.vendor_did):
            raise ArchiveError(f"grant {r.id}: the vendor box is sealed to another key than the vendor's")
        for consent in r.payload["consent"]:
            if consent["data_subject"] != who.person_did or consent["agreement_id"] != who.agreement_id:
                raise ArchiveError(f"grant {r.id}: a consent record is for another connection")


# -- intents and the offers they drew (openvrm.intents.service) ------------------------------------------

OFFER_STATES = ("open", "invalid", "accepted", "declined")


def _check_signed_intent(signed: Any, key: KeyPair, rec: dict[str, Any]) -> None:
    """:func:`openvrm.protocol.intents.check_intent` without the expiry: an archived intent may be over."""
    from openvrm.intents.taxonomy import categories

    pm.validate("intent", signed)
    if signed["author"] != key.did:
        raise InvalidValue("the signed intent's author is not the intent's key (seed)")
    pm.verify_signers(signed, [signed["author"]])
    if signed["category"] not in categories():
        raise InvalidValue(f"{signed['category']!r} is not a category of the taxonomy")
    for ref in signed["terms"]:
        pm.roster_term(ref)
    created, expires = pm.parse_time(signed["created_at"]), pm.parse_time(signed["expires_at"])
    limit = timedelta(days=MAX_INTEREST_DAYS if signed["kind"] == "interest" else MAX_INTENT_DAYS)
    if expires <= created or expires - created > limit + timedelta(minutes=5):
        raise InvalidValue("the signed intent's expiry is out of range")
    for name in ("intent_id", "kind", "category"):
        if signed[name] != rec[name]:
            raise InvalidValue(f"the signed intent's {name} is not the intent's")


def _check_intent(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    expires_at = parse_time(rec["expires_at"], where) if rec["expires_at"] is not None else None
    state, signed = rec["state"], rec["published"]
    with _protocol(where):
        _one_of(state, INTENT_STATES, "the intent's state")
        kind = _one_of(rec["kind"], INTENT_KINDS, "the intent's kind")
        key = KeyPair.from_private_bytes(_base64(rec["seed"], "the intent's key (seed)"))
        if key.did != rec["author"]:
            raise InvalidValue("the intent's key (seed) is not the key of its author")
        if rec["muted"] and kind != "interest":
            raise InvalidValue("only a standing interest can be muted")
        if len(rec["text"]) > MAX_TEXT:
            raise InvalidValue(f"the text is longer than {MAX_TEXT} characters")
        limit = MAX_INTEREST_DAYS if kind == "interest" else MAX_INTENT_DAYS
        if not 1 <= rec["expires_in_days"] <= limit:
            raise InvalidValue(f"an {kind} expires in 1 to {limit} days")
        # The draft must be one the service could sign: try it with a throwaway key, as it does.
        moment = pm.now_utc()
        make_intent(
            KeyPair.generate(),
            category=rec["category"],
            text=rec["text"],
            constraints=rec["constraints"],
            where=rec["where"] or None,
            when=rec["when"] or None,
            terms=[roster_term(t) for t in rec["terms"]],
            kind=kind,
            expires_at=moment + timedelta(days=rec["expires_in_days"]),
            intent_id=rec["intent_id"],
            now=moment,
        )
        if state == "draft" and signed is not None:
            raise InvalidValue("a draft is not published yet, so it holds no signed intent")
        if state in ("published", "accepted") and signed is None:
            raise InvalidValue(f"an intent that is {state} holds its signed intent")
        if signed is None:
            if expires_at is not None or any(rec[k] is not None for k in INTENT_PUBLISHED_KEYS):
                raise InvalidValue("an intent never published has no expiry, relay, cursor or exclusions")
        else:
            _check_signed_intent(signed, key, rec)
            if expires_at != pm.parse_time(signed["expires_at"]):
                raise InvalidValue("the intent's expiry is not its signed intent's")
            if rec["relay_url"] is None or rec["exclude"] is None:
                raise InvalidValue("a published intent names its relay and the vendors it excludes")
            _web_url(rec["relay_url"], "the relay URL")
            for did in rec["exclude"]:
                public_key_from_did(did)
        if (state == "accepted") != (rec["accepted_offer"] is not None):
            raise InvalidValue("an accepted intent names its accepted offer, and only it does")
        if rec["connection_id"] is not None and state != "accepted":
            raise InvalidValue("only an accepted intent made a connection")
    payload = {k: rec[k] for k in INTENT_DRAFT_KEYS}
    if signed is not None:
        payload |= {k: rec[k] for k in INTENT_PUBLISHED_KEYS}
    if rec["accepted_offer"] is not None:
        payload |= {"accepted_offer": rec["accepted_offer"], "connect_error": rec["connect_error"]}
    if rec["connection_id"] is not None:
        payload["connection_id"] = rec["connection_id"]
    plain = {"state": state, "expires_at": expires_at}
    return _Row(rec["id"], created, updated, payload, plain)


def _check_intent_offer(rec: dict[str, Any], where: str) -> _Row:
    created, updated = _stamps(rec, where)
    envelope, offer, state = rec["envelope"], rec["offer"], rec["state"]
    with _protocol(where):
        _one_of(state, OFFER_STATES, "the offer's state")
        if (offer is None) != (state == "invalid"):
            raise InvalidValue("an offer is invalid exactly when it could not be opened")
        if (offer is None) != (rec["score"] is None):
            raise InvalidValue("an opened offer carries its score, and only it does")
        if offer is None:
            if state == "invalid" and not rec["reason"]:
                raise InvalidValue("an invalid offer says why")
        else:
            if rec["reason"] is not None:
                raise InvalidValue("an opened offer has no reason to be refused")
            pm.validate("offer", offer)
            if not isinstance(envelope, dict) or envelope.get("type") != "sealed-offer":
                raise InvalidValue("an opened offer came in a sealed-offer envelope")
            if offer["intent_id"] != envelope.get("intent_id"):
                raise InvalidValue("the envelope's intent_id is not its offer's")
            if offer["vendor"] != envelope.get("vendor") or offer["offer_id"] != envelope.get("offer_id"):
                raise InvalidValue("the envelope does not match the offer inside")
            if offer["offer_id"] != rec["offer_id"]:
                raise InvalidValue("the record's offer_id is not its offer's")
            pm.verify_signers(offer, [offer["vendor"]])
    plain = {"intent_id": rec["intent_id"], "offer_id": rec["offer_id"]}
    payload = {k: rec[k] for k in ("envelope", "offer", "state", "reason")}
    if offer is not None:
        payload["score"] = rec["score"]
    return _Row(rec["id"], created, updated, payload, plain)


def _check_intent_references(vault: UnlockedVault, plan: dict[str, list[_Row]]) -> None:
    """An offer's intent and an intent's connection, in the archive or the vault; each offer once."""
    if not (plan["intents"] or plan["intent_offers"]):
        return
    with vault.db.read() as s:
        connections = set(s.scalars(select(Connection.id)))
        intents: dict[str, dict[str, Any]] = {}
        for row in s.scalars(select(Intent)):
            intents[row.id] = vault.open("intents", row.id, row.sealed)
        taken = {
            (iid, oid): rid
            for rid, iid, oid in s.execute(
                select(IntentOffer.id, IntentOffer.intent_id, IntentOffer.offer_id)
            )
        }
    connections |= {r.id for r in plan["connections"]}
    in_vault = {rid for rid in taken.values()}
    for r in plan["intents"]:
        cid = r.payload.get("connection_id")
        if cid is not None and cid not in connections:
            raise ArchiveError(
                f"intent {r.id} refers to connection {cid}, which is not in the archive or the vault"
            )
        intents.setdefault(r.id, r.payload)  # an intent the vault holds stays the vault's
    slots: dict[tuple[str, str], str] = {}
    for r in plan["intent_offers"]:
        iid, oid = r.plain["intent_id"], r.plain["offer_id"]
        if iid not in intents:
            raise ArchiveError(
                f"offer {r.id} refers to intent {iid}, which is not in the archive or the vault"
            )
        if (iid, oid) in slots:
            raise ArchiveError(f"offers {slots[iid, oid]} and {r.id} are both offer {oid} of intent {iid}")
        slots[iid, oid] = r.id
        if r.id not in in_vault and taken.get((iid, oid), r.id) != r.id:
            raise ArchiveError(
                f"offer {r.id} is offer {oid} of intent {iid}, which the vault's offer {taken[iid, oid]} is"
            )
        offer, intent = r.payload["offer"], intents[iid]
        if offer is None:
            continue
        if offer["intent_id"] != intent["intent_id"]:
            raise ArchiveError(f"offer {r.id}: the envelope's intent_id is not its intent's")
        signed = intent.get("published")
        if signed is None:
            raise ArchiveError(f"offer {r.id} answers intent {iid}, which was never published")
        key = KeyPair.from_private_bytes(base64.b64decode(intent["seed"]))
        with _protocol(f"offer {r.id}"):
            try:
                inside = open_sealed_json(key, r.payload["envelope"].get("sealed"))
            except (IntegrityError, ValueError, TypeError, KeyError):
                raise InvalidValue("the envelope does not open with its intent's key") from None
            if inside != offer:
                raise InvalidValue("the sealed envelope holds another offer than the opened one")


_CHECKS = {
    "profile_changes": _check_profile_change,
    "vendors": _check_vendor,
    "relationships": _check_relationship,
    "contracts": _check_contract,
    "documents": _check_document,
    "payments": _check_payment,
    "shares": _check_share,
    "rights_requests": _check_rights_request,
    "moves": _check_move,
    "connections": _check_connection,
    "connection_events": _check_connection_event,
    "grants": _check_grant,
    "intents": _check_intent,
    "intent_offers": _check_intent_offer,
    "mail_gateway": _check_mail_gateway,
    "mail_aliases": _check_mail_alias,
    "mail_reverse_aliases": _check_mail_reverse_alias,
    "mail_messages": _check_mail_message,
    "settings": _check_setting,
    "inbox": _check_inbox,
}


def _check_records(manifest: dict[str, Any]) -> dict[str, list[_Row]]:
    counts = manifest["counts"]
    plan: dict[str, list[_Row]] = {}
    for kind in KINDS:
        optional = kind in OPTIONAL_KINDS  # an archive written before these kinds lacks them: none
        records = manifest.get(kind, []) if optional else manifest[kind]
        declared = counts.get(kind, 0) if optional else counts[kind]
        if declared != len(records):
            raise ArchiveError(
                f"manifest.json says it holds {declared} {kind} but lists {len(records)}: it was edited"
            )
        rows = [_CHECKS[kind](rec, _label(kind, i, rec)) for i, rec in enumerate(records)]
        ids = [r.id for r in rows]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ArchiveError(f"manifest.json lists the {kind} id {dup} more than once")
        plan[kind] = rows
    _check_references(plan)
    return plan


def _check_references(plan: dict[str, list[_Row]]) -> None:
    """Every reference between records must resolve inside the archive."""
    ids = {kind: {r.id for r in rows} for kind, rows in plan.items()}
    relationship_vendor = {r.id: r.plain["vendor_id"] for r in plan["relationships"]}

    def need(what: str, row: _Row, kind: str, target: str | None, *, optional: bool = True) -> None:
        if target is None and optional:
            return
        if target not in ids[kind]:
            raise ArchiveError(
                f"{what} {row.id} refers to {kind.removesuffix('s')} {target}, which is not in the archive"
            )

    for r in plan["relationships"]:
        need("relationship", r, "vendors", r.plain["vendor_id"], optional=False)
    for r in plan["contracts"]:
        need("contract", r, "vendors", r.plain["vendor_id"], optional=False)
        need("contract", r, "relationships", r.plain["relationship_id"])
        rel = r.plain["relationship_id"]
        if rel is not None and relationship_vendor[rel] != r.plain["vendor_id"]:
            raise ArchiveError(
                f"contract {r.id} is linked to relationship {rel}, which is with another vendor"
            )
    for r in plan["documents"]:
        need("document", r, "vendors", r.plain["vendor_id"])
        need("document", r, "relationships", r.plain["relationship_id"])
        need("document", r, "contracts", r.payload.get("contract_id"))
    for r in plan["payments"]:
        need("payment", r, "contracts", r.plain["contract_id"])
        need("payment", r, "vendors", r.plain["vendor_id"])
        need("payment", r, "documents", r.plain["document_id"])
    for r in plan["shares"]:
        need("share", r, "relationships", r.plain["relationship_id"], optional=False)
    for r in plan["rights_requests"]:
        need("rights request", r, "vendors", r.plain["vendor_id"], optional=False)
        answers = [d for e in r.payload["events"] for d in e.get("documents", [])]
        for doc in (*r.payload["documents"], *answers):
            need("rights request", r, "documents", doc, optional=False)
    for r in plan["moves"]:
        for notice in r.payload["notices"]:
            need("move", r, "vendors", notice["vendor_id"])


def _check_files(
    entries: _Entries, documents: list[_Row], messages: list[_Row], progress: Progress | None
) -> int:
    """Check every file's sha256 and size from its bytes; return the total size of the files."""
    sizes: dict[str, int] = {}
    kept = [m for m in messages if m.sha256]
    for doc in documents:
        if doc.sha256 not in entries.files:
            raise ArchiveError(f"document {doc.id}: its file {file_entry(doc.sha256)} is not in the archive")
    for msg in kept:
        if msg.sha256 not in entries.files:
            raise ArchiveError(
                f"mail message {msg.id}: its file {file_entry(msg.sha256)} is not in the archive"
            )
    referenced = {doc.sha256 for doc in documents} | {msg.sha256 for msg in kept}
    unreferenced = sorted(set(entries.files) - referenced)
    if unreferenced:
        raise ArchiveError(
            f"{file_entry(unreferenced[0])} is not the file of any document or mail message in manifest.json"
        )
    total = len(entries.files)
    if progress is not None:
        progress("verify", 0, total)
    for done, sha in enumerate(sorted(entries.files), start=1):
        actual, size = entries.digest(sha)
        if actual != sha:
            raise ArchiveError(f"{file_entry(sha)} does not match its sha256: the file was altered")
        sizes[sha] = size
        if progress is not None:
            progress("verify", done, total)
    for doc in documents:
        if doc.payload["size"] != sizes[doc.sha256]:
            raise ArchiveError(
                f"document {doc.id} says its file has {doc.payload['size']} bytes, "
                f"but the file has {sizes[doc.sha256]}"
            )
    for msg in kept:
        if msg.size != sizes[msg.sha256]:
            raise ArchiveError(
                f"mail message {msg.id} says its file has {msg.size} bytes, "
                f"but the file has {sizes[msg.sha256]}"
            )
    return sum(sizes.values())


# -- writing ------------------------------------------------------------------------------------------


def _existing(s: Session, kind: str) -> set[str]:
    model = _MODELS[kind]
    return set(s.scalars(select(model.id)))  # type: ignore[attr-defined]


def _write_rows(
    vault: UnlockedVault,
    plan: dict[str, list[_Row]],
    addresses: dict[str, str],
    progress: Progress | None,
    attachments: dict[str, str] | None = None,
    kept: set[str] | None = None,
) -> tuple[dict[str, int], dict[str, int]]:
    """Insert the rows; ``attachments`` maps a ledger entry to its attachment's blob (added to ``kept``)."""
    attachments = attachments or {}
    box_public = vault.vault.box_public_key
    # The mail tables are sealed by this vault's mail key, and their lookups are its own keyed hashes.
    mail = MailKeys.from_vault(vault)
    added = {k: 0 for k in KINDS}
    skipped = {k: 0 for k in KINDS}
    total = sum(len(rows) for rows in plan.values())
    done = 0
    if progress is not None:
        progress("records", 0, total)
    with vault.db.write() as s:
        for kind in KINDS:
            model = _MODELS[kind]
            existing = _existing(s, kind)
            for row in plan[kind]:
                if row.id in existing:
                    skipped[kind] += 1
                elif kind == "profile_changes":
                    sealed = vault.seal(table_of(model), row.id, row.payload)
                    s.add(ProfileChange(id=row.id, created_at=row.created_at, sealed=sealed))
                    added[kind] += 1
                elif kind == "inbox":
                    sealed_box = seal_to(box_public, encode_payload(row.payload))
                    s.add(InboxItem(id=row.id, received_at=row.created_at, sealed_box=sealed_box))
                    added[kind] += 1
                elif kind in ("mail_gateway", "mail_aliases", "mail_reverse_aliases"):
                    s.add(_mail_row(mail, kind, row))
                    added[kind] += 1
                else:
                    plain = dict(row.plain)
                    payload = row.payload
                    if kind == "documents":
                        plain["blob_address"] = addresses[row.sha256]
                    if kind == "mail_messages":
                        # The kept message's blob address is this vault's own (the archive names its file).
                        blob = addresses[row.sha256] if row.sha256 else None
                        payload = {**payload, "blob": blob}
                        if blob is not None and kept is not None:
                            kept.add(blob)
                    if row.id in attachments and kind == "connection_events":
                        # The attachment's blob address is this vault's own (the archive never names one).
                        note = payload["note"]
                        attachment = {"blob": attachments[row.id], **note["attachment"]}
                        payload = {**payload, "note": {**note, "attachment": attachment}}
                        if kept is not None:
                            kept.add(attachments[row.id])
                    insert(
                        vault,
                        s,
                        model,
                        payload,
                        record_id=row.id,
                        created_at=row.created_at,
                        updated_at=row.updated_at,
                        **plain,
                    )
                    if kind == "documents" and row.text:
                        # The extracted text is sealed apart under the document's id, as the service does.
                        insert(
                            vault,
                            s,
                            DocumentText,
                            {"text": row.text},
                            record_id=row.id,
                            created_at=row.created_at,
                            updated_at=row.updated_at,
                        )
                    added[kind] += 1
                done += 1
            s.flush()  # parents reach the database before their children
            if progress is not None:
                progress("records", done, total)
    return added, skipped


def _mail_row(keys: MailKeys, kind: str, row: _Row) -> Base:
    """A mail-key row, sealed and looked up with the importing vault's mail key."""
    model = _MODELS[kind]
    sealed = keys.seal(table_of(model), row.id, row.payload)
    if kind == "mail_gateway":
        return MailState(id=row.id, updated_at=row.updated_at, sealed=sealed)
    stamps = {"created_at": row.created_at, "updated_at": row.updated_at}
    lookup = keys.lookup(row.payload["address"])
    if kind == "mail_aliases":
        return MailAlias(id=row.id, lookup=lookup, **row.plain, **stamps, sealed=sealed)
    pair = keys.pair(row.plain["alias_id"], row.payload["contact"])
    return MailReverseAlias(id=row.id, lookup=lookup, pair=pair, **row.plain, **stamps, sealed=sealed)


def _forget_blobs(vault: UnlockedVault, addresses: set[str], kept: frozenset[str] = frozenset()) -> None:
    """Delete blobs this import added that no document (nor ``kept`` attachment or message) refers to."""
    if not addresses:
        return
    with vault.db.read() as s:
        used = set(s.scalars(select(Document.blob_address).where(Document.blob_address.in_(addresses))))
    for address in addresses - used - kept:
        vault.vault.blobs.delete(address)


def _open_archive(src: Path, passphrase: str | None, limits: ImportLimits) -> tuple[IO[bytes], bool, int]:
    try:
        size = src.stat().st_size
        fh: IO[bytes] = src.open("rb")
    except FileNotFoundError:
        raise NotFound(f"no such file: {src}") from None
    except IsADirectoryError:
        raise ArchiveError(f"{src} is a folder, not an archive") from None
    head = fh.read(len(AGE_ARMOR))
    fh.seek(0)
    if not (head.startswith(AGE_HEADER) or head.startswith(AGE_ARMOR)):
        return fh, False, size
    with fh:
        if size > limits.max_total_bytes:
            raise ArchiveError(f"the archive is larger than the {limits.max_total_bytes} bytes allowed")
        data = fh.read()
    return io.BytesIO(_decrypt(data, passphrase)), True, size


def import_archive(
    vault: UnlockedVault,
    src: Path,
    *,
    passphrase: str | None = None,
    progress: Progress | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
) -> ImportSummary:
    """Check the archive at ``src`` completely, then add its records and files to ``vault``.

    ``passphrase`` opens an encrypted (age) archive; it is ignored for a plain one. Any problem raises
    :class:`ArchiveError` (or a subclass: :class:`PassphraseNeeded`, :class:`WrongArchivePassphrase`)
    before the vault is touched.
    """
    if vault.locked:
        raise VaultLocked("the vault is locked; unlock it to import")
    src = Path(src).expanduser().absolute()
    fh, encrypted, archive_bytes = _open_archive(src, passphrase, limits)
    with fh:
        with _zip_errors():
            zf = zipfile.ZipFile(fh)
        with zf:
            entries = _Entries(zf, limits)
            manifest = entries.read_manifest()
            validate_manifest(manifest)
            plan = _check_records(manifest)
            _check_protocol(vault, plan)
            _check_intent_references(vault, plan)
            _check_mail_references(vault, plan)
            if manifest["counts"]["files"] != len(entries.files):
                raise ArchiveError(
                    f"manifest.json says the archive holds {manifest['counts']['files']} files "
                    f"but it holds {len(entries.files)}"
                )
            file_bytes = _check_files(entries, plan["documents"], plan["mail_messages"], progress)

            # Everything is checked: now write, files first, then every row in one transaction.
            entries.total_read = 0  # the files are read a second time; count that pass on its own
            with vault.db.read() as s:
                known_docs = _existing(s, "documents")
                known_entries = _existing(s, "connection_events")
                known_messages = _existing(s, "mail_messages")
            needed = sorted(
                {d.sha256 for d in plan["documents"] if d.id not in known_docs}
                | {m.sha256 for m in plan["mail_messages"] if m.sha256 and m.id not in known_messages}
            )
            addresses: dict[str, str] = {}
            new_blobs: set[str] = set()
            files_added = 0
            try:
                if progress is not None:
                    progress("files", 0, len(needed))
                for done, sha in enumerate(needed, start=1):
                    address, new = vault.put_file(entries.read_file(sha))
                    addresses[sha] = address
                    if new:
                        new_blobs.add(address)
                        files_added += 1
                    if progress is not None:
                        progress("files", done, len(needed))
                # The files vendors' receipts carried, kept apart from the documents as AgentService does.
                attachments: dict[str, str] = {}
                for entry in plan["connection_events"]:
                    if entry.attachment is not None and entry.id not in known_entries:
                        address, new = vault.put_file(entry.attachment)
                        attachments[entry.id] = address
                        if new:
                            new_blobs.add(address)
                kept: set[str] = set()
                added, skipped = _write_rows(vault, plan, addresses, progress, attachments, kept)
            except BaseException:
                _forget_blobs(vault, new_blobs)
                raise
            # A document skipped at the last moment (its id appeared meanwhile) leaves its blob unused.
            _forget_blobs(vault, new_blobs, frozenset(kept))
    return ImportSummary(
        path=src,
        encrypted=encrypted,
        bytes=archive_bytes,
        source_vault_id=manifest["vault_id"],
        added=added,
        skipped=skipped,
        files_added=files_added,
        files_present=len(needed) - files_added,
        file_bytes=file_bytes,
    )
