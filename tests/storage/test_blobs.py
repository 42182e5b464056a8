from __future__ import annotations

import pytest

from openvrm.errors import InvalidValue, NotFound
from openvrm.storage.blobs import BlobStore, FileBlobStore, SqlBlobStore
from openvrm.vault.core import Vault

ADDR = "a" * 64
OTHER = "b" * 64


@pytest.fixture(params=["files", "database"])
def store(request: pytest.FixtureRequest, vault: Vault) -> BlobStore:
    if request.param == "files":
        return FileBlobStore(vault.settings.blob_dir)
    return SqlBlobStore(vault.db)


def test_put_get_idempotent(store: BlobStore) -> None:
    assert store.put(ADDR, b"sealed bytes")
    assert not store.put(ADDR, b"other bytes")
    assert store.get(ADDR) == b"sealed bytes"
    assert store.exists(ADDR) and not store.exists(OTHER)
    store.put(OTHER, b"x")
    assert list(store.addresses()) == [ADDR, OTHER]
    store.delete(ADDR)
    assert list(store.addresses()) == [OTHER]


def test_missing_blob_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.get(ADDR)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "a" * 63, ""])
def test_bad_addresses_are_refused(store: BlobStore, bad: str) -> None:
    with pytest.raises(InvalidValue):
        store.put(bad, b"x")


def test_file_store_leaves_no_temp_files(vault: Vault) -> None:
    store = FileBlobStore(vault.settings.blob_dir)
    store.put(ADDR, b"x")
    files = [p.name for p in vault.settings.blob_dir.rglob("*") if p.is_file()]
    assert files == [ADDR]
    assert (vault.settings.blob_dir / ADDR[:2] / ADDR).stat().st_mode & 0o777 == 0o600


def test_file_store_can_leave_folder_syncs_to_one_call_for_a_group(vault: Vault) -> None:
    """What an import's workers do: each file fsync'd and renamed, the folders fsync'd once, later."""
    store = FileBlobStore(vault.settings.blob_dir)
    store.sync_folders([])  # nothing written: nothing to sync, and no folder created for it
    assert not vault.settings.blob_dir.exists()
    assert store.put(ADDR, b"one", sync_folder=False)
    assert store.put(OTHER, b"two", sync_folder=False)
    assert not store.put(ADDR, b"again", sync_folder=False)
    store.sync_folders([ADDR, OTHER, ADDR])
    assert (store.get(ADDR), store.get(OTHER)) == (b"one", b"two")
    files = sorted(p.name for p in vault.settings.blob_dir.rglob("*") if p.is_file())
    assert files == [ADDR, OTHER]
