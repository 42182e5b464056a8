"""Generic access to sealed tables: rows of (id, plain columns, timestamps, sealed JSON payload).

Services describe their records as dataclasses and use these helpers to read and write them, so the
sealing rule (associated data ``<table>:<id>``) lives in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection, select
from sqlalchemy import insert as sa_insert
from sqlalchemy.orm import Session

from openvrm.errors import NotFound
from openvrm.storage.models import Base, new_id, utcnow
from openvrm.storage.prepared import Prepared, core
from openvrm.vault.core import UnlockedVault

M = TypeVar("M", bound=Base)


def table_of(model: type[Base]) -> str:
    return str(model.__tablename__)


def insert(
    vault: UnlockedVault,
    s: Session,
    model: type[M],
    payload: dict[str, Any],
    *,
    record_id: str | None = None,
    **plain: Any,
) -> M:
    row = model(**row_values(vault, model, payload, record_id=record_id, **plain))
    s.add(row)
    return row


def insert_core(
    vault: UnlockedVault,
    s: Session | Connection,
    model: type[Base],
    payload: dict[str, Any],
    *,
    record_id: str | None = None,
    **plain: Any,
) -> str:
    """:func:`insert` as one Core statement in the caller's transaction (no ORM object); the new id."""
    values = row_values(vault, model, payload, record_id=record_id, **plain)
    _insert_statement(model).execute(core(s), values)
    return str(values["id"])


@functools.cache
def _insert_statement(model: type[Base]) -> Prepared:
    """One insert statement per table, compiled once per dialect and run on the driver."""
    return Prepared(sa_insert(model))


def row_values(
    vault: UnlockedVault,
    model: type[Base],
    payload: dict[str, Any],
    *,
    record_id: str | None = None,
    **plain: Any,
) -> dict[str, Any]:
    """The column values of a new sealed row: its id, timestamps, plain columns and sealed payload."""
    rid = record_id or new_id()
    now = plain.pop("created_at", None) or utcnow()
    updated = plain.pop("updated_at", None) or now
    return {
        "id": rid,
        "created_at": now,
        "updated_at": updated,
        "sealed": vault.seal(table_of(model), rid, payload),
        **plain,
    }


def update(vault: UnlockedVault, row: Any, payload: dict[str, Any]) -> None:
    row.sealed = vault.seal(row.__tablename__, row.id, payload)
    row.updated_at = utcnow()


def payload_of(vault: UnlockedVault, row: Any) -> dict[str, Any]:
    return vault.open(row.__tablename__, row.id, row.sealed)


def get_row(s: Session, model: type[M], record_id: str, what: str) -> M:
    row = s.get(model, record_id) if isinstance(record_id, str) and record_id else None
    if row is None:
        raise NotFound(f"no {what} with id {str(record_id)[:40]!r}")
    return row


def all_rows(s: Session, model: type[M]) -> Iterable[M]:
    return s.scalars(select(model).order_by(model.id))  # type: ignore[attr-defined]
