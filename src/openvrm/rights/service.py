"""GDPR requests: create, preview, send, track, receive the answer, escalate, close.

A request is a sealed record tied to a vendor. Its states::

    draft ──send──> sent ──ack──> acknowledged ──answer──> answered ──close──> closed
                     │                 │
                     └── (deadline passed) overdue ──escalate──> escalated ──close──> closed

``overdue`` is not stored: a sent or acknowledged request reads as overdue once its deadline has passed.
The deadline is one month after the day the request was sent (Article 12(3) GDPR), three months when
the vendor invoked the extension. Sending by e-mail writes the outbox message in the same transaction
that marks the request sent; a letter for the post or a web form is marked sent when the person says
they posted or submitted it. Answers are imported as documents through the import service, ZIP archives
member by member (bounded, no path escapes), so the data a vendor returns lands in the vault.
"""

from __future__ import annotations

import builtins
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import select

from openvrm.directory.catalog import Authority, directory
from openvrm.documents.importer import ImportOutcome, ImportService
from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.ledger.contracts import today_local
from openvrm.outbox.service import Attachment, Outbox
from openvrm.outbox.settings import load_mail_settings
from openvrm.profile.fields import FieldValue
from openvrm.profile.service import ProfileService
from openvrm.records import get_row, insert, payload_of, update
from openvrm.rights.contacts import Contact, contact_for
from openvrm.rights.identity import person_name, resolve_identity
from openvrm.rights.letters import (
    LANGUAGES,
    REQUEST_TYPES,
    Letter,
    complaint_letter,
    format_date,
    pick_language,
    request_letter,
    right_name,
)
from openvrm.storage.models import RightsRequest, utcnow
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import RelationshipRecord, VendorRecord, VendorService

STATES = ("draft", "sent", "acknowledged", "answered", "overdue", "escalated", "closed")
OPEN_STATES = ("sent", "acknowledged")
MAX_ZIP_MEMBERS = 2000
MAX_ZIP_TOTAL = 500 * 1024 * 1024
MAX_ZIP_RATIO = 200


def deadline_for(sent: date, *, extended: bool = False) -> date:
    """One month after the request was sent; three when the vendor extended it (Art. 12(3) GDPR)."""
    return sent + relativedelta(months=3 if extended else 1)


@dataclass
class RightsRequestRecord:
    id: str
    vendor_id: str
    vendor_name: str
    kind: str
    language: str
    channel: str
    stored_status: str
    contact: dict[str, Any]
    identity: list[tuple[str, str]]
    details: str = ""
    customer_number: str | None = None
    sent_on: str | None = None
    extended: bool = False
    outbox_id: str | None = None
    documents: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    complaint: dict[str, Any] | None = None
    created_at: str | None = None

    @property
    def article(self) -> int:
        return REQUEST_TYPES[self.kind]

    @property
    def deadline(self) -> date | None:
        return (
            deadline_for(date.fromisoformat(self.sent_on), extended=self.extended) if self.sent_on else None
        )

    def status(self, today: date | None = None) -> str:
        today = today or today_local()
        if self.stored_status in OPEN_STATES and self.deadline is not None and today > self.deadline:
            return "overdue"
        return self.stored_status

    def payload(self) -> dict[str, Any]:
        return {
            "vendor_name": self.vendor_name,
            "kind": self.kind,
            "language": self.language,
            "channel": self.channel,
            "status": self.stored_status,
            "contact": self.contact,
            "identity": [list(p) for p in self.identity],
            "details": self.details,
            "customer_number": self.customer_number,
            "sent_on": self.sent_on,
            "extended": self.extended,
            "outbox_id": self.outbox_id,
            "documents": self.documents,
            "events": self.events,
            "complaint": self.complaint,
        }

    @classmethod
    def from_row(cls, row: RightsRequest, p: dict[str, Any]) -> RightsRequestRecord:
        return cls(
            id=row.id,
            vendor_id=row.vendor_id,
            vendor_name=p["vendor_name"],
            kind=p["kind"],
            language=p["language"],
            channel=p["channel"],
            stored_status=p["status"],
            contact=p["contact"],
            identity=[(a, b) for a, b in p["identity"]],
            details=p.get("details", ""),
            customer_number=p.get("customer_number"),
            sent_on=p.get("sent_on"),
            extended=bool(p.get("extended")),
            outbox_id=p.get("outbox_id"),
            documents=list(p.get("documents", [])),
            events=list(p.get("events", [])),
            complaint=p.get("complaint"),
            created_at=row.created_at.isoformat(),
        )

    def to_json(self, today: date | None = None) -> dict[str, Any]:
        d = self.payload()
        d.pop("status")
        dl = self.deadline
        return {
            "id": self.id,
            "vendor_id": self.vendor_id,
            "status": self.status(today),
            "article": self.article,
            "deadline": dl.isoformat() if dl else None,
            "created_at": self.created_at,
        } | d


