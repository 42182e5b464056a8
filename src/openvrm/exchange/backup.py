"""Back up a vault, running or not, without its key.

A backup is a complete, still-encrypted copy: a new SQLite vault home (``vault.db`` and ``blobs/``)
that opens with the same passphrase. Nothing is decrypted on the way, so no key is needed and a backup
can be taken by a scheduled job while the person is away.

Consistency: every table is read inside one read transaction of the source (on PostgreSQL at REPEATABLE
READ), so the copy is one snapshot even while other processes keep writing. Files are stored before the
row that refers to them is committed and are never changed afterwards, so every file the snapshot refers
to exists when the blobs are copied next; a file added after the snapshot is copied too and shows in
``vrm check`` as an unreferenced leftover, which is harmless.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, inspect, select

from openvrm.errors import Conflict, StorageDamaged
from openvrm.exchange.format import Progress
from openvrm.exchange.snapshot import snapshot
from openvrm.storage.blobs import FileBlobStore
from openvrm.storage.db import Database
from openvrm.storage.models import Base, Blob, Document
from openvrm.vault.core import Vault

_BATCH = 500
_SKIP_TABLES = {"alembic_version", "blobs"}  # the schema version comes from migrate(); blobs go to files


@dataclass(frozen=True)
class BackupSummary:
    """Where the backup went and what it holds."""

    home: Path
    database: Path
    source_backend: str
    rows: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    blob_bytes: int = 0
    missing_blobs: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "database": str(self.database),
            "blob_dir": str(self.home / "blobs"),
            "source_backend": self.source_backend,
            "rows": dict(self.rows),
            "blobs": self.blobs,
            "blob_bytes": self.blob_bytes,
            "missing_blobs": list(self.missing_blobs),
        }


def _prepare_home(dest_home: Path) -> bool:
    """Make sure ``dest_home`` is a new or empty folder; return whether this call created it."""
    if dest_home.exists():
        if not dest_home.is_dir():
            raise Conflict(f"{dest_home} exists and is not a folder; a backup goes into a new, empty folder")
        if any(dest_home.iterdir()):
            raise Conflict(f"{dest_home} is not empty; a backup goes into a new, empty folder")
        return False
    dest_home.mkdir(parents=True, mode=0o700)
    return True


def _empty(dest_home: Path, created: bool) -> None:
    """Remove what a failed backup wrote, leaving the folder as it was found."""
    if created:
        shutil.rmtree(dest_home, ignore_errors=True)
        return
    for child in dest_home.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _check_tables(conn: Connection) -> None:
    present = set(inspect(conn).get_table_names())
    unknown = sorted(present - set(Base.metadata.tables) - {"alembic_version"})
    if unknown:
        raise StorageDamaged(
            f"the vault has tables this openvrm does not know ({', '.join(unknown)}); "
            "back it up with the openvrm that wrote it"
        )


def _copy_blob(store: FileBlobStore, address: str, sealed: bytes) -> int:
    store.put(address, sealed)
    return len(sealed)


def backup_vault(vault: Vault, dest_home: Path, *, progress: Progress | None = None) -> BackupSummary:
    """Copy ``vault`` (any backend, locked or not) into a new SQLite vault home at ``dest_home``.

    The result opens with ``Vault.open(Settings.resolve(dest_home))`` and unlocks with the same
    passphrase; its files live in ``dest_home/blobs``. ``dest_home`` must not exist or be empty.
    """
    dest_home = Path(dest_home).expanduser().absolute()
    db_path = dest_home / "vault.db"
    created = _prepare_home(dest_home)
    try:
        dest_db = Database(f"sqlite:///{db_path}")
        try:
            summary = _backup(vault, dest_db, dest_home, db_path, progress)
        finally:
            dest_db.dispose()
    except BaseException:
        _empty(dest_home, created)
        raise
    return summary


def _backup(
    vault: Vault, dest_db: Database, dest_home: Path, db_path: Path, progress: Progress | None
) -> BackupSummary:
    dest_db.migrate()
    store = FileBlobStore(dest_home / "blobs")
    tables = [t for t in Base.metadata.sorted_tables if t.name not in _SKIP_TABLES]
    rows: dict[str, int] = {}
    copied: set[str] = set()
    blob_bytes = 0
    with snapshot(vault.db) as src:
        # One read transaction: every table below, and the blobs table, come from the same snapshot.
        _check_tables(src)
        with dest_db.engine.connect() as dest, dest.begin():
            for done, table in enumerate(tables, start=1):
                if progress is not None:
                    progress("tables", done - 1, len(tables))
                result = src.execute(select(table))
                count = 0
                while batch := result.fetchmany(_BATCH):
                    dest.execute(insert(table), [dict(r._mapping) for r in batch])
                    count += len(batch)
                rows[table.name] = count
            if progress is not None:
                progress("tables", len(tables), len(tables))
        referenced = set(src.scalars(select(Document.blob_address).distinct()))
        table_blobs = list(src.scalars(select(Blob.address).order_by(Blob.address)))
        if progress is not None:
            progress("blobs", 0, len(table_blobs))
        for done, address in enumerate(table_blobs, start=1):
            sealed = src.scalar(select(Blob.data).where(Blob.address == address))
            if sealed is not None:
                blob_bytes += _copy_blob(store, address, sealed)
                copied.add(address)
            if progress is not None:
                progress("blobs", done, len(table_blobs))
    if vault.settings.blob_backend == "files":
        # Files are immutable once written, so copying them after the snapshot is still consistent.
        addresses = [a for a in vault.blobs.addresses() if a not in copied]
        if progress is not None:
            progress("blobs", 0, len(addresses))
        for done, address in enumerate(addresses, start=1):
            blob_bytes += _copy_blob(store, address, vault.blobs.get(address))
            copied.add(address)
            if progress is not None:
                progress("blobs", done, len(addresses))
    return BackupSummary(
        home=dest_home,
        database=db_path,
        source_backend=vault.db.backend,
        rows=rows,
        blobs=len(copied),
        blob_bytes=blob_bytes,
        missing_blobs=tuple(sorted(referenced - copied)),
    )
