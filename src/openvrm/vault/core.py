"""Opening, creating and unlocking a vault.

A :class:`Vault` is an opened store that may be locked: it can tell whether a vault exists, accept inbox
items sealed to its box public key, and unlock. An :class:`UnlockedVault` holds the vault key in memory
and is what every service takes to read or write personal data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from openvrm.config import Settings
from openvrm.crypto import (
    BoxKeyPair,
    KdfParams,
    Sealer,
    derive_kek,
    hkdf,
    keyed_hash,
    random_key,
    seal_to,
)
from openvrm.errors import (
    IntegrityError,
    InvalidValue,
    VaultExists,
    VaultLocked,
    VaultNotFound,
    WrongPassphrase,
)
from openvrm.storage.blobs import BlobStore, FileBlobStore, SqlBlobStore
from openvrm.storage.db import Database
from openvrm.storage.models import InboxItem, VaultMeta, new_id, utcnow

MIN_PASSPHRASE = 8
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_INBOX_ITEM_BYTES = 1024 * 1024
_KEY_AAD = b"openvrm/v1/vault-key:"
_BOX_AAD = b"openvrm/v1/box-secret:"


def check_new_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidValue(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    if passphrase != passphrase.strip():
        raise InvalidValue("the passphrase must not start or end with white space")


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # Lone surrogates (text pulled out of broken PDFs) have no UTF-8 form: they become "?".
        return text.encode("utf-8", errors="replace")


class Vault:
    """An opened (possibly locked) vault: its database, its blob store, its public key."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.database_url)
        self._box_public: bytes | None = None
        self.blobs: BlobStore = (
            FileBlobStore(settings.blob_dir) if settings.blob_backend == "files" else SqlBlobStore(self.db)
        )

    @classmethod
    def open(cls, settings: Settings, *, create: bool = False) -> Vault:
        """Open the store at ``settings`` and apply pending migrations.

        With ``create=False`` a missing SQLite file is :class:`VaultNotFound` and nothing is created.
        """
        if settings.is_sqlite and not create:
            path = Path(settings.database_url.removeprefix("sqlite:///"))
            if not path.exists():
                raise VaultNotFound(f"no vault at {settings.home}; create one with `vrm init`")
        vault = cls(settings)
        try:
            vault.db.migrate()
        except BaseException:
            vault.close()
            raise
        return vault

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- existence and metadata ---------------------------------------------------------------------

    def exists(self) -> bool:
        with self.db.read() as s:
            return s.get(VaultMeta, 1) is not None

    def _meta(self) -> VaultMeta:
        with self.db.read() as s:
            meta = s.get(VaultMeta, 1)
        if meta is None:
            raise VaultNotFound(f"no vault at {self.settings.home}; create one with `vrm init`")
        return meta

    @property
    def vault_id(self) -> str:
        return self._meta().vault_id

    @property
    def box_public_key(self) -> bytes:
        if self._box_public is None:  # fixed at creation: read once
            self._box_public = self._meta().box_public
        return self._box_public

    def kdf_params(self) -> KdfParams:
        return KdfParams.from_json(self._meta().kdf)

    # -- create / unlock / passphrase ---------------------------------------------------------------

    def create(self, passphrase: str, *, kdf: KdfParams | None = None) -> UnlockedVault:
        check_new_passphrase(passphrase)
        kdf = kdf or KdfParams.new()
        key = random_key()
        vault_id = new_id()
        box = BoxKeyPair.generate()
        kek = derive_kek(passphrase, kdf)
        records = Sealer(hkdf(key, "openvrm/v1/records"))
        now = utcnow()
        with self.db.write() as s:
            if s.get(VaultMeta, 1) is not None:
                raise VaultExists(f"a vault already exists at {self.settings.home}")
            s.add(
                VaultMeta(
                    id=1,
                    vault_id=vault_id,
                    kdf=kdf.to_json(),
                    wrapped_key=Sealer(kek).seal(key, _KEY_AAD + vault_id.encode()),
                    box_public=box.public,
                    box_secret=records.seal(box.secret, _BOX_AAD + vault_id.encode()),
                    created_at=now,
                    key_changed_at=now,
                )
            )
        return UnlockedVault(self, key, vault_id)

    def unlock(self, passphrase: str) -> UnlockedVault:
        meta = self._meta()
        kek = derive_kek(passphrase, KdfParams.from_json(meta.kdf))
        try:
            key = Sealer(kek).open(meta.wrapped_key, _KEY_AAD + meta.vault_id.encode())
        except IntegrityError:
            raise WrongPassphrase("wrong passphrase") from None
        return UnlockedVault(self, key, meta.vault_id)

    def unlock_with_key(self, key: bytes) -> UnlockedVault:
        """Unlock with a vault key recovered another way (an API token or a CLI session)."""
        return UnlockedVault(self, key, self._meta().vault_id)

    def change_passphrase(self, old: str, new: str, *, kdf: KdfParams | None = None) -> None:
        """Re-wrap the vault key under ``new``; no other data is touched."""
        check_new_passphrase(new)
        unlocked = self.unlock(old)
        kdf = kdf or KdfParams.new()
        kek = derive_kek(new, kdf)
        with self.db.write() as s:
            meta = s.get(VaultMeta, 1)
            if meta is None:
                raise VaultNotFound("the vault disappeared")
            meta.kdf = kdf.to_json()
            meta.wrapped_key = Sealer(kek).seal(unlocked.key, _KEY_AAD + meta.vault_id.encode())
            meta.key_changed_at = utcnow()

    # -- the inbox: works while locked ---------------------------------------------------------------

    def deposit(self, item: Mapping[str, Any]) -> str:
        """Seal ``item`` to the vault's box key and store it; the vault may be locked."""
        row = self.inbox_row(item)
        with self.db.write() as s:
            s.add(row)
        return row.id

    def inbox_row(self, item: Mapping[str, Any], *, limit: int = MAX_INBOX_ITEM_BYTES) -> InboxItem:
        """``item`` sealed to the box key, as a row for the caller to add in its own transaction.

        ``limit`` bounds the encoded item: 1 MiB for what vendors push; the mail gateway, which keeps whole
        messages, passes its own (its message size limit, encoded).
        """
        return InboxItem(**self.inbox_values(item, limit=limit))

    def inbox_values(self, item: Mapping[str, Any], *, limit: int = MAX_INBOX_ITEM_BYTES) -> dict[str, Any]:
        """:meth:`inbox_row` as the column values of an ``inbox_items`` insert (for a Core statement)."""
        data = encode_payload(item)
        if len(data) > limit:
            raise InvalidValue(f"an inbox item is limited to {limit} bytes")
        return {"id": new_id(), "received_at": utcnow(), "sealed_box": seal_to(self.box_public_key, data)}

    def inbox_count(self) -> int:
        with self.db.read() as s:
            return int(s.scalar(select(func.count()).select_from(InboxItem)) or 0)


