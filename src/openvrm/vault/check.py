"""`vrm check`: verify every sealed record and every blob, reporting all damage, not just the first.

Problems are collected per record; the walk never stops early, so one damaged row cannot hide another.
Unreferenced blobs are reported as notices (harmless leftovers of an interrupted write), not damage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openvrm.errors import OpenVRMError
from openvrm.storage.models import (
    MAIL_KEY_TABLES,
    SEALED_TABLES,
    ConnectionEvent,
    Document,
    InboxItem,
    MailMessage,
)
from openvrm.vault.core import UnlockedVault


@dataclass(frozen=True)
class Problem:
    where: str
    id: str
    problem: str
    severity: str = "damage"  # "damage" | "notice"

    def to_json(self) -> dict[str, str]:
        return {"where": self.where, "id": self.id, "problem": self.problem, "severity": self.severity}


@dataclass
class CheckReport:
    records: int = 0
    blobs: int = 0
    inbox: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "damage" for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records_checked": self.records,
            "blobs_checked": self.blobs,
            "inbox_checked": self.inbox,
            "problems": [p.to_json() for p in self.problems],
        }


def check_vault(vault: UnlockedVault) -> CheckReport:
    report = CheckReport()
    try:
        keys = vault.box_keys()
    except OpenVRMError as exc:
        report.problems.append(Problem("vault_meta", "1", str(exc)))
        keys = None
    with vault.db.read() as s:
        for model in SEALED_TABLES:
            table = str(model.__tablename__)
            for row_id, sealed in s.execute(select(model.id, model.sealed).order_by(model.id)):  # type: ignore[attr-defined]
                report.records += 1
                try:
                    vault.open(table, row_id, sealed)
                except (OpenVRMError, ValueError) as exc:
                    report.problems.append(Problem(table, row_id, str(exc)))
        referenced = {addr: doc_id for doc_id, addr in s.execute(select(Document.id, Document.blob_address))}
        # Files pushed by vendors are kept with their ledger entry (and usually imported as documents too).
        kept: dict[str, str] = {}
        for row in s.scalars(select(ConnectionEvent).where(ConnectionEvent.author == "vendor")):
            try:
                note = vault.open("connection_events", row.id, row.sealed).get("note") or {}
            except (OpenVRMError, ValueError):
                continue  # already reported above
            attachment = note.get("attachment") if isinstance(note, dict) else None
            if isinstance(attachment, dict) and isinstance(attachment.get("blob"), str):
                kept[attachment["blob"]] = row.id
        # Messages the mail gateway received (kept whole) and replies sent, stored as sealed files.
        for mail_id, mail_sealed in s.execute(select(MailMessage.id, MailMessage.sealed)):
            try:
                blob = vault.open("mail_messages", mail_id, mail_sealed).get("blob")
            except (OpenVRMError, ValueError):
                continue  # already reported above
            if isinstance(blob, str):
                kept[blob] = mail_id
        _check_mail_tables(vault, s, report)
        inbox = list(s.execute(select(InboxItem.id, InboxItem.sealed_box).order_by(InboxItem.id)))
    for item_id, sealed_box in inbox:
        report.inbox += 1
        if keys is not None:
            try:
                keys.open(sealed_box)
            except OpenVRMError as exc:
                report.problems.append(Problem("inbox_items", item_id, str(exc)))
    stored = set()
    for address in vault.vault.blobs.addresses():
        stored.add(address)
        report.blobs += 1
        try:
            vault.get_file(address)
        except OpenVRMError as exc:
            report.problems.append(Problem("blobs", address, str(exc)))
            continue
        if address not in referenced and address not in kept:
            report.problems.append(Problem("blobs", address, "not referenced by any document", "notice"))
    for address, doc_id in sorted(referenced.items()):
        if address not in stored:
            report.problems.append(Problem("documents", doc_id, f"its file {address[:12]}… is missing"))
    for address, entry_id in sorted(kept.items()):
        if address not in stored:
            report.problems.append(Problem("records", entry_id, f"its file {address[:12]}… is missing"))
    return report


def _check_mail_tables(vault: UnlockedVault, s: Session, report: CheckReport) -> None:
    """The gateway's tables are sealed by the mail key (derived from the vault key): each must open."""
    from openvrm.mail.keys import MailKeys

    keys = MailKeys.from_vault(vault)
    for model in MAIL_KEY_TABLES:
        table = str(model.__tablename__)
        for row_id, sealed in s.execute(select(model.id, model.sealed).order_by(model.id)):
            report.records += 1
            try:
                keys.open(table, row_id, sealed)
            except (OpenVRMError, ValueError) as exc:
                report.problems.append(Problem(table, row_id, str(exc)))
