"""Round trips through an archive, on both backends, plain and encrypted; skips; all-or-nothing writes."""

from __future__ import annotations

import email.message
import io
import json
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from openvrm.errors import Conflict, InvalidValue, VaultLocked
from openvrm.exchange import (
    ExportSummary,
    ImportLimits,
    ImportSummary,
    export_vault,
    import_archive,
    is_encrypted,
    manifest_schema,
)
from openvrm.exchange import importer as importer_module
from openvrm.exchange.format import validate_manifest
from openvrm.ledger.contracts import ContractService
from openvrm.profile.service import ProfileService
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

from .support import dump, new_vault, populate, view

ARCHIVE_PASSPHRASE = "archive passphrase 42"


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_round_trip_from_each_backend(unlocked: UnlockedVault, tmp_path: Path, encrypted: bool) -> None:
    populate(unlocked)
    archive = tmp_path / "out" / "vault.zip"
    archive.parent.mkdir()
    passphrase = ARCHIVE_PASSPHRASE if encrypted else None
    summary = export_vault(unlocked, archive, passphrase=passphrase)
    assert isinstance(summary, ExportSummary)
    assert summary.encrypted is encrypted and is_encrypted(archive) is encrypted
    assert summary.counts == {
        "profile_changes": 6,
        "vendors": 2,
        "relationships": 2,
        "contracts": 1,
        "documents": 4,
        "payments": 2,
        "shares": 2,
        "inbox": 1,
        "files": 3,
    }
    assert summary.bytes == archive.stat().st_size
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert [p.name for p in archive.parent.iterdir()] == ["vault.zip"]  # no temporary file left behind

    target = new_vault(tmp_path / "target")
    try:
        result = import_archive(target, archive, passphrase=passphrase)
        assert isinstance(result, ImportSummary)
        assert result.encrypted is encrypted
        assert result.source_vault_id == unlocked.vault_id
        assert result.added_total == 20 and result.skipped_total == 0
        assert result.files_added == 3
        assert view(target) == view(unlocked)
        assert check_vault(target).ok
        json.dumps(result.to_json())
        json.dumps(summary.to_json())
    finally:
        target.vault.close()


def test_round_trip_into_each_backend(unlocked: UnlockedVault, tmp_path: Path) -> None:
    source = new_vault(tmp_path / "source")
    try:
        populate(source)
        export_vault(source, tmp_path / "a.zip")
        before = view(unlocked)
        assert all(not rows for rows in before.values())
        import_archive(unlocked, tmp_path / "a.zip")
        assert view(unlocked) == view(source)
        assert check_vault(unlocked).ok
    finally:
        source.vault.close()


def test_manifest_is_what_the_format_says(unlocked: UnlockedVault, tmp_path: Path) -> None:
    ids = populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = sorted(zf.namelist())
        bill = next(d for d in manifest["documents"] if d["id"] == ids["bill"])
        assert zf.read(bill["file"]) == b"%PDF-1.4 bill "
    validate_manifest(manifest)
    assert manifest["format"] == "openvrm-export" and manifest["format_version"] == 1
    assert manifest["generator"].startswith("openvrm ")
    assert manifest["vault_id"] == unlocked.vault_id
    assert names == sorted(["manifest.json", *{d["file"] for d in manifest["documents"]}])
    assert bill["relationship_id"] == ids["rel"] and bill["kind"] == "invoice" and bill["size"] == 14
    assert [c["field"] for c in manifest["profile_changes"]][-1] == "free.note"
    assert manifest["profile_changes"][-1]["action"] == "unset"
    assert manifest_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # The ledger and what the import service read travel too.
    shop = next(v for v in manifest["vendors"] if v["id"] == ids["shop"])
    assert shop["vat_ids"] == ["FR40303265045"]
    assert next(r for r in manifest["relationships"] if r["id"] == ids["rel"])["folder"] == "home/shops"
    [contract] = manifest["contracts"]
    assert contract["id"] == ids["contract"] and contract["vendor_id"] == ids["shop"]
    assert contract["relationship_id"] == ids["rel"] and contract["category"] == "streaming"
    assert (contract["price"], contract["currency"], contract["start"]) == ("9.99", "EUR", "2024-01-15")
    assert contract["price_history"] == [{"effective": "2025-01-15", "price": "11.49", "currency": "EUR"}]
    invoice = next(d for d in manifest["documents"] if d["id"] == ids["invoice"])
    assert invoice["contract_id"] == ids["contract"] and invoice["warranty_until"] == "2026-01-15"
    assert invoice["fields"]["gross_total"] == "9.99" and invoice["parse_status"] == "partial"
    assert invoice["text"].startswith("Invoice 42\n")
    assert bill["text"] == "" and bill["fields"] == {} and bill["format"] is None and bill["notes"] == ""
    scheduled, by_bill = manifest["payments"]
    assert scheduled["id"] == ids["payment"] and scheduled["due_date"] == "2024-01-15"
    assert scheduled["amount"] == "9.99" and scheduled["document_id"] is None
    assert by_bill["document_id"] == ids["invoice"] and by_bill["contract_id"] == ids["contract"]
    assert list(manifest)[-8:] == [
        "profile_changes",
        "vendors",
        "relationships",
        "contracts",
        "documents",
        "payments",
        "shares",
        "inbox",
    ]


