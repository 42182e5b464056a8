"""The profile service: set, get, unset fields; every change is kept.

Storage is an append-only list of sealed changes (``profile_changes``); the current profile is the fold
of that list. Nothing is ever overwritten, so ``history`` shows each value a field has had and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from openvrm.errors import NotFound
from openvrm.profile.fields import FieldValue, normalise_key, validate
from openvrm.storage.models import ProfileChange, new_id, utcnow
from openvrm.vault.core import UnlockedVault

KIND = "profile_changes"


@dataclass(frozen=True)
class Change:
    id: str
    at: datetime
    field: str
    action: str  # "set" | "unset"
    value: FieldValue | None
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "field": self.field,
            "action": self.action,
            "value": self.value,
            "source": self.source,
        }


class ProfileService:
    def __init__(self, vault: UnlockedVault) -> None:
        self.vault = vault

    def changes(self) -> list[Change]:
        with self.vault.db.read() as s:
            rows = list(s.scalars(select(ProfileChange).order_by(ProfileChange.id)))
        out = []
        for row in rows:
            p = self.vault.open(KIND, row.id, row.sealed)
            out.append(
                Change(row.id, row.created_at, p["field"], p["action"], p.get("value"), p.get("source", ""))
            )
        return out

    def current(self) -> dict[str, FieldValue]:
        fields: dict[str, FieldValue] = {}
        for c in self.changes():
            if c.action == "set" and c.value is not None:
                fields[c.field] = c.value
            else:
                fields.pop(c.field, None)
        return dict(sorted(fields.items()))

    def get(self, key: str) -> FieldValue:
        key = normalise_key(key)
        fields = self.current()
        if key not in fields:
            raise NotFound(f"the profile has no {key} field")
        return fields[key]

    def set(self, key: str, value: Any, *, source: str = "owner") -> Change:
        """Validate and record a new value; setting the current value again records nothing new."""
        key, clean = validate(key, value)
        if self.current().get(key) == clean:
            return next(c for c in reversed(self.changes()) if c.field == key)
        return self._append(key, "set", clean, source)

    def unset(self, key: str, *, source: str = "owner") -> Change:
        key = normalise_key(key)
        if key not in self.current():
            raise NotFound(f"the profile has no {key} field")
        return self._append(key, "unset", None, source)

    def history(self, key: str | None = None) -> list[Change]:
        changes = self.changes()
        if key is None:
            return changes
        key = normalise_key(key)
        return [c for c in changes if c.field == key]

    def _append(self, key: str, action: str, value: FieldValue | None, source: str) -> Change:
        change = Change(new_id(), utcnow(), key, action, value, source)
        payload = {"field": key, "action": action, "value": value, "source": source}
        with self.vault.db.write() as s:
            s.add(
                ProfileChange(
                    id=change.id, created_at=change.at, sealed=self.vault.seal(KIND, change.id, payload)
                )
            )
        return change

    def restore(self, changes: list[Change]) -> int:
        """Insert changes (from an import) whose ids are not present yet; return how many were added."""
        with self.vault.db.write() as s:
            existing = set(s.scalars(select(ProfileChange.id)))
            added = 0
            for c in changes:
                if c.id in existing:
                    continue
                payload = {"field": c.field, "action": c.action, "value": c.value, "source": c.source}
                s.add(ProfileChange(id=c.id, created_at=c.at, sealed=self.vault.seal(KIND, c.id, payload)))
                added += 1
        return added
