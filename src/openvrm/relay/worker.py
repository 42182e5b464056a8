"""The delivery worker: POST due deliveries to vendors' webhooks, signed by the relay, with backoff.

Claiming is safe with several workers, threads or processes: on PostgreSQL the due rows are selected
``FOR UPDATE SKIP LOCKED`` (two workers never take the same row), on SQLite inside the store's write lock
(``BEGIN IMMEDIATE``). A claimed row gets a lease (its ``next_attempt_at`` moves :data:`LEASE` ahead and
its ``attempts`` up by one) before the transaction commits, so no other worker sees it as due while it is
being sent; a worker that dies mid-send leaves the row to be retried when the lease ends.

Each POST carries ``{"cursor", "kind", ...}`` (the feed item), an RFC 9421 signature by the relay's key
and an ``Idempotency-Key`` that is a UUID derived from the relay and the delivery id (the same on every
retry). A 2xx answer marks the row delivered; anything else schedules a retry after 1 s, 2 s, 4 s, ...
(at most 10 minutes) until ``webhook_max_attempts``, then ``failed``. The item stays in the pull feed
whatever happens.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from openvrm.net import guarded_client
from openvrm.protocol.httpsig import sign_httpx_request
from openvrm.relay.service import Relay, _json_bytes
from openvrm.relay.store import Delivery, Intent, Vendor

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)
FIRST_BACKOFF = timedelta(seconds=1)
MAX_BACKOFF = timedelta(minutes=10)
ClientFactory = Callable[[], httpx.Client]
_NAMESPACE = uuid.UUID("6f1d3c1e-4b8a-4f52-9d0e-5a7b2c9e8f10")


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1 s doubling, capped at 10 minutes."""
    seconds = FIRST_BACKOFF.total_seconds() * 2 ** min(max(attempts - 1, 0), 30)
    return min(MAX_BACKOFF, timedelta(seconds=seconds))


def delivery_key(relay_did: str, delivery_id: int) -> str:
    """The ``Idempotency-Key`` of a delivery: a UUID, the same on every retry of it."""
    return str(uuid.uuid5(_NAMESPACE, f"{relay_did}/{delivery_id}"))


@dataclass(frozen=True)
class _Claimed:
    id: int
    vendor: str
    attempts: int
    webhook: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class RunResult:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0


class DeliveryWorker:
    """Sends due deliveries; call :meth:`run_once` in a loop, or :meth:`run_forever` in a thread."""

    def __init__(self, relay: Relay, client_factory: ClientFactory | None = None) -> None:
        self.relay = relay
        policy = relay.config.url_policy
        self._client_factory = client_factory or (lambda: guarded_client(policy))

    def _claim(self, batch: int, now: datetime) -> list[_Claimed]:
        claimed: list[_Claimed] = []
        with self.relay.db.write() as s:
            rows = list(
                s.scalars(
                    select(Delivery)
                    .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
                    .order_by(Delivery.next_attempt_at, Delivery.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return []
            ids = [r.id for r in rows]
            s.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids))
                .values(next_attempt_at=now + LEASE, attempts=Delivery.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            hooks = dict(
                s.execute(
                    select(Vendor.did, Vendor.webhook).where(Vendor.did.in_({r.vendor for r in rows}))
                ).all()
            )
            records: dict[str, Any] = dict(
                s.execute(
                    select(Intent.intent_id, Intent.record).where(
                        Intent.intent_id.in_({r.intent_id for r in rows if r.kind == "intent"})
                    )
                ).all()
            )
            for r in rows:
                body = {"cursor": r.id, **Relay.message(r, records.get(r.intent_id))}
                claimed.append(_Claimed(r.id, r.vendor, r.attempts + 1, hooks.get(r.vendor), body))
        return claimed

    def _finish(self, item: _Claimed, ok: bool, error: str | None, now: datetime) -> str:
        max_attempts = self.relay.config.limits.webhook_max_attempts
        values: dict[str, Any]
        if item.webhook is None:
            status, values = "pull-only", {"status": "pull-only"}
        elif ok:
            status, values = "delivered", {"status": "delivered", "last_error": None}
        elif item.attempts >= max_attempts:
            status, values = "failed", {"status": "failed", "last_error": error}
        else:
            status = "retry"
            values = {"next_attempt_at": now + backoff(item.attempts), "last_error": error}
        with self.relay.db.write() as s:
            s.execute(
                update(Delivery)
                .where(
                    Delivery.id == item.id,
                    Delivery.status == "pending",
                    Delivery.attempts == item.attempts,
                )
                .values(**values)
            )
        return status

    def _post(self, client: httpx.Client, item: _Claimed) -> tuple[bool, str | None]:
        assert item.webhook is not None  # noqa: S101 - checked by the caller
        request = client.build_request(
            "POST",
            item.webhook,
            content=_json_bytes(item.body),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": delivery_key(self.relay.did, item.id),
            },
        )
        sign_httpx_request(request, self.relay.key)
        try:
            response = client.send(request)
        except Exception as exc:  # network errors, SSRF refusals, oversized answers: all retried
            return False, f"{type(exc).__name__}: {str(exc)[:300]}"
        if 200 <= response.status_code < 300:
            return True, None
        return False, f"HTTP {response.status_code}"

    def run_once(self, batch: int = 50) -> RunResult:
        """Claim up to ``batch`` due deliveries and send them; returns what happened."""
        claimed = self._claim(batch, self.relay.clock())
        if not claimed:
            return RunResult()
        counts = {"delivered": 0, "retry": 0, "failed": 0, "pull-only": 0}
        with self._client_factory() as client:
            for item in claimed:
                ok, error = (False, None) if item.webhook is None else self._post(client, item)
                counts[self._finish(item, ok, error, self.relay.clock())] += 1
        return RunResult(len(claimed), counts["delivered"], counts["retry"], counts["failed"])

    def run_forever(self, stop: threading.Event, *, idle_seconds: float = 1.0, expire: bool = True) -> None:
        """Deliver until ``stop`` is set; also close expired intents when ``expire``."""
        while not stop.is_set():
            try:
                if expire:
                    self.relay.expire_due()
                result = self.run_once()
            except Exception:  # keep the worker alive; the cause goes to the log
                log.exception("relay delivery worker error")
                result = RunResult()
            if result.claimed == 0:
                stop.wait(idle_seconds)


class WorkerPool:
    """``n`` :class:`DeliveryWorker` threads over one relay (what `vrm relay serve --workers` runs)."""

    def __init__(self, relay: Relay, n: int, client_factory: ClientFactory | None = None) -> None:
        self.relay = relay
        self.n = n
        self._client_factory = client_factory
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._threads or self.n <= 0:
                return
            self._stop.clear()
            for i in range(self.n):
                worker = DeliveryWorker(self.relay, self._client_factory)
                thread = threading.Thread(
                    target=worker.run_forever,
                    args=(self._stop,),
                    kwargs={"expire": i == 0},
                    name=f"relay-worker-{i}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def stop(self, timeout: float = 15) -> None:
        with self._lock:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout)
            self._threads = []
