"""Database-backed replay and idempotency stores for signed protocol requests.

Both the person's agent (in the vault database) and the vendor kit (in its own store) use these, each with
its own table of the same shape:

* :class:`SqlNonceStore` remembers every ``(keyid, nonce)`` until the signature could no longer be replayed;
  the primary key makes "first one wins" atomic across processes and on both SQLite and PostgreSQL.
* :class:`SqlIdempotencyStore` keeps the first response to a write under ``(keyid, Idempotency-Key)`` for
  24 hours: a retry with the same body gets the same response, the same key with another body is refused
  (409), and the write is never applied twice.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from openvrm.errors import Conflict
from openvrm.storage.prepared import Prepared, core

IDEMPOTENCY_TTL = timedelta(hours=24)
PURGE_PROBABILITY = 0.01
"""About one call in a hundred also deletes expired rows, so the tables stay small without a cron job."""


class _Store(Protocol):
    def read(self) -> AbstractContextManager[Session]: ...
    def write(self) -> AbstractContextManager[Session]: ...


def _maybe_purge(s: Session | Connection, model: Any, now: datetime) -> None:
    if random.random() < PURGE_PROBABILITY:  # noqa: S311 - housekeeping, not security
        s.execute(delete(model).where(model.expires_at <= now))


@dataclass
class SqlNonceStore:
    """A :class:`~openvrm.protocol.httpsig.NonceStore` on a (``keyid``, ``nonce``, ``expires_at``) table."""

    db: _Store
    model: Any

    def remember(self, keyid: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
        if len(keyid) > 200 or len(nonce) > 128:
            return False
        # Nonces are random, so the pair is almost always new: insert it straight away (one statement).
        # A clash means a replay, or a pair whose entry expired: decided below from the stored row.
        try:
            with self.db.write() as s:
                s.add(self.model(keyid=keyid, nonce=nonce, expires_at=expires_at))
                _maybe_purge(s, self.model, now)
            return True
        except (SAIntegrityError, Conflict):
            pass
        try:
            with self.db.write() as s:
                row = s.get(self.model, (keyid, nonce))
                if row is not None:
                    if row.expires_at > now:
                        return False
                    row.expires_at = expires_at
                else:
                    s.add(self.model(keyid=keyid, nonce=nonce, expires_at=expires_at))
                _maybe_purge(s, self.model, now)
        except (SAIntegrityError, Conflict):
            return False  # a concurrent request with the same nonce won the insert
        return True


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    media_type: str
    body: bytes


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


@functools.cache
def _lookup_statement(model: Any) -> Prepared:
    t = model.__table__
    return Prepared(
        select(t.c.request_hash, t.c.status_code, t.c.media_type, t.c.response, t.c.expires_at).where(
            t.c.keyid == bindparam("keyid"), t.c.key == bindparam("key")
        )
    )


@functools.cache
def _insert_statement(model: Any) -> Prepared:
    return Prepared(model.__table__.insert())


@dataclass
class SqlIdempotencyStore:
    """First responses to writes, keyed by signer and ``Idempotency-Key``."""

    db: _Store
    model: Any
    ttl: timedelta = IDEMPOTENCY_TTL
    clock: Callable[[], datetime] | None = None

    def _now(self) -> datetime:
        from openvrm.protocol.messages import now_utc

        return self.clock() if self.clock else now_utc()

    def lookup(self, keyid: str, key: str, fingerprint: str) -> StoredResponse | None:
        """The stored response for a retry, ``None`` for a new key; :class:`Conflict` for a reused key.

        A read transaction: it writes nothing, so it need not wait for (or hold up) the writers.
        """
        with self.db.read() as s:
            return self.lookup_in(s, keyid, key, fingerprint)

    def lookup_in(
        self, s: Session | Connection, keyid: str, key: str, fingerprint: str
    ) -> StoredResponse | None:
        """:meth:`lookup` inside the caller's transaction (one prepared statement, no ORM object)."""
        row = _lookup_statement(self.model).first(core(s), {"keyid": keyid, "key": key})
        if row is None:
            return None
        request_hash, status_code, media_type, response, expires_at = row
        if expires_at <= self._now():
            return None
        if request_hash != fingerprint:
            raise Conflict("this Idempotency-Key was already used for a different request")
        return StoredResponse(status_code, media_type, bytes(response))

    def save(self, keyid: str, key: str, fingerprint: str, response: StoredResponse) -> None:
        now = self._now()
        try:  # a new key, almost always: insert it straight away (one statement)
            with self.db.write() as s:
                s.add(self._row(keyid, key, fingerprint, response, now))
                _maybe_purge(s, self.model, now)
            return
        except (SAIntegrityError, Conflict):
            pass  # stored already: by a concurrent retry, or an expired entry to replace
        try:
            with self.db.write() as s:
                row = s.get(self.model, (keyid, key))
                if row is not None and row.expires_at > now:
                    return  # a concurrent retry stored its (identical) response first
                if row is not None:
                    s.delete(row)
                    s.flush()
                s.add(self._row(keyid, key, fingerprint, response, now))
                _maybe_purge(s, self.model, now)
        except (SAIntegrityError, Conflict):
            return

    def insert_in(
        self,
        s: Session | Connection,
        keyid: str,
        key: str,
        fingerprint: str,
        response: StoredResponse,
        now: datetime,
    ) -> None:
        """Insert the record of a first response in the caller's transaction (one Core statement); a key
        already stored raises SQLAlchemy's IntegrityError there and then."""
        _insert_statement(self.model).execute(core(s), self._values(keyid, key, fingerprint, response, now))

    def row(self, keyid: str, key: str, fingerprint: str, response: StoredResponse, now: datetime) -> Any:
        """The record of a first response, for a caller that writes it in its own transaction."""
        return self._row(keyid, key, fingerprint, response, now)

    def drop_expired(self, keyid: str, key: str, now: datetime) -> None:
        """Delete the record under ``(keyid, key)`` if it has expired (before writing a new one there)."""
        with self.db.write() as s:
            s.execute(
                delete(self.model).where(
                    self.model.keyid == keyid, self.model.key == key, self.model.expires_at <= now
                )
            )

    def purge_sometimes(self, s: Session | Connection, now: datetime) -> None:
        _maybe_purge(s, self.model, now)

    def _row(self, keyid: str, key: str, fingerprint: str, response: StoredResponse, now: datetime) -> Any:
        return self.model(**self._values(keyid, key, fingerprint, response, now))

    def _values(
        self, keyid: str, key: str, fingerprint: str, response: StoredResponse, now: datetime
    ) -> dict[str, Any]:
        return {
            "keyid": keyid,
            "key": key,
            "request_hash": fingerprint,
            "status_code": response.status_code,
            "media_type": response.media_type,
            "response": response.body,
            "expires_at": now + self.ttl,
        }

    def count(self) -> int:
        with self.db.write() as s:
            return len(list(s.scalars(select(self.model.key))))
