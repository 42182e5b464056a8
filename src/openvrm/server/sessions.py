"""Owner sessions and the login throttle, both held in memory only.

A session maps a random id (the ``openvrm_session`` cookie) to an unlocked vault and a CSRF token. It
ends after 30 minutes without a request or 12 hours after login, whichever comes first; ending a session
locks its vault (the key is dropped from memory). Restarting the server therefore logs everyone out,
which is the point: the vault key never leaves memory.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from openvrm.crypto import constant_time_equal
from openvrm.vault.core import UnlockedVault

IDLE_TIMEOUT = 30 * 60.0
ABSOLUTE_TIMEOUT = 12 * 60 * 60.0
Clock = Callable[[], float]


@dataclass
class OwnerSession:
    id: str
    unlocked: UnlockedVault
    csrf_token: str
    created: float
    last_seen: float

    def csrf_matches(self, candidate: str | None) -> bool:
        return bool(candidate) and constant_time_equal(self.csrf_token, candidate or "")


@dataclass
class SessionStore:
    idle_timeout: float = IDLE_TIMEOUT
    absolute_timeout: float = ABSOLUTE_TIMEOUT
    clock: Clock = time.monotonic
    _sessions: dict[str, OwnerSession] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, unlocked: UnlockedVault) -> OwnerSession:
        now = self.clock()
        session = OwnerSession(secrets.token_urlsafe(32), unlocked, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.id] = session
        self.purge()
        return session

    def _expired(self, session: OwnerSession, now: float) -> bool:
        return now - session.last_seen > self.idle_timeout or now - session.created > self.absolute_timeout

    def get(self, session_id: str | None) -> OwnerSession | None:
        """The live session with this id (touching it), or None; an expired one is ended here."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now) or session.unlocked.locked:
                del self._sessions[session_id]
                expired = session
            else:
                session.last_seen = now
                return session
        expired.unlocked.lock()
        return None

    def end(self, session_id: str | None) -> bool:
        """End a session and lock its vault; False when there was none."""
        if not session_id:
            return False
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.unlocked.lock()
        return True

    def purge(self) -> int:
        """End every expired session; return how many."""
        now = self.clock()
        with self._lock:
            gone = [s for s in self._sessions.values() if self._expired(s, now)]
            for s in gone:
                del self._sessions[s.id]
        for s in gone:
            s.unlocked.lock()
        return len(gone)

    def end_all(self) -> None:
        with self._lock:
            gone = list(self._sessions.values())
            self._sessions.clear()
        for s in gone:
            s.unlocked.lock()

    def any_unlocked(self) -> UnlockedVault | None:
        """An unlocked vault of some live session: the agent files pushed events at once with it."""
        now = self.clock()
        with self._lock:
            for session in self._sessions.values():
                if not self._expired(session, now) and not session.unlocked.locked:
                    return session.unlocked
        return None

    def active_count(self) -> int:
        self.purge()
        with self._lock:
            return len(self._sessions)


@dataclass
class LoginThrottle:
    """At most ``max_failures`` failed logins per client within ``window`` seconds."""

    max_failures: int = 5
    window: float = 60.0
    clock: Clock = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._failures.get(client)
        if q is None:
            return deque()
        while q and now - q[0] >= self.window:
            q.popleft()
        if not q:
            del self._failures[client]
        return q

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait before trying again; 0 when it may try now."""
        now = self.clock()
        with self._lock:
            q = self._recent(client, now)
            if len(q) < self.max_failures:
                return 0
            return max(1, int(q[0] + self.window - now + 0.999))

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            self._recent(client, now)
            self._failures.setdefault(client, deque()).append(now)
            if len(self._failures) > 10_000:  # bound memory under a flood of distinct clients
                oldest = next(iter(self._failures))
                del self._failures[oldest]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
