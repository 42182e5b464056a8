"""Round trips through an archive, on both backends, plain and encrypted; skips; all-or-nothing writes."""

from __future__ import annotations

import base64
import email.message
import io
import json
import stat
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from openvrm.agent.service import AgentService
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
from openvrm.intents.service import IntentService
from openvrm.ledger.contracts import ContractService
from openvrm.mail.keys import MailKeys
from openvrm.mail.routing import Alias, Routes
from openvrm.mail.service import MailService
from openvrm.moves.service import MoveService
from openvrm.outbox.service import Outbox
from openvrm.outbox.settings import clean_mail_settings, load_mail_settings, save_mail_settings
from openvrm.profile.service import ProfileService
from openvrm.records import insert
from openvrm.rights.service import RightsService
from openvrm.storage.models import Move, SealedSetting
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

from .support import dump, new_vault, populate, rewrite, view, without_outbox

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
        "profile_changes": 7,
        "vendors": 2,
        "relationships": 2,
        "contracts": 1,
        "documents": 5,
        "payments": 2,
        "shares": 2,
        "rights_requests": 2,
        "moves": 1,
        "connections": 1,
        "connection_events": 7,
        "grants": 2,
        "intents": 2,
        "intent_offers": 2,
        "mail_gateway": 1,
        "mail_aliases": 2,
        "mail_reverse_aliases": 1,
        "mail_messages": 2,
        "settings": 1,
        "inbox": 1,
        "files": 6,
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
        assert result.added_total == 46 and result.skipped_total == 0
        assert result.files_added == 6
        assert view(target) == without_outbox(view(unlocked))
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
        assert view(unlocked) == without_outbox(view(source))
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
    kept = {d["file"] for d in (*manifest["documents"], *manifest["mail_messages"]) if d["file"]}
    assert names == sorted(["manifest.json", *kept])
    assert bill["relationship_id"] == ids["rel"] and bill["kind"] == "invoice" and bill["size"] == 14
    assert [c["field"] for c in manifest["profile_changes"]][-2:] == ["free.note", "email"]
    assert manifest["profile_changes"][-2]["action"] == "unset"
    assert manifest["profile_changes"][-1]["source"] == "move"
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
    assert list(manifest)[-20:] == [
        "profile_changes",
        "vendors",
        "relationships",
        "contracts",
        "documents",
        "payments",
        "shares",
        "rights_requests",
        "moves",
        "connections",
        "connection_events",
        "grants",
        "intents",
        "intent_offers",
        "mail_gateway",
        "mail_aliases",
        "mail_reverse_aliases",
        "mail_messages",
        "settings",
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
            "rights_requests": 0,
            "moves": 0,
            "connections": 0,
            "connection_events": 0,
            "grants": 0,
            "intents": 0,
            "intent_offers": 0,
            "mail_gateway": 0,
            "mail_aliases": 0,
            "mail_reverse_aliases": 0,
            "mail_messages": 0,
            "settings": 0,
            "inbox": 0,
        }
        assert result.skipped == {
            "profile_changes": 7,
            "vendors": 2,
            "relationships": 2,
            "contracts": 1,
            "documents": 5,
            "payments": 2,
            "shares": 2,
            "rights_requests": 2,
            "moves": 1,
            "connections": 1,
            "connection_events": 7,
            "grants": 2,
            "intents": 2,
            "intent_offers": 2,
            "mail_gateway": 1,
            "mail_aliases": 2,
            "mail_reverse_aliases": 1,
            "mail_messages": 2,
            "settings": 1,
            "inbox": 1,
        }
        assert result.skipped_total == 46 and result.files_added == 0
        assert result.to_json()["skipped_total"] == 46
        mine = view(unlocked)
        theirs = view(source)
        assert mine["vendors"] == theirs["vendors"]
        assert len(mine["profile_changes"]) == len(theirs["profile_changes"]) + 1
        # Importing again changes nothing at all.
        before = dump(unlocked.vault)
        again = import_archive(unlocked, tmp_path / "second.zip")
        assert again.added_total == 0 and again.skipped_total == 48
        assert dump(unlocked.vault) == before
    finally:
        source.vault.close()


