"""Prepared statements (openvrm.storage.prepared) against SQLAlchemy's own execution, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError, InvalidRequestError

from openvrm.errors import Conflict
from openvrm.storage.models import ProtocolIdempotency, ProtocolNonce
from openvrm.storage.prepared import Prepared
from openvrm.vault.core import Vault

NONCES = ProtocolNonce.__table__
WHEN = datetime(2026, 12, 3, 18, 30, 15, 123456, tzinfo=UTC)


def test_an_insert_writes_what_sqlalchemy_reads_back(vault: Vault) -> None:
    """Values go through each column type's own bind processing (aware datetimes stored in UTC)."""
    nonce = Prepared(insert(NONCES))
    idem = Prepared(insert(ProtocolIdempotency.__table__))
    east = WHEN.astimezone(timezone(timedelta(hours=2)))  # the same moment, another offset
    with vault.db.write() as s:
        nonce.execute(s.connection(), {"keyid": "did:key:z6Mk", "nonce": "n-1", "expires_at": east})
        idem.execute(
            s.connection(),
            {
                "keyid": "did:key:z6Mk",
                "key": "k-1",
                "request_hash": "ab" * 32,
                "status_code": 202,
                "media_type": "application/json",
                "response": b'{"status":"queued"}',
                "expires_at": WHEN,
            },
        )
    with vault.db.read() as s:
        (row,) = s.scalars(select(ProtocolNonce))
        (stored,) = s.scalars(select(ProtocolIdempotency))
    assert (row.keyid, row.nonce, row.expires_at) == ("did:key:z6Mk", "n-1", WHEN)
    assert row.expires_at.tzinfo is not None
    assert (stored.status_code, bytes(stored.response), stored.expires_at) == (
        202,
        b'{"status":"queued"}',
        WHEN,
    )


def test_a_clashing_key_raises_sqlalchemys_integrity_error_and_rolls_back(vault: Vault) -> None:
    nonce = Prepared(insert(NONCES))
    values = {"keyid": "did:key:z6Mk", "nonce": "n-1", "expires_at": WHEN}
    with vault.db.write() as s:
        nonce.execute(s.connection(), values)
    with pytest.raises(Conflict), vault.db.write() as s:
        nonce.execute(s.connection(), {**values, "nonce": "n-2"})
        nonce.execute(s.connection(), values)  # the same pair again: refused, and n-2 goes too
    with vault.db.write() as s:
        with pytest.raises(IntegrityError):
            nonce.execute(s.connection(), values)
        s.rollback()
    with vault.db.read() as s:
        assert [n.nonce for n in s.scalars(select(ProtocolNonce))] == ["n-1"]


def test_queries_with_repeated_and_fixed_parameters(vault: Vault) -> None:
    """A parameter used twice, and the statement's own (a LIMIT), as SQLAlchemy would send them."""
    nonce = Prepared(insert(NONCES))
    with vault.db.write() as s:
        for i in range(3):
            nonce.execute(
                s.connection(), {"keyid": "k", "nonce": f"n-{i}", "expires_at": WHEN + timedelta(seconds=i)}
            )
    query = Prepared(
        select(
            select(NONCES.c.nonce)
            .where(NONCES.c.keyid == bindparam("keyid"))
            .order_by(NONCES.c.expires_at.desc())
            .limit(1)
            .scalar_subquery()
            .label("last"),
            select(func.count()).where(NONCES.c.keyid == bindparam("keyid")).scalar_subquery().label("n"),
        )
    )
    with vault.db.read() as s:
        assert query.first(s.connection(), {"keyid": "k"}) == ("n-2", 3)
        assert query.first(s.connection(), {"keyid": "other"}) == (None, 0)
        one = Prepared(select(NONCES.c.nonce).where(NONCES.c.nonce == bindparam("nonce")))
        assert one.first(s.connection(), {"nonce": "n-1"}) == ("n-1",)
        assert one.first(s.connection(), {"nonce": "none"}) is None


def test_a_statement_that_needs_a_default_or_a_missing_value_is_refused(vault: Vault) -> None:
    """Column defaults are SQLAlchemy's to apply: a prepared insert must be given every value."""
    table = Table(
        "with_default",
        MetaData(),
        Column("id", String(8), primary_key=True),
        Column("at", DateTime, default=datetime.now),
    )
    with vault.db.read() as s:
        with pytest.raises(ValueError, match="every column value"):
            Prepared(insert(table)).execute(s.connection(), {"id": "v"})
        with pytest.raises(InvalidRequestError):  # SQLAlchemy's own refusal of a missing parameter
            Prepared(select(NONCES.c.nonce).where(NONCES.c.nonce == bindparam("nonce"))).first(
                s.connection(), {}
            )


def test_selected_values_go_through_their_column_types(vault: Vault) -> None:
    """A datetime comes back aware and in UTC on both backends (SQLite stores it as text), as from
    SQLAlchemy's own rows; bytes come back as bytes."""
    with vault.db.write() as s:
        Prepared(insert(NONCES)).execute(s.connection(), {"keyid": "k", "nonce": "n", "expires_at": WHEN})
    query = Prepared(
        select(NONCES.c.expires_at, NONCES.c.nonce).where(
            NONCES.c.keyid == bindparam("keyid"), NONCES.c.nonce == bindparam("nonce")
        )
    )
    with vault.db.read() as s:
        row = query.first(s.connection(), {"keyid": "k", "nonce": "n"})
        reference = s.connection().execute(query.statement, {"keyid": "k", "nonce": "n"}).one()
    assert row == tuple(reference) == (WHEN, "n")
    assert row is not None and row[0].tzinfo is not None


def test_a_write_connection_commits_rolls_back_and_translates_clashes(vault: Vault) -> None:
    """Database.write_connection: the write transaction without an ORM session, same rules as write()."""
    nonce = Prepared(insert(NONCES))
    with vault.db.write_connection() as c:
        nonce.execute(c, {"keyid": "k", "nonce": "kept", "expires_at": WHEN})
    with pytest.raises(RuntimeError), vault.db.write_connection() as c:
        nonce.execute(c, {"keyid": "k", "nonce": "dropped", "expires_at": WHEN})
        raise RuntimeError("fails after the insert")
    with pytest.raises(Conflict), vault.db.write_connection() as c:
        nonce.execute(c, {"keyid": "k", "nonce": "also-dropped", "expires_at": WHEN})
        nonce.execute(c, {"keyid": "k", "nonce": "kept", "expires_at": WHEN})
    with vault.db.read() as s:
        assert [n.nonce for n in s.scalars(select(ProtocolNonce))] == ["kept"]
