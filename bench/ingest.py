"""Benchmark: importing real e-invoices, and searching 10,000 documents.

1. Ingest: every file in ../shared/data/einvoices/ imported into a fresh vault through the real import
   service's folder import, as `vrm docs import FOLDER` runs it (read, parse, seal, store, link), against
   plain extraction of the embedded XML from the same files with the factur-x library alone, in the same
   run. The import runs twice a round: with its parse processes (the default) and with threads only.
   Prints documents per second and the ratios, and the CPU time per file of each (the import's counts its
   parse processes). Two more lines store nothing: the same files read and parsed in the same worker
   processes (the ceiling of this import), and parsed from memory in this process alone, on one core (what
   extracting the ledger's fields and searchable text costs at the least: with C cores, no import can beat
   C times this line's ratio).
2. Search: a vault with 10,000 documents (realistic invoice fields and text); the time to unlock and build
   the in-memory index, and the median and p95 latency of a mix of queries.

    python bench/ingest.py [--corpus PATH] [--documents 10000] [--rounds 3]

Figures go in docs/benchmarks.md. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import facturx

from openvrm.config import Settings
from openvrm.documents.importer import ImportOutcome, ImportService, parse_only, parse_workers
from openvrm.documents.parsers.registry import parse
from openvrm.documents.search import DocumentIndex
from openvrm.records import insert
from openvrm.storage.models import Document, DocumentText
from openvrm.vault.core import Vault

PASSPHRASE = "benchmark passphrase"
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "einvoices"
SELLERS = [
    "Free Mobile",
    "EDF",
    "Orange",
    "Netflix",
    "Spotify",
    "Deutsche Bahn",
    "Amazon EU",
    "Boulanger",
    "MAIF",
    "Decathlon",
    "La Poste",
    "Fnac",
    "Ikea",
    "Zalando",
    "SNCF Connect",
    "Engie",
    "Bouygues",
]
WORDS = (
    "facture abonnement forfait mobile internet fibre electricite gaz assurance habitation livraison "
    "commande remboursement avoir rechnung lieferung vertrag kundennummer invoice delivery order refund "
    "subscription monthly annual premium standard energy contract customer service"
).split()


def ingest(corpus: Path, rounds: int) -> None:
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in (".pdf", ".xml"))
    blobs = [(p.name, p.read_bytes()) for p in files]
    logging.getLogger("factur-x").setLevel(logging.ERROR)

    def baseline() -> None:
        for name, data in blobs:
            if name.lower().endswith(".pdf"):
                try:
                    facturx.get_xml_from_pdf(data, check_xsd=False)
                except Exception:  # noqa: S112 - broken files are part of the corpus; the baseline skips them
                    continue

    def import_all(processes: str) -> tuple[float, float, list[ImportOutcome]]:
        os.environ["OPENVRM_IMPORT_PROCESSES"] = processes
        try:
            with tempfile.TemporaryDirectory() as tmp:
                vault = Vault.open(Settings.resolve(Path(tmp)), create=True)
                uv = vault.create(PASSPHRASE)
                svc = ImportService(uv)
                cpu, start = cpu_seconds(), time.perf_counter()
                # The folder import (`vrm docs import FOLDER`): it reads the files from disk itself (the
                # baseline gets them in memory), parses ahead in worker processes (or threads) and commits
                # in groups.
                outcomes = svc.import_paths(files)
                elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
                vault.close()
        finally:
            os.environ.pop("OPENVRM_IMPORT_PROCESSES", None)
        return elapsed, cpu, outcomes

    def extraction_only(processes: str) -> tuple[float, float]:
        os.environ["OPENVRM_IMPORT_PROCESSES"] = processes
        try:
            cpu, start = cpu_seconds(), time.perf_counter()
            for _ in parse_only(files):
                pass
            return time.perf_counter() - start, cpu_seconds() - cpu
        finally:
            os.environ.pop("OPENVRM_IMPORT_PROCESSES", None)

    workers = str(parse_workers(len(files)))

    def parse_in_memory() -> None:
        for name, data in blobs:
            parse(data, filename=name)

    runs: dict[str, list[tuple[float, float]]] = {
        "base": [],
        "ours": [],
        "threads": [],
        "ceiling": [],
        "parse": [],
    }
    for _ in range(rounds):
        cpu, start = cpu_seconds(), time.perf_counter()
        baseline()
        runs["base"].append((time.perf_counter() - start, cpu_seconds() - cpu))
        elapsed, cpu, outcomes = import_all(workers)
        runs["ours"].append((elapsed, cpu))
        elapsed, cpu, _ = import_all("0")
        runs["threads"].append((elapsed, cpu))
        runs["ceiling"].append(extraction_only(workers))
        cpu, start = cpu_seconds(), time.perf_counter()
        parse_in_memory()
        runs["parse"].append((time.perf_counter() - start, cpu_seconds() - cpu))
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[o.status] = statuses.get(o.status, 0) + 1
    n = len(blobs)
    wall = {k: statistics.median(t for t, _ in v) for k, v in runs.items()}
    cpu_ms = {k: 1000 * statistics.median(c for _, c in v) / n for k, v in runs.items()}
    print(f"ingest: {n} files from {corpus} (median of {rounds} rounds); outcomes {statuses}")
    print(f"  {'':<45} {'files/s':>8} {'ratio':>6} {'CPU ms/file':>12}")
    rows = [
        ("factur-x extraction alone", "base"),
        (f"openvrm import, {workers} parse process(es)", "ours"),
        ("openvrm import, threads only", "threads"),
        (f"read + parse only, {workers} process(es), no storing", "ceiling"),
        ("parse only, from memory, one core", "parse"),
    ]
    for label, key in rows:
        ratio = f"{wall['base'] / wall[key]:6.2f}" if key != "base" else f"{'':>6}"
        print(f"  {label:<45} {n / wall[key]:8.1f} {ratio} {cpu_ms[key]:12.2f}")
    print(
        f"  (CPU counts the import's parse processes. {os.cpu_count()} cores here: no import that extracts"
        f" the same fields and text can pass {os.cpu_count() or 1} x the last ratio,"
        f" {(os.cpu_count() or 1) * wall['base'] / wall['parse']:.2f}.)"
    )


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the parse processes)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def search(n_docs: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        vault = Vault.open(Settings.resolve(Path(tmp)), create=True)
        uv = vault.create(PASSPHRASE)  # default Argon2id parameters: the unlock below is the real cost
        start = time.perf_counter()
        for batch in range(0, n_docs, 500):
            with uv.db.write() as s:
                for i in range(batch, min(n_docs, batch + 500)):
                    seller = rng.choice(SELLERS)
                    total = Decimal(rng.randint(500, 50000)) / 100
                    day = f"20{rng.randint(18, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                    fields = {
                        "seller": seller,
                        "invoice_number": f"INV-{i:06d}",
                        "issue_date": day,
                        "currency": "EUR",
                        "gross_total": str(total),
                        "document_type": "invoice",
                    }
                    body = " ".join(rng.choice(WORDS) for _ in range(250)) + f" {seller} INV-{i:06d}"
                    address = f"{i:064x}"
                    row = insert(
                        uv,
                        s,
                        Document,
                        {
                            "filename": f"inv-{i}.pdf",
                            "media_type": "application/pdf",
                            "size": 1000,
                            "title": f"Invoice INV-{i:06d} from {seller}",
                            "kind": "invoice",
                            "format": "facturx",
                            "parse_status": "parsed",
                            "fields": fields,
                        },
                        blob_address=address,
                    )
                    insert(uv, s, DocumentText, {"text": body}, record_id=row.id)
        fill = time.perf_counter() - start
        uv.lock()
        start = time.perf_counter()
        uv = vault.unlock(PASSPHRASE)
        unlocked_at = time.perf_counter()
        index = DocumentIndex.build(uv)
        built = time.perf_counter()
        queries = [
            "facture",
            "INV-004242",
            "edf electricite",
            "fibre internet orange",
            "netflix",
            "zzzz",
            "abonnement",
            "rech",
            "deutsche bahn vertrag",
            "remboursement avoir",
        ]
        latencies = []
        for _ in range(20):
            for q in queries:
                t = time.perf_counter()
                index.search(q, limit=50)
                latencies.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        index.search("", since="2024-01-01", min_total=Decimal("100"), limit=50)
        filtered = (time.perf_counter() - t) * 1000
        vault.close()
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(f"search: {n_docs} documents (filled in {fill:.1f} s)")
    print(
        f"  unlock (Argon2id) {1000 * (unlocked_at - start):.0f} ms"
        f" + index build {1000 * (built - unlocked_at):.0f} ms = {built - start:.2f} s to searchable"
    )
    print(
        f"  query latency over {len(latencies)} queries: median {statistics.median(latencies):.1f} ms,"
        f" p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms; filter-only query {filtered:.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--documents", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.corpus.is_dir():
        ingest(args.corpus, args.rounds)
    else:
        print(f"ingest: skipped, no corpus at {args.corpus}")
    search(args.documents)


if __name__ == "__main__":
    main()
