"""The relational store: one SQLAlchemy engine, serialised writes, migrations on open.

SQLite (the embedded default) runs in WAL mode: many readers, one writer. Writes are serialised by a
process-wide lock and open with ``BEGIN IMMEDIATE`` so a second process waits for the lock instead of
failing half-way. PostgreSQL runs the same code with its own concurrency control.

Migrations are Alembic scripts shipped in ``openvrm/storage/migrations``; :meth:`Database.migrate` applies
them when a vault opens and refuses a database written by a newer openvrm. A vault already at
:data:`SCHEMA_HEAD` is told by one query, without loading Alembic or its scripts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from openvrm.errors import Conflict, StorageDamaged, VaultTooNew

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest migration (tests/storage hold it to the scripts). A vault at this revision needs none.
SCHEMA_HEAD = "0006"
AFTER_COMMIT = "openvrm_after_commit"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the write transaction of ``session`` (a :meth:`Database.write`) has committed.

    Not run if the transaction rolls back. For in-process notices (the mail gateway's alias cache)."""
    session.info.setdefault(AFTER_COMMIT, []).append(fn)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so BEGIN / BEGIN IMMEDIATE are ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("openvrm_write", False)
    # Straight to the sqlite3 connection: a statement with no parameters and no result, which SQLAlchemy's
    # execution machinery (a context, a cursor wrapper, events) only made slower on every transaction.
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")  # type: ignore[union-attr]


class Database:
    """An engine plus the read/write session discipline every service uses."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._write_lock = threading.RLock()
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                path = Path(parsed.database)
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if not path.exists():
                    # Create the file private to its owner before SQLite writes anything into it.
                    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                    os.close(fd)
            # A small pool of connections reused across transactions: opening one (and its PRAGMAs) per
            # transaction cost more than the work itself. SQLAlchemy makes pooled SQLite connections
            # usable from any thread; WAL lets them read while one writes.
            self.engine: Engine = create_engine(url, pool_size=5, max_overflow=10)
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)

    @property
    def backend(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session over one read transaction (a consistent snapshot)."""
        with self._translate(), self.engine.connect() as conn, conn.begin():
            with Session(bind=conn, expire_on_commit=False, autoflush=False) as session:
                yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session over one write transaction; commits when the block ends, rolls back on error."""
        after: list[Any] = []
        with self._write_lock, self._translate(), self.engine.connect() as conn:
            conn.execution_options(openvrm_write=True)
            with conn.begin(), Session(bind=conn, expire_on_commit=False, autoflush=False) as session:
                yield session
                session.flush()
                after = session.info.get(AFTER_COMMIT, [])
        # Committed: run what the transaction asked to run afterwards (see :func:`after_commit`).
        for fn in after:
            fn()

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """:meth:`write` as a plain Core connection, without an ORM session (about 30 µs less per
        transaction), for hot paths that run Core or prepared statements only. The same write lock,
        ``BEGIN IMMEDIATE`` on SQLite and error translation; no :func:`after_commit` hooks."""
        with self._write_lock, self._translate(), self.engine.connect() as conn:
            conn.execution_options(openvrm_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            if "locked" in str(exc.orig):
                raise
            raise StorageDamaged(f"the vault database cannot be used: {_short(exc)}") from None
        except IntegrityError as exc:
            # A constraint refused the change (a reference to a missing row, a duplicate key): the
            # store is fine, the change was not. The transaction is rolled back; nothing was written.
            raise Conflict(f"the change clashes with what is stored: {_short(exc)}") from None
        except DatabaseError as exc:
            raise StorageDamaged(f"the vault database is damaged or not a vault: {_short(exc)}") from None

    # -- migrations -------------------------------------------------------------------------------

    def _alembic_config(self, connection: Connection) -> Config:
        from alembic.config import Config  # Alembic is loaded only when a migration may be due

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = connection
        return cfg

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self._translate(), self.engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
        return heads[0] if heads else None

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        with self.engine.connect() as conn:
            head = ScriptDirectory.from_config(self._alembic_config(conn)).get_current_head()
        return head or ""

    def migrate(self) -> None:
        """Bring the schema to the newest revision this openvrm knows; refuse a newer database."""
        if self._at_head():
            return
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.util.exc import CommandError

        with self._write_lock, self._translate(), self.engine.connect() as conn:
            cfg = self._alembic_config(conn)
            script = ScriptDirectory.from_config(cfg)
            for rev in MigrationContext.configure(conn).get_current_heads():
                try:
                    known = script.get_revision(rev)
                except CommandError:
                    known = None
                if known is None:
                    raise VaultTooNew(
                        f"this vault's schema ({rev}) was written by a newer openvrm; "
                        "upgrade openvrm to open it"
                    )
            conn.commit()
            command.upgrade(cfg, "head")
            conn.commit()

    def _at_head(self) -> bool:
        """Whether the schema is at :data:`SCHEMA_HEAD` (one query; False when no schema is there yet)."""
        try:
            with self.engine.connect() as conn:
                versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except DatabaseError:
            return False  # no version table yet (a new vault), or unreadable: the full path decides
        return versions == [SCHEMA_HEAD]

    def dispose(self) -> None:
        self.engine.dispose()


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
