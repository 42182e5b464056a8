"""Folder imports parse in forked worker processes: the same outcomes as threads, and a parser that
dies on one file (a native crash, simulated by a worker killing itself) costs that file its fields,
never the import, the other files, or the file itself (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from openvrm.documents import importer as importer_mod
from openvrm.documents.importer import ImportService, parse_only, parse_workers
from openvrm.documents.parsers import registry as registry_mod
from openvrm.documents.parsers.model import Format, ParsedDocument
from openvrm.documents.service import DocumentService
from openvrm.errors import InvalidValue
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from tests.documents.parsers.support import EINVOICES

FNFE = EINVOICES / "ZUGFeRDv2" / "correct" / "FNFE-factur-x-examples"
pytestmark = [
    pytest.mark.skipif(not EINVOICES.is_dir(), reason=f"no e-invoice corpus at {EINVOICES}"),
    pytest.mark.skipif(sys.platform != "linux", reason="parser processes are forked on Linux only"),
]
CRASH_MARK = b"%openvrm-test: kill the parser process"


class _Crasher:
    """A parser plug-in that kills the process it runs in, like a segfault in a native library.

    In the test process itself it raises instead, so a regression to in-process parsing fails the test
    rather than killing pytest.
    """

    name = "test-crasher"
    formats: tuple[Format, ...] = ("pdf",)

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def score(self, data: bytes, filename: str, media_type: str | None) -> int:
        return 100 if CRASH_MARK in data else 0

    def parse(self, data: bytes, filename: str) -> ParsedDocument:
        if os.getpid() == self.parent:
            raise AssertionError("the crashing parser ran inside the importing process")
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def _corpus_folder(tmp_path: Path, n: int) -> Path:
    """``n`` well-formed invoice PDFs of the corpus (``fail/`` left out), from several producers."""
    folder = tmp_path / "in"
    folder.mkdir()
    sources = sorted(p for p in EINVOICES.rglob("*.pdf") if "fail" not in p.parts)
    assert len(sources) >= n
    for i, src in enumerate(sources[:: max(1, len(sources) // n)][:n]):
        shutil.copyfile(src, folder / f"{i:02d}-{src.name}")
    return folder


def test_worker_count_follows_size_cores_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENVRM_IMPORT_PROCESSES", raising=False)
    assert parse_workers(importer_mod.PROCESS_MIN_FILES - 1) == 0  # too few files to pay for a fork
    cores = min(os.cpu_count() or 1, importer_mod.MAX_PARSE_PROCESSES)
    assert parse_workers(importer_mod.PROCESS_MIN_FILES) == cores
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "0")
    assert parse_workers(1000) == 0
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "3")
    assert parse_workers(1) == 3
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "many")
    with pytest.raises(InvalidValue, match="OPENVRM_IMPORT_PROCESSES must be a whole number"):
        parse_workers(10)


def test_processes_and_threads_give_the_same_documents(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _corpus_folder(tmp_path, 12)
    svc = ImportService(unlocked)
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "0")
    by_threads = svc.import_paths([folder])
    assert len(by_threads) == 12 and all(o.status in ("imported", "unparsed") for o in by_threads)
    # The same bytes again, in processes: each file must parse to the very same fields. A changed
    # trailer gives new content (no duplicate), and the parsers ignore bytes after %%EOF.
    copies = tmp_path / "copies"
    copies.mkdir()
    for f in sorted(folder.iterdir()):
        (copies / f.name).write_bytes(f.read_bytes() + b"\n% second copy\n")
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "2")
    by_processes = svc.import_paths([copies])
    for a, b in zip(by_threads, by_processes, strict=True):
        assert Path(a.path).name == Path(b.path).name
        assert (a.format, a.fields, a.vendor_id, a.contract_id) == (
            b.format,
            b.fields,
            b.vendor_id,
            b.contract_id,
        )
        assert a.document_id != b.document_id
    docs = DocumentService(unlocked)
    for a, b in zip(by_threads, by_processes, strict=True):
        assert docs.text(str(a.document_id)) == docs.text(str(b.document_id))  # PDF text from the worker
    assert check_vault(unlocked).ok


def test_parse_only_extracts_what_the_import_would_and_stores_nothing(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _corpus_folder(tmp_path, 9)
    with (folder / "zz-too-big.pdf").open("wb") as f:  # sparse: over the size limit, never read
        f.truncate(importer_mod.MAX_FILE_BYTES + 1)
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "2")
    parsed = list(parse_only([folder]))
    assert [p.name for p, _ in parsed] == sorted(f.name for f in folder.iterdir())
    assert parsed[-1][1] is None  # the file over the limit
    docs = DocumentService(unlocked)
    assert docs.list() == []  # nothing was stored
    outcomes = ImportService(unlocked).import_paths([folder])
    assert [o.status for o in outcomes[:-1]] == ["imported"] * 9 and outcomes[-1].status == "rejected"
    for (path, doc), outcome in zip(parsed[:-1], outcomes[:-1], strict=True):
        assert doc is not None and Path(outcome.path) == path
        assert doc.format == outcome.format
        assert doc.invoice_number == outcome.fields.get("invoice_number")
        assert doc.text == docs.text(str(outcome.document_id))


def test_a_worker_that_dies_costs_one_file_its_fields_and_nothing_else(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_mod.new_registry(plugins=False)
    registry.register(_Crasher(os.getpid()))
    monkeypatch.setattr(registry_mod, "_default", registry)  # forked workers inherit it
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "2")
    folder = _corpus_folder(tmp_path, 10)
    killer = folder / "05-killer.pdf"
    killer.write_bytes((FNFE / "Facture_FR_BASICWL.pdf").read_bytes() + b"\n" + CRASH_MARK + b"\n")
    outcomes = ImportService(unlocked).import_paths([folder])
    assert len(outcomes) == 11
    by_name = {Path(o.path).name: o for o in outcomes}
    dead = by_name.pop(killer.name)
    assert dead.status == "unparsed"
    assert "worker process died" in str(dead.reason)
    # every other file, including those the dead worker's pool held, imported with its fields
    assert {o.status for o in by_name.values()} == {"imported"}
    assert all(o.fields.get("invoice_number") for o in by_name.values() if o.format == "facturx")
    # the file that killed its parser is kept, byte for byte
    doc, content = DocumentService(unlocked).content(str(dead.document_id))
    assert content == killer.read_bytes()
    assert doc.parse_status == "unparsed" and doc.reason == dead.reason and doc.format == "pdf"
    assert check_vault(unlocked).ok


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_import_and_its_workers_cleanly(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches the whole process group: the workers ignore it, the importing process stops."""
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "2")
    # One file a group: the third is reported while the workers still hold the rest (with bigger groups
    # a small folder may be parsed whole, and its workers gone, before the first group is stored).
    monkeypatch.setattr(importer_mod, "BATCH_FILES", 1)
    folder = _corpus_folder(tmp_path, 30)
    seen: list[int] = []

    def interrupt_after_three(done: int, total: int, path: str) -> None:
        seen.append(done)
        if done == 3:
            workers = multiprocessing.active_children()
            assert workers, "the import should be parsing in worker processes"
            for child in workers:  # what a terminal's Ctrl-C does to every process of the group
                os.kill(child.pid or 0, signal.SIGINT)
            time.sleep(0.5)
            assert all(child.is_alive() for child in workers), "a worker died of Ctrl-C"
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        ImportService(unlocked).import_paths([folder], progress=interrupt_after_three)
    assert 3 <= max(seen) < 30
    assert multiprocessing.active_children() == []  # no worker left behind
    stored = DocumentService(unlocked).list()
    assert len(stored) >= 3  # what was committed before the interrupt stays, whole
    assert check_vault(unlocked).ok


def test_a_result_that_cannot_come_back_from_a_worker_is_parsed_in_process(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Local(ParsedDocument):  # a class defined here cannot be pickled back from a worker
        pass

    class OddPlugin:
        name = "test-odd"
        formats: tuple[Format, ...] = ("text",)

        def score(self, data: bytes, filename: str, media_type: str | None) -> int:
            return 100 if data.startswith(b"odd:") else 0

        def parse(self, data: bytes, filename: str) -> ParsedDocument:
            return Local(format="text", status="parsed", text=data.decode()[4:])

    registry = registry_mod.new_registry(plugins=False)
    registry.register(OddPlugin())
    monkeypatch.setattr(registry_mod, "_default", registry)
    monkeypatch.setenv("OPENVRM_IMPORT_PROCESSES", "2")
    folder = _corpus_folder(tmp_path, 4)
    (folder / "odd.txt").write_bytes(b"odd:a note the plug-in read")
    outcomes = ImportService(unlocked).import_paths([folder])
    assert [o.status for o in outcomes] == ["imported"] * 5
    odd = next(o for o in outcomes if o.path.endswith("odd.txt"))
    assert DocumentService(unlocked).text(str(odd.document_id)) == "a note the plug-in read"
