"""Benchmark: sealed versus unsealed records and files, on the same database, in the same run.

Writes and reads 10,000 records and 1,000 files through the real services, once with the vault's
AES-256-GCM sealer and once with a pass-through "sealer" swapped in (the baseline: the same code, the
same database, no cryptography), and prints throughput and the ratio sealed/unsealed. Also reports the
time to unlock with the default Argon2id parameters.

    python bench/vault.py [--records 10000] [--files 1000] [--database-url URL]

Results are recorded in docs/benchmarks.md. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from openvrm.config import Settings
from openvrm.crypto import KdfParams
from openvrm.records import insert
from openvrm.storage.models import Vendor
from openvrm.vault.core import UnlockedVault, Vault
from openvrm.vendors.service import VendorService

PASSPHRASE = "benchmark passphrase"
BATCH = 500


class PassThrough:
    """The baseline 'sealer': returns the plaintext, so only the cryptography is taken away."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        return plaintext

    def open(self, sealed: bytes, aad: bytes, *, what: str = "value") -> bytes:
        return sealed


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_records(u: UnlockedVault, n: int) -> None:
    for start in range(0, n, BATCH):
        with u.db.write() as s:
            for i in range(start, min(n, start + BATCH)):
                insert(
                    u, s, Vendor, {"name": f"Vendor {i}", "domains": [f"v{i}.example"], "notes": "x" * 200}
                )


def read_records(u: UnlockedVault, n: int) -> None:
    got = VendorService(u).list()
    assert len(got) == n, len(got)


def files_payloads(n: int) -> list[bytes]:
    # 4-64 KiB, typical of receipts and small PDFs; random so nothing compresses or deduplicates.
    return [os.urandom(4096 + (i * 7919) % (60 * 1024)) for i in range(n)]


def write_files(u: UnlockedVault, payloads: list[bytes]) -> list[str]:
    return [u.put_file(p)[0] for p in payloads]


def read_files(u: UnlockedVault, addresses: list[str]) -> None:
    for a in addresses:
        u.get_file(a)


def run_mode(settings: Settings, sealed: bool, n_records: int, payloads: list[bytes]) -> dict[str, float]:
    vault = Vault.open(settings, create=True)
    u = vault.create(PASSPHRASE, kdf=KdfParams.new(time_cost=1, memory_kib=8192, parallelism=1))
    if not sealed:
        u._records = PassThrough()  # type: ignore[assignment]
        u._files = PassThrough()  # type: ignore[assignment]
    result = {
        "records_write": n_records / timed(lambda: write_records(u, n_records)),
        "records_read": n_records / timed(lambda: read_records(u, n_records)),
    }
    addresses: list[str] = []
    result["files_write"] = len(payloads) / timed(lambda: addresses.extend(write_files(u, payloads)))
    result["files_read"] = len(payloads) / timed(lambda: read_files(u, addresses))
    vault.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--files", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=3, help="Rounds (modes alternate; medians are reported).")
    ap.add_argument(
        "--database-url",
        help="PostgreSQL URL; each mode then runs in a new schema of its own (default: SQLite files)",
    )
    args = ap.parse_args()
    payloads = files_payloads(args.files)
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            # alternate which mode goes first, so neither always meets a warm (or cold) cache
            for sealed in (False, True) if r % 2 == 0 else (True, False):
                home = Path(tmp) / f"{'sealed' if sealed else 'plain'}-{r}"
                url = None
                if args.database_url:
                    import sqlalchemy as sa

                    schema = f"bench_{'sealed' if sealed else 'plain'}_{os.getpid()}_{r}"
                    eng = sa.create_engine(args.database_url, isolation_level="AUTOCOMMIT")
                    with eng.connect() as c:
                        c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                    url = f"{args.database_url}?options=-csearch_path%3D{schema}"
                try:
                    settings = Settings.resolve(home, database_url=url)
                    runs[sealed].append(run_mode(settings, sealed, args.records, payloads))
                finally:
                    if args.database_url:
                        with eng.connect() as c:
                            c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                        eng.dispose()
        results = {m: {k: statistics.median(x[k] for x in runs[m]) for k in runs[m][0]} for m in runs}
        unlock_times = []
        home = Path(tmp) / "unlock"
        v = Vault.open(Settings.resolve(home), create=True)
        v.create(PASSPHRASE)  # default Argon2id parameters
        for _ in range(5):
            unlock_times.append(timed(lambda: v.unlock(PASSPHRASE)))
        kdf = v.kdf_params()
        v.close()

    backend = "postgresql" if args.database_url else "sqlite"
    print(
        f"openvrm vault benchmark ({backend}; {args.records} records, {args.files} files of 4-64 KiB; "
        f"median of {args.rounds} rounds)"
    )
    print(f"{'operation':<16}{'unsealed/s':>14}{'sealed/s':>14}{'ratio':>8}")
    for key in ("records_write", "records_read", "files_write", "files_read"):
        plain, sealed_v = results[False][key], results[True][key]
        print(f"{key:<16}{plain:>14,.0f}{sealed_v:>14,.0f}{sealed_v / plain:>8.2f}")
    print(
        f"unlock (Argon2id t={kdf.time_cost}, m={kdf.memory_kib // 1024} MiB, p={kdf.parallelism}): "
        f"median {statistics.median(unlock_times) * 1000:.0f} ms over {len(unlock_times)} runs"
    )


if __name__ == "__main__":
    main()
