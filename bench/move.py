"""Benchmark: a move across 1,000 vendors, delivered through the durable outbox to a local SMTP sink.

In one run, against the same sink (aiosmtpd on loopback, accepting everything):

1. outbox: `MoveService.start` (profile change, one sealed outbox message per vendor, one transaction)
   then `Outbox.deliver` (per message: claimed as "sending" in a committed transaction, sent, marked
   "sent" in the transaction that claims the next one);
2. raw: the very same messages (built from the outbox beforehand) sent with plain aiosmtplib over one
   connection, no database at all.

Prints messages per second for both and the ratios. Figures go in docs/benchmarks.md.

    python bench/move.py [--vendors 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller

from openvrm.config import Settings
from openvrm.crypto import KdfParams
from openvrm.moves import MoveService
from openvrm.outbox import Outbox, SmtpTransport, clean_mail_settings, load_mail_settings, save_mail_settings
from openvrm.profile.service import ProfileService
from openvrm.vault.core import Vault
from openvrm.vendors.service import VendorService

PASSPHRASE = "benchmark passphrase"
OLD = {"street": "12 Rue des Lilas", "postal_code": "75011", "city": "Paris", "country": "FR"}
NEW = {"street": "3 Allée des Chênes", "postal_code": "69003", "city": "Lyon", "country": "FR"}


class CountingSink:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.count += 1
        return "250 OK"


def serve_sink(port: int) -> None:
    """Run in the sink process: accept everything on ``port`` until stdin closes, then print the count.

    The SMTP server runs in its own process, as a real one would, so it does not compete with the sender
    for the interpreter lock (which would penalise whichever side does more Python work).
    """
    sink = CountingSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()
    print(sink.count, flush=True)


@contextlib.contextmanager
def sink_process(port: int) -> Iterator[Callable[[], int]]:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter running this file
        [sys.executable, __file__, "--sink", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("the SMTP sink did not start")
    result: list[int] = []

    def count() -> int:
        if not result:
            out, _ = proc.communicate(timeout=60)
            result.append(int(out.strip().splitlines()[-1]))
        return result[0]

    try:
        yield count
    finally:
        if proc.poll() is None:
            proc.kill()


async def raw_send(messages: list[Message], port: int) -> float:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench.localhost")
    await smtp.connect()
    t0 = time.perf_counter()
    for m in messages:
        await smtp.send_message(m)
    elapsed = time.perf_counter() - t0
    await smtp.quit()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vendors", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=4, help="SMTP connections the outbox uses")
    ap.add_argument("--sink", type=int, help=argparse.SUPPRESS)  # internal: run as the SMTP sink process
    args = ap.parse_args()
    if args.sink:
        serve_sink(args.sink)
        return
    n = args.vendors

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with sink_process(port) as sink_count:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings.resolve(Path(tmp) / "home")
            vault = Vault.open(settings, create=True)
            uv = vault.create(PASSPHRASE, kdf=KdfParams.new(time_cost=1, memory_kib=8192, parallelism=1))
            save_mail_settings(
                uv, clean_mail_settings(host="127.0.0.1", port=port, tls="none", from_addr="anna@example.org")
            )
            p = ProfileService(uv)
            p.set("name", "Anna Example")
            p.set("address", OLD)
            vs = VendorService(uv)
            contacts: dict[str, str] = {}
            t0 = time.perf_counter()
            for i in range(n):
                v = vs.add(f"Vendor {i:04d}")
                vs.relate(v.id, customer_number=f"C-{i:06d}")
                contacts[v.id] = f"privacy{i}@vendor{i}.example"
            print(f"setup: {n} vendors with relationships in {time.perf_counter() - t0:.1f} s")

            svc = MoveService(uv)
            t0 = time.perf_counter()
            plan = svc.plan("address", NEW, contacts=contacts)
            t_plan = time.perf_counter() - t0
            t0 = time.perf_counter()
            move = svc.start("address", NEW, contacts=contacts)
            t_start = time.perf_counter() - t0
            box = Outbox(uv)
            # The same messages, built before any sending, for the raw baseline.
            messages = [box.message(x.outbox_id) for x in move.notices if x.outbox_id]
            assert len(messages) == n == len(plan.candidates)

            t0 = time.perf_counter()
            mail = load_mail_settings(uv)
            report = box.deliver_now([SmtpTransport(mail) for _ in range(args.connections)])
            t_deliver = time.perf_counter() - t0
            assert report.sent == n, report.to_json()

            t_raw = asyncio.run(raw_send(messages, port))
            uv.lock()
            vault.close()
        assert sink_count() == 2 * n, "the sink did not receive every message"

    raw_rate = n / t_raw
    deliver_rate = n / t_deliver
    move_rate = n / (t_start + t_deliver)
    print(f"vendors: {n} (SQLite, WAL)")
    print(f"plan (who holds the old value): {t_plan:.2f} s")
    print(f"start (profile + {n} sealed outbox rows, one transaction): {t_start:.2f} s")
    print(f"outbox deliver ({args.connections} connections): {t_deliver:.2f} s = {deliver_rate:.0f} msg/s")
    print(f"raw aiosmtplib (1 connection, no database): {t_raw:.2f} s = {raw_rate:.0f} msg/s")
    print(f"ratio deliver / raw: {deliver_rate / raw_rate:.2f}")
    print(f"ratio whole move (start + deliver) / raw: {move_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
