"""Benchmark: messages per second through the SMTP mail gateway, against a bare aiosmtpd sink.

The gateway (``GatewayServer`` in front of ``Gateway``) runs in a process of its own, as `vrm mail serve`
does, on a fresh vault (SQLite by default, or a new PostgreSQL schema): one vendor ("Shop", shop.example)
and one alias on mail.example, forwarding everything to the person's own address through a downstream SMTP
server. The DNS is an in-memory zone with a DKIM key, SPF (loopback allowed) and a DMARC reject policy for
shop.example, so every message really goes through DKIM verification, SPF and DMARC. The downstream server
is a counting aiosmtpd sink in another process of its own (the person's mail provider).

A message counts as done when the downstream sink has received it: the clock runs from the first
connection until the sink holds all N forwarded messages (receive, look up the alias, authenticate,
record the sealed inbox item and spool row, answer 250, forward from the spool).

The baseline, in the same run: a bare aiosmtpd ``Controller`` whose ``handle_DATA`` answers "250 OK" and
does nothing else, in a process of its own too, measured with the very same client behaviour. The clients:
1 and 20 concurrent sender threads, each with one smtplib connection reused for all its messages (a
vendor's mail server keeps its connection open), sending DKIM-signed messages built before the clock
starts. Baseline and gateway alternate over rounds; medians are reported.

Prints messages per second and the ratio gateway/bare. Figures go in docs/benchmarks.md. Nothing here is a
pass/fail test.

    python bench/mail.py [--messages 2000] [--senders 1,20] [--rounds 3] [--backend sqlite|postgresql]
                         [--database-url URL] [--profile FILE] [--cprofile FILE] [--quick]

The gateway process's CPU time per message (all its threads, from the process's own clock) is printed
beside the rates: on a shared machine it is much steadier than messages per second.
``--profile FILE`` wraps the gateway's pieces (RCPT, DATA, authentication, parsing, sealing, the spool's
rounds and downstream sends) with wall-clock timers in the gateway process and prints the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from pgschema import fresh_schema

PASSPHRASE = "benchmark passphrase"
DEFAULT_PG = os.environ.get("OPENVRM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DOMAIN = "mail.example"
VENDOR = "shop.example"
REAL = "anna@real.example"
SENDER = f"billing@{VENDOR}"
WARMUP = 40
"""Messages (spread over the senders) before each measured run, not counted."""


# -- DKIM and messages --------------------------------------------------------------------------------


def make_dkim() -> tuple[bytes, str]:
    """An RSA-2048 DKIM key: (private PEM, public key base64 for the DNS record)."""
    from openvrm.mail.auth import new_dkim_key

    return new_dkim_key()


def build_messages(n: int, to: str, pem: bytes) -> list[bytes]:
    """``n`` DKIM-signed order confirmations of about 2 KiB, each with its own Message-ID."""
    import dkim

    out = []
    para = (
        "Thank you for your order. Your items will be shipped within two working days; you will receive "
        "a tracking number by email as soon as the parcel leaves our warehouse.\n"
    )
    for i in range(n):
        msg = EmailMessage()
        msg["From"] = f"Shop Billing <{SENDER}>"
        msg["To"] = to
        msg["Subject"] = f"Your order #{100000 + i} has been confirmed"
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=VENDOR)
        msg.set_content(f"Hello,\n\n{para * 10}\nOrder #{100000 + i}, total 42.{i % 100:02d} EUR.\n")
        raw = msg.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
        out.append(dkim.sign(raw, b"s1", VENDOR.encode(), pem) + raw)
    return out


# -- the server processes -----------------------------------------------------------------------------


class CountingSink:
    """The bare baseline and the downstream: accept every message, count it, nothing else."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        return "250 OK"


def serve_sink() -> None:
    """Run in the sink process: print the port; on stdin ``count`` print how many messages arrived.

    The same server a ``aiosmtpd.controller.Controller`` runs (``SMTP(handler)`` on an asyncio server),
    on a loopback socket made with ``IPPROTO_TCP`` so asyncio sets ``TCP_NODELAY`` as it does when it
    binds by host and port."""
    from aiosmtpd.smtp import SMTP

    handler = CountingSink()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        server = await loop.create_server(lambda: SMTP(handler, hostname="sink.example"), sock=sock)
        print(sock.getsockname()[1], flush=True)
        done = asyncio.Event()

        def read_stdin() -> None:
            for line in sys.stdin:
                if line.strip() == "count":
                    print(handler.count, flush=True)
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=read_stdin, daemon=True).start()
        await done.wait()
        server.close()

    asyncio.run(main())


