"""The import service on real e-invoices and on bad input: every file gets an outcome, none is lost."""

from __future__ import annotations

import email.message
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from openvrm.config import Settings
from openvrm.documents import importer as importer_mod
from openvrm.documents.importer import ImportOutcome, ImportService
from openvrm.documents.search import DocumentIndex
from openvrm.documents.service import DocumentService
from openvrm.ledger.contracts import ContractService
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendors.service import VendorService
from tests.conftest import PASSPHRASE, fast_kdf
from tests.documents.parsers.support import EINVOICES
from tests.documents.parsers.test_parsers_realdata import CORRECT, FAILING, _id, oracle_values, oracle_xml

FNFE = EINVOICES / "ZUGFeRDv2" / "correct" / "FNFE-factur-x-examples"
needs_corpus = pytest.mark.skipif(not EINVOICES.is_dir(), reason=f"no e-invoice corpus at {EINVOICES}")


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[UnlockedVault, dict[str, ImportOutcome]]]:
    """One vault with the whole corpus imported through the real service (SQLite)."""
    if not EINVOICES.is_dir():
        pytest.skip(f"no e-invoice corpus at {EINVOICES}")
    vault = Vault.open(Settings.resolve(tmp_path_factory.mktemp("corpus")), create=True)
    uv = vault.create(PASSPHRASE, kdf=fast_kdf())
    outcomes = ImportService(uv).import_paths([EINVOICES])
    yield uv, {o.path: o for o in outcomes}
    vault.close()


@needs_corpus
@pytest.mark.parametrize("path", CORRECT, ids=_id)
def test_imported_invoice_matches_its_embedded_xml(
    corpus: tuple[UnlockedVault, dict[str, ImportOutcome]], path: Path
) -> None:
    uv, outcomes = corpus
    outcome = outcomes[str(path)]
    assert outcome.status == "imported", outcome
    xml = oracle_xml(path)
    if xml is None:
        pytest.fail(f"{_id(path)} carries no invoice XML, yet is in a 'correct' folder")
    number, issued, currency, grand = oracle_values(xml)
    doc = DocumentService(uv).get(str(outcome.document_id))
    assert doc.fields["invoice_number"] == number
    assert doc.fields["issue_date"] == issued.isoformat()
    assert doc.fields["currency"] == currency
    assert Decimal(doc.fields["gross_total"]) == grand
    assert doc.vendor_id is not None  # linked to (or created from) the seller
    # and the JSON outcome says the same, as decimal strings
    j = outcome.to_json()
    assert (j["invoice_number"], j["issue_date"], j["currency"]) == (number, issued.isoformat(), currency)
    assert Decimal(j["grand_total"]) == grand


@needs_corpus
@pytest.mark.parametrize("path", FAILING, ids=_id)
def test_broken_file_is_kept_with_an_outcome(
    corpus: tuple[UnlockedVault, dict[str, ImportOutcome]], path: Path
) -> None:
    uv, outcomes = corpus
    outcome = outcomes[str(path)]
    assert outcome.status in ("imported", "unparsed", "duplicate")
    if outcome.status == "unparsed":
        assert outcome.reason
    doc_id = outcome.document_id
    assert doc_id is not None
    _, data = DocumentService(uv).content(doc_id)
    assert data == path.read_bytes()  # the original bytes are kept, sealed


@needs_corpus
def test_corpus_vault_is_intact_and_searchable(
    corpus: tuple[UnlockedVault, dict[str, ImportOutcome]],
) -> None:
    uv, outcomes = corpus
    assert check_vault(uv).ok
    index = DocumentIndex.build(uv)
    some = next(o for o in outcomes.values() if o.fields and o.fields.get("invoice_number"))
    hits = index.search(str(some.fields["invoice_number"]))  # type: ignore[index]
    assert some.document_id in [h.document.id for h in hits]
    # Sellers were deduplicated into vendors: fewer vendors than invoices.
    assert 0 < len(VendorService(uv).list()) < len(outcomes)


@needs_corpus
def test_same_file_twice_is_a_duplicate(unlocked: UnlockedVault) -> None:
    f = FNFE / "Facture_FR_BASICWL.pdf"
    svc = ImportService(unlocked)
    first = svc.import_bytes(f.read_bytes(), filename=f.name)
    second = svc.import_bytes(f.read_bytes(), filename="renamed.pdf")
    assert [o.status for o in first] == ["imported"]
    assert second[0].status == "duplicate" and second[0].document_id == first[0].document_id
    assert len(DocumentService(unlocked).list()) == 1


@needs_corpus
def test_bill_links_to_the_existing_vendor_by_vat_and_to_its_contract(unlocked: UnlockedVault) -> None:
    f = FNFE / "Facture_FR_BASICWL.pdf"
    probe = ImportService(unlocked, create_vendors=False).import_bytes(f.read_bytes(), filename=f.name)[0]
    vat = probe.fields and probe.fields.get("seller_vat_id")
    assert vat, "the sample carries a seller VAT id"
    vendor = VendorService(unlocked).add("My Supplier", vat_ids=[str(vat)])
    contract = ContractService(unlocked).add(vendor.id, plan="Supply", price="100", start="2015-01-01")
    variant = f.read_bytes() + b"\n% a trailing comment makes new content\n"
    out = ImportService(unlocked).import_bytes(variant, filename="again.pdf")[0]
    assert out.status == "imported"
    assert out.vendor_id == vendor.id
    assert out.contract_id == contract.id


