"""Backups: a keyless, consistent copy of a vault on either backend into a new SQLite vault home."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from openvrm.config import Settings
from openvrm.errors import Conflict
from openvrm.exchange import BackupSummary, backup_vault
from openvrm.exchange import backup as backup_module
from openvrm.profile.service import ProfileService
from openvrm.vault import tokens
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault, Vault
from tests.conftest import PASSPHRASE

from .support import populate, view


def test_backup_opens_unlocks_and_checks(unlocked: UnlockedVault, tmp_path: Path, backend: str) -> None:
    populate(unlocked)
    token, _ = tokens.create(unlocked, "script")
    unlocked.lock()  # a backup needs no key
    dest = tmp_path / "backups" / "monday"
    summary = backup_vault(unlocked.vault, dest)
    assert isinstance(summary, BackupSummary)
    assert summary.source_backend == backend
    assert summary.rows["vault_meta"] == 1 and summary.rows["access_tokens"] == 1
    assert summary.rows["profile_changes"] == 7 and summary.rows["documents"] == 5
    # The backup is the whole vault: the new tables, the outbox included, are copied as they are.
    assert summary.rows["rights_requests"] == 2 and summary.rows["moves"] == 1
    assert summary.rows["sealed_settings"] == 1 and summary.rows["outbox_messages"] == 2
    assert (
        "blobs" not in summary.rows and summary.blobs == 7 and summary.missing_blobs == ()
    )  # 4 files, 1 receipt, 2 kept mail messages
    assert summary.to_json()["database"] == str(dest / "vault.db")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE((dest / "vault.db").stat().st_mode) == 0o600

    with Vault.open(Settings.resolve(dest)) as copy:
        assert copy.settings.blob_backend == "files" and copy.vault_id == unlocked.vault.vault_id
        opened = copy.unlock(PASSPHRASE)
        report = check_vault(opened)
        # Five files, the receipt a vendor pushed among them: it is kept by its ledger entry, so no notice.
        assert report.ok and report.blobs == 7 and report.problems == []
        original = unlocked.vault.unlock(PASSPHRASE)
        assert view(opened) == view(original)
        assert not tokens.unlock(copy, token).locked  # the API token travels with the backup


def test_backup_of_an_empty_vault(unlocked: UnlockedVault, tmp_path: Path) -> None:
    summary = backup_vault(unlocked.vault, tmp_path / "b")
    assert summary.blobs == 0 and summary.rows["vault_meta"] == 1
    with Vault.open(Settings.resolve(tmp_path / "b")) as copy:
        assert check_vault(copy.unlock(PASSPHRASE)).ok


def test_backup_refuses_a_folder_in_use(unlocked: UnlockedVault, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="not empty"):
        backup_vault(unlocked.vault, busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(Conflict, match="not a folder"):
        backup_vault(unlocked.vault, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    backup_vault(unlocked.vault, empty)  # an existing empty folder is fine
    assert (empty / "vault.db").exists()


def test_failed_backup_leaves_nothing_behind(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(unlocked)

    def broken(store: object, address: str, sealed: bytes) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(backup_module, "_copy_blob", broken)
    with pytest.raises(OSError, match="disk full"):
        backup_vault(unlocked.vault, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="disk full"):
        backup_vault(unlocked.vault, tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_backup_while_another_thread_writes(unlocked: UnlockedVault, tmp_path: Path) -> None:
    populate(unlocked)
    profile = ProfileService(unlocked)
    stop = threading.Event()
    written: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set() or i < 20:
                profile.set("free.counter", f"value {i}")
                i += 1
                written.append(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    stages: list[tuple[str, int, int]] = []
    try:
        while len(written) < 5:
            stop.wait(0.01)
        summary = backup_vault(unlocked.vault, tmp_path / "live", progress=lambda *a: stages.append(a))
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert {s for s, _, _ in stages} == {"tables", "blobs"}
    with Vault.open(Settings.resolve(tmp_path / "live")) as copy:
        opened = copy.unlock(PASSPHRASE)
        report = check_vault(opened)
        assert report.ok, report.to_json()
        copied = ProfileService(opened).changes()
        assert len(copied) == summary.rows["profile_changes"]
        # The copy is a prefix of the history: a snapshot, not a mixture.
        assert [c.id for c in copied] == [c.id for c in profile.changes()][: len(copied)]