def serve_gateway(home: str, database_url: str | None, public_b64: str, profile_to: str | None) -> None:
    """Run in the gateway process: open the vault, start the gateway, print its port; stop at stdin EOF.

    On stdin ``cpu`` it prints the CPU seconds the process has used (all threads), so the parent can
    report CPU time per message, a figure much less noisy than messages per second on a shared machine.
    """
    from openvrm.config import Settings
    from openvrm.mail.auth import ZoneResolver
    from openvrm.mail.gateway import Gateway
    from openvrm.mail.keys import MailKeys
    from openvrm.server.smtp_gateway import GatewayServer, gateway_in_thread
    from openvrm.vault.core import Vault

    # aiosmtpd logs each connection closed at the gateway's 200-MAIL limit (the senders reconnect).
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    vault = Vault.open(Settings.resolve(Path(home), database_url=database_url))
    uv = vault.unlock(PASSPHRASE)
    zone = ZoneResolver()
    zone.add(f"s1._domainkey.{VENDOR}", "TXT", f"v=DKIM1; k=rsa; p={public_b64}")
    zone.add(VENDOR, "TXT", "v=spf1 ip4:127.0.0.1 -all")
    zone.add(f"_dmarc.{VENDOR}", "TXT", "v=DMARC1; p=reject")
    gateway = Gateway(vault, MailKeys.from_vault(uv), zone)
    # poll_seconds is only the idle poll: every accepted message wakes the delivery loop at once.
    server = GatewayServer(gateway, port=0, poll_seconds=15.0)
    profiler = instrument(gateway, profile_to) if profile_to else None
    cprofile_to = os.environ.get("BENCH_MAIL_CPROFILE")
    profiles = cprofile_threads() if cprofile_to else None
    with gateway_in_thread(server) as (_host, port):
        print(port, flush=True)
        for line in sys.stdin:
            if line.strip() == "cpu":
                print(time.process_time(), flush=True)
    if profiler is not None:
        profiler()
    if profiles is not None and cprofile_to:
        import pstats

        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(cprofile_to)
    vault.close()


def cprofile_threads() -> list[Any]:
    """cProfile every thread started from now on (the gateway's loop and its worker threads)."""
    import cProfile

    profiles: list[Any] = []

    def start(*_a: Any) -> None:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()

    threading.setprofile(start)
    return profiles