@dataclass(frozen=True)
class InboxEntry:
    id: str
    received_at: datetime
    item: dict[str, Any]


class UnlockedVault:
    """A vault with its key in memory. Services take one of these to read or write personal data."""

    def __init__(self, vault: Vault, key: bytes, vault_id: str) -> None:
        self.vault = vault
        self._db = vault.db
        self.vault_id = vault_id
        self._key: bytes | None = key
        self._records = Sealer(hkdf(key, "openvrm/v1/records"))
        self._files = Sealer(hkdf(key, "openvrm/v1/blobs"))
        self._address_key = hkdf(key, "openvrm/v1/blob-address")
        # Derived in-memory structures (the search index) that live exactly as long as the unlock.
        self.caches: dict[str, Any] = {}

    @property
    def key(self) -> bytes:
        if self._key is None:
            raise VaultLocked("the vault is locked")
        return self._key

    @property
    def db(self) -> Database:
        """The store, for services; a locked vault refuses, so nothing reads past a lock."""
        self._check()
        return self._db

    @property
    def locked(self) -> bool:
        return self._key is None

    def lock(self) -> None:
        """Forget the keys. Python cannot wipe memory; dropping every reference is the best it offers."""
        self._key = None
        self.caches.clear()
        self._records = self._files = None  # type: ignore[assignment]
        self._address_key = b""

    # -- sealed records --------------------------------------------------------------------------

    def seal(self, kind: str, record_id: str, payload: Mapping[str, Any]) -> bytes:
        self._check()
        return self._records.seal(encode_payload(payload), f"{kind}:{record_id}".encode())

    def open(self, kind: str, record_id: str, sealed: bytes) -> dict[str, Any]:
        self._check()
        data = self._records.open(sealed, f"{kind}:{record_id}".encode(), what=f"{kind} record {record_id}")
        value = json.loads(data)
        if not isinstance(value, dict):
            raise IntegrityError(f"{kind} record {record_id} does not hold an object")
        return value

    def _check(self) -> None:
        if self._key is None:
            raise VaultLocked("the vault is locked")

    # -- sealed files ----------------------------------------------------------------------------

    def address_of(self, data: bytes) -> str:
        self._check()
        return keyed_hash(self._address_key, data)

    def put_file(self, data: bytes) -> tuple[str, bool]:
        """Seal and store a file; return its address and whether it was new."""
        self._check()
        return _put_file(self._files, self._address_key, self.vault.blobs, data)

    def sync_files(self, addresses: Iterable[str]) -> None:
        """Make durable the names of files a :class:`FileSealer` stored (nothing to do for a SQL store)."""
        self._check()
        if isinstance(self.vault.blobs, FileBlobStore):
            self.vault.blobs.sync_folders(addresses)

    def file_sealer(self) -> FileSealer | None:
        """What a worker process needs to seal and store files as :meth:`put_file` does, and no more.

        None when the blob store is the database: a forked process must not use the parent's
        connections, so files then go to the store from the importing process.
        """
        self._check()
        if not isinstance(self.vault.blobs, FileBlobStore):
            return None
        return FileSealer(self._files, self._address_key, self.vault.blobs)

    def get_file(self, address: str) -> bytes:
        self._check()
        sealed = self.vault.blobs.get(address)
        data = self._files.open(sealed, address.encode(), what=f"file {address[:12]}…")
        if keyed_hash(self._address_key, data) != address:
            raise IntegrityError(f"file {address[:12]}… does not match its address")
        return data

    # -- box key pair and inbox ------------------------------------------------------------------

    def box_keys(self) -> BoxKeyPair:
        with self.db.read() as s:
            meta = s.get(VaultMeta, 1)
        if meta is None:
            raise VaultNotFound("the vault disappeared")
        secret = self._records.open(meta.box_secret, _BOX_AAD + meta.vault_id.encode(), what="box secret key")
        return BoxKeyPair(secret, meta.box_public)

    def inbox_entries(self) -> Iterator[InboxEntry]:
        """The inbox one item at a time (kept mail can be megabytes each): ids first, then each opened."""
        keys = self.box_keys()
        with self.db.read() as s:
            ids = list(s.scalars(select(InboxItem.id).order_by(InboxItem.id)))
        for item_id in ids:
            with self.db.read() as s:
                row = s.get(InboxItem, item_id)
                if row is None:
                    continue  # filed meanwhile by someone else
                received_at, sealed = row.received_at, row.sealed_box
            item = json.loads(keys.open(sealed))
            yield InboxEntry(item_id, received_at, item if isinstance(item, dict) else {"value": item})

    def inbox(self) -> list[InboxEntry]:
        keys = self.box_keys()
        with self.db.read() as s:
            rows = list(s.scalars(select(InboxItem).order_by(InboxItem.id)))
        out = []
        for row in rows:
            item = json.loads(keys.open(row.sealed_box))
            out.append(
                InboxEntry(row.id, row.received_at, item if isinstance(item, dict) else {"value": item})
            )
        return out

    def remove_inbox_item(self, item_id: str) -> None:
        with self.db.write() as s:
            s.execute(delete(InboxItem).where(InboxItem.id == item_id))


