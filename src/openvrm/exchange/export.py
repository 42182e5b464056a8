"""Export a vault to a portable archive: every record in plaintext, every document file once.

The archive is read from one snapshot of the database (a single read transaction), so it is consistent
even while the vault is in use. It is written to a temporary file beside ``dest`` (mode 0600) and moved
into place only when complete, so a crash never leaves half an archive under the final name.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pyrage import passphrase as age_passphrase
from sqlalchemy import select
from sqlalchemy.orm import Session

from openvrm import __version__
from openvrm.errors import Conflict, InvalidValue, NotFound, VaultLocked
from openvrm.exchange.format import (
    FORMAT,
    FORMAT_VERSION,
    INTENT_KEYS,
    KINDS,
    MAIL_ALIAS_KEYS,
    MAIL_MESSAGE_DEFAULTS,
    MAIL_MESSAGE_KEYS,
    MANIFEST,
    Progress,
    file_entry,
    format_time,
)
from openvrm.exchange.snapshot import snapshot
from openvrm.mail.keys import MailKeys
from openvrm.mail.routing import CONFIG_ID, GatewayConfig, alias_of_row
from openvrm.moves.service import Notice
from openvrm.outbox.settings import SMTP_SETTING, MailSettings
from openvrm.rights.service import RightsRequestRecord
from openvrm.storage.models import (
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
    OutboxMessage,
    Payment,
    ProfileChange,
    ProfileShare,
    Relationship,
    RightsRequest,
    SealedSetting,
    Vendor,
    utcnow,
)
from openvrm.vault.core import UnlockedVault, check_new_passphrase

_VENDOR_KEYS = (
    "name",
    "domains",
    "country",
    "categories",
    "directory_slug",
    "website",
    "notes",
    "vat_ids",
)
_RELATIONSHIP_KEYS = ("status", "stance", "customer_number", "account", "since", "tags", "notes", "folder")
_DOCUMENT_KEYS = (
    "filename",
    "media_type",
    "title",
    "kind",
    "format",
    "parse_status",
    "reason",
    "fields",
    "contract_id",
    "warranty_until",
    "notes",
)
_CONTRACT_KEYS = (
    "plan",
    "category",
    "price",
    "currency",
    "billing_cycle",
    "start",
    "minimum_term_months",
    "auto_renewal",
    "renewal_term_months",
    "notice_value",
    "notice_unit",
    "end_date",
    "status",
    "variable",
    "price_history",
    "notes",
)
_PRICE_POINT_KEYS = ("effective", "price", "currency")
_PAYMENT_KEYS = ("due_date", "paid_on", "amount", "currency", "note")
_SHARE_KEYS = ("field", "purpose", "until", "revoked_at")
# A rights request is read through RightsRequestRecord (its own defaults), then written key by key.
_RIGHTS_KEYS = (
    "vendor_name",
    "kind",
    "language",
    "channel",
    "status",
    "contact",
    "identity",
    "details",
    "customer_number",
    "sent_on",
    "extended",
    "outbox_id",
    "documents",
    "events",
    "complaint",
)
_CONTACT_KEYS = ("name", "email", "address", "webform", "suggested", "slug")
_EVENT_KEYS = ("at", "event", "note", "documents")
_COMPLAINT_KEYS = ("authority", "channel", "on", "outbox_id")
_MOVE_KEYS = ("field", "old", "new", "on", "notices")
_NOTICE_KEYS = (
    "vendor_id",
    "vendor_name",
    "channel",
    "status",
    "to",
    "customer_number",
    "language",
    "reasons",
    "missing",
    "outbox_id",
    "last_error",
)
# A protocol connection's sealed payload, key by key (the person's pairwise private key included).
_CONNECTION_KEYS = (
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
# What AgentService notes beside a ledger event; an attachment's blob address is the vault's own and is
# not carried (the import stores the attachment again from the event, which holds its bytes).
_LEDGER_NOTE_KEYS = ("grant_id", "error", "attempts", "attachment", "decision")
_ATTACHMENT_KEYS = ("size", "media_type", "filename", "imported", "document_ids")
_GRANT_KEYS = ("fields", "purpose", "term", "consent")
_INTENT_DEFAULTS: dict[str, Any] = {
    "text": "",
    "constraints": {},
    "where": {},
    "when": {},
    "terms": ["intent-only"],
    "expires_in_days": 14,
    "muted": False,
}
_OFFER_KEYS = ("envelope", "offer", "state", "reason", "score")
# The sealed settings the archive knows, each read through its own module (which fills its defaults).
_SETTINGS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    SMTP_SETTING: lambda p: MailSettings(**p).to_json(reveal=True),
}
# What a key holds when a payload written by an older openvrm lacks it (mirrors the services' defaults).
_DEFAULTS: dict[str, Any] = {
    "domains": [],
    "categories": [],
    "tags": [],
    "vat_ids": [],
    "price_history": [],
    "fields": {},
    "notes": "",
    "note": "",
    "minimum_term_months": 0,
    "auto_renewal": True,
    "renewal_term_months": 0,
    "notice_value": 0,
    "notice_unit": "days",
    "status": "active",
    "variable": False,
}


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: the archive, its size, and how many records of each kind it holds."""

    path: Path
    encrypted: bool
    bytes: int
    counts: dict[str, int] = field(default_factory=dict)
    file_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "encrypted": self.encrypted,
            "bytes": self.bytes,
            "counts": dict(self.counts),
            "file_bytes": self.file_bytes,
        }


