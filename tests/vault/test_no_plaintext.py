"""Known personal values never reach disk or logs in the clear.

The test writes distinctive values through the real services, then reads every byte the store holds:
on SQLite every file under the home (database, WAL, blobs); on PostgreSQL every column of every row of
every table, as the server returns it. None of the values may appear, in UTF-8 or UTF-16.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from openvrm.documents.service import DocumentService
from openvrm.profile.service import ProfileService
from openvrm.sharing.service import SharingService
from openvrm.vault import tokens
from openvrm.vault.check import check_vault
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService

SECRETS = [
    "zelda.plaintext@example.org",
    "Zelda Quuxington",
    "Plaintextstrasse 99",
    "+33612345678",
    "DE89370400440532013000",
    "Acme Hidden Vendor",
    "hidden-vendor.example",
    "CUST-SECRET-7781",
    "TOP-SECRET-FILE-CONTENT-4711",
    "secret-receipt.pdf",
    "inbox-secret-total-991",
    "my-token-name-secret",
]


def _write_everything(u: UnlockedVault) -> None:
    p = ProfileService(u)
    p.set("email", SECRETS[0])
    p.set("name", SECRETS[1])
    p.set("address.home", {"street": SECRETS[2], "city": "Berlin", "country": "DE"})
    p.set("phone", SECRETS[3])
    p.set("iban", SECRETS[4])
    v = VendorService(u).add(SECRETS[5], domains=[SECRETS[6]])
    rel = VendorService(u).relate(v.id, customer_number=SECRETS[7])
    DocumentService(u).add(SECRETS[8].encode() * 50, filename=SECRETS[9], vendor_id=v.id)
    SharingService(u).share(rel.id, "email", purpose="delivery")
    u.vault.deposit({"type": "receipt", "total": SECRETS[10]})
    tokens.create(u, SECRETS[11])


def _needles() -> list[bytes]:
    out = []
    for s in SECRETS:
        out += [s.encode("utf-8"), s.encode("utf-16-le"), s.lower().encode()]
    return out


def _store_bytes(u: UnlockedVault) -> bytes:
    settings = u.vault.settings
    chunks: list[bytes] = []
    if settings.is_sqlite:
        for f in sorted(Path(settings.home).rglob("*")):
            if f.is_file():
                chunks.append(f.read_bytes())
    else:
        with u.db.engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            for t in tables:
                for row in conn.execute(sa.text(f'select * from "{t}"')):  # noqa: S608
                    for value in row:
                        chunks.append(value if isinstance(value, bytes) else str(value).encode())
    if settings.blob_backend == "files" and not settings.is_sqlite:
        for f in sorted(settings.blob_dir.rglob("*")):
            if f.is_file():
                chunks.append(f.read_bytes())
    return b"\n".join(chunks)


def test_no_personal_value_in_the_store_or_logs(
    unlocked: UnlockedVault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _write_everything(unlocked)
    assert check_vault(unlocked).ok
    raw = _store_bytes(unlocked)
    assert len(raw) > 3_000  # the scan really read the store (sealed file included)
    for needle in _needles():
        assert needle not in raw, f"{needle!r} found in plaintext"
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for s in SECRETS:
        assert s not in logs
    # And the values really are in the vault, so the scan is not vacuous.
    assert ProfileService(unlocked).get("email") == SECRETS[0]
