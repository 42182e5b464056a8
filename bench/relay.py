"""Benchmark: the intent relay on PostgreSQL, matching and webhook delivery.

One fresh PostgreSQL schema for the run (dropped at the end), the relay built on it (``Relay``). The
subscriptions are written in bulk into the relay's own tables (SQLAlchemy Core, the same rows
``Relay.subscribe`` writes), growing through the sizes (1,000 -> 10,000 -> 100,000), with one vendor per
ten subscriptions. The data is seeded and meant to look like a real relay: categories mostly leaves of the
taxonomy, some parents; most subscriptions anywhere, others in FR/DE/ES/IT/NL or one of their regions;
price floors for some; keywords for about a fifth. The intents are signed (``make_intent``, a fresh key
each) with varied categories, countries, price ceilings and texts whose words sometimes hit keywords.

1. matching, at each size: ``Relay.match`` (the indexed query, one read transaction per intent) over every
   intent, against ``Relay.naive_match`` (load every subscription, test each in Python) in the same run,
   on the same intents; at the larger sizes the naive scan runs on a sample (a time budget per size), and
   both answers are compared on every intent the naive scan ran on (they must be equal);
2. delivery, at one size: some vendors get webhooks pointing at receivers on loopback (a plain asyncio
   HTTP sink in a process of its own, answering 204 and recording the arrival time with ``time.time()``,
   the clock both processes share). Throughput: intents are published through ``Relay.publish`` (matched
   and queued), then a ``WorkerPool`` of 1 and then 4 workers drains the queue: deliveries per second.
   Latency: intents published at a steady rate while the pool runs (as ``vrm relay serve`` does, with its
   1 s idle poll), publish -> arrival at the receiver, p50 and p99.

Prints tables; figures go in docs/benchmarks.md. Nothing here is a pass/fail test.

    python bench/relay.py [--sizes 1000,10000,100000] [--intents 1000] [--database-url URL]
                          [--naive-budget 60] [--delivery-size 10000] [--webhook-vendors 100]
                          [--delivery-intents 300] [--workers 1,4] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from openvrm.intents.taxonomy import categories
from openvrm.protocol import messages as m
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_intent
from openvrm.relay import Relay, RelayConfig, WorkerPool
from openvrm.relay.store import (
    Delivery,
    Subscription,
    SubscriptionCategory,
    SubscriptionKeyword,
    SubscriptionRegion,
    Vendor,
    open_store,
)
from pgschema import fresh_schema

DEFAULT_URL = os.environ.get("OPENVRM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
COUNTRIES = ["FR", "DE", "ES", "IT", "NL"]
COUNTRY_WEIGHTS = [40, 20, 15, 15, 10]
SUBREGIONS = {
    "FR": ["IDF", "ARA", "PAC", "OCC", "NAQ"],
    "DE": ["BY", "BE", "NW", "HH"],
    "ES": ["MD", "CT", "AN"],
    "IT": ["RM", "MI", "NA"],
    "NL": ["NH", "ZH", "UT"],
}
VOCAB = {
    "telecom": ["fibre", "5g", "esim", "roaming", "unlimited", "data", "landline"],
    "energy": ["green", "solar", "fixed", "tariff", "heatpump", "renewable", "nuclear"],
    "insurance": ["deductible", "comprehensive", "dental", "liability", "theft", "young", "pets"],
    "finance": ["mortgage", "overdraft", "savings", "card", "rate", "student", "ethical"],
    "mobility": ["electric", "cargo", "lease", "pass", "monthly", "repair", "commute"],
    "home": ["washing", "sofa", "plumber", "oven", "kitchen", "roof", "garden"],
    "media": ["4k", "sports", "family", "digital", "cinema", "weekly", "podcast"],
    "electronics": ["laptop", "refurbished", "smartphone", "warranty", "tablet", "gaming", "camera"],
    "travel": ["hotel", "flight", "weekend", "beach", "business", "seaside", "mountain"],
    "services": ["gym", "yoga", "nanny", "daycare", "coach", "evenings", "swimming"],
}
FILLER = (
    "looking for a good offer with fair price near me please best quality fast cheap reliable "
    "contract month new switch from current provider before end of year two people small flat"
).split()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def amount(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# -- data -------------------------------------------------------------------------------------------


class Data:
    """Seeded generators of vendors, subscriptions and intents."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        cats = list(categories())
        self.leaves = [c for c in cats if "." in c]
        self.parents = [c for c in cats if "." not in c]
        self.vendors: list[str] = []

    def vendors_up_to(self, n: int) -> list[str]:
        while len(self.vendors) < n:
            self.vendors.append(KeyPair.generate().did)
        return self.vendors[:n]

    def _region_list(self) -> list[str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return []  # anywhere
        if roll < 0.9:
            return list(dict.fromkeys(rng.choices(COUNTRIES, COUNTRY_WEIGHTS, k=rng.randint(1, 3))))
        country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        return [f"{country}-{r}" for r in rng.sample(SUBREGIONS[country], rng.randint(1, 2))]

    def subscription(self, vendors: list[str], now: Any) -> dict[str, Any]:
        """The rows of one subscription, as ``Relay.subscribe`` writes them."""
        rng = self.rng
        n_cats = 1 if rng.random() < 0.8 else rng.randint(2, 3)
        cats = list(
            dict.fromkeys(
                rng.choice(self.leaves) if rng.random() < 0.75 else rng.choice(self.parents)
                for _ in range(n_cats)
            )
        )
        regions = self._region_list()
        filters: dict[str, Any] = {"categories": cats}
        if regions:
            filters["regions"] = regions
        low = high = None
        currency = None
        if rng.random() < 0.3:
            currency = "EUR" if rng.random() < 0.95 else "GBP"
            low = rng.randint(5, 150) * 100
            filters["price_min"] = {"amount": amount(low), "currency": currency}
            if rng.random() < 0.5:
                high = low + rng.randint(20, 300) * 100
                filters["price_max"] = {"amount": amount(high), "currency": currency}
        keywords: list[str] = []
        if rng.random() < 0.2:
            keywords = rng.sample(VOCAB[cats[0].split(".")[0]], rng.randint(1, 3))
            filters["keywords"] = keywords
        sub_id = str(uuid.uuid4())
        return {
            "sub": {
                "id": sub_id,
                "vendor": rng.choice(vendors),
                "active": True,
                "price_min": low,
                "price_max": high,
                "currency": currency,
                "any_region": not regions,
                "any_keyword": not keywords,
                "filters": filters,
                "created_at": now,
            },
            "cats": [{"category": c, "subscription_id": sub_id} for c in cats],
            "regions": [{"region": r, "subscription_id": sub_id} for r in regions],
            "keywords": [{"keyword": k, "subscription_id": sub_id} for k in keywords],
        }

    def intent(self, vendors: list[str]) -> dict[str, Any]:
        rng = self.rng
        category = rng.choice(self.leaves) if rng.random() < 0.9 else rng.choice(self.parents)
        where: dict[str, Any] = {}
        if rng.random() < 0.85:
            country = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
            where["country"] = country
            if rng.random() < 0.3:
                where["region"] = rng.choice(SUBREGIONS[country])
        constraints: dict[str, Any] = {}
        if rng.random() < 0.75:
            currency = "EUR" if rng.random() < 0.95 else "GBP"
            constraints["price_max"] = {
                "amount": amount(rng.randint(10, 300) * 100 + rng.choice([0, 50, 99])),
                "currency": currency,
                "per": "month",
            }
        topical = rng.sample(VOCAB[category.split(".")[0]], rng.randint(0, 3))
        text_words = rng.sample(FILLER, rng.randint(4, 12)) + topical
        rng.shuffle(text_words)
        text = " ".join(text_words).capitalize()
        exclude = rng.sample(vendors, rng.randint(1, 2)) if rng.random() < 0.03 else []
        return make_intent(
            KeyPair.generate(),
            category=category,
            text=text,
            constraints=constraints,
            where=where,
            exclude=exclude,
            expires_at=m.now_utc() + timedelta(days=7),
        )


def populate(relay: Relay, data: Data, target: int, have: int) -> float:
    """Grow the subscriptions from ``have`` to ``target`` (and the vendors to target / 10); seconds taken."""
    t0 = time.perf_counter()
    vendors = data.vendors_up_to(max(1, target // 10))
    old_vendors = max(1, have // 10) if have else 0
    now = m.now_utc()
    with relay.db.engine.begin() as conn:
        new_vendors = vendors[old_vendors:]
        for i in range(0, len(new_vendors), 5000):
            conn.execute(
                sa.insert(Vendor.__table__),
                [
                    {"did": d, "name": f"Vendor {old_vendors + i + j}", "webhook": None, "created_at": now}
                    for j, d in enumerate(new_vendors[i : i + 5000])
                ],
            )
        for start in range(have, target, 5000):
            batch = [data.subscription(vendors, now) for _ in range(min(5000, target - start))]
            conn.execute(sa.insert(Subscription.__table__), [b["sub"] for b in batch])
            for table, key in (
                (SubscriptionCategory.__table__, "cats"),
                (SubscriptionRegion.__table__, "regions"),
                (SubscriptionKeyword.__table__, "keywords"),
            ):
                rows = [r for b in batch for r in b[key]]
                if rows:
                    conn.execute(sa.insert(table), rows)
    with relay.db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    return time.perf_counter() - t0


# -- matching ---------------------------------------------------------------------------------------


def bench_matching(relay: Relay, intents: list[dict[str, Any]], naive_budget: float) -> dict[str, Any]:
    for intent in intents[:20]:  # warm-up: connections, plan cache
        relay.match(intent)
    times: list[float] = []
    answers: list[set[tuple[str, str]]] = []
    t_all = time.perf_counter()
    for intent in intents:
        t0 = time.perf_counter()
        found = relay.match(intent)
        times.append(time.perf_counter() - t0)
        answers.append(set(found))
    indexed_total = time.perf_counter() - t_all

    naive_times: list[float] = []
    mismatches = 0
    t_all = time.perf_counter()
    for i, intent in enumerate(intents):
        t0 = time.perf_counter()
        found = relay.naive_match(intent)
        naive_times.append(time.perf_counter() - t0)
        if set(found) != answers[i]:
            mismatches += 1
        spent = time.perf_counter() - t_all
        if i + 1 >= 5 and spent > naive_budget:
            break
    naive_total = time.perf_counter() - t_all
    return {
        "intents": len(intents),
        "indexed_rate": len(intents) / indexed_total,
        "indexed_p50": pct(times, 0.5) * 1000,
        "indexed_p99": pct(times, 0.99) * 1000,
        "indexed_mean": statistics.fmean(times) * 1000,
        "matches": statistics.fmean(len(a) for a in answers),
        "vendors": statistics.fmean(len({v for _, v in a}) for a in answers),
        "naive_n": len(naive_times),
        "naive_rate": len(naive_times) / naive_total,
        "naive_p50": pct(naive_times, 0.5) * 1000,
        "naive_p99": pct(naive_times, 0.99) * 1000,
        "naive_mean": statistics.fmean(naive_times) * 1000,
        "mismatches": mismatches,
    }


# -- the webhook receivers (their own process) --------------------------------------------------------


class _Hook(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive server: every request is answered 204 and its arrival recorded."""

    def __init__(self, arrivals: list[tuple[float, bytes]]) -> None:
        self.arrivals = arrivals
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.arrivals.append((time.time(), body))
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")


def serve_receivers(count: int) -> None:
    """Run in the receiver process: ``count`` loopback ports; on stdin ``dump PATH`` writes the arrivals
    ([time, intent_id] per POST) to PATH and clears them; stdin closing ends the process."""
    arrivals: list[tuple[float, bytes]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(count):
            # IPPROTO_TCP so asyncio sets TCP_NODELAY (see docs/benchmarks.md, protocol section).
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
            await loop.create_server(lambda: _Hook(arrivals), sock=sock, backlog=512)
        print(" ".join(map(str, ports)), flush=True)
        done = asyncio.Event()

        def dump(path: str) -> None:
            taken = arrivals[:]
            arrivals.clear()
            out = []
            for t, body in taken:
                item = json.loads(body)
                out.append([t, (item.get("intent") or {}).get("intent_id")])
            Path(path).write_text(json.dumps(out))

        def read_stdin() -> None:
            for line in sys.stdin:
                cmd, _, arg = line.strip().partition(" ")
                if cmd == "dump":
                    ready = threading.Event()
                    loop.call_soon_threadsafe(lambda a=arg, e=ready: (dump(a), e.set()))
                    ready.wait()
                    print("ok", flush=True)
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=read_stdin, daemon=True).start()
        await done.wait()

    asyncio.run(main())


class Receivers:
    def __init__(self, proc: subprocess.Popen[str], ports: list[int], tmp: Path) -> None:
        self.proc = proc
        self.ports = ports
        self.tmp = tmp

    def dump(self) -> list[tuple[float, str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        path = self.tmp / f"arrivals-{secrets.token_hex(4)}.json"
        self.proc.stdin.write(f"dump {path}\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError("the receivers did not answer")
        return [(float(t), str(i)) for t, i in json.loads(path.read_text())]


@contextlib.contextmanager
def receivers_process(count: int) -> Iterator[Receivers]:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter running this file
        [sys.executable, __file__, "--serve-receivers", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().split()
    if len(line) != count:
        proc.kill()
        raise RuntimeError("the webhook receivers did not start")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            yield Receivers(proc, [int(p) for p in line], Path(tmp))
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- delivery ---------------------------------------------------------------------------------------


def pending(relay: Relay) -> int:
    with relay.db.read() as s:
        return int(
            s.scalar(sa.select(sa.func.count()).select_from(Delivery).where(Delivery.status == "pending"))
            or 0
        )


def delivered_since(relay: Relay, first_id: int) -> int:
    with relay.db.read() as s:
        return int(
            s.scalar(
                sa.select(sa.func.count())
                .select_from(Delivery)
                .where(Delivery.id > first_id, Delivery.status == "delivered")
            )
            or 0
        )


def last_delivery_id(relay: Relay) -> int:
    with relay.db.read() as s:
        return int(s.scalar(sa.select(sa.func.max(Delivery.id))) or 0)


def delivery_run(
    relay: Relay, receivers: Receivers, intents: list[dict[str, Any]], workers: int, rate: float | None
) -> dict[str, Any]:
    """``rate`` None: publish every intent, then start ``workers`` and time the drain of the queue.
    Otherwise publish ``rate`` intents per second while the workers run, for the latency."""
    first_id = last_delivery_id(relay)
    pool = WorkerPool(relay, workers)
    if rate:
        pool.start()
    published: dict[str, float] = {}
    publish_times: list[float] = []
    try:
        t_start = time.time()
        for i, intent in enumerate(intents):
            if rate:
                delay = t_start + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            t0 = time.time()
            relay.publish(intent, intent["author"])
            published[intent["intent_id"]] = t0
            publish_times.append(time.time() - t0)
        t_published = time.time()
        if not rate:
            pool.start()
        t_drain = time.time()
        deadline = time.time() + 600
        while pending(relay) and time.time() < deadline:
            time.sleep(0.05)
    finally:
        pool.stop()
    arrivals = receivers.dump()
    delivered = delivered_since(relay, first_id)
    latencies = [t - published[i] for t, i in arrivals if i in published]
    last = max((t for t, _ in arrivals), default=t_published)
    span = last - (t_start if rate else t_drain)
    return {
        "workers": workers,
        "intents": len(intents),
        "rate": rate,
        "deliveries": len(latencies),
        "delivered_rows": delivered,
        "per_intent": len(latencies) / len(intents),
        "publish_rate": len(intents) / (t_published - t_start),
        "publish_p50": pct(publish_times, 0.5) * 1000,
        "seconds": span,
        "deliveries_rate": len(latencies) / span,
        "p50": pct(latencies, 0.5) * 1000 if rate else None,
        "p99": pct(latencies, 0.99) * 1000 if rate else None,
    }


def give_webhooks(relay: Relay, vendors: list[str], ports: list[int], count: int, rng: random.Random) -> int:
    chosen = rng.sample(vendors, min(count, len(vendors)))
    with relay.db.engine.begin() as conn:
        conn.execute(sa.update(Vendor.__table__).values(webhook=None))
        for i, did in enumerate(chosen):
            url = f"http://127.0.0.1:{ports[i % len(ports)]}/hook/{i}"
            conn.execute(sa.update(Vendor.__table__).where(Vendor.did == did).values(webhook=url))
    return len(chosen)


# -- main -------------------------------------------------------------------------------------------


def print_matching(rows: list[tuple[int, dict[str, Any]]]) -> None:
    print()
    print(
        "| subscriptions | vendors | matches / intent (vendors) | indexed intents/s | indexed p50 / p99 (ms) "
        "| naive intents (sample) | naive intents/s | naive p50 / p99 (ms) | naive / indexed | mismatches |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r in rows:
        print(
            f"| {n:,} | {max(1, n // 10):,} | {r['matches']:.0f} ({r['vendors']:.0f}) "
            f"| {r['indexed_rate']:,.0f} "
            f"| {r['indexed_p50']:.2f} / {r['indexed_p99']:.2f} | {r['naive_n']:,} of {r['intents']:,} "
            f"| {r['naive_rate']:,.1f} | {r['naive_p50']:,.0f} / {r['naive_p99']:,.0f} "
            f"| {r['naive_mean'] / r['indexed_mean']:,.0f}x | {r['mismatches']} |"
        )
    if len(rows) > 1:
        n0, r0 = rows[0]
        print()
        print("growth against the smallest size (mean time per intent):")
        for n, r in rows[1:]:
            print(
                f"  x{n / n0:,.0f} subscriptions: indexed x{r['indexed_mean'] / r0['indexed_mean']:.1f}, "
                f"naive x{r['naive_mean'] / r0['naive_mean']:.1f}"
            )


def print_delivery(runs: list[dict[str, Any]], size: int, hooked: int, receivers: int) -> None:
    print()
    print(
        f"delivery at {size:,} subscriptions, {hooked} vendors with webhooks "
        f"on {receivers} loopback receivers"
    )
    print(
        "| run | workers | intents | webhook deliveries (per intent) | publish intents/s | deliveries/s "
        "| publish p50 (ms) | latency p50 / p99 (ms) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        kind = "publish all, then drain" if not r["rate"] else f"paced {r['rate']:g} intents/s, live"
        latency = "" if r["p50"] is None else f"{r['p50']:,.0f} / {r['p99']:,.0f}"
        print(
            f"| {kind} | {r['workers']} | {r['intents']:,} | {r['deliveries']:,} ({r['per_intent']:.1f}) "
            f"| {r['publish_rate']:,.0f} | {r['deliveries_rate']:,.0f} | {r['publish_p50']:.1f} | {latency} |"
        )
        if r["deliveries"] != r["delivered_rows"]:
            print(f"  warning: {r['delivered_rows']} rows delivered, {r['deliveries']} arrivals recorded")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--intents", type=int, default=1000)
    ap.add_argument("--database-url", default=DEFAULT_URL)
    ap.add_argument("--naive-budget", type=float, default=40, help="seconds of naive scans per size")
    ap.add_argument("--delivery-size", type=int, default=10000, help="subscriptions when delivering")
    ap.add_argument("--webhook-vendors", type=int, default=100)
    ap.add_argument("--receivers", type=int, default=4, help="loopback receiver ports")
    ap.add_argument("--delivery-intents", type=int, default=150)
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--paced-rate", type=float, default=1, help="intents/s of the paced run (0: none)")
    ap.add_argument("--paced-intents", type=int, default=40)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--quick", action="store_true", help="sizes 1000,10000, 200 intents, short budgets")
    ap.add_argument("--serve-receivers", type=int, help=argparse.SUPPRESS, dest="serve")
    args = ap.parse_args()
    if args.serve:
        serve_receivers(args.serve)
        return
    if args.quick:
        args.sizes, args.intents, args.naive_budget = "1000,10000", 200, 10
        args.delivery_size, args.delivery_intents, args.paced_intents = 1000, 60, 20
    sizes = sorted(int(s) for s in args.sizes.split(","))
    data = Data(args.seed)
    runs: list[dict[str, Any]] = []

    with fresh_schema(args.database_url, "bench_relay") as url, tempfile.TemporaryDirectory() as tmp:
        config = RelayConfig(
            name="Bench relay",
            base_url="http://127.0.0.1:8790",
            store_dir=Path(tmp),
            store_url=url,
            allow_loopback=True,
        )
        relay = Relay(config, key=KeyPair.generate(), db=open_store(url))
        try:
            vendors_all = data.vendors_up_to(max(1, sizes[-1] // 10))
            t0 = time.perf_counter()
            intents = [data.intent(vendors_all[: max(1, sizes[0] // 10)]) for _ in range(args.intents)]
            print(f"{len(intents)} signed intents built in {time.perf_counter() - t0:.1f} s")
            matching_rows: list[tuple[int, dict[str, Any]]] = []
            have = 0
            for n in sizes:
                took = populate(relay, data, n, have)
                have = n
                print(f"{n:,} subscriptions ({max(1, n // 10):,} vendors) in place: {took:.1f} s of inserts")
                result = bench_matching(relay, intents, args.naive_budget)
                matching_rows.append((n, result))
                print_matching(matching_rows[-1:])
                if n == args.delivery_size:
                    runs = delivery_phase(relay, data, args, n)
            print("\nmatching, PostgreSQL, one read transaction per intent:")
            print_matching(matching_rows)
            if args.delivery_size in sizes:
                print_delivery(
                    runs,
                    args.delivery_size,
                    min(args.webhook_vendors, args.delivery_size // 10),
                    args.receivers,
                )
        finally:
            relay.close()


def delivery_phase(relay: Relay, data: Data, args: argparse.Namespace, n: int) -> list[dict[str, Any]]:
    vendors = data.vendors[: max(1, n // 10)]
    runs: list[dict[str, Any]] = []
    with receivers_process(args.receivers) as receivers:
        hooked = give_webhooks(relay, vendors, receivers.ports, args.webhook_vendors, data.rng)
        batches = [("burst", w) for w in workers_of(args)]
        if args.paced_rate:
            batches.append(("paced", max(workers_of(args))))
        for kind, w in batches:
            count = args.delivery_intents if kind == "burst" else args.paced_intents
            intents = [data.intent(vendors) for _ in range(count)]
            rate = args.paced_rate if kind == "paced" else None
            r = delivery_run(relay, receivers, intents, w, rate)
            runs.append(r)
            print_delivery([r], n, hooked, args.receivers)
    return runs


def workers_of(args: argparse.Namespace) -> list[int]:
    return [int(w) for w in args.workers.split(",")]


if __name__ == "__main__":
    main()