def test_export_never_overwrites_unless_asked(unlocked: UnlockedVault, tmp_path: Path) -> None:
    dest = tmp_path / "a.zip"
    dest.write_bytes(b"precious")
    with pytest.raises(Conflict, match="already exists"):
        export_vault(unlocked, dest)
    assert dest.read_bytes() == b"precious"
    export_vault(unlocked, dest, overwrite=True)
    assert zipfile.is_zipfile(dest)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(InvalidValue, match="folder"):
        export_vault(unlocked, tmp_path)
    with pytest.raises(InvalidValue, match="at least"):
        export_vault(unlocked, tmp_path / "b.zip", passphrase="short")


def test_import_skips_records_that_already_exist(unlocked: UnlockedVault, tmp_path: Path) -> None:
    source = new_vault(tmp_path / "source")
    try:
        populate(source)
        export_vault(source, tmp_path / "first.zip")
        import_archive(unlocked, tmp_path / "first.zip")
        # The source moves on: new records, and the target gets one of its own.
        ProfileService(source).set("email.work", "ada@work.example")
        VendorService(source).add("Another Vendor")
        ProfileService(unlocked).set("given-name", "Ada")
        export_vault(source, tmp_path / "second.zip")
        result = import_archive(unlocked, tmp_path / "second.zip")
        assert result.added == {
            "profile_changes": 1,
            "vendors": 1,
            "relationships": 0,
            "contracts": 0,
            "documents": 0,
            "payments": 0,
            "shares": 0,
            "inbox": 0,
        }
        assert result.skipped == {
            "profile_changes": 6,
            "vendors": 2,
            "relationships": 2,
            "contracts": 1,
            "documents": 4,
            "payments": 2,
            "shares": 2,
            "inbox": 1,
        }
        assert result.skipped_total == 20 and result.files_added == 0
        assert result.to_json()["skipped_total"] == 20
        mine = view(unlocked)
        theirs = view(source)
        assert mine["vendors"] == theirs["vendors"]
        assert len(mine["profile_changes"]) == len(theirs["profile_changes"]) + 1
        # Importing again changes nothing at all.
        before = dump(unlocked.vault)
        again = import_archive(unlocked, tmp_path / "second.zip")
        assert again.added_total == 0 and again.skipped_total == 22
        assert dump(unlocked.vault) == before
    finally:
        source.vault.close()


def test_import_of_own_export_changes_nothing(unlocked: UnlockedVault, tmp_path: Path) -> None:
    populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    before = dump(unlocked.vault)
    result = import_archive(unlocked, tmp_path / "a.zip")
    assert result.added_total == 0 and result.skipped_total == 20
    assert dump(unlocked.vault) == before


