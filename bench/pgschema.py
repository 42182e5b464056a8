"""A fresh PostgreSQL schema for one benchmark run, dropped afterwards (shared by the bench scripts)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import sqlalchemy as sa


@contextlib.contextmanager
def fresh_schema(url: str, prefix: str) -> Iterator[str]:
    """Yield ``url`` with its search_path set to a new, empty schema; drop the schema when done."""
    schema = f"{prefix}_{secrets.token_hex(4)}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
