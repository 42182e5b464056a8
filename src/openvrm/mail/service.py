"""The person's side of the mailbox, with the vault unlocked: aliases, rules, filing, leaks, sending.

Aliases and settings are written sealed by the mail key (so the gateway can route while the vault is
locked). What the gateway received waits in the sealed inbox; :meth:`MailService.file_inbox` turns each
item into a ``mail_messages`` record (vault key), stores kept messages as sealed files, imports bills
through the same import service as `vrm import`, and notes leaks on the vendor's aliases.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openvrm.errors import Conflict, InvalidValue, NotFound
from openvrm.mail import analysis as an
from openvrm.mail.gateway import INBOX_KIND, Spool, SpoolEntry, scrub
from openvrm.mail.keys import MailKeys
from openvrm.mail.routing import (
    DELIVERIES,
    MODES,
    Alias,
    Downstream,
    GatewayConfig,
    Routes,
    clean_config,
    clean_domain,
    clean_mailbox,
)
from openvrm.records import get_row, insert, payload_of, update
from openvrm.storage.models import InboxItem, MailAlias, MailMessage, Relationship, Vendor, new_id, utcnow
from openvrm.vault.core import UnlockedVault

STYLES = ("vendor", "words")
_FILING = threading.Lock()  # the login's background filer and a page load may both file the inbox
# Short, plain, unambiguous words for "random words" aliases (two words and two digits: ~24 bits).
WORDS = (
    "amber apple arch aspen atlas autumn badge basil beach birch blue bloom brook cabin canal cedar "
    "cherry cider cliff clover cobalt comet coral cotton crane creek crisp daisy delta dune eagle ember "
    "fable fern field fig finch fjord flint forest fox frost garnet ginger glade granite grove harbor "
    "hazel heron hill honey indigo iris island ivory jade juniper kettle kiwi lagoon lake lark laurel "
    "lemon lilac linen lotus maple marble meadow mint moss nectar noble north oak ocean olive onyx "
    "orchid otter pebble pepper pine plum pond poppy quartz quill rain raven reed ridge river robin "
    "rose saffron sage salt sand shore silver slate snow spruce star stone sun swan teal thistle "
    "tide timber topaz tulip valley velvet violet walnut wave willow wind wren yarrow zephyr"
).split()
_CODE = "abcdefghjkmnpqrstuvwxyz23456789"


def vendor_slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:24].strip("-") or "vendor"


def new_local_part(style: str, vendor_name: str) -> str:
    if style == "words":
        return f"{secrets.choice(WORDS)}.{secrets.choice(WORDS)}.{secrets.randbelow(90) + 10}"
    return f"{vendor_slug(vendor_name)}.{''.join(secrets.choice(_CODE) for _ in range(4))}"


@dataclass(frozen=True)
class MailRecord:
    """A filed message (in or out), as lists and pages show it."""

    id: str
    direction: str
    alias_id: str | None
    alias: str | None
    vendor_id: str | None
    received_at: datetime
    summary: dict[str, Any]
    auth: dict[str, Any]
    leak: dict[str, Any]
    forwarded: bool
    blob: str | None
    bills: list[dict[str, Any]]
    to: str | None = None
    cleared: bool = False

    @property
    def leaked(self) -> bool:
        return bool(self.leak.get("leaked")) and not self.cleared

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "alias_id": self.alias_id,
            "alias": self.alias,
            "vendor_id": self.vendor_id,
            "received_at": self.received_at.isoformat(),
            "subject": self.summary.get("subject", ""),
            "from": self.summary.get("from", ""),
            "to": self.to or self.summary.get("to"),
            "date": self.summary.get("date"),
            "kind": self.summary.get("kind"),
            "size": self.summary.get("size"),
            "defects": self.summary.get("defects", []),
            "auth": self.auth,
            "leak": {**self.leak, "leaked": self.leaked, "cleared": self.cleared},
            "forwarded": self.forwarded,
            "kept": self.blob is not None,
            "bills": self.bills,
        }


def _record(uv: UnlockedVault, row: MailMessage) -> MailRecord:
    p = payload_of(uv, row)
    return MailRecord(
        id=row.id,
        direction=p.get("direction", "in"),
        alias_id=row.alias_id,
        alias=p.get("alias"),
        vendor_id=row.vendor_id,
        received_at=row.received_at,
        summary=p.get("summary", {}),
        auth=p.get("auth", {}),
        leak=p.get("leak", {}),
        forwarded=bool(p.get("forwarded")),
        blob=p.get("blob"),
        bills=p.get("bills", []),
        to=p.get("to"),
        cleared=bool(p.get("cleared")),
    )


class MailService:
    def __init__(self, vault: UnlockedVault, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.vault = vault
        self.keys = MailKeys.from_vault(vault)
        self.routes = Routes(vault.db, self.keys)
        self.clock = clock

    # -- the gateway's settings ------------------------------------------------------------------------

    def setup(
        self,
        *,
        domains: list[str],
        forward_to: str,
        deliver: str = "forward",
        downstream: Downstream | None = None,
        max_message_bytes: int | None = None,
        max_recipients: int | None = None,
        auto_alias: bool | None = None,
    ) -> GatewayConfig:
        """Save the gateway settings. Without ``downstream``, the one saved before is kept, else the SMTP
        server of `vrm mail setup` is used."""
        current = self.routes.config()
        if downstream is None and current is not None:
            downstream = current.downstream
        if downstream is None:
            from openvrm.outbox.settings import has_mail_settings, load_mail_settings

            if has_mail_settings(self.vault):
                ms = load_mail_settings(self.vault)
                downstream = Downstream(ms.host, ms.port, ms.tls, ms.username, ms.password, ms.validate_certs)
        cfg = clean_config(
            domains=domains,
            forward_to=forward_to,
            deliver=deliver,
            downstream=downstream,
            max_message_bytes=max_message_bytes or (current.max_message_bytes if current else 10 * 2**20),
            max_recipients=max_recipients or (current.max_recipients if current else 20),
            auto_alias=auto_alias if auto_alias is not None else (current.auto_alias if current else False),
        )
        return self.routes.save_config(cfg)

    def config(self) -> GatewayConfig | None:
        return self.routes.config()

    # -- aliases ---------------------------------------------------------------------------------------

    def _vendor_view(self, s: Session, vendor_id: str) -> tuple[str, list[str], bool]:
        row = get_row(s, Vendor, vendor_id, "vendor")
        v = payload_of(self.vault, row)
        blocked = any(
            payload_of(self.vault, r).get("stance") == "blocked"
            for r in s.scalars(select(Relationship).where(Relationship.vendor_id == vendor_id))
        )
        return str(v["name"]), list(v.get("domains", [])), blocked

    def create_alias(
        self,
        vendor_id: str,
        *,
        style: str = "vendor",
        domain: str | None = None,
        note: str | None = None,
        relationship_id: str | None = None,
    ) -> Alias:
        """A new alias for the vendor, made for ``relationship_id`` (default: the vendor's first one)."""
        cfg = self.routes.require_config()
        if style not in STYLES:
            raise InvalidValue(f"the alias style is one of {', '.join(STYLES)}, not {style!r}")
        dom = clean_domain(domain) if domain else cfg.domains[0]
        if dom not in cfg.domains:
            raise InvalidValue(f"{dom} is not one of the gateway's domains ({', '.join(cfg.domains)})")
        if note is not None and len(note) > 200:
            raise InvalidValue("a note is at most 200 characters")
        with self.vault.db.write() as s:
            name, domains, blocked = self._vendor_view(s, vendor_id)
            rels = list(
                s.scalars(
                    select(Relationship.id)
                    .where(Relationship.vendor_id == vendor_id)
                    .order_by(Relationship.id)
                )
            )
            if relationship_id is not None and relationship_id not in rels:
                raise InvalidValue("that relationship is not with this vendor")
            relationship_id = relationship_id or (rels[0] if rels else None)
            siblings = self.routes.vendor_aliases(s, vendor_id)
            mode, deliver = (
                (siblings[0].mode, siblings[0].deliver) if siblings else ("forward_all", cfg.deliver)
            )
            for _ in range(8):
                alias = Alias(
                    id=new_id(),
                    address=f"{new_local_part(style, name)}@{dom}",
                    vendor_id=vendor_id,
                    vendor_name=name,
                    state="active",
                    created_at=self.clock(),
                    vendor_domains=tuple(domains),
                    blocked=blocked,
                    mode=mode,
                    deliver=deliver,
                    style=style,
                    note=note,
                    relationship_id=relationship_id,
                )
                lookup = self.keys.lookup(alias.address)
                if s.scalar(select(MailAlias.id).where(MailAlias.lookup == lookup)) is None:
                    return self.routes.add_alias(s, alias)
        raise Conflict("could not find a free alias name; try the words style")  # pragma: no cover

    def ensure_alias(self, vendor_id: str, relationship_id: str | None = None) -> Alias | None:
        """With ``auto_alias`` set, give the vendor an alias if it has none yet (a new relationship)."""
        cfg = self.routes.config()
        if cfg is None or not cfg.auto_alias or self.routes.aliases(vendor_id=vendor_id):
            return None
        return self.create_alias(vendor_id, relationship_id=relationship_id)

    def aliases(self, *, vendor_id: str | None = None) -> list[Alias]:
        return self.routes.aliases(vendor_id=vendor_id)

    def alias(self, alias_id: str) -> Alias:
        return self.routes.alias(alias_id)

    def set_enabled(self, alias_id: str, enabled: bool) -> Alias:
        return self.routes.change_alias(alias_id, state="active" if enabled else "disabled")

    def delete_alias(self, alias_id: str) -> None:
        self.routes.delete_alias(alias_id)

    def set_rules(
        self,
        *,
        alias_id: str | None = None,
        vendor_id: str | None = None,
        mode: str | None = None,
        deliver: str | None = None,
    ) -> list[Alias]:
        """Rules for one alias, or for every alias of a vendor (new ones of that vendor inherit them)."""
        if (alias_id is None) == (vendor_id is None):
            raise InvalidValue("give an alias or a vendor, not both")
        if mode is not None and mode not in MODES:
            raise InvalidValue(f"the mode is one of {', '.join(MODES)}, not {mode!r}")
        if deliver is not None and deliver not in DELIVERIES:
            raise InvalidValue(f"delivery is one of {', '.join(DELIVERIES)}, not {deliver!r}")
        changes: dict[str, Any] = {k: v for k, v in (("mode", mode), ("deliver", deliver)) if v is not None}
        if not changes:
            raise InvalidValue("say what to change: --mode and/or --deliver")
        with self.vault.db.write() as s:
            targets = (
                [self.routes.alias(alias_id)] if alias_id else self.routes.vendor_aliases(s, str(vendor_id))
            )
            if vendor_id is not None and not targets:
                get_row(s, Vendor, vendor_id, "vendor")
                raise NotFound("this vendor has no alias yet: create one with `vrm mail alias create`")
            return [self.routes.write_alias(s, replace(a, **changes)) for a in targets]

    def refresh_vendor(self, s: Session, vendor_id: str) -> int:
        """Bring the vendor's aliases in step with its name, domains and stance (in the caller's session)."""
        aliases = self.routes.vendor_aliases(s, vendor_id)
        if not aliases:
            return 0
        name, domains, blocked = self._vendor_view(s, vendor_id)
        for a in aliases:
            self.routes.write_alias(
                s, replace(a, vendor_name=name, vendor_domains=tuple(domains), blocked=blocked)
            )
        return len(aliases)

    # -- filing ------------------------------------------------------------------------------------------

    def file_inbox(self) -> int:
        """File what the gateway received while the vault was locked; returns how many messages."""
        with _FILING:
            return self._file_inbox()

    def _file_inbox(self) -> int:
        from openvrm.documents.importer import ImportService

        filed = 0
        for entry in self.vault.inbox_entries():
            item = entry.item
            if item.get("kind") != INBOX_KIND:
                continue
            raw = base64.b64decode(item["raw"]) if item.get("raw") else None
            blob = self.vault.put_file(raw)[0] if raw is not None else None
            vendor_id = item.get("vendor_id")
            leak = item.get("leak") or {}
            bills: list[dict[str, Any]] = []
            with self.vault.db.read() as s:
                if vendor_id is not None and s.get(Vendor, vendor_id) is None:
                    vendor_id = None
            if raw is not None and item.get("direction", "in") == "in":
                msg = an.parse(raw)
                # Filed as the vendor's without question only when the vendor proved it wrote; otherwise the
                # vendor is a hint the seller named in the file may override (as for a file you import).
                trusted = bool(leak.get("authenticated")) and not leak.get("leaked") and vendor_id is not None
                for bill in an.bills_in(msg):
                    try:
                        outcomes = ImportService(self.vault).import_bytes(
                            bill.data,
                            filename=bill.filename,
                            media_type=bill.media_type,
                            vendor_id=vendor_id if not leak.get("leaked") else None,
                            vendor_is_sender=trusted,
                        )
                    except Exception as exc:  # noqa: BLE001 - one bad attachment must not stop filing
                        bills.append(
                            {"filename": bill.filename, "status": "rejected", "reason": str(exc)[:200]}
                        )
                        continue
                    for o in outcomes:
                        bills.append(
                            {"filename": bill.filename, "status": o.status, "document_id": o.document_id}
                        )
                        if o.document_id:
                            self._note_mail_origin(o.document_id, item)
            received = _when(item.get("received_at")) or entry.received_at
            payload = {
                "direction": item.get("direction", "in"),
                "alias": item.get("alias"),
                "summary": item.get("summary", {}),
                "auth": item.get("auth", {}),
                "leak": leak,
                "envelope": item.get("envelope", {}),
                "forwarded": bool(item.get("forwarded")),
                "reply_to": item.get("reply_to"),
                "to": item.get("to"),
                "blob": blob,
                "bills": bills,
            }
            with self.vault.db.write() as s:
                # The inbox row goes in the transaction that files it: a second filer finds it gone.
                row = s.get(InboxItem, entry.id)
                if row is None:
                    continue
                s.delete(row)
                insert(
                    self.vault,
                    s,
                    MailMessage,
                    payload,
                    record_id=entry.id,
                    vendor_id=vendor_id,
                    alias_id=item.get("alias_id"),
                    received_at=received,
                )
            filed += 1
        return filed

    def _note_mail_origin(self, document_id: str, item: dict[str, Any]) -> None:
        """The document keeps the message's date and subject (``notes``), as the person would file it."""
        from openvrm.documents.service import DocumentService

        summary = item.get("summary", {})
        docs = DocumentService(self.vault)
        doc = docs.get(document_id)
        origin = f"By e-mail to {item.get('alias')}: {summary.get('subject') or '(no subject)'}"
        if summary.get("date"):
            origin += f" ({summary['date']})"
        notes = doc.to_json().get("notes")
        if notes and origin in notes:
            return
        try:
            docs.edit(document_id, notes="\n".join(n for n in (notes, origin) if n))
        except Exception:  # noqa: BLE001 - the note is a courtesy; the document is filed either way
            return

    # -- reading -----------------------------------------------------------------------------------------

    def messages(
        self, *, vendor_id: str | None = None, alias_id: str | None = None, leaks_only: bool = False
    ) -> list[MailRecord]:
        q = select(MailMessage).order_by(MailMessage.received_at.desc(), MailMessage.id.desc())
        if vendor_id is not None:
            q = q.where(MailMessage.vendor_id == vendor_id)
        if alias_id is not None:
            q = q.where(MailMessage.alias_id == alias_id)
        with self.vault.db.read() as s:
            out = [_record(self.vault, r) for r in s.scalars(q)]
        return [m for m in out if m.leaked] if leaks_only else out

    def message(self, message_id: str) -> MailRecord:
        with self.vault.db.read() as s:
            return _record(self.vault, get_row(s, MailMessage, message_id, "message"))

    def raw(self, message_id: str) -> bytes:
        rec = self.message(message_id)
        if rec.blob is None:
            raise NotFound("this message was forwarded, not kept: only its summary is in the vault")
        return self.vault.get_file(rec.blob)

    def body(self, message_id: str) -> str:
        try:
            return an.text_body(an.parse(self.raw(message_id)))
        except NotFound:
            return ""

    def leaks(self, vendor_id: str) -> list[dict[str, Any]]:
        """Who else wrote to this vendor's aliases: one line per sender organisation."""
        found: dict[str, dict[str, Any]] = {}
        for m in sorted(self.messages(vendor_id=vendor_id), key=lambda m: m.received_at):
            if not m.leaked:
                continue
            reached = str(m.leak.get("reached") or "unknown")
            entry = found.setdefault(
                reached,
                {"reached": reached, "count": 0, "first_seen": m.received_at.isoformat(), "aliases": []},
            )
            entry["count"] += 1
            entry["last_seen"] = m.received_at.isoformat()
            entry["reason"] = m.leak.get("reason")
            if m.alias and m.alias not in entry["aliases"]:
                entry["aliases"].append(m.alias)
        return list(found.values())

    def clear_leak(self, message_id: str) -> MailRecord:
        """ "This sender is the vendor": its domain joins the vendor's domains; like messages are cleared."""
        from openvrm.vendors.service import VendorService

        rec = self.message(message_id)
        reached = rec.leak.get("reached")
        if not rec.leaked or not reached or rec.vendor_id is None:
            raise Conflict("this message is not flagged as a leak")
        vendor = VendorService(self.vault).get(rec.vendor_id)
        VendorService(self.vault).edit(rec.vendor_id, domains=[*vendor.domains, str(reached)])
        with self.vault.db.write() as s:
            self.refresh_vendor(s, rec.vendor_id)
            for row in s.scalars(select(MailMessage).where(MailMessage.vendor_id == rec.vendor_id)):
                p = payload_of(self.vault, row)
                if (p.get("leak") or {}).get("reached") == reached:
                    p["cleared"] = True
                    update(self.vault, row, p)
        return self.message(message_id)

    def card_section(self, vendor_id: str) -> dict[str, Any]:
        """The relationship card's mail part: the vendor's aliases and who else wrote to them."""
        return {
            "aliases": [a.to_json() for a in self.aliases(vendor_id=vendor_id)],
            "leaks": self.leaks(vendor_id),
        }

    # -- sending as an alias -----------------------------------------------------------------------------

    def send(self, alias_id: str, *, to: str, subject: str, body: str) -> SpoolEntry:
        """Write to a vendor contact as the alias; the message waits in the gateway's spool."""
        cfg = self.routes.require_config()
        alias = self.routes.alias(alias_id)
        if not alias.accepts_mail:
            raise Conflict("this alias is disabled or its vendor blocked: enable it before writing from it")
        contact = clean_mailbox(to, "the recipient")
        if contact.rpartition("@")[2] in cfg.domains:
            raise InvalidValue("write to the vendor's own address, not to an alias")
        subject = " ".join(subject.split())
        if not subject or len(subject) > 300:
            raise InvalidValue("a subject is 1 to 300 characters")
        if len(body) > 200_000:
            raise InvalidValue("the text is at most 200,000 characters")
        self.routes.reverse_for(alias, contact)
        msg = EmailMessage()
        msg["From"] = alias.address
        msg["To"] = contact
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = f"<{secrets.token_hex(16)}@{alias.address.rpartition('@')[2]}>"
        msg.set_content(body)
        try:
            data = scrub(msg.as_bytes(), cfg.forward_to, alias.address)
        except an.Refused as exc:
            raise InvalidValue(exc.text) from None
        row = Spool.row(
            self.keys, alias.address, [contact], data, {"alias_id": alias.id, "sent": True}, self.clock()
        )
        with self.vault.db.write() as s:
            s.add(row)
            insert(
                self.vault,
                s,
                MailMessage,
                {
                    "direction": "out",
                    "alias": alias.address,
                    "summary": {"subject": subject, "from": alias.address, "to": [contact], "kind": "sent"},
                    "to": contact,
                    "forwarded": False,
                    "blob": self.vault.put_file(data)[0],
                    "bills": [],
                },
                vendor_id=alias.vendor_id,
                alias_id=alias.id,
                received_at=self.clock(),
            )
        return next(e for e in self.spool().entries() if e.id == row.id)

    def spool(self) -> Spool:
        return Spool(self.vault.db, self.keys, clock=self.clock)

    def mail_key_text(self) -> str:
        return self.keys.to_text()


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def sync_vendor_mail(uv: UnlockedVault, s: Session, vendor_id: str) -> None:
    """Hook for the vendors service: a changed name, domains or stance reaches the vendor's aliases."""
    if s.scalar(select(MailAlias.id).where(MailAlias.vendor_id == vendor_id).limit(1)) is None:
        return
    MailService(uv).refresh_vendor(s, vendor_id)
