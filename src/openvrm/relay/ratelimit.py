"""In-process token buckets: each relay process counts for itself (see docs/relay.md)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from openvrm.relay.errors import RateLimited

MAX_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """``take(kind, key, capacity, period)`` spends a token of a bucket refilling ``capacity`` per period."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, kind: str, key: str, capacity: int, period_seconds: float) -> None:
        """Spend a token or raise :class:`RateLimited` with the seconds until one is back."""
        rate = capacity / period_seconds
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get((kind, key))
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._prune(now)
                bucket = self._buckets[(kind, key)] = _Bucket(float(capacity), now)
            bucket.tokens = min(float(capacity), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens < 1:
                wait = math.ceil((1 - bucket.tokens) / rate)
                raise RateLimited(f"too many {kind} requests; retry in {wait} s", wait)
            bucket.tokens -= 1

    def _prune(self, now: float) -> None:
        # Drop buckets idle long enough to be full again (an hour covers every relay limit).
        for key in [k for k, b in self._buckets.items() if now - b.updated > 3600]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()
