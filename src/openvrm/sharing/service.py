"""Records of profile fields shared with a relationship.

This is the minimal link the vault needs ("who holds my e-mail address?"); consented, signed sharing
under terms is built on it by the protocol issue.
"""

from __future__ import annotations

import builtins
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from openvrm.errors import InvalidValue
from openvrm.profile.fields import _text, normalise_key, query_key
from openvrm.records import get_row, insert, payload_of, update
from openvrm.storage.models import ProfileShare, Relationship, utcnow
from openvrm.vault.core import UnlockedVault


@dataclass
class ShareRecord:
    id: str
    relationship_id: str
    field: str
    purpose: str
    until: str | None
    revoked_at: str | None
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat() if self.created_at else None
        return d


def _rec(vault: UnlockedVault, row: ProfileShare) -> ShareRecord:
    p = payload_of(vault, row)
    return ShareRecord(
        row.id,
        row.relationship_id,
        p["field"],
        p["purpose"],
        p.get("until"),
        p.get("revoked_at"),
        row.created_at,
    )


class SharingService:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault

    def share(
        self, relationship_id: str, field: str, *, purpose: str, until: str | None = None
    ) -> ShareRecord:
        key = normalise_key(field)
        if until is not None:
            try:
                until = date.fromisoformat(until).isoformat()
            except ValueError:
                raise InvalidValue(f"'until' must be a date in YYYY-MM-DD form, not {until!r}") from None
        payload = {
            "field": key,
            "purpose": _text(purpose, "a purpose", max_len=300),
            "until": until,
            "revoked_at": None,
        }
        with self.vault.db.write() as s:
            get_row(s, Relationship, relationship_id, "relationship")
            row = insert(self.vault, s, ProfileShare, payload, relationship_id=relationship_id)
            return _rec(self.vault, row)

    def revoke(self, share_id: str) -> ShareRecord:
        with self.vault.db.write() as s:
            row = get_row(s, ProfileShare, share_id, "share")
            p = payload_of(self.vault, row)
            if p.get("revoked_at") is None:
                p["revoked_at"] = utcnow().isoformat()
                update(self.vault, row, p)
            return _rec(self.vault, row)

    def list(self, *, relationship_id: str | None = None, active_only: bool = False) -> list[ShareRecord]:
        with self.vault.db.read() as s:
            q = select(ProfileShare).order_by(ProfileShare.id)
            if relationship_id is not None:
                q = q.where(ProfileShare.relationship_id == relationship_id)
            rows = list(s.scalars(q))
        out = [_rec(self.vault, r) for r in rows]
        return [r for r in out if r.revoked_at is None] if active_only else out

    def holders(self, field: str) -> builtins.list[ShareRecord]:
        """Active shares of ``field`` (and of its labelled variants): who holds my ...?"""
        key = query_key(field)
        return [r for r in self.list(active_only=True) if r.field == key or r.field.startswith(key + ".")]