@dataclass(frozen=True)
class AnswerResult:
    request: RightsRequestRecord
    outcomes: list[ImportOutcome]

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request.to_json(), "files": [o.to_json() for o in self.outcomes]}


@dataclass(frozen=True)
class Escalation:
    request: RightsRequestRecord
    authority: Authority
    letter: Letter
    channel: str
    history_pdf: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request.to_json(),
            "authority": self.authority.to_json(),
            "channel": self.channel,
            "letter": self.letter.to_json(),
        }


def _event(what: str, note: str = "", **extra: Any) -> dict[str, Any]:
    return {"at": utcnow().isoformat(), "event": what, "note": note} | extra


class MissingIdentity(InvalidValue):
    """The vendor asks for identity elements the profile does not hold; ``missing`` lists them."""

    code = "missing-identity"

    def __init__(self, vendor: str, missing: list[str]) -> None:
        super().__init__(
            f"cannot write to {vendor}: missing {', '.join(missing)}; add them to your profile "
            "(`vrm profile set`) or give them with the request (--element 'NAME=value')"
        )
        self.missing = list(missing)


# How a person reads the outbox state of a request's e-mail that has not left (see `email_states`).
EMAIL_NOT_LEFT = {
    "pending": "not sent yet",
    "sending": "being sent",
    "failed": "not sent: failed",
    "unconfirmed": "unconfirmed",
    "cancelled": "not sent: cancelled",
}


