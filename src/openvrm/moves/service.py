"""Moves: change a profile field once, tell every vendor that holds the old value.

:meth:`MoveService.plan` finds the vendors that hold the old value and how each can be reached, without
changing anything: vendors the field was shared with, vendors with an active relationship or contract,
and vendors whose relationship record or documents (parsed fields and extracted text, searched through
the in-memory document index, never a plaintext index) carry the old value.

:meth:`MoveService.start` records the new value with :class:`ProfileService` first, then in one
transaction the move and one outbox message per vendor reachable by e-mail. Vendors with only a postal
address get a letter (PDF) to print; vendors without any contact are listed with what is missing. Running
the same move again (after a crash between the two steps, or twice by mistake) finds the move already
made and writes nothing new, so no vendor is told twice.

Per-vendor status comes from the outbox (``pending``, ``sent``, ``failed``, ``unconfirmed``) and from the
person (``acknowledged`` when the vendor confirmed, ``sent`` when a letter was posted).
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import phonenumbers
from sqlalchemy import select

from openvrm.directory.catalog import normalise
from openvrm.documents.search import DocumentIndex
from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.ledger.contracts import ContractService, today_local
from openvrm.ledger.terms import deadlines
from openvrm.outbox.service import Outbox
from openvrm.outbox.settings import MailSettings, load_mail_settings
from openvrm.profile.fields import FieldValue, display, normalise_key, parse_key, validate
from openvrm.profile.service import ProfileService
from openvrm.records import get_row, insert, payload_of, update
from openvrm.rights.contacts import contact_for
from openvrm.rights.identity import person_name
from openvrm.rights.letters import Letter, change_notice, pick_language
from openvrm.rights.service import _sender_lines, _vendor_labels
from openvrm.sharing.service import SharingService
from openvrm.storage.models import Move, utcnow
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import RelationshipRecord, VendorRecord, VendorService

MOVABLE = ("address", "email", "phone", "name", "given-name", "family-name", "iban")
NOTICE_STATUSES = (
    "pending",
    "sent",
    "acknowledged",
    "failed",
    "unconfirmed",
    "to-post",
    "no-contact",
    "skipped",
)


@dataclass
class Candidate:
    vendor_id: str
    vendor_name: str
    reasons: list[str]
    channel: str  # "email" | "post" | "none" | "protocol"
    to: str | None = None
    missing: str | None = None
    customer_number: str | None = None
    language: str = "en"

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor_id": self.vendor_id,
            "vendor_name": self.vendor_name,
            "reasons": self.reasons,
            "channel": self.channel,
            "to": self.to,
            "missing": self.missing,
            "customer_number": self.customer_number,
            "language": self.language,
        }


@dataclass
class MovePlan:
    field: str
    old: FieldValue
    new: FieldValue
    candidates: list[Candidate]

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "old": display(self.old),
            "new": display(self.new),
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclass
class Notice:
    vendor_id: str
    vendor_name: str
    channel: str
    status: str
    to: str | None = None
    customer_number: str | None = None
    language: str = "en"
    reasons: list[str] = field(default_factory=list)
    missing: str | None = None
    outbox_id: str | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class MoveRecord:
    id: str
    field: str
    old: FieldValue
    new: FieldValue
    on: str
    notices: list[Notice]
    created_at: str | None = None

    def summary(self) -> dict[str, int]:
        return dict(Counter(n.status for n in self.notices))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "field": self.field,
            "old": display(self.old),
            "new": display(self.new),
            "on": self.on,
            "created_at": self.created_at,
            "summary": self.summary(),
            "notices": [n.to_json() for n in self.notices],
        }


def _queries(field_type: str, old: FieldValue) -> list[str]:
    """Search queries that find a document carrying ``old`` (each query: all its words must match)."""
    if isinstance(old, dict):
        return [" ".join(p for p in (old.get("street"), old.get("postal_code")) if p)]
    if field_type == "phone":
        try:
            number = phonenumbers.parse(old, None)
        except phonenumbers.NumberParseException:
            return [old]
        return [
            old,
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        ]
    if field_type == "iban":
        return [old, " ".join(old[i : i + 4] for i in range(0, len(old), 4))]
    return [old]


def _contains(text: str, query: str) -> bool:
    q = normalise(query)
    return bool(q) and q in normalise(text)


class MoveService:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault
        self.vendors = VendorService(vault)
        self.profile = ProfileService(vault)
        self.outbox = Outbox(vault)

    # -- planning ----------------------------------------------------------------------------------

    def _old_value(self, key: str, new: FieldValue) -> FieldValue:
        current = self.profile.current()
        if key in current and current[key] != new:
            return current[key]
        # Already changed (a move interrupted after the profile step): the value before the new one.
        history = [c for c in self.profile.history(key) if c.action == "set" and c.value is not None]
        for older, newer in zip(reversed(history[:-1]), reversed(history[1:]), strict=True):
            if newer.value == new and older.value != new:
                return older.value  # type: ignore[return-value]
        if key not in current:
            raise InvalidValue(f"the profile has no {key} field to move from; set it with `vrm profile set`")
        raise InvalidValue(f"{key} already has this value; nothing to move")

    def plan(
        self,
        field_key: str,
        new_value: Any,
        *,
        contacts: dict[str, str] | None = None,
        language: str | None = None,
        today: date | None = None,
    ) -> MovePlan:
        """Who holds the old value and how to reach each; changes nothing."""
        ftype, _ = parse_key(field_key)
        if ftype.name not in MOVABLE:
            raise InvalidValue(f"a move changes one of {', '.join(MOVABLE)}, not {ftype.name}")
        key, new = validate(field_key, new_value)
        old = self._old_value(key, new)
        day = today or today_local()
        vendors = {v.id: v for v in self.vendors.list()}
        contacts = contacts or {}
        for vid in contacts:
            if vid not in vendors:
                raise NotFound(f"unknown vendor {vid[:40]!r} in the contacts given")
        rels: dict[str, list[RelationshipRecord]] = {}
        for r in self.vendors.relationships():
            rels.setdefault(r.vendor_id, []).append(r)
        reasons: dict[str, list[str]] = {}

        def add(vid: str | None, why: str) -> None:
            if vid and vid in vendors and why not in reasons.setdefault(vid, []):
                reasons[vid].append(why)

        rel_vendor = {r.id: r.vendor_id for rs in rels.values() for r in rs}
        for share in SharingService(self.vault).holders(key):
            add(rel_vendor.get(share.relationship_id), f"shared {share.field}")
        olds = [q for q in _queries(ftype.name, old) if q.strip()]
        for vid, rs in rels.items():
            for r in rs:
                if r.status == "active":
                    add(vid, "customer")
                text = " ".join(str(x) for x in (r.customer_number, r.account, r.notes) if x)
                if any(_contains(text, q) for q in olds):
                    add(vid, "relationship record")
        for c in ContractService(self.vault).list():
            if deadlines(c.terms(), day).active:
                add(c.vendor_id, f"contract {c.plan}")
        index = DocumentIndex.build(self.vault)
        for q in olds:
            for hit in index.search(q, limit=100000):
                d = hit.document
                add(d.vendor_id, f"document {d.title[:60]}")
        # Vendors connected by the protocol with a grant of this field get a signed profile update instead.
        from openvrm.agent.service import AgentService

        agent = AgentService(self.vault)
        by_connection = {c.id: c.vendor_id for c in agent.connections()}
        protocol: set[str] = set()
        for holder in agent.holders(key):
            connected = by_connection.get(holder.connection_id)
            if connected:
                add(connected, f"granted {holder.field} (protocol)")
                protocol.add(connected)
        profile = self.profile.current()
        candidates = [
            self._candidate(vendors[vid], why, rels.get(vid, []), profile, contacts.get(vid), language)
            for vid, why in reasons.items()
        ]
        for cand in candidates:
            if cand.vendor_id in protocol:
                cand.channel, cand.to, cand.missing = "protocol", None, None
        candidates.sort(key=lambda c: c.vendor_name.casefold())
        return MovePlan(key, old, new, candidates)

    def _candidate(
        self,
        v: VendorRecord,
        reasons: list[str],
        rels: list[RelationshipRecord],
        profile: dict[str, FieldValue],
        email: str | None,
        language: str | None,
    ) -> Candidate:
        contact = contact_for(v, email=email)
        customer = next((r.customer_number for r in rels if r.customer_number), None)
        if customer is None:
            for label in [x for x in (v.directory_slug, *_vendor_labels(v)) if x]:
                found = profile.get(f"customer-number.{label}")
                if isinstance(found, str):
                    customer = found
                    break
        lang = pick_language(contact.request_language, contact.country, language)
        cand = Candidate(v.id, v.name, reasons, "none", customer_number=customer, language=lang)
        if contact.email:
            cand.channel, cand.to = "email", contact.email
        elif contact.address:
            cand.channel, cand.to = "post", " ".join(contact.address.split())
        else:
            cand.missing = (
                "no e-mail or postal address known"
                + (" (it only has a web form)" if contact.webform else "")
                + f"; give one with --contact {v.id}=EMAIL"
            )
        return cand

    # -- doing -------------------------------------------------------------------------------------

    def start(
        self,
        field_key: str,
        new_value: Any,
        *,
        exclude: Iterable[str] = (),
        contacts: dict[str, str] | None = None,
        language: str | None = None,
        today: date | None = None,
    ) -> MoveRecord:
        """Change the field, record the move, queue one notice per vendor (minus ``exclude``)."""
        day = today or today_local()
        plan = self.plan(field_key, new_value, contacts=contacts, language=language, today=day)
        excluded = set(exclude)
        unknown = excluded - {c.vendor_id for c in plan.candidates}
        if unknown:
            raise InvalidValue(f"not among the vendors of this move: {', '.join(sorted(unknown))}")
        existing = self._find(plan.field, plan.old, plan.new)
        if existing is not None:
            return existing
        profile = self.profile.current()
        signer = person_name(profile) if plan.field.split(".")[0] not in ("name",) else display(plan.new)
        if not signer:
            raise InvalidValue("a notice is signed with your name: add it with `vrm profile set name ...`")
        mail: MailSettings | None = None
        if any(c.channel == "email" and c.vendor_id not in excluded for c in plan.candidates):
            mail = load_mail_settings(self.vault)
        self.profile.set(plan.field, plan.new, source="move")
        profile = self.profile.current()
        notices: list[Notice] = []
        for c in plan.candidates:
            if c.vendor_id in excluded:
                status = "skipped"
            else:
                status = {"email": "pending", "post": "to-post", "none": "no-contact", "protocol": "pending"}[
                    c.channel
                ]
            notices.append(
                Notice(
                    c.vendor_id,
                    c.vendor_name,
                    c.channel,
                    status,
                    c.to,
                    c.customer_number,
                    c.language,
                    c.reasons,
                    c.missing,
                )  # fmt: skip
            )
        move = MoveRecord("", plan.field, plan.old, plan.new, day.isoformat(), notices)
        with self.vault.db.write() as s:
            row = insert(self.vault, s, Move, self._payload(move))
            move.id, move.created_at = row.id, row.created_at.isoformat()
            for n in notices:
                if n.status == "pending" and mail is not None and n.to:
                    letter = self._letter(move, n, profile, signer)
                    n.outbox_id = self.outbox.enqueue(
                        s,
                        key=f"move:{move.id}:{n.vendor_id}",
                        to=[n.to],
                        subject=letter.subject,
                        body=letter.body,
                        mail=mail,
                        origin={"kind": "move", "id": move.id, "vendor_id": n.vendor_id},
                    )
            update(self.vault, row, self._payload(move))
        if any(n.channel == "protocol" and n.status == "pending" for n in notices):
            self._push_protocol(move)
        return move

    def _push_protocol(self, move: MoveRecord) -> None:
        """Send the signed profile updates to protocol vendors and record how each went."""
        from openvrm.agent.service import AgentService

        results = AgentService(self.vault).reseal_field(move.field)
        with self.vault.db.write() as s:
            row = get_row(s, Move, move.id, "move")
            p = payload_of(self.vault, row)
            for n in p["notices"]:
                if n["channel"] != "protocol" or n["status"] != "pending":
                    continue
                entry = results.get(n["vendor_id"])
                if entry is not None and entry.state == "acked":
                    n["status"], n["last_error"] = "acknowledged", None
                else:
                    n["status"] = "failed"
                    n["last_error"] = (entry.note.get("error") if entry else None) or "not delivered"
            update(self.vault, row, p)
        for n in move.notices:
            if n.channel == "protocol":
                n.status = next(x["status"] for x in p["notices"] if x["vendor_id"] == n.vendor_id)

    def _letter(self, move: MoveRecord, n: Notice, profile: dict[str, FieldValue], signer: str) -> Letter:
        ftype, _ = parse_key(move.field)
        return change_notice(
            lang=n.language,
            field_type=ftype.name,
            old=display(move.old),
            new=display(move.new),
            signer=signer,
            today=date.fromisoformat(move.on),
            customer_number=n.customer_number,
            sender_lines=_sender_lines(profile),
            recipient_lines=(n.vendor_name, *([n.to] if n.channel == "post" and n.to else [])),
        )

    def letter(self, move_id: str, vendor_id: str) -> Letter:
        move = self.get(move_id)
        notice = self._notice(move, vendor_id)
        profile = self.profile.current()
        return self._letter(move, notice, profile, person_name(profile) or "")

    @staticmethod
    def _payload(move: MoveRecord) -> dict[str, Any]:
        return {
            "field": move.field,
            "old": move.old,
            "new": move.new,
            "on": move.on,
            "notices": [n.to_json() | {"last_error": None} for n in move.notices],
        }

    def _find(self, key: str, old: FieldValue, new: FieldValue) -> MoveRecord | None:
        for m in self.list():
            if m.field == key and m.old == old and m.new == new:
                return m
        return None

    # -- reading and updating ----------------------------------------------------------------------

    def _from_row(self, row: Move, statuses: dict[str, str] | None = None) -> MoveRecord:
        p = payload_of(self.vault, row)
        notices = [Notice(**n) for n in p["notices"]]
        live = statuses if statuses is not None else self.outbox.statuses(f"move:{row.id}:")
        for n in notices:
            if n.status == "pending" and n.outbox_id:
                st = live.get(f"move:{row.id}:{n.vendor_id}", "pending")
                n.status = {"sending": "pending", "cancelled": "failed"}.get(st, st)
        return MoveRecord(
            row.id, p["field"], p["old"], p["new"], p["on"], notices, row.created_at.isoformat()
        )

    def list(self) -> builtins.list[MoveRecord]:
        with self.vault.db.read() as s:
            rows = list(s.scalars(select(Move).order_by(Move.id)))
        return [self._from_row(r) for r in rows]

    def get(self, move_id: str, *, with_errors: bool = False) -> MoveRecord:
        with self.vault.db.read() as s:
            row = get_row(s, Move, move_id, "move")
        move = self._from_row(row)
        if with_errors:
            errors = {e.key: e.last_error for e in self.outbox.list(key_prefix=f"move:{move_id}:")}
            for n in move.notices:
                n.last_error = errors.get(f"move:{move_id}:{n.vendor_id}")
        return move

    @staticmethod
    def _notice(move: MoveRecord, vendor_id: str) -> Notice:
        for n in move.notices:
            if n.vendor_id == vendor_id:
                return n
        raise NotFound(f"vendor {vendor_id[:40]!r} is not part of move {move.id}")

    def _mark(self, move_id: str, vendor_id: str, fn: Callable[[dict[str, Any]], None]) -> MoveRecord:
        with self.vault.db.write() as s:
            row = get_row(s, Move, move_id, "move")
            p = payload_of(self.vault, row)
            for n in p["notices"]:
                if n["vendor_id"] == vendor_id:
                    fn(n)
                    break
            else:
                raise NotFound(f"vendor {vendor_id[:40]!r} is not part of move {move_id}")
            update(self.vault, row, p)
        return self.get(move_id)

    def acknowledge(self, move_id: str, vendor_id: str) -> MoveRecord:
        """The vendor confirmed the change."""

        def fn(n: dict[str, Any]) -> None:
            if n["status"] in ("skipped", "no-contact"):
                raise Conflict(f"{n['vendor_name']} was not notified in this move")
            n["status"] = "acknowledged"

        return self._mark(move_id, vendor_id, fn)

    def posted(self, move_id: str, vendor_id: str) -> MoveRecord:
        """The person posted the letter to this vendor."""

        def fn(n: dict[str, Any]) -> None:
            if n["channel"] != "post":
                raise Conflict(f"{n['vendor_name']} is notified by {n['channel']}, not by post")
            if n["status"] == "to-post":
                n["status"] = "sent"

        return self._mark(move_id, vendor_id, fn)

    def retry_failed(self, move_id: str) -> int:
        """Queue the failed notices of a move again; return how many."""
        move = self.get(move_id)
        n = 0
        for notice in move.notices:
            if notice.status == "failed" and notice.outbox_id:
                self.outbox.retry(notice.outbox_id, now=utcnow())
                n += 1
        if any(x.channel == "protocol" and x.status == "failed" for x in move.notices):
            from openvrm.agent.service import AgentService

            agent = AgentService(self.vault)
            agent.deliver_pending()
            n += sum(1 for x in move.notices if x.channel == "protocol" and x.status == "failed")
            self._refresh_protocol(move_id, agent)
        return n

    def _refresh_protocol(self, move_id: str, agent: Any) -> None:
        """Mark failed protocol notices acknowledged once their profile updates are all acknowledged."""
        by_vendor: dict[str, list[str]] = {}
        for c in agent.connections():
            if c.vendor_id:
                by_vendor.setdefault(c.vendor_id, []).append(c.id)

        def fn_for(vendor_id: str, field_key: str) -> bool:
            updates = [
                e
                for cid in by_vendor.get(vendor_id, [])
                for e in agent.ledger(cid)
                if e.subtype == "profile-update" and field_key in e.event["payload"].get("changed", [])
            ]
            return bool(updates) and all(e.state == "acked" for e in updates)

        move = self.get(move_id)
        for notice in move.notices:
            if (
                notice.channel == "protocol"
                and notice.status == "failed"
                and fn_for(notice.vendor_id, move.field)
            ):

                def mark(n: dict[str, Any]) -> None:
                    n["status"], n["last_error"] = "acknowledged", None

                self._mark(move_id, notice.vendor_id, mark)


def movable_key(key: str) -> str:
    k = normalise_key(key)
    if k.split(".")[0] not in MOVABLE:
        raise InvalidValue(f"a move changes one of {', '.join(MOVABLE)}, not {k}")
    return k
