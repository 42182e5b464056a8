"""Benchmark: signed receipt pushes from concurrent vendor clients, against an unsigned no-op endpoint.

The person's real server (``create_app``) runs under uvicorn in a process of its own, on a fresh vault,
with bench vendors (vendor kits) mounted in it so the agent can connect to each one over HTTP. For the
benchmark only, that same app also gets ``POST /bench/noop``: it reads the body and answers a small JSON
document, with no signature, replay, idempotency or ledger work. The baseline is therefore the same server,
the same framework and middleware, the same clients and the same bodies.

For each number of concurrent clients (each client is one vendor with its own connection, pushing its
receipts one after the other on its own lane of the ledger, over one keep-alive HTTP connection):

1. locked: signed receipt events (RFC 9421 signature, ``Idempotency-Key``) to the agent's
   ``/vrm/p/{handle}/ledger`` while the vault is locked: verified, checked, sealed into the inbox (202);
2. session: the same with an owner session open (``POST /api/v1/session``): each event is checked against
   its chain, filed in the ledger and acknowledged synchronously (200 and a signed acknowledgement);

each against the very same clients posting the very same bodies, unsigned, to ``/bench/noop``, measured
back to back after a warm-up. Requests are built and signed before the clock starts (the signatures stay
well inside the replay window), so the load generator's own cryptography is not in the figures.

Prints requests per second, p50 and p99 latency, the ratio signed/no-op and the server process's CPU time
per request (user + system, all threads, from /proc: far less noisy than the rates on a shared machine).
Figures go in docs/benchmarks.md. Nothing here is a pass/fail test.

    python bench/protocol.py [--clients 1,4,16] [--requests 1000] [--rounds 4] [--database-url URL]
                             [--scenarios locked,session] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from openvrm.agent.service import AgentService, agent_urls
from openvrm.config import Settings
from openvrm.crypto import KdfParams
from openvrm.profile.service import ProfileService
from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.records import canonical_json
from openvrm.vault.core import Vault
from openvrm.vendor.config import VendorConfig, load_or_create_key

PASSPHRASE = "benchmark passphrase"
VENDOR_PREFIX = "/bench-vendors"
WARMUP = 200
"""Requests (spread over the clients, at least 10 each) before each measured run, not counted."""


def vendor_config(base_url: str, home: Path, i: int) -> VendorConfig:
    return VendorConfig(
        name=f"Bench Vendor {i}",
        base_url=f"{base_url}{VENDOR_PREFIX}/v{i}",
        store_dir=home / "vendors" / f"v{i}",
        accepted_terms=("service-delivery-only",),
        allow_loopback=True,
    )


def settings_for(home: Path, database_url: str | None) -> Settings:
    return replace(Settings.resolve(home, database_url=database_url), allow_loopback_peers=True)


# -- the server process -----------------------------------------------------------------------------


def serve(home: Path, vendors: int, database_url: str | None, profile_to: str | None) -> None:
    """Run in the server process: the person's app, the bench vendors and /bench/noop, until stdin closes."""
    import threading

    import uvicorn
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from openvrm.server import agent_api
    from openvrm.server.app import create_app
    from openvrm.vendor.app import create_vendor_app

    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets whose proto says TCP; without it every
    # response (headers and body written separately) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings_for(home, database_url))
    for i in range(vendors):
        app.mount(f"{VENDOR_PREFIX}/v{i}", create_vendor_app(vendor_config(url, home, i)))

    async def noop(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"status": "ok", "bytes": len(body)})

    app.add_api_route("/bench/noop", noop, methods=["POST"])

    profiler = None
    if profile_to:
        # The signed path's synchronous part (everything after the body is read) runs in the thread pool;
        # profile each call of it, one at a time (use with --clients 1). The clock is the thread's CPU
        # time, not the wall clock: on a shared machine, waiting for a core would otherwise be counted as
        # the work of whatever function was running.
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
        push = agent_api._push
        lock = threading.Lock()

        def profiled_push(*args: Any) -> Any:
            with lock:
                return profiler.runcall(push, *args)

        agent_api._push = profiled_push  # type: ignore[assignment]

    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    print(f"ready {url}", flush=True)
    sys.stdin.read()
    server.should_exit = True
    thread.join(timeout=30)
    if profiler is not None and profile_to:
        profiler.dump_stats(profile_to)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (Linux /proc; 0.0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each child process of ``pid`` (the server's check workers), by pid."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out[int(child)] = cpu_seconds(int(child))
    return out


@contextlib.contextmanager
def server_process(
    home: Path, vendors: int, database_url: str | None, profile_to: str | None
) -> Iterator[tuple[str, int]]:
    command = [sys.executable, __file__, "--serve", str(home), "--vendors", str(vendors)]
    if database_url:
        command += ["--database-url", database_url]
    if profile_to:
        command += ["--profile", profile_to]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: S603
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready "):
        proc.kill()
        raise RuntimeError("the server did not start")
    try:
        yield line.split(" ", 1)[1], proc.pid
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the clients ------------------------------------------------------------------------------------


@dataclass
class Lane:
    """One vendor client: its key, its connection's agreement and ledger URL, and its lane head."""

    key: KeyPair
    agreement_id: str
    ledger_url: str
    head: str | None = None
    counter: int = 0


@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    problem: str = ""
    cpu: float = 0.0
    """CPU seconds the server process used meanwhile (all its threads): less noisy than the rate."""
    worker_cpu: float = 0.0
    """CPU seconds the server's child processes (its check workers) used meanwhile."""
    client_cpu: float = 0.0
    """CPU seconds this process (the clients) used meanwhile."""

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.requests * 1000

    @property
    def worker_ms(self) -> float:
        return self.worker_cpu / self.requests * 1000

    @property
    def client_ms(self) -> float:
        return self.client_cpu / self.requests * 1000

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def build(lane: Lane, n: int) -> list[tuple[bytes, dict[str, str]]]:
    """``n`` signed receipt pushes chained on the lane: (body, signed headers)."""
    out = []
    for _ in range(n):
        lane.counter += 1
        payload = {
            "receipt_id": f"R-{lane.counter:06d}",
            "issued": "2025-03-14",
            "total": "42.90",
            "currency": "EUR",
            "lines": [{"description": "Monthly plan", "amount": "42.90"}],
        }
        event = m.make_event(lane.key, lane.agreement_id, "receipt", payload, lane.head)
        lane.head = event["event_id"]
        body = canonical_json(event)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, application/problem+json",
            "Idempotency-Key": event["idempotency_key"],
        }
        out.append((body, sign_request("POST", lane.ledger_url, headers, body, lane.key)))
    return out


async def run_clients(
    base_url: str,
    lanes: list[Lane],
    batches: list[list[tuple[bytes, dict[str, str]]]],
    signed: bool,
    server_pid: int = 0,
) -> Result:
    """Each client posts its batch in order over its own connection; all clients at once."""
    result = Result(requests=sum(len(b) for b in batches), seconds=0.0)
    noop = f"{base_url}/bench/noop"

    async def client(lane: Lane, batch: list[tuple[bytes, dict[str, str]]], c: httpx.AsyncClient) -> None:
        for body, headers in batch:
            if signed:
                target, sent = lane.ledger_url, headers
            else:
                target = noop
                sent = {k: v for k, v in headers.items() if k not in ("Signature", "Signature-Input")}
            t0 = time.perf_counter()
            response = await c.post(target, content=body, headers=sent)
            result.latencies.append(time.perf_counter() - t0)
            result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
            if response.status_code >= 400 and not result.problem:
                result.problem = response.text[:300]

    clients = [httpx.AsyncClient(timeout=60) for _ in lanes]
    try:
        t0, cpu0, own0 = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
        workers0 = children_cpu(server_pid) if server_pid else {}
        await asyncio.gather(
            *(client(lane, b, c) for lane, b, c in zip(lanes, batches, clients, strict=True))
        )
        result.seconds = time.perf_counter() - t0
        result.cpu = cpu_seconds(server_pid) - cpu0
        result.client_cpu = time.process_time() - own0
        workers1 = children_cpu(server_pid) if server_pid else {}
        result.worker_cpu = sum(cpu - workers0.get(pid, 0.0) for pid, cpu in workers1.items())
    finally:
        for c in clients:
            await c.aclose()
    return result


def measure(
    base_url: str, lanes: list[Lane], requests: int, rounds: int, server_pid: int = 0
) -> tuple[Result, Result]:
    """(no-op, signed): the same requests, unsigned to /bench/noop and signed to the agent's ledger.

    After a warm-up of both, the two alternate over ``rounds`` (each round's requests go to both sides,
    which one first alternates), so a change in the machine's load touches both alike.
    """
    per_client = max(1, requests // len(lanes) // rounds)
    warm = [build(lane, max(10, WARMUP // len(lanes))) for lane in lanes]
    for signed in (False, True):
        asyncio.run(run_clients(base_url, lanes, warm, signed))
    totals = {False: Result(0, 0.0), True: Result(0, 0.0)}
    for r in range(rounds):
        batches = [build(lane, per_client) for lane in lanes]
        for signed in (False, True) if r % 2 == 0 else (True, False):
            got = asyncio.run(run_clients(base_url, lanes, batches, signed, server_pid))
            total = totals[signed]
            total.requests += got.requests
            total.seconds += got.seconds
            total.cpu += got.cpu
            total.worker_cpu += got.worker_cpu
            total.client_cpu += got.client_cpu
            total.latencies += got.latencies
            for status, count in got.statuses.items():
                total.statuses[status] = total.statuses.get(status, 0) + count
            total.problem = total.problem or got.problem
    return totals[False], totals[True]


# -- setup and the run ------------------------------------------------------------------------------


def connect_all(settings: Settings, base_url: str, home: Path, vendors: int) -> list[Lane]:
    """Connect the person's agent to every bench vendor (over HTTP), as `vrm connect` does."""
    vault = Vault.open(settings)
    unlocked = vault.unlock(PASSPHRASE)
    agent = AgentService(unlocked)
    lanes = []
    for i in range(vendors):
        config = vendor_config(base_url, home, i)
        result = agent.connect(config.base_url, agent_base_url=base_url)
        assert result.connection is not None and result.connection.agreement_id, result
        lanes.append(
            Lane(
                load_or_create_key(config.key_file),
                result.connection.agreement_id,
                agent_urls(base_url, result.connection.handle)["ledger"],
            )
        )
    unlocked.lock()
    vault.close()
    return lanes


def log_in(base_url: str, settings: Settings) -> None:
    """Open an owner session, then wait until the server has filed what the locked scenario queued.

    Logging in starts a background chore that files every queued event and POSTs its acknowledgement to
    the vendor (mounted in the same server, so it verifies each one there too): thousands of them after
    the locked scenario. Measured before it is done, the session scenario would time that chore as well,
    on both sides of the ratio (it once doubled the no-op's CPU per request).
    """
    r = httpx.post(f"{base_url}/api/v1/session", json={"passphrase": PASSPHRASE}, timeout=60)
    r.raise_for_status()
    vault = Vault.open(settings)
    t0 = time.perf_counter()
    try:
        while (left := vault.inbox_count()) and time.perf_counter() - t0 < 1800:
            time.sleep(1)
    finally:
        vault.close()
    print(
        f"  session: the queued events were filed in {time.perf_counter() - t0:.0f} s ({left} left)",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str | None]:
    """``url`` with its search_path set to a new schema, dropped afterwards; None stays None (SQLite)."""
    if not url:
        yield None
        return
    import sqlalchemy as sa

    schema = f"bench_protocol_{os.getpid()}"
    eng = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with eng.connect() as c:
            c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        eng.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent clients")
    ap.add_argument("--requests", type=int, default=1000, help="measured requests per run")
    ap.add_argument("--rounds", type=int, default=4, help="alternations of no-op and signed per run")
    ap.add_argument("--database-url", help="PostgreSQL URL; the vault then lives in a new, temporary schema")
    ap.add_argument("--scenarios", default="locked,session", help="locked, session or both")
    ap.add_argument("--profile", help="write a cProfile of the server's signed path to this file")
    ap.add_argument(
        "--check-workers",
        default="auto",
        help="the server's push check workers (OPENVRM_CHECK_WORKERS): auto (one per core beyond the "
        "server's own) or a number; 0 checks every push in the server's own process",
    )
    ap.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run as the server process
    ap.add_argument("--vendors", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.serve:  # the server process inherits it, and its settings read it
        os.environ["OPENVRM_CHECK_WORKERS"] = args.check_workers
    if args.serve:
        serve(Path(args.serve), args.vendors, args.database_url, args.profile)
        return
    counts = [int(c) for c in args.clients.split(",")]
    scenarios = [s for s in args.scenarios.split(",") if s]
    rows: list[tuple[str, int, Result, Result]] = []
    with tempfile.TemporaryDirectory() as tmp, database(args.database_url) as url:
        home = Path(tmp)
        settings = settings_for(home, url)
        vault = Vault.open(settings, create=True)
        unlocked = vault.create(PASSPHRASE, kdf=KdfParams.new(time_cost=1, memory_kib=8192, parallelism=1))
        ProfileService(unlocked).set("name", "Ada Lovelace")
        ProfileService(unlocked).set("email", "ada@example.org")
        unlocked.lock()
        vault.close()
        # Each scenario gets connections of its own: events queued while locked are not filed yet, so
        # they must not be the lane heads the session scenario chains on.
        per_scenario = max(counts)
        with server_process(
            home,
            per_scenario * len(scenarios),
            url,
            str(Path(args.profile).absolute()) if args.profile else None,
        ) as (base_url, server_pid):
            lanes = connect_all(settings, base_url, home, per_scenario * len(scenarios))
            for si, scenario in enumerate(scenarios):
                mine = lanes[si * per_scenario : (si + 1) * per_scenario]
                if scenario == "session":
                    log_in(base_url, settings)
                for n in counts:
                    noop, signed = measure(base_url, mine[:n], args.requests, args.rounds, server_pid)
                    rows.append((scenario, n, signed, noop))
                    print(
                        f"  {scenario} {n} clients: signed {signed.rps:,.0f}/s, no-op {noop.rps:,.0f}/s "
                        f"{signed.problem}",
                        file=sys.stderr,
                        flush=True,
                    )

    backend = "postgresql" if args.database_url else "sqlite"
    print(
        f"openvrm protocol benchmark ({backend}; about {args.requests} receipt pushes per run, "
        f"server in its own process, {os.cpu_count()} CPUs)"
    )
    print(
        f"{'scenario':<10}{'clients':>8}{'no-op/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'signed/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'ratio':>7}{'cpu ms/req no-op, signed':>26}"
        f"{'+workers':>9}{'clients no-op, signed':>23}  statuses"
    )
    for scenario, n, signed, noop in rows:
        statuses = ",".join(f"{k}x{v}" for k, v in sorted(signed.statuses.items()))
        print(
            f"{scenario:<10}{n:>8}{noop.rps:>10,.0f}{noop.percentile(0.5):>8.1f}{noop.percentile(0.99):>8.1f}"
            f"{signed.rps:>10,.0f}{signed.percentile(0.5):>8.1f}{signed.percentile(0.99):>8.1f}"
            f"{signed.rps / noop.rps:>7.2f}{noop.cpu_ms:>17.2f}{signed.cpu_ms:>9.2f}{signed.worker_ms:>9.2f}"
            f"{noop.client_ms:>14.2f}{signed.client_ms:>9.2f}  {statuses}"
        )


if __name__ == "__main__":
    main()
