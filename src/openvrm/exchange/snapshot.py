"""One consistent read of a whole vault database, on either backend.

``Database.read`` opens one transaction, which on SQLite (WAL) is already a snapshot. PostgreSQL's
default level, READ COMMITTED, takes a new snapshot for every statement, so a relationship committed
between reading the vendors and reading the relationships could point at a vendor the export never saw.
Export and backup therefore read through :func:`snapshot`, which asks PostgreSQL for REPEATABLE READ
(read only): every statement in the block sees the database as it was at the first one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection
from sqlalchemy.exc import DatabaseError

from openvrm.errors import StorageDamaged
from openvrm.storage.db import Database


@contextmanager
def snapshot(db: Database) -> Iterator[Connection]:
    """A connection inside one read transaction that sees a single, fixed state of the database."""
    try:
        with db.engine.connect() as conn:
            if not db.is_sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn
    except DatabaseError as exc:
        raise StorageDamaged(
            f"database error while reading a snapshot of the vault: {str(exc.orig)[:200]}"
        ) from None