def instrument(gateway: Any, path: str) -> Any:
    """Wrap the gateway's pieces with wall-clock timers (all threads); returns a function writing the
    totals to ``path`` (seconds, calls) when the gateway stops."""
    import collections
    import json

    import openvrm.mail.gateway as gw
    import openvrm.server.smtp_gateway as sg
    from openvrm.mail import analysis as an
    from openvrm.mail.routing import Routes
    from openvrm.outbox.transport import SmtpTransport

    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    lock = threading.Lock()

    def add(name: str, dt: float) -> None:
        with lock:
            totals[name][0] += dt
            totals[name][1] += 1

    def wrap(owner: Any, attr: str, name: str) -> None:
        fn = getattr(owner, attr)
        if asyncio.iscoroutinefunction(fn):

            async def awrapper(*a: Any, **k: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await fn(*a, **k)
                finally:
                    add(name, time.perf_counter() - t0)

            setattr(owner, attr, awrapper)
        else:

            def wrapper(*a: Any, **k: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    add(name, time.perf_counter() - t0)

            setattr(owner, attr, wrapper)

    wrap(gw.Gateway, "recipient", "RCPT: Gateway.recipient")
    wrap(gw.Gateway, "accept", "DATA: Gateway.accept (total)")
    wrap(gw, "authenticate", "DATA:  authenticate (DKIM+SPF+DMARC)")
    wrap(an, "parse", "DATA:  analysis.parse")
    wrap(an, "summarise", "DATA:  analysis.summarise")
    wrap(an, "bills_in", "DATA:  analysis.bills_in")
    wrap(an, "classify", "DATA:  analysis.classify")
    wrap(Routes, "reverse_for", "DATA:  Routes.reverse_for")
    wrap(gw.Gateway, "_forward_copy", "DATA:  _forward_copy")
    wrap(type(gateway.vault), "inbox_row", "DATA:  vault.inbox_row (seal)")
    wrap(gw.Spool, "entry", "DATA:  Spool.entry (seal)")
    wrap(sg.Handler, "handle_RCPT", "loop: handle_RCPT (await)")
    wrap(sg.Handler, "handle_DATA", "loop: handle_DATA (await)")
    wrap(sg.GatewayServer, "deliver_once", "spool: deliver_once")
    wrap(gw.Spool, "deliver", "spool:  Spool.deliver")
    wrap(gw.Spool, "deliver_handed", "spool:  Spool.deliver_handed")
    wrap(gw.Spool, "_delete", "spool:   Spool._delete")
    wrap(gw.Spool, "_settle", "spool:   Spool._settle (delete + claim)")
    wrap(SmtpTransport, "open", "spool:   transport.open")
    wrap(SmtpTransport, "send", "spool:   transport.send")
    wrap(SmtpTransport, "close", "spool:  transport.close")

    def dump() -> None:
        Path(path).write_text(json.dumps({k: v for k, v in sorted(totals.items())}, indent=1))

    return dump


@contextlib.contextmanager
def child(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter running this file
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        raise RuntimeError(f"the {args[0]} process did not start")
    try:
        yield proc, int(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def sink_count(proc: subprocess.Popen[str]) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("count\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


# -- the senders ----------------------------------------------------------------------------------------


def send_all(port: int, rcpt: str, messages: list[bytes], senders: int) -> None:
    """``senders`` threads, each with one connection reused for its share of ``messages``."""
    errors: list[BaseException] = []
    shares = [messages[i::senders] for i in range(senders)]
    start = threading.Barrier(senders)

    def connect() -> smtplib.SMTP:
        c = smtplib.SMTP("127.0.0.1", port, local_hostname=f"mx.{VENDOR}", timeout=60)
        c.ehlo()
        return c

    def run(share: list[bytes]) -> None:
        c = None
        try:
            c = connect()
            start.wait()
            for raw in share:
                try:
                    refused = c.sendmail(SENDER, [rcpt], raw)
                except (smtplib.SMTPServerDisconnected, smtplib.SMTPSenderRefused) as exc:
                    # The gateway closes a connection after 200 MAIL commands (421): like a real MTA,
                    # reconnect and send the message again.
                    if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code != 421:
                        raise
                    with contextlib.suppress(Exception):
                        c.close()
                    c = connect()
                    refused = c.sendmail(SENDER, [rcpt], raw)
                if refused:
                    raise RuntimeError(f"refused: {refused}")
            c.quit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            start.abort()
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()

    threads = [threading.Thread(target=run, args=(s,)) for s in shares if s]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a sender failed: {errors[0]!r}")


def wait_count(proc: subprocess.Popen[str], target: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while sink_count(proc) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the downstream sink got {sink_count(proc)} of {target} messages")
        time.sleep(0.005)


def measure(
    port: int, rcpt: str, messages: list[bytes], senders: int, counter: subprocess.Popen[str]
) -> float:
    """Messages per second: clock from the first connection to the counter holding all of them."""
    base = sink_count(counter)
    t0 = time.perf_counter()
    send_all(port, rcpt, messages, senders)
    wait_count(counter, base + len(messages))
    return len(messages) / (time.perf_counter() - t0)


def process_cpu(proc: subprocess.Popen[str]) -> float:
    """The CPU seconds a gateway process has used so far."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("cpu\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


# -- setup ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(backend: str, url: str | None) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    with fresh_schema(url or DEFAULT_PG, f"bench_mail_{os.getpid()}") as schema_url:
        yield schema_url


def make_vault(home: Path, database_url: str | None, sink_port: int) -> str:
    """A vault with the gateway set up, one vendor and its alias; returns the alias address."""
    from openvrm.config import Settings
    from openvrm.crypto import KdfParams
    from openvrm.mail.routing import Downstream
    from openvrm.mail.service import MailService
    from openvrm.vault.core import Vault
    from openvrm.vendors.service import VendorService

    vault = Vault.open(Settings.resolve(home, database_url=database_url), create=True)
    uv = vault.create(PASSPHRASE, kdf=KdfParams.new(time_cost=1, memory_kib=8 * 1024, parallelism=1))
    vendor = VendorService(uv).add("Shop", domains=[VENDOR])
    mail = MailService(uv)
    mail.setup(domains=[DOMAIN], forward_to=REAL, downstream=Downstream("127.0.0.1", sink_port, "none"))
    alias = mail.create_alias(vendor.id)
    vault.close()
    return alias.address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000, help="Messages per measured run.")
    ap.add_argument("--senders", default="1,20", help="Comma-separated numbers of concurrent senders.")
    ap.add_argument("--rounds", type=int, default=3, help="Rounds (bare and gateway alternate; medians).")
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--database-url", help=f"PostgreSQL URL (default {DEFAULT_PG}); a fresh schema is used")
    ap.add_argument(
        "--profile",
        help="Time the gateway's pieces (wall clock, all threads) into FILE (JSON) and print them; "
        "the timers add a little overhead",
    )
    ap.add_argument(
        "--cprofile",
        help="cProfile every thread of the gateway process into FILE (pstats; warm-up included)",
    )
    ap.add_argument("--quick", action="store_true", help="300 messages, 1 round (a smoke run)")
    ap.add_argument("--serve-sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-gateway", nargs=3, metavar=("HOME", "URL", "PUB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_sink:
        serve_sink()
        return
    if args.serve_gateway:
        home, url, pub = args.serve_gateway
        serve_gateway(home, None if url == "-" else url, pub, os.environ.get("BENCH_MAIL_PROFILE"))
        return
    if args.quick:
        args.messages, args.rounds = 300, 1
    senders = [int(x) for x in args.senders.split(",")]

    pem, pub = make_dkim()
    results: dict[int, dict[str, list[float]]] = {s: {"bare": [], "gateway": []} for s in senders}
    cpu: dict[int, list[float]] = {s: [] for s in senders}
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(args.backend, args.database_url) as url,
        child("--serve-sink") as (bare, bare_port),
        child("--serve-sink") as (downstream, downstream_port),
    ):
        alias = make_vault(Path(tmp) / "home", url, downstream_port)
        messages = build_messages(args.messages, alias, pem)
        warm = build_messages(WARMUP, alias, pem)
        env_profile = {"BENCH_MAIL_PROFILE": args.profile} if args.profile else {}
        os.environ.update(env_profile)
        if args.cprofile:
            os.environ["BENCH_MAIL_CPROFILE"] = args.cprofile
        with child("--serve-gateway", str(Path(tmp) / "home"), url or "-", pub) as (gw, gw_port):
            for s in senders:
                measure(bare_port, alias, warm, min(s, WARMUP), bare)
                measure(gw_port, alias, warm, min(s, WARMUP), downstream)
                for r in range(args.rounds):
                    order = ("bare", "gateway") if r % 2 == 0 else ("gateway", "bare")
                    for mode in order:
                        if mode == "bare":
                            rate = measure(bare_port, alias, messages, s, bare)
                        else:
                            cpu0 = process_cpu(gw)
                            rate = measure(gw_port, alias, messages, s, downstream)
                            cpu[s].append((process_cpu(gw) - cpu0) / len(messages))
                        results[s][mode].append(rate)

    print(
        f"openvrm mail gateway benchmark ({args.backend}; {args.messages} DKIM-signed messages of "
        f"~{len(messages[0]) // 100 / 10:.1f} KB per run, median of {args.rounds} rounds)"
    )
    print(
        f"{'senders':<9}{'bare msg/s':>12}{'gateway msg/s':>15}{'ratio':>8}{'gw CPU ms/msg':>15}"
        "   (target >= 0.5)"
    )
    for s in senders:
        b = statistics.median(results[s]["bare"])
        g = statistics.median(results[s]["gateway"])
        c = statistics.median(cpu[s]) * 1000
        runs = " ".join(f"{x:.0f}" for x in results[s]["gateway"])
        print(f"{s:<9}{b:>12,.0f}{g:>15,.0f}{g / b:>8.2f}{c:>15.2f}   gateway runs: {runs}")
    if args.profile:
        import json

        print("\ngateway timers (warm-up included; wall time, so threads waiting for the GIL count):")
        for name, (total, calls) in json.loads(Path(args.profile).read_text()).items():
            print(f"  {name:<42}{calls:>7} calls{total / calls * 1000:>9.2f} ms/call{total:>9.2f} s")


if __name__ == "__main__":
    main()