def _pick(payload: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: payload.get(k, _DEFAULTS.get(k)) for k in keys}


def _contract(payload: dict[str, Any]) -> dict[str, Any]:
    picked = _pick(payload, _CONTRACT_KEYS)
    picked["price_history"] = [_pick(p, _PRICE_POINT_KEYS) for p in picked["price_history"] or []]
    return picked


def _rights_request(row: RightsRequest, payload: dict[str, Any]) -> dict[str, Any]:
    p = RightsRequestRecord.from_row(row, payload).payload()
    picked = {k: p[k] for k in _RIGHTS_KEYS}
    picked["contact"] = {k: p["contact"].get(k) for k in _CONTACT_KEYS}
    picked["identity"] = [[str(label), str(value)] for label, value in p["identity"]]
    # An event carries "documents" only when it brought documents in (an answer): null otherwise.
    picked["events"] = [{k: e.get(k) for k in _EVENT_KEYS} for e in p["events"]]
    if p["complaint"] is not None:
        picked["complaint"] = {k: p["complaint"].get(k) for k in _COMPLAINT_KEYS}
    return picked


def _move(row: Move, payload: dict[str, Any], outbox: dict[str, str], vendor_ids: set[str]) -> dict[str, Any]:
    picked = {k: payload[k] for k in _MOVE_KEYS}
    notices = []
    for n in payload["notices"]:
        read = Notice(**n).to_json()  # as MoveService reads it, with the notice's own defaults
        notice = {k: read[k] for k in _NOTICE_KEYS}
        # The outbox is not exported, so a notice whose e-mail it tracks takes the outbox's word for
        # how far it got, exactly as MoveService._from_row reads it.
        if notice["status"] == "pending" and notice["outbox_id"]:
            live = outbox.get(f"move:{row.id}:{notice['vendor_id']}", "pending")
            notice["status"] = {"sending": "pending", "cancelled": "failed"}.get(live, live)
        # A vendor deleted since the move: the notice keeps its name, not a reference to nothing.
        if notice["vendor_id"] not in vendor_ids:
            notice["vendor_id"] = None
        notices.append(notice)
    picked["notices"] = notices
    return picked


def _setting(row: SealedSetting, payload: dict[str, Any]) -> dict[str, Any]:
    read = _SETTINGS.get(row.id)
    if read is None:
        raise InvalidValue(
            f"the vault holds a setting {row.id[:40]!r} this version of the export format does not "
            "know; it would be lost, so nothing is exported"
        )
    # The value is the person's plaintext copy, the SMTP password included (see docs/export-format.md).
    return {"id": row.id, **_stamps(row), "value": read(payload)}


def _connection(row: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in _CONNECTION_KEYS if k not in payload]
    if missing:
        raise InvalidValue(
            f"connection {row.id} lacks its {missing[0]}; it would be lost, so nothing is exported"
        )
    return {
        "id": row.id,
        "handle": row.handle,
        "vendor_did": row.vendor_did,
        "status": row.status,
        "vendor_id": row.vendor_id,
        **_stamps(row),
        **{k: payload[k] for k in _CONNECTION_KEYS},
    }


