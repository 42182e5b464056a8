from __future__ import annotations

from openvrm.documents.service import DocumentService
from openvrm.profile.service import ProfileService
from openvrm.storage.models import ProfileChange, Vendor
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService


def test_intact_vault_passes(unlocked: UnlockedVault) -> None:
    ProfileService(unlocked).set("email", "a@example.org")
    DocumentService(unlocked).add(b"%PDF-1.4 bill", filename="bill.pdf")
    report = check_vault(unlocked)
    assert report.ok and report.records == 2 and report.blobs == 1
    assert report.problems == []


def test_check_reports_every_problem_without_stopping(unlocked: UnlockedVault) -> None:
    vendors = VendorService(unlocked)
    a, b = vendors.add("A"), vendors.add("B")
    ProfileService(unlocked).set("email", "a@example.org")
    docs = DocumentService(unlocked)
    d1 = docs.add(b"first file", filename="1.txt").document
    d2 = docs.add(b"second file", filename="2.txt").document
    with unlocked.db.write() as s:
        # damage two records of different tables
        va = s.get(Vendor, a.id)
        assert va is not None
        va.sealed = va.sealed[:-1] + bytes([va.sealed[-1] ^ 1])
        pc = s.get(ProfileChange, ProfileService(unlocked).changes()[0].id)
        assert pc is not None
        pc.sealed = b"garbage"
    blobs = unlocked.vault.blobs
    sealed = bytearray(blobs.get(d1.blob_address))
    sealed[20] ^= 0xFF
    blobs.delete(d1.blob_address)
    blobs.put(d1.blob_address, bytes(sealed))
    blobs.delete(d2.blob_address)  # a document whose file is missing
    report = check_vault(unlocked)
    assert not report.ok
    found = {(p.where, p.id) for p in report.problems}
    assert ("vendors", a.id) in found
    assert ("vendors", b.id) not in found
    assert ("profile_changes", pc.id) in found
    assert ("blobs", d1.blob_address) in found
    assert ("documents", d2.id) in found
    assert len([p for p in report.problems if p.severity == "damage"]) == 4


def test_orphan_blob_is_a_notice_not_damage(unlocked: UnlockedVault) -> None:
    unlocked.put_file(b"left behind by an interrupted import")
    report = check_vault(unlocked)
    assert report.ok
    assert [p.severity for p in report.problems] == ["notice"]
