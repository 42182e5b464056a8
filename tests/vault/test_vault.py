"""The vault on both backends: create, unlock, passphrase change, sealing, inbox, damage."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from openvrm.config import Settings
from openvrm.errors import (
    IntegrityError,
    InvalidValue,
    StorageDamaged,
    VaultExists,
    VaultNotFound,
    VaultTooNew,
    WrongPassphrase,
)
from openvrm.profile.service import ProfileService
from openvrm.storage.models import VaultMeta, Vendor
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendors.service import VendorService
from tests.conftest import PASSPHRASE, fast_kdf


def _raw_rows(vault: Vault, table: str) -> list[tuple[object, ...]]:
    with vault.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"select * from {table} order by 1"))]  # noqa: S608


def test_create_then_unlock(vault: Vault) -> None:
    assert not vault.exists()
    u = vault.create(PASSPHRASE, kdf=fast_kdf())
    ProfileService(u).set("email", "a@example.org")
    again = vault.unlock(PASSPHRASE)
    assert ProfileService(again).get("email") == "a@example.org"
    assert again.vault_id == u.vault_id


def test_create_twice_is_refused(unlocked: UnlockedVault) -> None:
    with pytest.raises(VaultExists):
        unlocked.vault.create(PASSPHRASE, kdf=fast_kdf())


def test_short_passphrase_is_refused(vault: Vault) -> None:
    with pytest.raises(InvalidValue, match="at least 8"):
        vault.create("short", kdf=fast_kdf())
    assert not vault.exists()


def test_wrong_passphrase_is_clear_and_changes_nothing(unlocked: UnlockedVault) -> None:
    vault = unlocked.vault
    before = _raw_rows(vault, "vault_meta")
    with pytest.raises(WrongPassphrase):
        vault.unlock("not the passphrase")
    assert _raw_rows(vault, "vault_meta") == before


def test_passwd_rewraps_the_key_only(unlocked: UnlockedVault) -> None:
    vault = unlocked.vault
    VendorService(unlocked).add("Acme")
    ProfileService(unlocked).set("email", "a@example.org")
    vendors_before = _raw_rows(vault, "vendors")
    profile_before = _raw_rows(vault, "profile_changes")
    meta_before = _raw_rows(vault, "vault_meta")
    vault.change_passphrase(PASSPHRASE, "a brand new passphrase", kdf=fast_kdf())
    assert _raw_rows(vault, "vendors") == vendors_before
    assert _raw_rows(vault, "profile_changes") == profile_before
    assert _raw_rows(vault, "vault_meta") != meta_before
    with pytest.raises(WrongPassphrase):
        vault.unlock(PASSPHRASE)
    assert ProfileService(vault.unlock("a brand new passphrase")).get("email") == "a@example.org"


def test_passwd_with_wrong_old_passphrase_changes_nothing(unlocked: UnlockedVault) -> None:
    vault = unlocked.vault
    before = _raw_rows(vault, "vault_meta")
    with pytest.raises(WrongPassphrase):
        vault.change_passphrase("wrong wrong wrong", "a brand new passphrase", kdf=fast_kdf())
    assert _raw_rows(vault, "vault_meta") == before


def test_swapped_ciphertexts_give_an_integrity_error(unlocked: UnlockedVault) -> None:
    svc = VendorService(unlocked)
    a = svc.add("Vendor A")
    b = svc.add("Vendor B")
    with unlocked.db.write() as s:
        row_a, row_b = s.get(Vendor, a.id), s.get(Vendor, b.id)
        assert row_a is not None and row_b is not None
        row_a.sealed, row_b.sealed = row_b.sealed, row_a.sealed
    with pytest.raises(IntegrityError, match=f"vendors record {a.id} failed its integrity check"):
        svc.get(a.id)


def test_swapped_blobs_give_an_integrity_error(unlocked: UnlockedVault) -> None:
    a, _ = unlocked.put_file(b"file one")
    b, _ = unlocked.put_file(b"file two")
    blobs = unlocked.vault.blobs
    sa_, sb_ = blobs.get(a), blobs.get(b)
    blobs.delete(a)
    blobs.delete(b)
    blobs.put(a, sb_)
    blobs.put(b, sa_)
    with pytest.raises(IntegrityError):
        unlocked.get_file(a)


def test_same_file_is_stored_once(unlocked: UnlockedVault) -> None:
    a1, new1 = unlocked.put_file(b"same")
    a2, new2 = unlocked.put_file(b"same")
    assert a1 == a2 and new1 and not new2
    assert list(unlocked.vault.blobs.addresses()) == [a1]


def test_inbox_accepts_while_locked_and_opens_when_unlocked(unlocked: UnlockedVault) -> None:
    vault = unlocked.vault
    unlocked.lock()
    item_id = vault.deposit({"type": "receipt", "total": "12.50"})
    assert vault.inbox_count() == 1
    items = vault.unlock(PASSPHRASE).inbox()
    assert [(i.id, i.item) for i in items] == [(item_id, {"type": "receipt", "total": "12.50"})]


def test_locked_vault_refuses_reads(unlocked: UnlockedVault) -> None:
    from openvrm.errors import VaultLocked

    unlocked.lock()
    with pytest.raises(VaultLocked):
        ProfileService(unlocked).current()


def test_missing_vault_is_reported_and_not_created(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.resolve(tmp_path / "nothing")
    with pytest.raises(VaultNotFound, match="vrm init"):
        Vault.open(settings)
    assert not (tmp_path / "nothing").exists()


def test_newer_schema_is_refused_and_left_alone(unlocked: UnlockedVault) -> None:
    vault = unlocked.vault
    with vault.db.engine.begin() as conn:
        conn.execute(sa.text("update alembic_version set version_num = '9999_future'"))
    vault.close()
    with pytest.raises(VaultTooNew, match="newer openvrm"):
        Vault.open(vault.settings)
    reopened = Vault(vault.settings)
    assert reopened.db.current_revision() == "9999_future"
    with reopened.db.read() as s:
        assert s.get(VaultMeta, 1) is not None
    reopened.close()


def test_corrupted_sqlite_file_is_a_clear_error(sqlite_settings: Settings) -> None:
    v = Vault.open(sqlite_settings, create=True)
    v.create(PASSPHRASE, kdf=fast_kdf())
    v.close()
    db_file = sqlite_settings.home / "vault.db"
    for extra in ("-wal", "-shm"):
        (sqlite_settings.home / f"vault.db{extra}").unlink(missing_ok=True)
    original = db_file.read_bytes()
    db_file.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StorageDamaged):
        Vault.open(sqlite_settings)
    assert db_file.read_bytes() == b"this is not a database at all" * 200
    db_file.write_bytes(original)
    Vault.open(sqlite_settings).close()