def _ledger_note(row: ConnectionEvent, note: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(note) - set(_LEDGER_NOTE_KEYS))
    attachment = note.get("attachment")
    if isinstance(attachment, dict):
        unknown += sorted(set(attachment) - {"blob", *_ATTACHMENT_KEYS})
    if unknown:
        raise InvalidValue(
            f"ledger entry {row.id} notes {unknown[0][:40]!r}, which this version of the export format does "
            "not know; it would be lost, so nothing is exported"
        )
    out = {k: note[k] for k in _LEDGER_NOTE_KEYS if k in note}
    if isinstance(attachment, dict):
        out["attachment"] = {k: attachment[k] for k in _ATTACHMENT_KEYS if k in attachment}
    return out


def _connection_event(row: ConnectionEvent, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "connection_id": row.connection_id,
        "position": row.position,
        "event_id": row.event_id,
        "author": row.author,
        "state": row.state,
        **_stamps(row),
        "event": payload["event"],
        "ack": payload.get("ack"),
        "note": _ledger_note(row, payload.get("note") or {}),
    }


def _grant(row: Grant, payload: dict[str, Any]) -> dict[str, Any]:
    # "until" as the grant's payload wrote it (the plain column holds the same moment, for locked reads).
    until = payload.get("until", format_time(row.until) if row.until else None)
    return {
        "id": row.id,
        "connection_id": row.connection_id,
        **_stamps(row),
        "until": until,
        "revoked_at": format_time(row.revoked_at) if row.revoked_at else None,
        "vendor_box": base64.b64encode(row.vendor_box).decode("ascii")
        if row.vendor_box is not None
        else None,
        **{k: payload[k] for k in _GRANT_KEYS},
    }


def _intent(row: Intent, payload: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(payload) - set(INTENT_KEYS))
    missing = [k for k in ("intent_id", "kind", "category", "seed", "author") if k not in payload]
    if unknown or missing:
        what = (
            f"notes {unknown[0][:40]!r}, which this version of the export format does not know"
            if unknown
            else f"lacks its {missing[0]}"
        )
        raise InvalidValue(f"intent {row.id} {what}; it would be lost, so nothing is exported")
    return {
        "id": row.id,
        "state": row.state,
        "expires_at": format_time(row.expires_at) if row.expires_at else None,
        **_stamps(row),
        **{k: payload.get(k, _INTENT_DEFAULTS.get(k)) for k in INTENT_KEYS},
    }


def _intent_offer(row: IntentOffer, payload: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(payload) - set(_OFFER_KEYS))
    if unknown:
        raise InvalidValue(
            f"offer {row.id} notes {unknown[0][:40]!r}, which this version of the export format does not "
            "know; it would be lost, so nothing is exported"
        )
    return {
        "id": row.id,
        "intent_id": row.intent_id,
        "offer_id": row.offer_id,
        **_stamps(row),
        "envelope": payload.get("envelope"),
        "offer": payload.get("offer"),
        "state": payload.get("state", "invalid"),
        "reason": payload.get("reason"),
        "score": payload.get("score"),
    }


def _mail_gateway(row: MailState, payload: dict[str, Any]) -> dict[str, Any]:
    if row.id != CONFIG_ID:
        raise InvalidValue(
            f"the vault holds mail gateway state {row.id[:40]!r} this version of the export format does not "
            "know; it would be lost, so nothing is exported"
        )
    # Like the SMTP setting: the downstream server's password travels in plaintext (docs/export-format.md).
    value = GatewayConfig.from_json(payload).to_json(reveal=True)
    return {"id": row.id, "updated_at": format_time(row.updated_at), "value": value}


def _mail_alias(row: MailAlias, payload: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(payload) - set(MAIL_ALIAS_KEYS))
    if unknown:
        raise InvalidValue(
            f"mail alias {row.id} notes {unknown[0][:40]!r}, which this version of the export format does "
            "not know; it would be lost, so nothing is exported"
        )
    # Read as the gateway reads it, with the alias's own defaults.
    alias = alias_of_row(row, payload).payload()
    return {
        "id": row.id,
        "vendor_id": row.vendor_id,
        "state": row.state,
        **_stamps(row),
        **{k: alias[k] for k in MAIL_ALIAS_KEYS},
    }


