"""Folder imports seal and store each file in the worker that reads it: the blob opens in the importing
process and equals the file, the keys never leave memory, duplicates and crashed workers leave no
unreferenced blob, and vendors new in a group are stored with it (SQLite and PostgreSQL; the workers
store files only where the blob store is a folder, the SQLite default)."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import sys
import threading
from pathlib import Path

import pytest

from openvrm.documents import importer as importer_mod
from openvrm.documents.importer import ImportService
from openvrm.documents.parsers import registry as registry_mod
from openvrm.documents.parsers.model import Format, ParsedDocument
from openvrm.documents.parsers.pdf import pdf_lock
from openvrm.documents.service import DocumentService
from openvrm.storage.blobs import FileBlobStore
from openvrm.vault.check import check_vault
from openvrm.vault.core import FileSealer, UnlockedVault
from openvrm.vendors.service import VendorService
from tests.documents.parsers.support import EINVOICES
from tests.documents.test_import_batch import import_with_a_vendor_gone

FNFE = EINVOICES / "ZUGFeRDv2" / "correct" / "FNFE-factur-x-examples"
OTHER_SELLER = EINVOICES / "ZUGFeRDv1" / "correct" / "Intarsys" / "ZUGFeRD_1p0_BASIC_Einfach.pdf"
SEAL_MARK = b"%openvrm-test: check the blob, then kill the parser process"
pytestmark = [
    pytest.mark.skipif(not EINVOICES.is_dir(), reason=f"no e-invoice corpus at {EINVOICES}"),
    pytest.mark.skipif(sys.platform != "linux", reason="parser processes are forked on Linux only"),
]


def _sealer(unlocked: UnlockedVault) -> FileSealer:
    sealer = unlocked.file_sealer()
    if not isinstance(unlocked.vault.blobs, FileBlobStore):
        assert sealer is None  # a forked worker must not use the parent's database connections
        pytest.skip("the blob store is the database: files are stored by the importing process")
    assert sealer is not None
    return sealer


def _unreferenced(unlocked: UnlockedVault) -> set[str]:
    referenced = {d.blob_address for d in DocumentService(unlocked).list()}
    return set(unlocked.vault.blobs.addresses()) - referenced


def test_a_file_sealed_in_a_worker_opens_in_the_importing_process(unlocked: UnlockedVault) -> None:
    sealer = _sealer(unlocked)
    path = FNFE / "Facture_FR_BASICWL.pdf"
    pool = importer_mod._fork_pool(1, sealer)
    try:
        with pdf_lock():
            future = pool.submit(importer_mod._prepare_many_in_worker, (path,))
        [prep] = future.result()
    finally:
        pool.shutdown(wait=True)
    data = path.read_bytes()
    assert prep.data == b""  # only the address came back, not the file
    assert prep.address == unlocked.address_of(data) and prep.size == len(data)
    assert prep.parsed.invoice_number  # and what the parsers read
    unlocked.sync_files([prep.address])
    assert unlocked.get_file(prep.address) == data
    sealed = unlocked.vault.blobs.get(prep.address)
    assert data[:64] not in sealed  # sealed, not the plaintext


def test_a_file_sealer_is_never_pickled(unlocked: UnlockedVault) -> None:
    """Workers get it by fork inheritance; it must never travel through a pipe (or to disk)."""
    sealer = _sealer(unlocked)
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(sealer)


def test_duplicates_leave_no_unreferenced_blob(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "2")
    monkeypatch.setattr(importer_mod, "BATCH_FILES", 4)  # copies inside one group and across groups
    sources = sorted(FNFE.glob("*.pdf"))[:4]
    folder = tmp_path / "in"
    folder.mkdir()
    names = [sources[0], sources[0], *sources[1:], sources[0], sources[2], sources[3]]
    for n, src in enumerate(names):
        shutil.copyfile(src, folder / f"{n:02d}-{src.name}")
    outcomes = ImportService(unlocked).import_paths([folder])
    assert [o.status for o in outcomes].count("imported") == 4
    assert [o.status for o in outcomes].count("duplicate") == 4
    again = ImportService(unlocked).import_paths([folder])
    assert {o.status for o in again} == {"duplicate"}
    assert len(set(unlocked.vault.blobs.addresses())) == 4
    assert _unreferenced(unlocked) == set()
    report = check_vault(unlocked)
    assert report.ok and report.problems == []


class _CheckSealedThenDie:
    """A plug-in parser that records whether the file's blob is already stored, then kills its process."""

    name = "test-sealed-then-die"
    formats: tuple[Format, ...] = ("pdf",)

    def __init__(self, parent: int, unlocked: UnlockedVault, marker: Path) -> None:
        self.parent = parent
        self.unlocked = unlocked
        self.marker = marker

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        return 100 if SEAL_MARK in data else 0

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        if os.getpid() == self.parent:
            raise AssertionError("the crashing parser ran inside the importing process")
        stored = self.unlocked.vault.blobs.exists(self.unlocked.address_of(data))  # a folder: no database
        with self.marker.open("a") as f:
            f.write(f"{stored}\n")
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def test_a_worker_killed_after_sealing_loses_nothing(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sealer(unlocked)
    marker = tmp_path / "marker"
    registry = registry_mod.new_registry(plugins=False)
    registry.register(_CheckSealedThenDie(os.getpid(), unlocked, marker))
    monkeypatch.setattr(registry_mod, "_default", registry)  # forked workers inherit it
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "2")
    folder = tmp_path / "in"
    folder.mkdir()
    for n, src in enumerate(sorted(FNFE.glob("*.pdf"))[:8]):
        shutil.copyfile(src, folder / f"{n:02d}-{src.name}")
    killer = folder / "04-killer.pdf"
    killer.write_bytes((FNFE / "Facture_FR_BASICWL.pdf").read_bytes() + b"\n" + SEAL_MARK + b"\n")
    outcomes = ImportService(unlocked).import_paths([folder])
    # The worker sealed and stored the file before its parser killed it (and so did the retry alone).
    assert marker.read_text().split() == ["True", "True"]
    by_name = {Path(o.path).name: o for o in outcomes}
    dead = by_name.pop(killer.name)
    assert dead.status == "unparsed" and "worker process died" in str(dead.reason)
    assert {o.status for o in by_name.values()} == {"imported"}
    _, content = DocumentService(unlocked).content(str(dead.document_id))
    assert content == killer.read_bytes()
    assert _unreferenced(unlocked) == set()
    assert check_vault(unlocked).ok


