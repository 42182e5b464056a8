"""Relay test helpers: a relay on each backend, signed calls through the ASGI app, a webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import MemoryNonceStore, RequestVerifier, known_keys, sign_httpx_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_intent, make_offer, seal_offer
from openvrm.relay import Relay, RelayConfig, RelayLimits, create_relay_app
from openvrm.relay.store import RelayBase

BASE = "http://127.0.0.1:8790"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A relay clock the tests move forward (signatures keep the real time)."""

    def __init__(self) -> None:
        self.now = m.now_utc()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'relay.sqlite3'}"
    return str(request.getfixturevalue("pg_schema_url"))


def make_relay(tmp_path: Path, store_url: str, *, clock: Clock | None = None, **limits: int) -> Relay:
    config = RelayConfig(
        name="Test relay",
        base_url=BASE,
        store_dir=tmp_path / "relay",
        store_url=store_url,
        allow_loopback=True,
        limits=RelayLimits(**limits),
    )
    return Relay(config, key=KeyPair.generate(), clock=clock or Clock())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def relay(tmp_path: Path, store_url: str, clock: Clock) -> Iterator[Relay]:
    r = make_relay(tmp_path, store_url, clock=clock)
    yield r
    r.close()


async def signed(
    client: httpx.AsyncClient,
    key: KeyPair | None,
    method: str,
    path: str,
    body: Any = None,
    *,
    idem: str | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    """One request through ``client``, signed by ``key`` (unsigned when ``key`` is None)."""
    content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if method != "GET":
        headers["Idempotency-Key"] = idem or str(uuid.uuid4())
    request = client.build_request(method, path, content=content, headers=headers)
    if key is not None:
        sign_httpx_request(request, key)
    return await client.send(request)


@pytest.fixture
async def api(relay: Relay) -> AsyncIterator[httpx.AsyncClient]:
    app = create_relay_app(relay.config, relay=relay)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def intent_for(
    key: KeyPair,
    category: str = "telecom.mobile",
    *,
    text: str = "A mobile plan with 50 GB of data",
    price: str | None = "15",
    currency: str = "EUR",
    country: str | None = "FR",
    region: str | None = None,
    exclude: tuple[str, ...] = (),
    days: int = 14,
) -> dict[str, Any]:
    where: dict[str, Any] = {}
    if country:
        where["country"] = country
    if region:
        where["region"] = region
    constraints: dict[str, Any] = {}
    if price is not None:
        constraints["price_max"] = {"amount": price, "currency": currency, "per": "month"}
    return make_intent(
        key,
        category=category,
        text=text,
        constraints=constraints,
        where=where,
        exclude=exclude,
        expires_at=m.now_utc() + timedelta(days=days),
    )


def sealed_offer(vendor: KeyPair, intent: Mapping[str, Any], price: str = "12.99") -> dict[str, Any]:
    offer = make_offer(
        vendor,
        intent,
        vendor_name="Example Telco",
        discovery="https://telco.example/.well-known/vrm",
        price={"amount": price, "currency": "EUR", "per": "month"},
        includes=["60 GB"],
        valid_until=m.now_utc() + timedelta(days=7),
    )
    return seal_offer(offer, intent)


def business_rows(relay: Relay) -> dict[str, int]:
    """Row counts of every relay table except the replay nonces."""
    from sqlalchemy import func, select

    counts = {}
    with relay.db.read() as s:
        for table in RelayBase.metadata.sorted_tables:
            if table.name != "relay_protocol_nonces":
                counts[table.name] = int(s.scalar(select(func.count()).select_from(table)) or 0)
    return counts


@dataclass
class Receiver:
    """A webhook receiver on a real loopback port: verifies the relay's signature, counts deliveries."""

    relay_key: KeyPair
    fail_first: int = 0
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    concurrent: int = 0
    max_concurrent_same: int = 0
    in_flight: set[str] = field(default_factory=set)
    overlaps: int = 0

    def app(self) -> Starlette:
        verifier = RequestVerifier(
            known_keys({self.relay_key.did: self.relay_key.public_key}), MemoryNonceStore()
        )

        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            verifier.verify(request.method, str(request.url), dict(request.headers), body)
            key = request.headers["idempotency-key"]
            with self.lock:
                if key in self.in_flight:
                    self.overlaps += 1
                self.in_flight.add(key)
                n = self.attempts[key] = self.attempts.get(key, 0) + 1
            try:
                if n <= self.fail_first:
                    return JSONResponse({"error": "try later"}, status_code=500)
                with self.lock:
                    self.received.append({"key": key, **json.loads(body)})
                return JSONResponse({"ok": True})
            finally:
                with self.lock:
                    self.in_flight.discard(key)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    servers: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def start(relay_key: KeyPair, fail_first: int = 0) -> Receiver:
        receiver = Receiver(relay_key, fail_first)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(receiver.app(), log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        ready = threading.Event()
        for _ in range(200):
            if server.started:
                break
            ready.wait(0.02)
        assert server.started
        receiver.url = f"http://127.0.0.1:{port}/hook"
        servers.append((server, thread, sock))
        return receiver

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
