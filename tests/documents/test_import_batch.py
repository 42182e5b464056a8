"""Folder imports commit in groups: per-file outcomes, duplicates within and across groups, and a file
that fails inside a group without losing the others (SQLite and PostgreSQL)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from openvrm.documents import importer as importer_mod
from openvrm.documents.importer import ImportOutcome, ImportService, expand_paths
from openvrm.documents.search import DocumentIndex
from openvrm.documents.service import DocumentService
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.documents.parsers.support import EINVOICES

FNFE = EINVOICES / "ZUGFeRDv2" / "correct" / "FNFE-factur-x-examples"
OTHER_SELLER = EINVOICES / "ZUGFeRDv1" / "correct" / "Intarsys" / "ZUGFeRD_1p0_BASIC_Einfach.pdf"
pytestmark = pytest.mark.skipif(not EINVOICES.is_dir(), reason=f"no e-invoice corpus at {EINVOICES}")


def _folder(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for n, src in enumerate(names):
        shutil.copyfile(FNFE / src, folder / f"{n:02d}-{src}")
    return folder


def test_groups_keep_per_file_outcomes_order_and_duplicates(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer_mod, "BATCH_FILES", 3)  # several groups from a few files
    sources = sorted(p.name for p in FNFE.glob("*.pdf"))[:5]
    assert len(sources) == 5
    # the first file again, inside the same group (01) and in a later group (06)
    folder = _folder(tmp_path, [sources[0], sources[0], *sources[1:], sources[0]])
    seen: list[tuple[int, int, str]] = []
    outcomes = ImportService(unlocked).import_paths([folder], progress=lambda d, n, p: seen.append((d, n, p)))
    files = [str(f) for f in expand_paths([folder])]
    assert [o.path for o in outcomes] == files
    assert [s[0] for s in seen] == list(range(1, 8)) and all(s[1] == 7 for s in seen)
    assert [s[2] for s in seen] == files
    assert [o.status for o in outcomes] == ["imported", "duplicate", *["imported"] * 4, "duplicate"]
    first = outcomes[0]
    for dup in (outcomes[1], outcomes[6]):
        assert dup.document_id == first.document_id and dup.vendor_id == first.vendor_id
        assert dup.fields == first.fields and f"document {first.document_id}" in str(dup.reason)
    docs = DocumentService(unlocked)
    assert len(docs.list()) == 5
    for o in outcomes:
        assert o.fields and o.fields.get("invoice_number")
        doc, content = docs.content(str(o.document_id))
        assert content == (folder / Path(o.path).name).read_bytes()
        assert docs.text(doc.id)  # the PDF text was extracted and stored with the row
    assert check_vault(unlocked).ok
    # the same folder again: every file is a duplicate of what the first import stored
    again = ImportService(unlocked).import_paths([folder])
    assert [o.status for o in again] == ["duplicate"] * 7
    assert {o.document_id for o in again} == {o.document_id for o in outcomes}


def test_a_file_failing_its_checks_inside_a_group_loses_no_other(
    unlocked: UnlockedVault, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, ["Facture_FR_BASICWL.pdf", "Facture_UE_BASICWL.pdf"])
    bad = folder / "01-bad\x07name.pdf"  # a control character: no document may carry that file name
    shutil.copyfile(FNFE / "Facture_DOM_BASICWL.pdf", bad)
    outcomes = ImportService(unlocked).import_paths([folder])
    by_path = {Path(o.path).name: o for o in outcomes}
    assert by_path[bad.name].status == "rejected" and "control characters" in str(by_path[bad.name].reason)
    assert by_path[bad.name].document_id is None
    assert [o.status for n, o in by_path.items() if n != bad.name] == ["imported", "imported"]
    assert len(DocumentService(unlocked).list()) == 2
    assert check_vault(unlocked).ok  # checked before anything was written: no blob left behind


def import_with_a_vendor_gone(
    unlocked: UnlockedVault, tmp_path: Path
) -> tuple[ImportService, ImportOutcome, list[ImportOutcome]]:
    """A folder import whose group's transaction fails: the vendor of its first file was deleted while the
    service still held it in its cache, so the row linking to it is refused. The service, the first
    import's outcome, and the folder's outcomes (that file rejected, one of another seller imported)."""
    svc = ImportService(unlocked)
    f = FNFE / "Facture_FR_BASICWL.pdf"
    first = svc.import_bytes(f.read_bytes(), filename=f.name)[0]
    assert first.status == "imported" and first.vendor_id
    VendorService(unlocked).delete(first.vendor_id)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-same-seller.pdf").write_bytes(f.read_bytes() + b"\n% new content, same seller\n")
    shutil.copyfile(OTHER_SELLER, folder / "b-other.pdf")
    outcomes = svc.import_paths([folder])
    assert [o.status for o in outcomes] == ["rejected", "imported"]
    return svc, first, outcomes


def test_a_row_the_store_refuses_is_rejected_alone(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """The group's transaction fails and is rolled back; each file is then written in its own savepoint."""
    _, first, outcomes = import_with_a_vendor_gone(unlocked, tmp_path)
    assert f"no vendor with id {first.vendor_id!r}" in str(outcomes[0].reason)
    assert outcomes[0].document_id is None
    stored = DocumentService(unlocked).get(str(outcomes[1].document_id))
    assert stored.filename == "b-other.pdf"
    assert len(DocumentService(unlocked).list()) == 2


def test_folder_import_is_searchable_by_pdf_text(unlocked: UnlockedVault, tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["Facture_FR_BASICWL.pdf"])
    out = ImportService(unlocked).import_paths([folder])[0]
    text = DocumentService(unlocked).text(str(out.document_id))
    word = max(text.split(), key=len)  # a word of the PDF's text layer, not of the XML fields
    hits = DocumentIndex.build(unlocked).search(word, limit=10)
    assert out.document_id in {h.document.id for h in hits}
