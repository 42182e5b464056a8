"""The gateway's group commit: concurrent messages share transactions, and a failing one fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from openvrm.mail.gateway import _GroupCommit


class _Session:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def add_all(self, rows: list[Any]) -> None:
        self.rows.extend(rows)


class _Db:
    """Commits a transaction unless it holds the row "bad"; slow enough for writers to queue up."""

    def __init__(self) -> None:
        self.committed: list[Any] = []
        self.transactions = 0
        self._lock = threading.Lock()

    @contextmanager
    def write(self) -> Iterator[_Session]:
        with self._lock:
            s = _Session()
            yield s
            time.sleep(0.005)
            if "bad" in s.rows:
                raise RuntimeError("refused")
            self.transactions += 1
            self.committed.extend(s.rows)


def _run(group: _GroupCommit, items: list[Any]) -> list[Any]:
    failed: list[Any] = []
    start = threading.Barrier(len(items))

    def write(item: Any) -> None:
        start.wait()
        try:
            group.write([item])
        except RuntimeError:
            failed.append(item)

    threads = [threading.Thread(target=write, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def test_concurrent_writers_share_transactions() -> None:
    db = _Db()
    assert _run(_GroupCommit(db), list(range(40))) == []
    assert sorted(db.committed) == list(range(40))
    assert db.transactions < 40


def test_a_failing_message_fails_alone() -> None:
    db = _Db()
    failed = _run(_GroupCommit(db), [*range(20), "bad", *range(20, 40)])
    assert failed == ["bad"]
    assert sorted(db.committed) == list(range(40))


def test_a_lone_writer_gets_its_error() -> None:
    with pytest.raises(RuntimeError):
        _GroupCommit(_Db()).write(["bad"])