def test_bad_inputs_each_get_a_clear_outcome(
    unlocked: UnlockedVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = ImportService(unlocked)
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<rsm:CrossIndustryInvoice xmlns:rsm='urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100'>"
        b"&x;</rsm:CrossIndustryInvoice>"
    )
    cases = {
        "garbage.pdf": b"%PDF-1.7\n" + bytes(range(256)) * 20,
        "empty.pdf": b"",
        "xxe.xml": xxe,
        "random.bin": bytes(range(256)) * 4,
    }
    if EINVOICES.is_dir():
        real = (FNFE / "Facture_FR_BASICWL.pdf").read_bytes()
        cases["truncated.pdf"] = real[: len(real) // 2]
    for name, data in cases.items():
        outcomes = svc.import_bytes(data, filename=name)
        assert len(outcomes) == 1, name
        o = outcomes[0]
        assert o.status in ("imported", "unparsed"), (name, o)
        if o.status == "unparsed":
            assert o.reason, name
        assert o.document_id is not None
    texts = " ".join(DocumentService(unlocked).texts().values())
    assert "root:" not in texts  # the external entity was never resolved
    monkeypatch.setattr(importer_mod, "MAX_FILE_BYTES", 1000)
    big = svc.import_bytes(b"x" * 1001, filename="big.txt")
    assert big[0].status == "rejected" and "limit" in str(big[0].reason)
    assert check_vault(unlocked).ok


@needs_corpus
def test_email_with_an_invoice_attachment(unlocked: UnlockedVault) -> None:
    pdf = (FNFE / "Facture_FR_BASICWL.pdf").read_bytes()
    msg = email.message.EmailMessage()
    msg["From"] = "Factures <factures@au-bon-moulin.example>"
    msg["To"] = "me@example.org"
    msg["Subject"] = "Votre facture de mars"
    msg["Date"] = "Tue, 04 Mar 2025 10:00:00 +0100"
    msg.set_content("Bonjour, veuillez trouver votre facture ci-jointe.")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="facture.pdf")
    outcomes = ImportService(unlocked).import_bytes(msg.as_bytes(), filename="mail.eml")
    assert [o.status for o in outcomes] == ["imported", "imported"]
    mail, invoice = outcomes
    assert mail.format == "email" and invoice.parent == mail.document_id
    assert invoice.fields and invoice.fields.get("invoice_number")
    doc = DocumentService(unlocked).get(str(mail.document_id))
    assert doc.fields["email_subject"] == "Votre facture de mars"
    assert doc.fields["email_date"].startswith("2025-03-04")


def test_no_parsed_value_in_clear_in_the_store(unlocked: UnlockedVault) -> None:
    if not EINVOICES.is_dir():
        pytest.skip("no corpus")
    f = FNFE / "Facture_FR_BASICWL.pdf"
    o = ImportService(unlocked).import_bytes(f.read_bytes(), filename=f.name)[0]
    assert o.fields
    settings = unlocked.vault.settings
    if not settings.is_sqlite:
        pytest.skip("the raw-file scan is the SQLite half; tests/vault covers PostgreSQL rows")
    raw = b"".join(p.read_bytes() for p in Path(settings.home).rglob("*") if p.is_file())
    for value in (o.fields["invoice_number"], o.fields["seller"]):
        assert str(value).encode() not in raw


def test_upcoming_shows_a_warranty_end(unlocked: UnlockedVault) -> None:
    from openvrm.ledger.upcoming import upcoming

    d = DocumentService(unlocked).add(b"receipt for a washing machine", filename="receipt.txt").document
    DocumentService(unlocked).edit(d.id, warranty_until="2026-03-01")
    events = upcoming(unlocked, today=date(2026, 1, 15), days=60)
    assert [(e.kind, e.document_id) for e in events] == [("warranty-end", d.id)]


def test_search_index_is_cached_per_unlock_and_follows_changes(unlocked: UnlockedVault) -> None:
    svc = DocumentService(unlocked)
    svc.add(b"first receipt about a kettle", filename="kettle.txt", text="electric kettle receipt")
    first = DocumentIndex.for_vault(unlocked)
    assert DocumentIndex.for_vault(unlocked) is first  # nothing changed: the same index
    assert [h.document.filename for h in first.search("kettle")] == ["kettle.txt"]
    svc.add(b"second receipt about a toaster", filename="toaster.txt", text="toaster receipt")
    second = DocumentIndex.for_vault(unlocked)
    assert second is not first
    assert [h.document.filename for h in second.search("toaster")] == ["toaster.txt"]
    unlocked.lock()
    assert unlocked.caches == {}  # the index goes with the key
