"""Bad archives: each is refused with a clear error, and the vault is exactly as it was before."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from openvrm.config import Settings
from openvrm.errors import ArchiveError, NotFound
from openvrm.exchange import (
    ImportLimits,
    PassphraseNeeded,
    WrongArchivePassphrase,
    export_vault,
    import_archive,
)
from openvrm.mail.service import MailService
from openvrm.vault.core import UnlockedVault
from tests.conftest import PASSPHRASE

from .support import PopulatedCopies, dump, new_vault, populate, rewrite

ARCHIVE_PASSPHRASE = "archive passphrase 42"


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """One plain and one encrypted export of a small vault."""
    base = tmp_path_factory.mktemp("source")
    source = new_vault(base / "home")
    try:
        populate(source)
        export_vault(source, base / "plain.zip")
        export_vault(source, base / "secret.zip.age", passphrase=ARCHIVE_PASSPHRASE)
    finally:
        source.vault.close()
    return {"plain": (base / "plain.zip").read_bytes(), "age": (base / "secret.zip.age").read_bytes()}


@pytest.fixture(scope="session")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PopulatedCopies]:
    with ExitStack() as stack:
        yield PopulatedCopies(tmp_path_factory.mktemp("populated"), stack, tag="-mine")


@pytest.fixture
def target(settings: Settings, populated: PopulatedCopies) -> Iterator[UnlockedVault]:
    """A vault on each backend that already holds records of its own (a copy of one filled by `populate`)."""
    vault = populated.open_copy(settings)
    try:
        yield vault.unlock(PASSPHRASE)
    finally:
        vault.close()


def refused(
    vault: UnlockedVault,
    tmp_path: Path,
    data: bytes,
    match: str,
    *,
    error: type[Exception] = ArchiveError,
    **kw: Any,
) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(data)
    before = dump(vault.vault)
    with pytest.raises(error, match=match):
        import_archive(vault, path, **kw)
    assert dump(vault.vault) == before


def _file_entry(archive: bytes) -> zipfile.ZipInfo:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return next(i for i in zf.infolist() if i.filename.startswith("files/"))


def _data_offset(archive: bytes, info: zipfile.ZipInfo) -> int:
    name_len, extra_len = struct.unpack("<HH", archive[info.header_offset + 26 : info.header_offset + 30])
    return int(info.header_offset + 30 + name_len + extra_len)


def test_truncated_archive(target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]) -> None:
    data = archives["plain"]
    refused(target, tmp_path, data[: len(data) // 2], "damaged or truncated")
    refused(target, tmp_path, data[:-10], "damaged or truncated")


def test_not_an_archive_at_all(target: UnlockedVault, tmp_path: Path) -> None:
    refused(target, tmp_path, b"just some text\n" * 20, "damaged or truncated")
    with pytest.raises(NotFound, match="no such file"):
        import_archive(target, tmp_path / "missing.zip")


def test_one_byte_flipped_in_a_file(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    data = bytearray(archives["plain"])
    info = _file_entry(bytes(data))
    data[_data_offset(bytes(data), info) + info.compress_size // 2] ^= 0x01
    refused(target, tmp_path, bytes(data), "damaged or truncated")


def test_file_altered_with_a_valid_zip(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    def alter(files: dict[str, bytes]) -> None:
        name = sorted(files)[0]
        files[name] = files[name][:-1] + bytes([files[name][-1] ^ 1])

    refused(target, tmp_path, rewrite(archives["plain"], files=alter), "does not match its sha256")


def test_manifest_that_breaks_the_schema(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    def bad_name(m: dict[str, Any]) -> None:
        m["vendors"][0]["name"] = 42

    def extra_key(m: dict[str, Any]) -> None:
        m["vendors"][0]["admin"] = True

    def bad_id(m: dict[str, Any]) -> None:
        m["profile_changes"][0]["id"] = "../../etc"

    def no_counts(m: dict[str, Any]) -> None:
        del m["counts"]

    refused(target, tmp_path, rewrite(archives["plain"], manifest=bad_name), r"schema at vendors/0/name")
    refused(target, tmp_path, rewrite(archives["plain"], manifest=extra_key), r"schema at vendors/0")
    refused(target, tmp_path, rewrite(archives["plain"], manifest=bad_id), r"schema at profile_changes/0/id")
    refused(target, tmp_path, rewrite(archives["plain"], manifest=no_counts), "counts")


def test_manifest_that_is_not_json_or_not_ours(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    def version_2(m: dict[str, Any]) -> None:
        m["format_version"] = 2

    def other_format(m: dict[str, Any]) -> None:
        m["format"] = "something-else"

    refused(target, tmp_path, rewrite(archives["plain"], manifest=version_2), "format version 2")
    refused(target, tmp_path, rewrite(archives["plain"], manifest=other_format), "not an openvrm export")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", b"{not json")
    refused(target, tmp_path, buf.getvalue(), "not valid JSON")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("files/" + "0" * 64, b"x")
    refused(target, tmp_path, buf.getvalue(), "no manifest.json")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["profile_changes"][1].update(value="not an address"), r"profile_changes\[1\].*e-mail"),
        (lambda m: m["vendors"][0].update(domains=["not a domain"]), r"vendors\[0\].*not a domain"),
        (lambda m: m["relationships"][0].update(status="married"), r"relationships\[0\].*status"),
        (lambda m: m["relationships"][0].update(vendor_id="f" * 32), "not in the archive"),
        (lambda m: m["documents"][0].update(kind="poem"), r"documents\[0\].*kind"),
        (lambda m: m["documents"][0].update(filename="../../.bashrc"), "not a plain file name"),
        (lambda m: m["documents"][0].update(size=1), "bytes"),
        (lambda m: m["documents"][0].update(file="files/" + "0" * 64), "does not match its sha256"),
        (lambda m: m["shares"][0].update(relationship_id="e" * 32), "not in the archive"),
        (lambda m: m["shares"][0].update(until="2030-02-31"), r"shares\[0\].*until"),
        (
            lambda m: m["vendors"].append(dict(m["vendors"][0])) or m["counts"].update(vendors=3),
            "more than once",
        ),
        (lambda m: m["counts"].update(vendors=7), "says it holds 7 vendors"),
        (lambda m: m["counts"].update(files=9), "holds 9 files"),
        (lambda m: m["inbox"][0].update(received_at="2026-01-01T00:00:00"), "inbox/0/received_at"),
        (lambda m: m["inbox"][0].update(received_at="2026-13-45T00:00:00Z"), r"inbox\[0\].*not a timestamp"),
    ],
    ids=[
        "bad-email",
        "bad-domain",
        "bad-status",
        "dangling-vendor",
        "bad-kind",
        "path-in-filename",
        "wrong-size",
        "wrong-file",
        "dangling-relationship",
        "bad-date",
        "duplicate-id",
        "count-mismatch",
        "file-count",
        "naive-timestamp",
        "impossible-timestamp",
    ],
)
def test_values_and_references_are_checked(
    target: UnlockedVault,
    tmp_path: Path,
    archives: dict[str, bytes],
    edit: Callable[[dict[str, Any]], Any],
    match: str,
) -> None:
    refused(target, tmp_path, rewrite(archives["plain"], manifest=edit), match)


def _invoice(m: dict[str, Any]) -> dict[str, Any]:
    """The document the import service read (it has parsed fields, text and a contract)."""
    return next(d for d in m["documents"] if d["fields"])


def _other_vendors_relationship(m: dict[str, Any]) -> str:
    vendor = m["contracts"][0]["vendor_id"]
    return str(next(r["id"] for r in m["relationships"] if r["vendor_id"] != vendor))


def _drop_contracts(m: dict[str, Any]) -> None:
    """Leave the contract out: the invoice and both payments now point at a contract that is not there."""
    m["contracts"] = []
    m["counts"]["contracts"] = 0


def _drop_contracts_but_keep_documents_clean(m: dict[str, Any]) -> None:
    _drop_contracts(m)
    for d in m["documents"]:  # the invoice, and the vendor's answer to the rights request
        d["contract_id"] = None


LEDGER_CASES: list[tuple[Callable[[dict[str, Any]], Any], str]] = [
    (lambda m: m["vendors"][0].update(vat_ids=["FR00000000000"]), r"vendors\[0\].*VAT number"),
    (lambda m: m["vendors"][0].update(vat_ids="FR40303265045"), r"schema at vendors/0/vat_ids"),
    (lambda m: m["relationships"][0].update(folder="a/b/c/d/e/f"), r"relationships\[0\].*folder"),
    (lambda m: m["contracts"][0].update(price="12.3.4"), r"contracts\[0\].*price is not a number"),
    (lambda m: m["contracts"][0].update(price="-5"), r"contracts\[0\].*cannot be negative"),
    (lambda m: m["contracts"][0].update(price=9.99), r"schema at contracts/0/price"),
    (lambda m: m["contracts"][0].update(currency="euro"), r"contracts\[0\].*ISO 4217"),
    (lambda m: m["contracts"][0].update(billing_cycle="fortnightly"), r"contracts\[0\].*billing cycle"),
    (lambda m: m["contracts"][0].update(notice_unit="years"), r"contracts\[0\].*notice unit"),
    (lambda m: m["contracts"][0].update(minimum_term_months=-1), r"schema at contracts/0/minimum_term"),
    (lambda m: m["contracts"][0].update(auto_renewal="yes"), r"schema at contracts/0/auto_renewal"),
    (lambda m: m["contracts"][0].update(status="paused"), r"contracts\[0\].*status"),
    (lambda m: m["contracts"][0].update(end_date="2000-01-01"), r"contracts\[0\].*end before it starts"),
    (lambda m: m["contracts"][0].update(start="2024-02-30"), r"contracts\[0\].*start date"),
    (lambda m: m["contracts"][0].update(plan=" "), r"contracts\[0\].*plan name is empty"),
    (
        lambda m: m["contracts"][0]["price_history"][0].update(currency="€"),
        r"contracts\[0\].*ISO 4217",
    ),
    (
        lambda m: m["contracts"][0]["price_history"][0].update(price="a lot"),
        r"contracts\[0\].*price change 1 is not a number",
    ),
    (
        lambda m: m["contracts"][0]["price_history"][0].update(effective="2001-01-01"),
        r"contracts\[0\].*before the contract starts",
    ),
    (
        lambda m: m["contracts"][0]["price_history"].append(dict(m["contracts"][0]["price_history"][0])),
        r"contracts\[0\].*two price changes",
    ),
    (
        lambda m: m["contracts"][0]["price_history"][0].update(note="x"),
        r"schema at contracts/0/price_history/0",
    ),
    (lambda m: m["contracts"][0].update(vendor_id="f" * 32), r"contract .* vendor f+, which is not in"),
    (
        lambda m: m["contracts"][0].update(relationship_id="e" * 32),
        r"contract .* relationship e+, which is not in",
    ),
    (
        lambda m: m["contracts"][0].update(relationship_id=_other_vendors_relationship(m)),
        "with another vendor",
    ),
    (lambda m: m["payments"][0].update(amount="12,345.60"), r"payments\[0\].*amount is not a number"),
    (lambda m: m["payments"][0].update(amount="-1"), r"payments\[0\].*cannot be negative"),
    (lambda m: m["payments"][0].update(currency="E"), r"payments\[0\].*ISO 4217"),
    (lambda m: m["payments"][0].update(paid_on=None), r"schema at payments/0/paid_on"),
    (lambda m: m["payments"][0].update(due_date="2024-13-01"), r"payments\[0\].*due date"),
    (lambda m: m["payments"][0].update(contract_id="d" * 32), r"payment .* contract d+, which is not in"),
    (lambda m: m["payments"][1].update(document_id="c" * 32), r"payment .* document c+, which is not in"),
    (lambda m: m["payments"][0].update(vendor_id="b" * 32), r"payment .* vendor b+, which is not in"),
    (_drop_contracts, r"refers to contract .*, which is not in the archive"),
    (_drop_contracts_but_keep_documents_clean, r"payment .* refers to contract .*, which is not in"),
    (lambda m: _invoice(m).update(contract_id="a" * 32), r"document .* contract a+, which is not in"),
    (lambda m: _invoice(m).update(warranty_until="2026-02-30"), r"documents\[\d\].*warranty end"),
    (lambda m: _invoice(m).update(parse_status="maybe"), r"schema at documents/\d/parse_status"),
    (lambda m: _invoice(m).update(format="../x"), r"schema at documents/\d/format"),
    (lambda m: _invoice(m).update(text=None), r"schema at documents/\d/text"),
    (lambda m: _invoice(m)["fields"].update(password="x"), r"schema at documents/\d/fields"),
    (lambda m: _invoice(m)["fields"].update(issue_date="2024-02-30"), r"documents\[\d\].*issue_date"),
    (lambda m: _invoice(m)["fields"].update(gross_total="NaN"), r"documents\[\d\].*gross_total"),
    (lambda m: _invoice(m)["fields"].update(gross_total=9.99), r"schema at documents/\d/fields"),
    (lambda m: _invoice(m)["fields"].update(currency="eur"), r"schema at documents/\d/fields/currency"),
    (
        lambda m: _invoice(m)["fields"].update(email_date="2024-01-15T10:00:00"),
        r"documents\[\d\].*email_date has no time zone",
    ),
    (
        lambda m: _invoice(m)["fields"]["line_items"][0].update(quantity="1e999999999"),
        r"documents\[\d\].*quantity is out of range",
    ),
    (
        lambda m: _invoice(m)["fields"]["line_items"][0].update(colour="red"),
        r"schema at documents/\d/fields/line_items/0",
    ),
    (lambda m: m["counts"].update(payments=5), "says it holds 5 payments"),
    (lambda m: m.pop("contracts"), "contracts"),
]


@pytest.mark.parametrize(
    ("edit", "match"), LEDGER_CASES, ids=[f"ledger-{i}" for i in range(len(LEDGER_CASES))]
)
def test_ledger_values_and_references_are_checked(
    target: UnlockedVault,
    tmp_path: Path,
    archives: dict[str, bytes],
    edit: Callable[[dict[str, Any]], Any],
    match: str,
) -> None:
    """Contracts, payments, parsed fields, VAT ids and folders: bad ones leave the vault as it was."""
    refused(target, tmp_path, rewrite(archives["plain"], manifest=edit), match)


def test_unsafe_and_unknown_entry_names(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    for name in ("../evil.sh", "files/../../evil", "/etc/passwd", "C:/evil", "files\\..\\evil"):
        data = rewrite(archives["plain"], extra=[(name, b"boo")])
        refused(target, tmp_path, data, "unsafe name")
    refused(
        target, tmp_path, rewrite(archives["plain"], extra=[("notes.txt", b"hi")]), "not part of the format"
    )
    orphan = b"nobody refers to me"
    name = "files/" + hashlib.sha256(orphan).hexdigest()
    data = rewrite(archives["plain"], extra=[(name, orphan)], manifest=lambda m: m["counts"].update(files=7))
    refused(target, tmp_path, data, "not the file of any document")


def test_duplicate_entry_names(target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]) -> None:
    buf = io.BytesIO(archives["plain"])
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "a") as zf:
        zf.writestr("manifest.json", b"{}")
    refused(target, tmp_path, buf.getvalue(), "twice")


def test_zip_bomb_entry(target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]) -> None:
    bomb = bytes(100 * 1024 * 1024 + 1)
    name = "files/" + hashlib.sha256(bomb).hexdigest()
    data = rewrite(archives["plain"], extra=[(name, bomb)])
    assert len(data) < 1024 * 1024  # a tiny file that unpacks to more than 100 MiB
    refused(target, tmp_path, data, "more than the 104857600 allowed")


def test_header_that_understates_a_size(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    """Sizes are counted from what is decompressed; a header claiming less cannot smuggle bytes in."""
    data = bytearray(archives["plain"])
    info = _file_entry(bytes(data))
    assert info.file_size > 2
    name = info.filename.encode()
    central = next(
        pos
        for pos in range(len(data))
        if data[pos : pos + 4] == b"PK\x01\x02" and data[pos + 46 : pos + 46 + len(name)] == name
    )
    struct.pack_into("<I", data, central + 24, 2)  # uncompressed size in the central directory
    struct.pack_into("<I", data, info.header_offset + 22, 2)  # and in the local header
    refused(target, tmp_path, bytes(data), "damaged or truncated")


def test_limits_on_total_size_and_entry_count(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    refused(
        target, tmp_path, archives["plain"], "more than the 10 bytes", limits=ImportLimits(max_total_bytes=10)
    )
    refused(target, tmp_path, archives["plain"], "7 entries", limits=ImportLimits(max_entries=4))
    refused(
        target, tmp_path, archives["plain"], "manifest.json is", limits=ImportLimits(max_manifest_bytes=100)
    )


def test_encrypted_archive_needs_a_passphrase(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    refused(target, tmp_path, archives["age"], "a passphrase is needed", error=PassphraseNeeded)


def test_wrong_archive_passphrase(target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]) -> None:
    refused(
        target,
        tmp_path,
        archives["age"],
        "wrong passphrase",
        error=WrongArchivePassphrase,
        passphrase="not the passphrase",
    )


def test_truncated_encrypted_archive(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    data = archives["age"]
    refused(target, tmp_path, data[:-100], "damaged or truncated", passphrase=ARCHIVE_PASSPHRASE)
    refused(
        target, tmp_path, data[:40], "damaged or truncated|wrong passphrase", passphrase=ARCHIVE_PASSPHRASE
    )


def test_armoured_age_file_is_explained(target: UnlockedVault, tmp_path: Path) -> None:
    data = b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"
    refused(target, tmp_path, data, "armoured", passphrase=ARCHIVE_PASSPHRASE)


def _request(m: dict[str, Any]) -> dict[str, Any]:
    """The request that was sent, extended and answered (the other is a closed draft)."""
    return next(r for r in m["rights_requests"] if r["status"] == "answered")


def _draft(m: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in m["rights_requests"] if r["status"] == "closed")


def _smtp(m: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = m["settings"][0]["value"]
    return value


REQUESTS, MOVES = r"rights_requests\[\d\]", r"moves\[0\]"
RIGHTS_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("bad-status", lambda m: _request(m).update(status="lost"), rf"{REQUESTS}.*request status"),
    ("stored-overdue", lambda m: _request(m).update(status="overdue"), rf"{REQUESTS}.*request status"),
    ("bad-language", lambda m: _request(m).update(language="es"), rf"{REQUESTS}.*written in en, fr, de"),
    ("empty-language", lambda m: _request(m).update(language=" "), rf"{REQUESTS}.*language is empty"),
    ("bad-type", lambda m: _request(m).update(kind="forget-me"), rf"{REQUESTS}.*request type"),
    ("bad-channel", lambda m: _request(m).update(channel="pigeon"), rf"{REQUESTS}.*channel is one of"),
    (
        "channel-not-on-record",
        lambda m: _request(m).update(channel="post"),
        rf"{REQUESTS}.*no postal address",
    ),
    ("bad-sent-date", lambda m: _request(m).update(sent_on="2026-02-30"), rf"{REQUESTS}.*day it was sent"),
    ("sent-without-date", lambda m: _request(m).update(sent_on=None), rf"{REQUESTS}.*needs the day it was"),
    (
        "draft-with-date",
        lambda m: _draft(m).update(status="draft", sent_on="2026-01-01"),
        rf"{REQUESTS}.*draft request was never sent",
    ),
    ("escalated-without-complaint", lambda m: _request(m).update(status="escalated"), "needs its complaint"),
    (
        "details-missing",
        lambda m: _request(m).update(kind="rectification", details="  "),
        rf"{REQUESTS}.*needs details",
    ),
    ("bad-event", lambda m: _request(m)["events"][0].update(event="hacked"), rf"{REQUESTS}.*an event"),
    (
        "naive-event-time",
        lambda m: _request(m)["events"][0].update(at="2026-01-01T00:00:00"),
        r"schema at rights_requests/\d/events/0/at",
    ),
    (
        "impossible-event-time",
        lambda m: _request(m)["events"][0].update(at="2026-02-30T00:00:00Z"),
        rf"{REQUESTS} .*, event 1: not a timestamp",
    ),
    (
        "dangling-vendor",
        lambda m: _request(m).update(vendor_id="f" * 32),
        r"rights request .* vendor f+, which",
    ),
    (
        "dangling-answer",
        lambda m: _request(m).update(documents=["a" * 32]),
        r"rights request .* document a+, which is not in",
    ),
    (
        "dangling-event-document",
        lambda m: _request(m)["events"][-1].update(documents=["b" * 32]),
        r"rights request .* document b+, which is not in",
    ),
    (
        "contact-extra-key",
        lambda m: _request(m)["contact"].update(phone="1"),
        r"schema at rights_requests/\d",
    ),
    ("identity-not-pairs", lambda m: _request(m).update(identity=[["Nom"]]), r"schema at rights_requests/\d"),
    (
        "bad-complaint",
        lambda m: _request(m).update(
            status="escalated",
            complaint={"authority": "frcnil", "channel": "fax", "on": "2026-03-10", "outbox_id": None},
        ),
        rf"{REQUESTS}.*complaint's channel",
    ),
    ("move-unmovable-field", lambda m: m["moves"][0].update(field="birth-date"), rf"{MOVES}.*a move changes"),
    ("move-bad-old-value", lambda m: m["moves"][0].update(old="not an address"), rf"{MOVES}.*e-mail"),
    (
        "move-same-values",
        lambda m: m["moves"][0].update(old=m["moves"][0]["new"]),
        rf"{MOVES}.*the same",
    ),
    ("move-bad-day", lambda m: m["moves"][0].update(on="2026-13-01"), rf"{MOVES}.*day of the move"),
    (
        "move-bad-status",
        lambda m: m["moves"][0]["notices"][0].update(status="lost"),
        rf"{MOVES}.*status of notice 1",
    ),
    (
        "move-bad-language",
        lambda m: m["moves"][0]["notices"][0].update(language="klingon"),
        rf"{MOVES}.*written in en, fr, de",
    ),
    (
        "move-bad-channel",
        lambda m: m["moves"][0]["notices"][0].update(channel="fax"),
        rf"{MOVES}.*channel of notice 1",
    ),
    (
        "move-dangling-vendor",
        lambda m: m["moves"][0]["notices"][0].update(vendor_id="f" * 32),
        r"move .* vendor f+, which is not in",
    ),
    (
        "move-second-notice",
        lambda m: m["moves"][0]["notices"].append(dict(m["moves"][0]["notices"][0])),
        rf"{MOVES}.*second notice",
    ),
    ("smtp-port", lambda m: _smtp(m).update(port=70000), r"settings\[0\].*SMTP port"),
    ("smtp-port-zero", lambda m: _smtp(m).update(port=0), r"settings\[0\].*SMTP port"),
    ("smtp-port-text", lambda m: _smtp(m).update(port="587"), r"schema at settings/0/value/port"),
    ("smtp-tls", lambda m: _smtp(m).update(tls="ssl"), r"settings\[0\].*TLS mode"),
    ("smtp-host", lambda m: _smtp(m).update(host="smtp.example.org/evil"), r"settings\[0\].*SMTP host"),
    ("smtp-sender", lambda m: _smtp(m).update(from_addr="nobody"), r"settings\[0\].*From address"),
    ("smtp-password-alone", lambda m: _smtp(m).update(username=None), r"settings\[0\].*needs a username"),
    ("smtp-extra-key", lambda m: _smtp(m).update(oauth="x"), r"schema at settings/0/value"),
    ("unknown-setting", lambda m: m["settings"][0].update(id="imap"), r"schema at settings/0/id"),
    ("settings-count", lambda m: m["counts"].update(settings=2), "says it holds 2 settings"),
    ("no-moves", lambda m: m.pop("moves"), "moves"),
]


@pytest.mark.parametrize(("edit", "match"), [c[1:] for c in RIGHTS_CASES], ids=[c[0] for c in RIGHTS_CASES])
def test_requests_moves_and_settings_are_checked(
    target: UnlockedVault,
    tmp_path: Path,
    archives: dict[str, bytes],
    edit: Callable[[dict[str, Any]], Any],
    match: str,
) -> None:
    """GDPR requests, moves and the mail server: a bad one is refused, and the vault is as it was."""
    refused(target, tmp_path, rewrite(archives["plain"], manifest=edit), match)


def _entry(m: dict[str, Any], state: str) -> dict[str, Any]:
    return next(e for e in m["connection_events"] if e["state"] == state)


def _grant(m: dict[str, Any], revoked: bool) -> dict[str, Any]:
    return next(g for g in m["grants"] if (g["revoked_at"] is not None) is revoked)


CONN, ENTRY, GRANT = r"connections\[0\]", r"connection_events\[\d\]", r"grants\[\d\]"
PROTOCOL_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("seed-not-base64", lambda m: m["connections"][0].update(person_seed="!" * 43 + "="), "person_seed"),
    ("seed-not-base64-2", lambda m: m["connections"][0].update(person_seed="%%%"), "schema at connections/0"),
    (
        "seed-of-another-key",
        lambda m: m["connections"][0].update(person_seed="A" * 43 + "="),
        rf"{CONN}.*not the key of person_did",
    ),
    ("bad-status", lambda m: m["connections"][0].update(status="paused"), "schema at connections/0/status"),
    (
        "vendor-id-type",
        lambda m: m["connections"][0].update(vendor_id=7),
        "schema at connections/0/vendor_id",
    ),
    (
        "dangling-vendor",
        lambda m: m["connections"][0].update(vendor_id="f" * 32),
        r"connection .* vendor f+, which is not in the archive or the vault",
    ),
    (
        "agreement-altered",
        lambda m: m["connections"][0]["agreement"].update(effective_at="2020-01-01T00:00:00Z"),
        rf"{CONN}.*agreement",
    ),
    (
        "answer-altered",
        lambda m: m["connections"][0]["answer"].update(created_at="2020-01-01T00:00:00Z"),
        rf"{CONN}.*signature",
    ),
    ("discovery-not-object", lambda m: m["connections"][0].update(discovery=[]), "schema at connections/0"),
    (
        "event-unknown-connection",
        lambda m: _entry(m, "received").update(connection_id="e" * 32),
        r"ledger entry .* connection e+, which is not in the archive or the vault",
    ),
    (
        "duplicate-position",
        lambda m: _entry(m, "pending").update(position=1),
        r"both hold position 1 of connection",
    ),
    ("position-text", lambda m: _entry(m, "pending").update(position="1"), r"schema at connection_events/\d"),
    ("position-zero", lambda m: _entry(m, "pending").update(position=0), r"schema at connection_events/\d"),
    ("bad-author", lambda m: _entry(m, "pending").update(author="admin"), r"schema at connection_events/\d"),
    ("wrong-author", lambda m: _entry(m, "pending").update(author="vendor"), rf"{ENTRY}.*cannot come from"),
    ("bad-state", lambda m: _entry(m, "pending").update(state="acked"), rf"{ENTRY}.*acknowledgement"),
    (
        "event-altered",
        lambda m: _entry(m, "pending")["event"]["payload"].update(scope="nothing"),
        rf"{ENTRY}.*payload_hash",
    ),
    (
        "event-id-mismatch",
        lambda m: _entry(m, "pending").update(event_id="x" * 64),
        rf"{ENTRY}.*event_id is not its event's",
    ),
    ("ack-dropped", lambda m: _entry(m, "acked").update(ack=None), rf"{ENTRY}.*no acknowledgement"),
    (
        "note-extra-key",
        lambda m: _entry(m, "pending")["note"].update(admin=True),
        r"schema at connection_events",
    ),
    (
        "attachment-size",
        lambda m: _entry(m, "received")["note"]["attachment"].update(size=1),
        rf"{ENTRY}.*attachment size",
    ),
    (
        "grant-unknown-connection",
        lambda m: _grant(m, False).update(connection_id="d" * 32),
        r"grant .* connection d+, which is not in the archive or the vault",
    ),
    (
        "grant-box-not-base64",
        lambda m: _grant(m, False).update(vendor_box="@@"),
        r"schema at grants/\d/vendor_box",
    ),
    (
        "grant-box-not-sealed",
        lambda m: _grant(m, False).update(vendor_box=base64.b64encode(b'{"a": 1}').decode()),
        rf"{GRANT}.*not a value sealed",
    ),
    (
        "revoked-grant-with-box",
        lambda m: _grant(m, True).update(vendor_box=_grant(m, False)["vendor_box"]),
        rf"{GRANT}.*revoked grant keeps no values",
    ),
    ("grant-until", lambda m: _grant(m, False).update(until="2031-02-30T00:00:00Z"), rf"{GRANT}.*timestamp"),
    ("grant-fields", lambda m: _grant(m, False).update(fields=["phone", "phone"]), rf"{GRANT}.*each once"),
    ("grant-fields-type", lambda m: _grant(m, False).update(fields="phone"), r"schema at grants/\d/fields"),
    ("grant-term", lambda m: _grant(m, False).update(term="no-such-term@1"), rf"{GRANT}.*no term"),
    (
        "consent-extra-key",
        lambda m: _grant(m, False)["consent"][0].update(extra=1),
        r"schema at grants/\d/consent/0",
    ),
    ("connection-count", lambda m: m["counts"].update(grants=5), "says it holds 5 grants"),
    ("list-without-count", lambda m: m["counts"].pop("grants"), "says it holds 0 grants"),
]


@pytest.mark.parametrize(
    ("edit", "match"), [c[1:] for c in PROTOCOL_CASES], ids=[c[0] for c in PROTOCOL_CASES]
)
def test_connections_ledgers_and_grants_are_checked(
    target: UnlockedVault,
    tmp_path: Path,
    archives: dict[str, bytes],
    edit: Callable[[dict[str, Any]], Any],
    match: str,
) -> None:
    """A bad connection, ledger entry or grant refuses the whole import; the vault is as it was."""
    refused(target, tmp_path, rewrite(archives["plain"], manifest=edit), match)


def _intent(m: dict[str, Any], state: str) -> dict[str, Any]:
    return next(i for i in m["intents"] if i["state"] == state)


def _forge(m: dict[str, Any]) -> None:
    """Change an opened offer's price: its vendor's signature no longer holds."""
    m["intent_offers"][0]["offer"]["price"]["amount"] = "1"


def _accepted_by_unknown_connection(m: dict[str, Any]) -> None:
    intent = _intent(m, "published")
    offer = next(o for o in m["intent_offers"] if o["intent_id"] == intent["id"])
    intent.update(state="accepted", accepted_offer=offer["offer_id"], connection_id="c" * 32)


INTENT, OFFER = r"intents\[\d\]", r"intent_offers\[\d\]"
INTENT_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    (
        "seed-not-base64",
        lambda m: _intent(m, "draft").update(seed="!" * 43 + "="),
        r"schema at intents/\d/seed",
    ),
    (
        "seed-not-canonical",
        lambda m: _intent(m, "draft").update(seed="A" * 42 + "B="),
        rf"{INTENT}.*seed\) is not canonical base64",
    ),
    ("seed-pattern", lambda m: _intent(m, "draft").update(seed="%%%"), r"schema at intents/\d/seed"),
    (
        "seed-of-another-key",
        lambda m: _intent(m, "published").update(seed="A" * 43 + "="),
        rf"{INTENT}.*not the key of its author",
    ),
    ("bad-state", lambda m: _intent(m, "draft").update(state="paused"), r"schema at intents/\d/state"),
    ("muted-type", lambda m: _intent(m, "draft").update(muted="no"), r"schema at intents/\d/muted"),
    ("days-type", lambda m: _intent(m, "draft").update(expires_in_days="14"), r"schema at intents/\d"),
    ("unknown-category", lambda m: _intent(m, "draft").update(category="weapons"), rf"{INTENT}.*weapons"),
    ("muted-request", lambda m: _intent(m, "draft").update(muted=True), rf"{INTENT}.*standing interest"),
    (
        "draft-with-record",
        lambda m: _intent(m, "draft").update(published=_intent(m, "published")["published"]),
        rf"{INTENT}.*a draft",
    ),
    (
        "published-without-record",
        lambda m: _intent(m, "published").update(published=None),
        rf"{INTENT}.*holds its signed intent",
    ),
    (
        "signed-intent-altered",
        lambda m: _intent(m, "published")["published"].update(text="something else"),
        rf"{INTENT}.*signature",
    ),
    (
        "expiry-moved",
        lambda m: _intent(m, "published").update(expires_at="2099-01-01T00:00:00.000000+00:00"),
        rf"{INTENT}.*expiry",
    ),
    (
        "dangling-connection",
        _accepted_by_unknown_connection,
        r"intent .* connection c+, which is not in the archive or the vault",
    ),
    (
        "offer-unknown-intent",
        lambda m: m["intent_offers"][0].update(intent_id="b" * 32),
        r"offer .* intent b+, which is not in the archive or the vault",
    ),
    (
        "offer-of-the-draft",
        lambda m: m["intent_offers"][0].update(intent_id=_intent(m, "draft")["id"]),
        r"offer .*intent_id is not its intent's",
    ),
    ("forged-offer", _forge, rf"{OFFER}.*signature"),
    (
        "envelope-intent-id",
        lambda m: m["intent_offers"][0]["envelope"].update(intent_id="another"),
        rf"{OFFER}.*envelope's intent_id",
    ),
    (
        "offer-id-mismatch",
        lambda m: m["intent_offers"][0].update(offer_id="x" * 20),
        rf"{OFFER}.*offer_id is not its offer's",
    ),
    (
        "duplicate-offer",
        lambda m: m["intent_offers"][1].update(
            offer_id=m["intent_offers"][0]["offer_id"],
            envelope=m["intent_offers"][0]["envelope"],
            offer=m["intent_offers"][0]["offer"],
        ),
        r"are both offer",
    ),
    (
        "envelope-swapped",
        lambda m: _swap_sealed(m),
        r"offer .*another offer than the opened one",
    ),
    ("offer-state", lambda m: m["intent_offers"][0].update(state="won"), r"schema at intent_offers/\d/state"),
    ("offer-type", lambda m: m["intent_offers"][0].update(offer=[]), r"schema at intent_offers/\d/offer"),
    ("open-without-offer", lambda m: m["intent_offers"][0].update(offer=None), rf"{OFFER}.*invalid exactly"),
    ("score-type", lambda m: m["intent_offers"][0].update(score="99"), r"schema at intent_offers/\d/score"),
    ("intent-count", lambda m: m["counts"].update(intents=5), "says it holds 5 intents"),
    ("offers-without-count", lambda m: m["counts"].pop("intent_offers"), "says it holds 0 intent_offers"),
]


def _swap_sealed(m: dict[str, Any]) -> None:
    """Give the first offer the second's sealed content: the envelope no longer holds the opened offer."""
    m["intent_offers"][0]["envelope"]["sealed"] = m["intent_offers"][1]["envelope"]["sealed"]