def _mail_message(row: MailMessage, payload: dict[str, Any], alias_ids: set[str]) -> dict[str, Any]:
    unknown = sorted(set(payload) - {"blob", *MAIL_MESSAGE_KEYS})
    if unknown:
        raise InvalidValue(
            f"mail message {row.id} notes {unknown[0][:40]!r}, which this version of the export format does "
            "not know; it would be lost, so nothing is exported"
        )
    return {
        "id": row.id,
        "vendor_id": row.vendor_id,
        # An alias deleted since: the message keeps its address ("alias"), not a reference to nothing.
        "alias_id": row.alias_id if row.alias_id in alias_ids else None,
        "received_at": format_time(row.received_at),
        **_stamps(row),
        **{k: payload.get(k, MAIL_MESSAGE_DEFAULTS[k]) for k in MAIL_MESSAGE_KEYS},
        # Filled in with the kept message's entry while the archive is written (null when not kept).
        "file": None,
        "sha256": None,
        "size": None,
    }


def _stamps(row: Any) -> dict[str, str]:
    return {"created_at": format_time(row.created_at), "updated_at": format_time(row.updated_at)}


@dataclass
class _Snapshot:
    records: dict[str, list[dict[str, Any]]]
    # blob address -> the documents and mail messages whose file it is (the sha256 is filled in while
    # writing)
    files: dict[str, list[dict[str, Any]]]


