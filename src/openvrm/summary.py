"""How much a vault holds: the counts the dashboard and ``GET /api/v1/summary`` show."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openvrm.profile.service import ProfileService
from openvrm.sharing.service import SharingService
from openvrm.storage.models import Base, Document, Relationship, Vendor
from openvrm.vault.core import UnlockedVault

SUMMARY_KEYS = ("vendors", "relationships", "documents", "profile_fields", "shares", "inbox")


def vault_summary(unlocked: UnlockedVault) -> dict[str, int]:
    """Counts of vendors, relationships, documents, current profile fields, active shares and inbox items.

    Rows are counted without decrypting them; profile fields and shares need the vault key, because the
    current profile is the fold of its sealed history and a share's revocation is sealed too.
    """
    _ = unlocked.key  # a locked vault raises VaultLocked here, before any count
    with unlocked.db.read() as s:
        vendors = _count(s, Vendor)
        relationships = _count(s, Relationship)
        documents = _count(s, Document)
    return {
        "vendors": vendors,
        "relationships": relationships,
        "documents": documents,
        "profile_fields": len(ProfileService(unlocked).current()),
        "shares": len(SharingService(unlocked).list(active_only=True)),
        "inbox": unlocked.vault.inbox_count(),
    }


def _count(s: Session, model: type[Base]) -> int:
    return int(s.scalar(select(func.count()).select_from(model)) or 0)