@pytest.mark.parametrize(("edit", "match"), [c[1:] for c in INTENT_CASES], ids=[c[0] for c in INTENT_CASES])
def test_intents_and_offers_are_checked(
    target: UnlockedVault,
    tmp_path: Path,
    archives: dict[str, bytes],
    edit: Callable[[dict[str, Any]], Any],
    match: str,
) -> None:
    """A bad intent or offer refuses the whole import; the vault is byte-identical to before."""
    refused(target, tmp_path, rewrite(archives["plain"], manifest=edit), match)


def _received(m: dict[str, Any]) -> dict[str, Any]:
    return next(x for x in m["mail_messages"] if x["direction"] == "in")


ALIAS, MESSAGE = r"mail_aliases\[\d\]", r"mail_messages\[\d\]"
MAIL_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    (
        "alias-of-missing-vendor",
        lambda m: m["mail_aliases"][0].update(vendor_id="f" * 32),
        r"mail alias .* vendor f+, which is not in the archive or the vault",
    ),
    (
        "alias-for-missing-relationship",
        lambda m: m["mail_aliases"][0].update(relationship_id="d" * 32),
        r"mail alias .* relationship d+, which is not in the archive or the vault",
    ),
    (
        "reverse-of-missing-alias",
        lambda m: m["mail_reverse_aliases"][0].update(alias_id="e" * 32),
        r"reverse alias .* mail alias e+, which is not in the archive or the vault",
    ),
    (
        "message-of-missing-alias",
        lambda m: _received(m).update(alias_id="d" * 32),
        r"mail message .* mail alias d+, which is not in the archive or the vault",
    ),
    (
        "message-of-missing-vendor",
        lambda m: _received(m).update(vendor_id="c" * 32),
        r"mail message .* vendor c+, which is not in the archive or the vault",
    ),
    (
        "two-aliases-one-address",
        lambda m: m["mail_aliases"][1].update(address=m["mail_aliases"][0]["address"].upper()),
        "have the same address",
    ),
    (
        "reverse-with-an-alias-address",
        lambda m: m["mail_reverse_aliases"][0].update(address=m["mail_aliases"][0]["address"]),
        "have the same address",
    ),
    ("alias-not-an-address", lambda m: m["mail_aliases"][0].update(address="nobody"), rf"{ALIAS}.*e-mail"),
    ("alias-mode", lambda m: m["mail_aliases"][0].update(mode="all"), r"schema at mail_aliases/0/mode"),
    ("alias-lookup", lambda m: m["mail_aliases"][0].update(lookup="0" * 64), r"schema at mail_aliases/0"),
    ("bad-domain", lambda m: m["mail_aliases"][0].update(vendor_domains=["a b"]), rf"{ALIAS}.*mail domain"),
    (
        "forward-to-an-alias-domain",
        lambda m: m["mail_gateway"][0]["value"].update(forward_to="me@mail.example.org"),
        r"mail_gateway\[0\].*real mailbox",
    ),
    ("two-gateways", lambda m: m["mail_gateway"].append(m["mail_gateway"][0]), r"schema at mail_gateway"),
    ("message-size", lambda m: _received(m).update(size=1), r"mail message .* says its file has 1 bytes"),
    ("message-half-kept", lambda m: _received(m).update(file=None), rf"{MESSAGE}.*one without, none"),
    ("message-direction", lambda m: _received(m).update(direction="up"), r"schema at mail_messages/\d"),
    ("alias-count", lambda m: m["counts"].update(mail_aliases=5), "says it holds 5 mail_aliases"),
]