def _collect(vault: UnlockedVault, progress: Progress | None) -> _Snapshot:
    # One snapshot for every table, so references between the records always resolve.
    with snapshot(vault.db) as conn, Session(bind=conn) as s:
        changes = list(s.scalars(select(ProfileChange).order_by(ProfileChange.id)))
        vendors = list(s.scalars(select(Vendor).order_by(Vendor.id)))
        relationships = list(s.scalars(select(Relationship).order_by(Relationship.id)))
        contracts = list(s.scalars(select(Contract).order_by(Contract.id)))
        documents = list(s.scalars(select(Document).order_by(Document.id)))
        texts = {t.id: t.sealed for t in s.scalars(select(DocumentText))}
        payments = list(s.scalars(select(Payment).order_by(Payment.id)))
        shares = list(s.scalars(select(ProfileShare).order_by(ProfileShare.id)))
        requests = list(s.scalars(select(RightsRequest).order_by(RightsRequest.id)))
        moves = list(s.scalars(select(Move).order_by(Move.id)))
        connections = list(s.scalars(select(Connection).order_by(Connection.id)))
        ledger = list(
            s.scalars(
                select(ConnectionEvent).order_by(ConnectionEvent.connection_id, ConnectionEvent.position)
            )
        )
        grants = list(s.scalars(select(Grant).order_by(Grant.id)))
        intents = list(s.scalars(select(Intent).order_by(Intent.id)))
        offers = list(s.scalars(select(IntentOffer).order_by(IntentOffer.id)))
        mail_state = list(s.scalars(select(MailState).order_by(MailState.id)))
        mail_aliases = list(s.scalars(select(MailAlias).order_by(MailAlias.id)))
        mail_reverse = list(s.scalars(select(MailReverseAlias).order_by(MailReverseAlias.id)))
        mail_messages = list(s.scalars(select(MailMessage).order_by(MailMessage.id)))
        settings = list(s.scalars(select(SealedSetting).order_by(SealedSetting.id)))
        # Only what the moves' notices need to know how far their e-mails got (plain columns).
        outbox: dict[str, str] = {
            key: status
            for key, status in s.execute(
                select(OutboxMessage.idempotency_key, OutboxMessage.status).where(
                    OutboxMessage.idempotency_key.like("move:%")
                )
            )
        }
        inbox = list(s.scalars(select(InboxItem).order_by(InboxItem.id)))
    total = (
        len(changes)
        + len(vendors)
        + len(relationships)
        + len(contracts)
        + len(documents)
        + len(payments)
        + len(shares)
        + len(requests)
        + len(moves)
        + len(connections)
        + len(ledger)
        + len(grants)
        + len(intents)
        + len(offers)
        + len(mail_state)
        + len(mail_aliases)
        + len(mail_reverse)
        + len(mail_messages)
        + len(settings)
        + len(inbox)
    )
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("records", done, total)

    if progress is not None:
        progress("records", 0, total)
    records: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for c in changes:
        p = vault.open("profile_changes", c.id, c.sealed)
        records["profile_changes"].append(
            {
                "id": c.id,
                "at": format_time(c.created_at),
                "field": p["field"],
                "action": p["action"],
                "value": p.get("value"),
                "source": p.get("source", ""),
            }
        )
        tick()
    for v in vendors:
        records["vendors"].append(
            {"id": v.id, **_stamps(v), **_pick(vault.open("vendors", v.id, v.sealed), _VENDOR_KEYS)}
        )
        tick()
    for r in relationships:
        p = vault.open("relationships", r.id, r.sealed)
        records["relationships"].append(
            {"id": r.id, "vendor_id": r.vendor_id, **_stamps(r), **_pick(p, _RELATIONSHIP_KEYS)}
        )
        tick()
    for con in contracts:
        p = vault.open("contracts", con.id, con.sealed)
        records["contracts"].append(
            {
                "id": con.id,
                "vendor_id": con.vendor_id,
                "relationship_id": con.relationship_id,
                **_stamps(con),
                **_contract(p),
            }
        )
        tick()
    files: dict[str, list[dict[str, Any]]] = {}
    for d in documents:
        p = vault.open("documents", d.id, d.sealed)
        sealed_text = texts.get(d.id)
        text = vault.open("document_texts", d.id, sealed_text).get("text", "") if sealed_text else ""
        rec = {
            "id": d.id,
            "vendor_id": d.vendor_id,
            "relationship_id": d.relationship_id,
            **_stamps(d),
            **_pick(p, _DOCUMENT_KEYS),
            "text": str(text),
        }
        records["documents"].append(rec)
        files.setdefault(d.blob_address, []).append(rec)
        tick()
    for pay in payments:
        p = vault.open("payments", pay.id, pay.sealed)
        records["payments"].append(
            {
                "id": pay.id,
                "contract_id": pay.contract_id,
                "vendor_id": pay.vendor_id,
                "document_id": pay.document_id,
                **_stamps(pay),
                **_pick(p, _PAYMENT_KEYS),
            }
        )
        tick()
    for sh in shares:
        p = vault.open("profile_shares", sh.id, sh.sealed)
        records["shares"].append(
            {"id": sh.id, "relationship_id": sh.relationship_id, **_stamps(sh), **_pick(p, _SHARE_KEYS)}
        )
        tick()
    for req in requests:
        p = vault.open("rights_requests", req.id, req.sealed)
        records["rights_requests"].append(
            {"id": req.id, "vendor_id": req.vendor_id, **_stamps(req), **_rights_request(req, p)}
        )
        tick()
    vendor_ids = {v.id for v in vendors}
    for mv in moves:
        p = vault.open("moves", mv.id, mv.sealed)
        records["moves"].append({"id": mv.id, **_stamps(mv), **_move(mv, p, outbox, vendor_ids)})
        tick()
    for link in connections:
        records["connections"].append(_connection(link, vault.open("connections", link.id, link.sealed)))
        tick()
    for entry in ledger:
        p = vault.open("connection_events", entry.id, entry.sealed)
        records["connection_events"].append(_connection_event(entry, p))
        tick()
    for g in grants:
        records["grants"].append(_grant(g, vault.open("grants", g.id, g.sealed)))
        tick()
    for intent in intents:
        records["intents"].append(_intent(intent, vault.open("intents", intent.id, intent.sealed)))
        tick()
    for offer in offers:
        p = vault.open("intent_offers", offer.id, offer.sealed)
        records["intent_offers"].append(_intent_offer(offer, p))
        tick()
    # The mail tables are sealed by the mail key (derived from the vault key); lookups are not carried, since
    # they are keyed hashes only this vault's key reproduces: the importing vault computes its own.
    mail_keys = MailKeys.from_vault(vault)
    for state in mail_state:
        p = mail_keys.open(MailState.__tablename__, state.id, state.sealed)
        records["mail_gateway"].append(_mail_gateway(state, p))
        tick()
    for alias in mail_aliases:
        p = mail_keys.open(MailAlias.__tablename__, alias.id, alias.sealed)
        records["mail_aliases"].append(_mail_alias(alias, p))
        tick()
    for rev in mail_reverse:
        p = mail_keys.open(MailReverseAlias.__tablename__, rev.id, rev.sealed)
        records["mail_reverse_aliases"].append(
            {
                "id": rev.id,
                "alias_id": rev.alias_id,
                **_stamps(rev),
                "address": p["address"],
                "contact": p["contact"],
            }
        )
        tick()
    alias_ids = {a.id for a in mail_aliases}
    for message in mail_messages:
        p = vault.open("mail_messages", message.id, message.sealed)
        rec = _mail_message(message, p, alias_ids)
        records["mail_messages"].append(rec)
        if p.get("blob"):
            files.setdefault(p["blob"], []).append(rec)
        tick()
    for setting in settings:
        records["settings"].append(
            _setting(setting, vault.open("sealed_settings", setting.id, setting.sealed))
        )
        tick()
    if inbox:
        keys = vault.box_keys()
        for item in inbox:
            opened = json.loads(keys.open(item.sealed_box))
            records["inbox"].append(
                {
                    "id": item.id,
                    "received_at": format_time(item.received_at),
                    "item": opened if isinstance(opened, dict) else {"value": opened},
                }
            )
            tick()
    return _Snapshot(records, files)