def test_failed_write_removes_the_files_it_added(
    unlocked: UnlockedVault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = new_vault(tmp_path / "source")
    try:
        populate(source)
        export_vault(source, tmp_path / "a.zip")
    finally:
        source.vault.close()
    ProfileService(unlocked).set("email", "me@example.org")
    before = dump(unlocked.vault)

    def broken(public_key: bytes, plaintext: bytes) -> bytes:  # inbox rows come last: everything else is in
        raise RuntimeError("disk full")

    monkeypatch.setattr(importer_module, "seal_to", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        import_archive(unlocked, tmp_path / "a.zip")
    assert dump(unlocked.vault) == before


def test_progress_reports_every_stage(unlocked: UnlockedVault, tmp_path: Path) -> None:
    populate(unlocked)
    seen: list[tuple[str, int, int]] = []
    export_vault(unlocked, tmp_path / "a.zip", progress=lambda *a: seen.append(a))
    assert {s for s, _, _ in seen} == {"records", "files"}
    assert ("records", 20, 20) in seen and ("files", 3, 3) in seen
    target = new_vault(tmp_path / "t")
    try:
        seen.clear()
        import_archive(target, tmp_path / "a.zip", progress=lambda *a: seen.append(a))
        assert {s for s, _, _ in seen} == {"verify", "files", "records"}
        assert ("verify", 3, 3) in seen and ("files", 3, 3) in seen and ("records", 20, 20) in seen
        assert all(0 <= done <= total for _, done, total in seen)
    finally:
        target.vault.close()


def test_locked_vault_cannot_export_or_import(unlocked: UnlockedVault, tmp_path: Path) -> None:
    export_vault(unlocked, tmp_path / "a.zip")
    unlocked.lock()
    with pytest.raises(VaultLocked):
        export_vault(unlocked, tmp_path / "b.zip")
    with pytest.raises(VaultLocked):
        import_archive(unlocked, tmp_path / "a.zip")


def test_a_directory_entry_for_files_is_accepted(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Archives repacked with common zip tools carry a files/ folder entry; that is fine."""
    populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(tmp_path / "a.zip") as src, zipfile.ZipFile(buf, "w") as dst:
        dst.writestr(zipfile.ZipInfo("files/"), b"")
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    (tmp_path / "b.zip").write_bytes(buf.getvalue())
    target = new_vault(tmp_path / "t")
    try:
        assert import_archive(target, tmp_path / "b.zip").added_total == 20
    finally:
        target.vault.close()


def test_export_while_another_thread_writes(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """The export reads one snapshot: every relationship it holds has its vendor, even mid-write."""
    populate(unlocked)
    vendors = VendorService(unlocked)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set() or i < 10:
                vendors.relate(vendors.add(f"Vendor {i}").id, notes=str(i))
                i += 1
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        summary = export_vault(unlocked, tmp_path / "live.zip")
    finally:
        stop.set()
        thread.join()
    assert not errors
    target = new_vault(tmp_path / "t")
    try:
        result = import_archive(target, tmp_path / "live.zip")
        assert result.added["relationships"] == summary.counts["relationships"]
        assert check_vault(target).ok
    finally:
        target.vault.close()


def test_an_archive_just_within_the_limits_imports(unlocked: UnlockedVault, tmp_path: Path) -> None:
    populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        total = sum(i.file_size for i in zf.infolist())
        count = len(zf.infolist())
    target = new_vault(tmp_path / "t")
    try:
        limits = ImportLimits(max_total_bytes=total, max_entries=count)
        assert import_archive(target, tmp_path / "a.zip", limits=limits).added_total == 20
    finally:
        target.vault.close()


EINVOICES = Path(__file__).resolve().parents[3] / "shared" / "data" / "einvoices"


@pytest.mark.skipif(not EINVOICES.is_dir(), reason=f"no e-invoice corpus at {EINVOICES}")
def test_real_invoices_through_the_import_service_round_trip(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """What the parsers really write (fields, line items, text, formats, reasons) imports unchanged."""
    importer = pytest.importorskip("openvrm.documents.importer")
    source = new_vault(tmp_path / "source")
    try:
        service = importer.ImportService(source)
        outcomes = service.import_paths([EINVOICES])
        mail = email.message.EmailMessage()
        mail["From"] = "Billing <billing@shop.example>"
        mail["Subject"] = "Your invoice"
        mail["Date"] = "Mon, 15 Jan 2024 10:00:00 +0100"
        mail.set_content("Please find your invoice attached.")
        first = sorted(EINVOICES.rglob("*.pdf"))[0]
        mail.add_attachment(
            first.read_bytes() + b"%", maintype="application", subtype="pdf", filename="a.pdf"
        )
        outcomes += service.import_bytes(mail.as_bytes(), filename="invoice.eml")
        outcomes += service.import_bytes(b"\x00\x01 not a known file", filename="junk.bin")
        assert {o.status for o in outcomes} >= {"imported", "unparsed"}
        ContractService(source).add(
            VendorService(source).list()[0].id, plan="Hosting", price="20", start="2024-01-01"
        )
        export_vault(source, tmp_path / "a.zip")
        with zipfile.ZipFile(tmp_path / "a.zip") as zf:
            manifest = json.loads(zf.read("manifest.json"))
        documents = manifest["documents"]
        assert sum(bool(d["fields"].get("line_items")) for d in documents) > 10
        assert sum(bool(d["text"]) for d in documents) > 10
        assert {d["parse_status"] for d in documents} >= {"parsed", "unparsed"}
        result = import_archive(unlocked, tmp_path / "a.zip")
        assert result.added["documents"] == len(documents) and result.skipped_total == 0
        assert view(unlocked) == view(source)
        assert check_vault(unlocked).ok
    finally:
        source.vault.close()