@pytest.mark.parametrize(("edit", "match"), [c[1:] for c in MAIL_CASES], ids=[c[0] for c in MAIL_CASES])
def test_the_mailbox_is_checked(
    target: UnlockedVault,
    tmp_path: Path,
    archives: dict[str, bytes],
    edit: Callable[[dict[str, Any]], Any],
    match: str,
) -> None:
    """A bad alias, reverse alias, message or gateway refuses the whole import; the vault is as it was."""
    refused(target, tmp_path, rewrite(archives["plain"], manifest=edit), match)


def test_an_address_the_vault_already_has_is_refused(
    target: UnlockedVault, tmp_path: Path, archives: dict[str, bytes]
) -> None:
    """Another alias (or reverse alias) with an address the vault already routes: refused, nothing changes."""
    mine = MailService(target)
    alias = mine.aliases()[0]
    [reverse] = mine.routes.reverse_aliases(alias.id)

    def take_alias(m: dict[str, Any]) -> None:
        m["mail_aliases"][0]["address"] = alias.address

    def take_reverse(m: dict[str, Any]) -> None:
        m["mail_reverse_aliases"][0]["address"] = reverse.address

    for edit in (take_alias, take_reverse):
        data = rewrite(archives["plain"], manifest=edit)
        refused(target, tmp_path, data, r"the address .* is already an alias in this vault")