def test_import_of_own_export_changes_nothing(unlocked: UnlockedVault, tmp_path: Path) -> None:
    populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    before = dump(unlocked.vault)
    result = import_archive(unlocked, tmp_path / "a.zip")
    assert result.added_total == 0 and result.skipped_total == 46
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
    assert ("records", 46, 46) in seen and ("files", 6, 6) in seen
    target = new_vault(tmp_path / "t")
    try:
        seen.clear()
        import_archive(target, tmp_path / "a.zip", progress=lambda *a: seen.append(a))
        assert {s for s, _, _ in seen} == {"verify", "files", "records"}
        assert ("verify", 6, 6) in seen and ("files", 6, 6) in seen and ("records", 46, 46) in seen
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
        assert import_archive(target, tmp_path / "b.zip").added_total == 46
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
        assert import_archive(target, tmp_path / "a.zip", limits=limits).added_total == 46
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


def test_rights_requests_moves_and_settings_travel(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """The person's requests, moves and mail server are carried; the outbox is not."""
    ids = populate(unlocked)
    vendors = VendorService(unlocked)
    gone = vendors.add("Gone Corp")
    with unlocked.db.write() as s:  # a move that told a vendor since deleted
        insert(
            unlocked,
            s,
            Move,
            {
                "field": "phone",
                "old": "+33123456789",
                "new": "+493012345678",
                "on": "2025-06-01",
                "notices": [
                    {
                        "vendor_id": gone.id,
                        "vendor_name": "Gone Corp",
                        "channel": "post",
                        "status": "sent",
                        "to": "1 Gone Street, Paris",
                        "customer_number": None,
                        "language": "fr",
                        "reasons": ["customer"],
                        "missing": None,
                        "outbox_id": None,
                        "last_error": None,
                    }
                ],
            },
        )
    vendors.delete(gone.id)
    # The move's e-mail to the shop was cancelled in the outbox: the move reads "failed" for it.
    move = MoveService(unlocked).get(ids["move"])
    Outbox(unlocked).cancel(move.notices[0].outbox_id or "")
    assert MoveService(unlocked).get(ids["move"]).notices[0].status == "failed"
    export_vault(unlocked, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert "outbox" not in manifest and "outbox_messages" not in manifest
    [setting] = manifest["settings"]
    assert setting["id"] == "smtp" and setting["value"]["password"] == "smtp secret"  # plaintext, by design
    request = next(r for r in manifest["rights_requests"] if r["id"] == ids["request"])
    assert request["vendor_id"] == ids["shop"] and request["status"] == "answered" and request["extended"]
    assert request["documents"] == [ids["answer"]] and request["outbox_id"] is not None
    assert [e["event"] for e in request["events"]] == ["created", "sent", "extended", "answered"]
    assert request["events"][-1]["documents"] == [ids["answer"]] and request["events"][0]["documents"] is None
    shop_move, gone_move = sorted(manifest["moves"], key=lambda m: m["field"])
    assert shop_move["notices"][0]["status"] == "failed"  # as the move reads it, from the outbox
    assert (
        gone_move["notices"][0]["vendor_id"] is None and gone_move["notices"][0]["vendor_name"] == "Gone Corp"
    )

    target = new_vault(tmp_path / "t")
    try:
        result = import_archive(target, tmp_path / "a.zip")
        assert result.added["rights_requests"] == 2 and result.added["moves"] == 2
        assert result.added["settings"] == 1
        assert Outbox(target).list() == []  # pending messages are not carried over
        assert load_mail_settings(target) == load_mail_settings(unlocked)
        rights = RightsService(target)
        got = rights.get(ids["request"])
        assert got.outbox_id is None and got.stored_status == "answered" and got.extended
        assert got.to_json() == RightsService(unlocked).get(ids["request"]).to_json() | {"outbox_id": None}
        assert rights.letter(ids["request"]).body == RightsService(unlocked).letter(ids["request"]).body
        moves = {m.field: m for m in MoveService(target).list()}
        assert moves["email"].notices[0].status == "failed" and moves["email"].notices[0].outbox_id is None
        assert moves["phone"].to_json()["notices"][0]["vendor_id"] is None  # the vendor was deleted
        assert check_vault(target).ok
        # The target's own mail server is never replaced by an archive's.
        again = new_vault(tmp_path / "t2")
        try:
            save_mail_settings(again, clean_mail_settings(host="mine.example", from_addr="me@mine.example"))
            assert import_archive(again, tmp_path / "a.zip").skipped["settings"] == 1
            assert load_mail_settings(again).host == "mine.example"
        finally:
            again.vault.close()
    finally:
        target.vault.close()


def test_a_setting_the_format_does_not_know_stops_the_export(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Rather than an archive that silently lacks part of the vault, no archive at all."""
    with unlocked.db.write() as s:
        insert(unlocked, s, SealedSetting, {"server": "imap.example.org"}, record_id="imap")
    with pytest.raises(InvalidValue, match="setting 'imap'.*does not know"):
        export_vault(unlocked, tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_connections_ledgers_and_grants_travel(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Connections, their signed ledgers, grants and the person's pairwise keys come back exactly."""
    ids = populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    [connection] = manifest["connections"]
    assert connection["id"] == ids["connection"] and connection["vendor_id"] == ids["shop"]
    assert len(base64.b64decode(connection["person_seed"])) == 32  # a private key, in the clear by design
    assert [e["position"] for e in manifest["connection_events"]] == list(range(1, 8))
    assert all("blob" not in e["note"].get("attachment", {}) for e in manifest["connection_events"])
    revoked, active = sorted(manifest["grants"], key=lambda g: g["revoked_at"] is None)
    assert revoked["vendor_box"] is None and active["vendor_box"] is not None
    target = new_vault(tmp_path / "t")
    try:
        result = import_archive(target, tmp_path / "a.zip")
        assert (result.added["connections"], result.added["connection_events"], result.added["grants"]) == (
            1,
            7,
            2,
        )
        mine, theirs = view(target), view(unlocked)
        for kind in ("connections", "connection_events", "grants"):
            assert mine[kind] == theirs[kind]
        agent = AgentService(target)
        assert all(report.ok for report in agent.verify())
        assert agent.import_received() == 1  # the receipt's file was stored again from its event
        assert check_vault(target).ok
        again = import_archive(target, tmp_path / "a.zip")
        assert again.added_total == 0 and again.skipped["connection_events"] == 7
    finally:
        target.vault.close()


def test_an_archive_without_connections_still_imports(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Archives written before connections existed lack the three kinds and their counts: none."""
    source = new_vault(tmp_path / "source")
    try:
        populate(source)
        export_vault(source, tmp_path / "a.zip")
    finally:
        source.vault.close()

    def old(m: dict[str, Any]) -> None:
        for kind in ("connections", "connection_events", "grants"):
            del m[kind], m["counts"][kind]

    (tmp_path / "old.zip").write_bytes(rewrite((tmp_path / "a.zip").read_bytes(), manifest=old))
    result = import_archive(unlocked, tmp_path / "old.zip")
    assert result.added_total == 36 and result.added["connections"] == 0
    assert view(unlocked)["connections"] == [] and check_vault(unlocked).ok


def test_intents_and_offers_travel(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Intents, their private keys, signed records and offers come back exactly, and still work."""
    ids = populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    draft = next(i for i in manifest["intents"] if i["id"] == ids["draft_intent"])
    published = next(i for i in manifest["intents"] if i["id"] == ids["published_intent"])
    assert draft["state"] == "draft" and draft["published"] is None and draft["expires_at"] is None
    assert published["state"] == "published" and published["published"]["author"] == published["author"]
    assert len(base64.b64decode(published["seed"])) == 32  # a private key, in the clear by design
    assert sorted(o["id"] for o in manifest["intent_offers"]) == sorted(ids["offers"].split(","))
    assert all(o["intent_id"] == ids["published_intent"] for o in manifest["intent_offers"])
    target = new_vault(tmp_path / "t")
    try:
        result = import_archive(target, tmp_path / "a.zip")
        assert (result.added["intents"], result.added["intent_offers"]) == (2, 2)
        mine, theirs = view(target), view(unlocked)
        for kind in ("intents", "intent_offers"):
            assert mine[kind] == theirs[kind]
        service = IntentService(target)
        assert [o.state for o in service.offers(ids["published_intent"])] == ["open", "open"]
        assert len(service.compare(ids["published_intent"]).offers) == 2
        assert service.get(ids["draft_intent"]).editable
        again = import_archive(target, tmp_path / "a.zip")
        assert (
            again.added_total == 0 and again.skipped["intents"] == 2 and again.skipped["intent_offers"] == 2
        )
    finally:
        target.vault.close()


def test_an_archive_without_intents_still_imports(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Archives written before intentcasting lack intents and intent_offers and their counts: none."""
    source = new_vault(tmp_path / "source")
    try:
        populate(source)
        export_vault(source, tmp_path / "a.zip")
    finally:
        source.vault.close()

    def old(m: dict[str, Any]) -> None:
        for kind in ("intents", "intent_offers"):
            del m[kind], m["counts"][kind]

    (tmp_path / "old.zip").write_bytes(rewrite((tmp_path / "a.zip").read_bytes(), manifest=old))
    result = import_archive(unlocked, tmp_path / "old.zip")
    assert result.added_total == 42 and result.added["intents"] == result.added["intent_offers"] == 0
    seen = view(unlocked)
    assert seen["intents"] == seen["intent_offers"] == [] and check_vault(unlocked).ok


def test_the_relationship_mailbox_travels(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Gateway settings, aliases, reverse aliases and filed messages come back under the new vault's keys."""
    ids = populate(unlocked)
    export_vault(unlocked, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        [gateway] = manifest["mail_gateway"]
        assert gateway["id"] == "config" and gateway["value"]["downstream"]["password"] == "smtp secret"
        assert not any("lookup" in a or "pair" in a for a in manifest["mail_aliases"])
        assert {a["address"] for a in manifest["mail_aliases"]} == {
            ids["alias_address"],
            ids["other_alias_address"],
        }
        [reverse] = manifest["mail_reverse_aliases"]
        assert reverse["alias_id"] == ids["alias"] and reverse["contact"] == "support@shop.example"
        received = next(m for m in manifest["mail_messages"] if m["id"] == ids["received"])
        assert "blob" not in received and zf.read(received["file"]).startswith(b"From: Shop News")
    raws = {m.id: MailService(unlocked).raw(m.id) for m in MailService(unlocked).messages()}
    assert len(raws) == 2
    target = new_vault(tmp_path / "t")
    try:
        result = import_archive(target, tmp_path / "a.zip")
        added = [result.added[k] for k in ("mail_gateway", "mail_aliases", "mail_reverse_aliases")]
        assert added == [1, 2, 1] and result.added["mail_messages"] == 2
        mine, theirs = view(target), view(unlocked)
        for kind in ("mail_gateway", "mail_aliases", "mail_reverse_aliases", "mail_messages"):
            assert mine[kind] == theirs[kind]
        # The lookups are the new vault's own keyed hashes: the gateway finds every address again.
        routes = Routes(target.db, MailKeys.from_vault(target))
        found = routes.find(ids["alias_address"].upper())
        assert isinstance(found, Alias) and found.id == ids["alias"] and found.vendor_id == ids["shop"]
        words = routes.find(ids["other_alias_address"])
        assert isinstance(words, Alias) and words.id == ids["other_alias"]
        rev = routes.find(ids["reverse_address"])
        assert isinstance(rev, tuple) and rev[0].id == ids["reverse"] and rev[1].id == ids["alias"]
        assert routes.reverse_for(found, "Support@Shop.example").id == ids["reverse"]  # the pair, too
        assert Routes(target.db, MailKeys.from_vault(unlocked)).find(ids["alias_address"]) is None
        service = MailService(target)
        assert {m.id: service.raw(m.id) for m in service.messages()} == raws
        assert service.config() == MailService(unlocked).config()
        assert check_vault(target).ok
        again = import_archive(target, tmp_path / "a.zip")
        assert again.added_total == 0 and again.skipped["mail_aliases"] == 2
        assert again.skipped["mail_messages"] == 2 and again.files_added == 0
    finally:
        target.vault.close()


def test_an_archive_without_the_mailbox_still_imports(unlocked: UnlockedVault, tmp_path: Path) -> None:
    """Archives written before the relationship mailbox lack its four kinds and their counts: none."""
    source = new_vault(tmp_path / "source")
    try:
        populate(source)
        export_vault(source, tmp_path / "a.zip")
    finally:
        source.vault.close()
    kinds = ("mail_gateway", "mail_aliases", "mail_reverse_aliases", "mail_messages")

    def old(m: dict[str, Any]) -> None:
        kept = {d["file"] for d in m["documents"]}
        m["counts"]["files"] = len(kept)
        for kind in kinds:
            del m[kind], m["counts"][kind]

    def files(contents: dict[str, bytes]) -> None:
        with zipfile.ZipFile(tmp_path / "a.zip") as zf:
            messages = json.loads(zf.read("manifest.json"))["mail_messages"]
        for message in messages:
            contents.pop(message["file"])

    (tmp_path / "old.zip").write_bytes(rewrite((tmp_path / "a.zip").read_bytes(), manifest=old, files=files))
    result = import_archive(unlocked, tmp_path / "old.zip")
    assert result.added_total == 40 and all(result.added[k] == 0 for k in kinds)
    seen = view(unlocked)
    assert all(seen[k] == [] for k in kinds) and check_vault(unlocked).ok