def _zip_info(name: str, when: datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    return info


def _write_zip(
    vault: UnlockedVault, snap: _Snapshot, out: IO[bytes], when: datetime, progress: Progress | None
) -> tuple[dict[str, int], int]:
    file_bytes = 0
    written: set[str] = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        total = len(snap.files)
        if progress is not None:
            progress("files", 0, total)
        for done, (address, docs) in enumerate(sorted(snap.files.items()), start=1):
            data = vault.get_file(address)
            sha = hashlib.sha256(data).hexdigest()
            for rec in docs:
                rec.update({"file": file_entry(sha), "sha256": sha, "size": len(data)})
            if sha not in written:
                written.add(sha)
                file_bytes += len(data)
                zf.writestr(_zip_info(file_entry(sha), when), data)
            if progress is not None:
                progress("files", done, total)
        counts = {k: len(snap.records[k]) for k in KINDS}
        counts["files"] = len(written)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "exported_at": format_time(when),
            "generator": f"openvrm {__version__}",
            "vault_id": vault.vault_id,
            "counts": counts,
            **snap.records,
        }
        text = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=False)
        zf.writestr(_zip_info(MANIFEST, when), text.encode("utf-8"))
    return counts, file_bytes


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move the finished temporary file to ``dest``; without ``overwrite`` never replace a file."""
    if overwrite:
        tmp.replace(dest)
        return
    try:
        os.link(tmp, dest)  # atomic and fails when dest exists, unlike rename
    except FileExistsError:
        raise Conflict(f"{dest} already exists; choose another name or allow overwriting") from None
    except OSError:
        # A file system without hard links: check, then rename (a tiny race, but no partial file).
        if dest.exists():
            raise Conflict(f"{dest} already exists; choose another name or allow overwriting") from None
        tmp.replace(dest)
        return
    tmp.unlink()


def export_vault(
    vault: UnlockedVault,
    dest: Path,
    *,
    passphrase: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """Write every record and file of ``vault`` to the archive ``dest``.

    With ``passphrase`` the ZIP is encrypted as a standard age file (scrypt recipient), which ``age -d``
    opens as well. ``dest`` is never replaced unless ``overwrite`` is true.
    """
    dest = Path(dest).expanduser().absolute()
    if passphrase is not None:
        check_new_passphrase(passphrase)
    if dest.is_dir():
        raise InvalidValue(f"{dest} is a folder; give the archive's file name")
    if not dest.parent.is_dir():
        raise NotFound(f"the folder {dest.parent} does not exist")
    if dest.exists() and not overwrite:
        raise Conflict(f"{dest} already exists; choose another name or allow overwriting")
    if vault.locked:
        raise VaultLocked("the vault is locked; unlock it to export")
    when = utcnow()
    snap = _collect(vault, progress)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            if passphrase is None:
                counts, file_bytes = _write_zip(vault, snap, fh, when, progress)
            else:
                buffer = io.BytesIO()
                counts, file_bytes = _write_zip(vault, snap, buffer, when, progress)
                if progress is not None:
                    progress("encrypt", 0, 1)
                fh.write(age_passphrase.encrypt(buffer.getvalue(), passphrase))
                if progress is not None:
                    progress("encrypt", 1, 1)
            fh.flush()
            os.fsync(fh.fileno())
        size = tmp.stat().st_size
        _publish(tmp, dest, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportSummary(dest, passphrase is not None, size, counts, file_bytes)