class RightsService:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault
        self.vendors = VendorService(vault)
        self.outbox = Outbox(vault)

    # -- creating ----------------------------------------------------------------------------------

    def resolve_vendor(self, ref: str) -> VendorRecord:
        """A vendor by id among "my vendors", else a directory slug (added to my vendors)."""
        ref = (ref or "").strip()
        if not ref:
            raise InvalidValue("name the vendor by its id (`vrm vendors list`) or directory slug")
        for v in self.vendors.list():
            if v.id == ref or v.directory_slug == ref:
                return v
        if directory().get(ref) is not None:
            return self.vendors.add_from_directory(ref)
        raise NotFound(
            f"unknown vendor {ref[:60]!r}: give the id of one of your vendors or a directory slug "
            "(find one with `vrm vendors search`)"
        )

    def _relationship(self, vendor_id: str) -> RelationshipRecord | None:
        rels = self.vendors.relationships(vendor_id)
        active = [r for r in rels if r.status == "active"]
        found = active or rels
        return found[0] if found else None

    def create(
        self,
        vendor: str,
        kind: str,
        *,
        language: str | None = None,
        channel: str | None = None,
        to: str | None = None,
        details: str = "",
        elements: dict[str, str] | None = None,
    ) -> RightsRequestRecord:
        """A draft request; :class:`InvalidValue` names every identity element that is missing."""
        kind = (kind or "").strip().lower()
        if kind not in REQUEST_TYPES:
            raise InvalidValue(f"a request is one of {', '.join(REQUEST_TYPES)}, not {kind!r}")
        if kind in ("rectification", "restriction") and not details.strip():
            raise InvalidValue(f"a {kind} request needs details: say what is wrong or what is disputed")
        v = self.resolve_vendor(vendor)
        contact = contact_for(v, email=to)
        chosen = contact.choose(channel)
        lang = pick_language(contact.request_language, contact.country, language)
        rel = self._relationship(v.id)
        profile = ProfileService(self.vault).current()
        labels = [x for x in (contact.slug, v.directory_slug, *_vendor_labels(v)) if x]
        ident = resolve_identity(
            contact.required_elements,
            profile=profile,
            lang=lang,
            vendor_labels=labels,
            customer_number=rel.customer_number if rel else None,
            account=rel.account if rel else None,
            given=elements,
        )
        missing = list(ident.missing)
        if person_name(profile) is None and "name" not in missing:
            missing.append("name (to sign the letter)")
        if chosen == "post" and _first_address(profile) is None:
            missing.append("address (the sender of a letter)")
        if missing:
            raise MissingIdentity(v.name, missing)
        rec = RightsRequestRecord(
            id="",
            vendor_id=v.id,
            vendor_name=v.name,
            kind=kind,
            language=lang,
            channel=chosen,
            stored_status="draft",
            contact=contact.to_json(),
            identity=ident.elements,
            details=details.strip()[:5000],
            customer_number=rel.customer_number if rel else None,
            events=[_event("created")],
        )
        with self.vault.db.write() as s:
            row = insert(self.vault, s, RightsRequest, rec.payload(), vendor_id=v.id)
        rec.id, rec.created_at = row.id, row.created_at.isoformat()
        return rec

    # -- reading -----------------------------------------------------------------------------------

    def get(self, request_id: str) -> RightsRequestRecord:
        with self.vault.db.read() as s:
            row = get_row(s, RightsRequest, request_id, "request")
        return RightsRequestRecord.from_row(row, payload_of(self.vault, row))

    def list(
        self, *, status: str | None = None, today: date | None = None
    ) -> builtins.list[RightsRequestRecord]:
        if status is not None and status not in STATES:
            raise InvalidValue(f"a request status is one of {', '.join(STATES)}, not {status!r}")
        with self.vault.db.read() as s:
            rows = list(s.scalars(select(RightsRequest).order_by(RightsRequest.id)))
        out = [RightsRequestRecord.from_row(r, payload_of(self.vault, r)) for r in rows]
        return [r for r in out if status is None or r.status(today) == status]

    def email_states(self, requests: Iterable[RightsRequestRecord]) -> dict[str, str]:
        """Where the e-mail of each request sent by e-mail stands in the outbox (``pending``, ``sent``,
        ``failed``, ``unconfirmed``, ``cancelled``...), by request id. A request is "sent" once its e-mail
        is queued; this says whether it has left."""
        wanted = {r.outbox_id: r.id for r in requests if r.outbox_id}
        if not wanted:
            return {}
        return {wanted[m.id]: m.status for m in self.outbox.list() if m.id in wanted}

    def letter(self, request_id: str, *, today: date | None = None) -> Letter:
        """The letter as it reads now (a draft's deadline counts from today)."""
        return self._letter(self.get(request_id), today or today_local())

    def _letter(self, rec: RightsRequestRecord, today: date) -> Letter:
        profile = ProfileService(self.vault).current()
        sent = date.fromisoformat(rec.sent_on) if rec.sent_on else today
        contact = Contact(name=rec.vendor_name, address=rec.contact.get("address"))
        return request_letter(
            kind=rec.kind,
            lang=rec.language,
            identity=rec.identity,
            details=rec.details,
            deadline=deadline_for(sent, extended=rec.extended),
            signer=person_name(profile) or "",
            sender_lines=_sender_lines(profile),
            recipient_lines=contact.address_lines(),
            today=sent,
            customer_number=rec.customer_number,
        )

    # -- changing state ----------------------------------------------------------------------------

    def _change(self, request_id: str, fn: Any) -> RightsRequestRecord:
        with self.vault.db.write() as s:
            row = get_row(s, RightsRequest, request_id, "request")
            rec = RightsRequestRecord.from_row(row, payload_of(self.vault, row))
            fn(s, rec)
            update(self.vault, row, rec.payload())
        return rec

    def send(self, request_id: str, *, today: date | None = None) -> RightsRequestRecord:
        """Mark the request sent; by e-mail, write its outbox message in the same transaction."""
        day = today or today_local()
        rec0 = self.get(request_id)
        if rec0.stored_status != "draft":
            raise Conflict(f"request {request_id} is already {rec0.status(day)}; it is sent once")
        rec0.sent_on = day.isoformat()
        letter = self._letter(rec0, day)
        mail = load_mail_settings(self.vault) if rec0.channel == "email" else None

        def apply(s: Any, rec: RightsRequestRecord) -> None:
            if rec.stored_status != "draft":
                raise Conflict(f"request {request_id} is already {rec.stored_status}")
            rec.stored_status, rec.sent_on = "sent", day.isoformat()
            if mail is not None:
                rec.outbox_id = self.outbox.enqueue(
                    s,
                    key=f"rights:{rec.id}:request",
                    to=[rec.contact["email"]],
                    subject=letter.subject,
                    body=letter.body,
                    mail=mail,
                    origin={"kind": "rights-request", "id": rec.id, "vendor_id": rec.vendor_id},
                )
            how = {"email": "queued for e-mail", "post": "posted", "webform": "submitted by web form"}
            rec.events.append(_event("sent", how[rec.channel]))

        return self._change(request_id, apply)

    def acknowledge(self, request_id: str, note: str = "") -> RightsRequestRecord:
        def apply(_: Any, rec: RightsRequestRecord) -> None:
            if rec.stored_status != "sent":
                raise Conflict(f"only a sent request can be acknowledged; this one is {rec.stored_status}")
            rec.stored_status = "acknowledged"
            rec.events.append(_event("acknowledged", note))

        return self._change(request_id, apply)

    def extend(self, request_id: str, note: str = "") -> RightsRequestRecord:
        """The vendor invoked the two-month extension of Article 12(3)."""

        def apply(_: Any, rec: RightsRequestRecord) -> None:
            if rec.stored_status not in OPEN_STATES:
                raise Conflict(f"only a sent request can be extended; this one is {rec.stored_status}")
            if rec.extended:
                raise Conflict("the deadline was already extended; the law allows it once")
            rec.extended = True
            rec.events.append(_event("extended", note))

        return self._change(request_id, apply)

    def close(self, request_id: str, note: str = "") -> RightsRequestRecord:
        def apply(_: Any, rec: RightsRequestRecord) -> None:
            if rec.stored_status == "closed":
                raise Conflict(f"request {request_id} is already closed")
            rec.stored_status = "closed"
            rec.events.append(_event("closed", note))

        return self._change(request_id, apply)

    def discard(self, request_id: str) -> None:
        """Delete a draft that was never sent (a preview the person decided against)."""
        with self.vault.db.write() as s:
            row = get_row(s, RightsRequest, request_id, "request")
            status = RightsRequestRecord.from_row(row, payload_of(self.vault, row)).stored_status
            if status != "draft":
                raise Conflict(f"only a draft can be discarded; this request is {status} (close it instead)")
            s.delete(row)

    def answer(self, request_id: str, files: Sequence[tuple[str, bytes]], *, note: str = "") -> AnswerResult:
        """Record the vendor's answer; each file (ZIP members one by one) becomes a document."""
        rec = self.get(request_id)
        if rec.stored_status in ("draft", "closed"):
            raise Conflict(f"request {request_id} is {rec.stored_status}; answers belong to a sent request")
        importer = ImportService(self.vault, create_vendors=False)
        outcomes: list[ImportOutcome] = []
        for name, data in files:
            outcomes += importer.import_bytes(data, filename=_base(name), vendor_id=rec.vendor_id)
            if _is_zip(name, data):
                for member_name, member in _zip_members(name, data, outcomes):
                    outcomes += importer.import_bytes(
                        member,
                        filename=_base(member_name),
                        path=f"{name}#{member_name}",
                        vendor_id=rec.vendor_id,
                    )
        doc_ids = list(dict.fromkeys(o.document_id for o in outcomes if o.document_id))

        def apply(_: Any, r: RightsRequestRecord) -> None:
            r.documents = list(dict.fromkeys([*r.documents, *doc_ids]))
            if r.stored_status in OPEN_STATES:
                r.stored_status = "answered"
            r.events.append(_event("answered", note, documents=doc_ids))

        return AnswerResult(self._change(request_id, apply), outcomes)

    # -- escalation --------------------------------------------------------------------------------

    def authority_for(self, rec: RightsRequestRecord, slug: str | None = None) -> Authority:
        d = directory()
        if slug:
            for a in d.authorities:
                if a.slug == slug:
                    return a
            raise NotFound(f"no supervisory authority {slug!r} in the directory")
        profile = ProfileService(self.vault).current()
        address = _first_address(profile)
        countries = [address["country"]] if address else []
        vendor_country = self.vendors.get(rec.vendor_id).country
        countries += [vendor_country] if vendor_country else []
        for c in countries:
            found = d.authorities_for(c)
            if found:
                return found[0]
        raise InvalidValue(
            "cannot tell which supervisory authority to write to: add your postal address with its country "
            "(`vrm profile set address ...`) or name the authority with --authority"
        )

    def escalate(
        self,
        request_id: str,
        *,
        authority: str | None = None,
        channel: str | None = None,
        today: date | None = None,
        send: bool = True,
    ) -> Escalation:
        """A complaint to the supervisory authority with the request's history attached as a PDF.

        With ``send=False`` only the letter is returned (a preview); nothing changes.
        """
        day = today or today_local()
        rec = self.get(request_id)
        if rec.stored_status in ("draft", "closed") or rec.sent_on is None or rec.deadline is None:
            raise Conflict(f"request {request_id} is {rec.stored_status}; only a sent request is escalated")
        auth = self.authority_for(rec, authority)
        lang = pick_language(auth.complaint_language, auth.countries[0] if auth.countries else None)
        profile = ProfileService(self.vault).current()
        history = self._history_lines(rec, lang)
        letter = complaint_letter(
            lang=lang,
            vendor=rec.vendor_name,
            vendor_address=" ".join((rec.contact.get("address") or rec.contact.get("email") or "").split()),
            kind=rec.kind,
            sent=date.fromisoformat(rec.sent_on),
            deadline=rec.deadline,
            state=rec.status(day),
            signer=person_name(profile) or "",
            today=day,
            history=history,
            sender_lines=_sender_lines(profile),
            recipient_lines=tuple([auth.name, *(auth.address or "").splitlines()]),
        )
        pdf = letter.pdf()
        chosen = Contact(name=auth.name, email=auth.email, address=auth.address, webform=auth.webform).choose(
            channel
        )
        result = Escalation(rec, auth, letter, chosen, pdf)
        if not send:
            return result
        mail = load_mail_settings(self.vault) if chosen == "email" else None

        def apply(s: Any, r: RightsRequestRecord) -> None:
            outbox_id = None
            if mail is not None and auth.email:
                outbox_id = self.outbox.enqueue(
                    s,
                    key=f"rights:{r.id}:complaint",
                    to=[auth.email],
                    subject=letter.subject,
                    body=letter.body,
                    mail=mail,
                    attachments=[Attachment(f"request-{r.id[:12]}-history.pdf", "application/pdf", pdf)],
                    origin={"kind": "rights-complaint", "id": r.id, "authority": auth.slug},
                )
            r.stored_status = "escalated"
            r.complaint = {
                "authority": auth.slug,
                "channel": chosen,
                "on": day.isoformat(),
                "outbox_id": outbox_id,
            }
            r.events.append(_event("escalated", auth.name))

        return Escalation(self._change(request_id, apply), auth, letter, chosen, pdf)

    def _history_lines(self, rec: RightsRequestRecord, lang: str) -> builtins.list[str]:
        lines = [
            f"{right_name(rec.kind, lang)} (GDPR Art. {rec.article})",
            f"{rec.vendor_name}: {rec.contact.get('email') or rec.contact.get('webform') or ''}",
            f"{format_date(date.fromisoformat(rec.sent_on), lang) if rec.sent_on else '-'} -> "
            f"{format_date(rec.deadline, lang) if rec.deadline else '-'}",
            "",
        ]
        for e in rec.events:
            lines.append(
                f"{e['at'][:16].replace('T', ' ')} UTC  {e['event']}  {e.get('note') or ''}".rstrip()
            )
        lines += ["", "-" * 60, ""]
        lines += self._letter(
            rec, date.fromisoformat(rec.sent_on or today_local().isoformat())
        ).body.splitlines()
        return lines


