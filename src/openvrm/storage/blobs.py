"""Blob stores: where sealed file contents live, addressed by a keyed hash of their plaintext.

The store itself never sees plaintext or keys; :class:`openvrm.vault.core.UnlockedVault` seals a file and
computes its address (HMAC-SHA256 under a vault-derived key, so an address reveals nothing to someone
who does not hold the vault key), then hands the sealed bytes here.

Two adapters implement the same small contract:

* :class:`FileBlobStore`: one file per blob under ``<home>/blobs/ab/<address>``, written atomically
  and durably (temporary file, fsync, rename, fsync of the folder), mode 0600. The default with SQLite.
* :class:`SqlBlobStore`: a ``blobs`` table. The default with PostgreSQL, so a hosted vault is one database.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select

from openvrm.errors import InvalidValue, NotFound
from openvrm.storage.db import Database
from openvrm.storage.models import Blob, utcnow

_ADDRESS = re.compile(r"^[0-9a-f]{64}$")


def check_address(address: str) -> str:
    if not _ADDRESS.match(address):
        raise InvalidValue(f"not a blob address: {address[:80]!r}")
    return address


class BlobStore(Protocol):
    """Contract: ``put`` is idempotent per address and atomic (a reader sees the whole blob or none);
    ``get`` raises :class:`NotFound` for an unknown address; ``addresses`` lists every stored blob."""

    def put(self, address: str, sealed: bytes) -> bool:
        """Store ``sealed`` under ``address``; return False when it was already there."""
        ...

    def get(self, address: str) -> bytes: ...

    def exists(self, address: str) -> bool: ...

    def delete(self, address: str) -> None: ...

    def addresses(self) -> Iterator[str]: ...


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, address: str) -> Path:
        check_address(address)
        return self.root / address[:2] / address

    def put(self, address: str, sealed: bytes, *, sync_folder: bool = True) -> bool:
        """Durable on return: the file's bytes are fsync'd before it is renamed into place, and the
        folder holding its name after (so a crash cannot lose the name of a blob that a row, committed
        next, points at). Never a partial blob under its address: a crash leaves at most a temporary
        file.

        ``sync_folder=False`` leaves the last step to the caller (:meth:`sync_folders`, once for a
        group of files, before it commits rows pointing at them): each folder fsync commits the file
        system's journal, so one per file costs about as much again as the file's own fsync."""
        path = self._path(address)
        if path.exists():
            return False
        if not path.parent.is_dir():
            new_root = not self.root.is_dir()
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            if new_root:
                _fsync_dir(self.root.parent)
            if sync_folder:  # else sync_folders does it
                _fsync_dir(self.root)
        # A name of its own per write: an import's read-ahead threads may store two copies of one file
        # (the same address) at once in one process.
        tmp = path.with_name(f".{address}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(sealed)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if sync_folder:
            _fsync_dir(path.parent)
        return True

    def sync_folders(self, addresses: Iterable[str]) -> None:
        """Make the names of blobs written with ``sync_folder=False`` durable: one fsync per folder
        holding one of them, then one of the root (which holds the names of new folders)."""
        folders = sorted({self._path(a).parent for a in addresses})
        for folder in folders:
            _fsync_dir(folder)
        if folders:
            _fsync_dir(self.root)

    def get(self, address: str) -> bytes:
        try:
            return self._path(address).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {address[:12]}… is missing from the blob store") from None

    def exists(self, address: str) -> bool:
        return self._path(address).exists()

    def delete(self, address: str) -> None:
        self._path(address).unlink(missing_ok=True)

    def addresses(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    if _ADDRESS.match(f.name):
                        yield f.name


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SqlBlobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, address: str, sealed: bytes) -> bool:
        check_address(address)
        with self.db.write() as s:
            if s.get(Blob, address) is not None:
                return False
            s.add(Blob(address=address, size=len(sealed), created_at=utcnow(), data=sealed))
        return True

    def get(self, address: str) -> bytes:
        check_address(address)
        with self.db.read() as s:
            data = s.scalar(select(Blob.data).where(Blob.address == address))
        if data is None:
            raise NotFound(f"blob {address[:12]}… is missing from the blob store")
        return data

    def exists(self, address: str) -> bool:
        check_address(address)
        with self.db.read() as s:
            return s.scalar(select(Blob.address).where(Blob.address == address)) is not None

    def delete(self, address: str) -> None:
        with self.db.write() as s:
            s.execute(delete(Blob).where(Blob.address == check_address(address)))

    def addresses(self) -> Iterator[str]:
        with self.db.read() as s:
            rows = list(s.scalars(select(Blob.address).order_by(Blob.address)))
        yield from rows
