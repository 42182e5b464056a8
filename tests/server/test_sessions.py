"""Session expiry and the login throttle, with a hand-driven clock (no sleeping, no timings)."""

from __future__ import annotations

from openvrm.server.sessions import LoginThrottle, SessionStore
from openvrm.vault.core import UnlockedVault


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_timeout_ends_and_locks(unlocked: UnlockedVault) -> None:
    clock = FakeClock()
    store = SessionStore(idle_timeout=60, absolute_timeout=600, clock=clock)
    session = store.create(unlocked)
    clock.now += 59
    assert store.get(session.id) is session  # touching it restarts the idle time
    clock.now += 59
    assert store.get(session.id) is session
    clock.now += 61
    assert store.get(session.id) is None
    assert unlocked.locked


def test_absolute_timeout_even_when_active(unlocked: UnlockedVault) -> None:
    clock = FakeClock()
    store = SessionStore(idle_timeout=60, absolute_timeout=200, clock=clock)
    session = store.create(unlocked)
    for _ in range(4):
        clock.now += 50
        assert store.get(session.id) is session
    clock.now += 1
    assert store.get(session.id) is None and unlocked.locked


def test_unknown_and_ended_sessions(unlocked: UnlockedVault) -> None:
    store = SessionStore()
    assert store.get(None) is None and store.get("nope") is None
    session = store.create(unlocked)
    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(None) and not session.csrf_matches("x")
    assert store.end(session.id) and not store.end(session.id)
    assert unlocked.locked and store.active_count() == 0


def test_throttle_window() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
        clock.now += 1
    wait = throttle.retry_after("a")
    assert 0 < wait <= 60
    assert throttle.retry_after("b") == 0  # other clients are not affected
    clock.now += wait
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0