def _vendor_labels(v: VendorRecord) -> Iterable[str]:
    from openvrm.directory.catalog import main_label, normalise

    for d in v.domains:
        yield main_label(d)
    yield normalise(v.name).replace(" ", "-")


def _first_address(profile: dict[str, FieldValue]) -> dict[str, str] | None:
    for key in sorted(profile):
        if key == "address" or key.startswith("address."):
            value = profile[key]
            if isinstance(value, dict):
                return value
    return None


def _sender_lines(profile: dict[str, FieldValue]) -> tuple[str, ...]:
    lines = [person_name(profile) or ""]
    address = _first_address(profile)
    if address:
        lines.append(address["street"])
        if address.get("extra"):
            lines.append(address["extra"])
        lines.append(" ".join(p for p in (address.get("postal_code"), address.get("city")) if p))
        lines.append(address["country"])
    email = profile.get("email")
    if isinstance(email, str):
        lines.append(email)
    return tuple(x for x in lines if x)


def _base(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name or "file"


def _is_zip(name: str, data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" and zipfile.is_zipfile(io.BytesIO(data))


def _zip_members(name: str, data: bytes, outcomes: list[ImportOutcome]) -> Iterable[tuple[str, bytes]]:
    """Members of a ZIP answer, refusing path escapes, absurd sizes and compression bombs."""
    from openvrm.vault.core import MAX_FILE_BYTES

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError) as exc:
        outcomes.append(ImportOutcome(name, "rejected", f"not a readable ZIP archive: {exc}"))
        return
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_ZIP_MEMBERS:
            outcomes.append(
                ImportOutcome(name, "rejected", f"more than {MAX_ZIP_MEMBERS} files in the archive")
            )
            return
        total = 0
        for info in infos:
            label = f"{name}#{info.filename}"
            path = PurePosixPath(info.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or info.filename.startswith("/"):
                outcomes.append(ImportOutcome(label, "rejected", "the path leaves the archive"))
                continue
            if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
                continue
            if info.file_size > MAX_FILE_BYTES:
                outcomes.append(ImportOutcome(label, "rejected", "larger than the file size limit"))
                continue
            if (
                info.compress_size
                and info.file_size / info.compress_size > MAX_ZIP_RATIO
                and info.file_size > 2**20
            ):
                outcomes.append(
                    ImportOutcome(label, "rejected", "compressed suspiciously well (a ZIP bomb?)")
                )
                continue
            total += info.file_size
            if total > MAX_ZIP_TOTAL:
                outcomes.append(
                    ImportOutcome(label, "rejected", "the archive unpacks to more than the limit")
                )
                return
            try:
                with zf.open(info) as fh:
                    content = fh.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                outcomes.append(ImportOutcome(label, "rejected", f"cannot be unpacked: {exc}"))
                continue
            if len(content) > info.file_size:
                outcomes.append(ImportOutcome(label, "rejected", "larger than the archive says"))
                continue
            yield info.filename, content


__all__ = [
    "LANGUAGES",
    "REQUEST_TYPES",
    "STATES",
    "AnswerResult",
    "Escalation",
    "RightsRequestRecord",
    "RightsService",
    "deadline_for",
]