class FileSealer:
    """Seals files and writes them to a :class:`FileBlobStore`, exactly as :meth:`UnlockedVault.put_file`.

    It holds the two keys derived for files (sealing and addressing; not the vault key) and the blob
    folder, and never a database connection, so a forked import worker can store the file it parses. It
    reaches a worker by fork inheritance only: it is never pickled, written to disk or put on a command
    line.
    """

    __slots__ = ("_address_key", "_blobs", "_files")

    def __init__(self, files: Sealer, address_key: bytes, blobs: FileBlobStore) -> None:
        self._files = files
        self._address_key = address_key
        self._blobs = blobs

    def __reduce__(self) -> Any:
        raise TypeError("a FileSealer holds keys and is never pickled")

    def put(self, data: bytes) -> tuple[str, bool]:
        """Seal and store a file; its address and whether it was new.

        The blob's bytes are durable on return, its name only once :meth:`UnlockedVault.sync_files`
        has run for its address: the importing process does that for a group, before its commit.
        """
        return _put_file(self._files, self._address_key, self._blobs, data, sync_folder=False)


def _put_file(
    files: Sealer, address_key: bytes, blobs: BlobStore, data: bytes, *, sync_folder: bool = True
) -> tuple[str, bool]:
    """Seal and store a file under its keyed address; ``sync_folder=False`` leaves the folder's fsync to
    :meth:`UnlockedVault.sync_files` (a folder store only)."""
    if len(data) > MAX_FILE_BYTES:
        raise InvalidValue(f"the file is larger than the {MAX_FILE_BYTES // (1024 * 1024)} MiB limit")
    address = keyed_hash(address_key, data)
    if blobs.exists(address):
        return address, False
    sealed = files.seal(data, address.encode())
    if isinstance(blobs, FileBlobStore):
        return address, blobs.put(address, sealed, sync_folder=sync_folder)
    return address, blobs.put(address, sealed)


def open_unlocked(settings: Settings, passphrase: str) -> UnlockedVault:
    """Open the vault at ``settings`` and unlock it; closes the store again if unlocking fails."""
    vault = Vault.open(settings)
    try:
        return vault.unlock(passphrase)
    except BaseException:
        vault.close()
        raise