def test_vendors_new_in_a_refused_group_are_stored_with_the_files_that_stay(
    unlocked: UnlockedVault, tmp_path: Path
) -> None:
    """The group's transaction fails (one row links to a vendor deleted meanwhile): the vendor created
    for another file of the group is still stored, with that file, and found by the next import."""
    _, _, outcomes = import_with_a_vendor_gone(unlocked, tmp_path)
    created = VendorService(unlocked).get(str(outcomes[1].vendor_id))
    assert DocumentService(unlocked).get(str(outcomes[1].document_id)).vendor_id == created.id
    later = tmp_path / "later"
    later.mkdir()
    (later / "c-other-again.pdf").write_bytes(OTHER_SELLER.read_bytes() + b"\n% another bill\n")
    again = ImportService(unlocked).import_paths([later])
    assert again[0].status == "imported" and again[0].vendor_id == created.id


def test_two_threads_storing_the_same_file_at_once_both_succeed(unlocked: UnlockedVault) -> None:
    """Read-ahead threads (no worker processes) may seal two copies of one file at the same moment."""
    sealer = _sealer(unlocked)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def store(data: bytes, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            results.append(sealer.put(data))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    for n in range(20):
        data = b"the same bill, twice %d" % n
        barrier = threading.Barrier(2)
        results.clear()
        threads = [threading.Thread(target=store, args=(data, barrier)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert {address for address, _ in results} == {unlocked.address_of(data)}
        unlocked.sync_files([results[0][0]])
        assert unlocked.get_file(results[0][0]) == data
    leftovers = [p for p in unlocked.vault.settings.blob_dir.rglob(".*") if p.is_file()]
    assert leftovers == []
