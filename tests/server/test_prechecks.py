"""Pushed events checked in worker processes: the same answers as in the server, and nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from openvrm.config import Settings
from openvrm.errors import InvalidValue
from openvrm.protocol import messages as m
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.server.prechecks import CheckedPush, CheckWorkers, automatic_workers, check_push

URL = "http://agent.example/vrm/p/h1/ledger"


def _signed(record: dict[str, Any], key: KeyPair, body: bytes | None = None) -> tuple[dict[str, str], bytes]:
    sent = m.canonical_json(record)
    headers = sign_request(
        "POST", URL, {"Content-Type": "application/json", "Idempotency-Key": m.new_uuid()}, sent, key
    )
    return headers, sent if body is None else body


def _notice(key: KeyPair, summary: str = "hello") -> dict[str, Any]:
    return m.make_event(key, "sha256:" + "ab" * 32, "notice", {"notice": "other", "summary": summary}, None)


def _run(test: Callable[[CheckWorkers], Awaitable[None]], workers: CheckWorkers) -> None:
    async def main() -> None:
        try:
            await test(workers)
        finally:
            await workers.close()

    asyncio.run(main())


def _requests() -> list[tuple[str, tuple[dict[str, str], bytes]]]:
    """A valid push and the refusals a worker must give back exactly as the server would."""
    key = KeyPair.generate()
    good = _notice(key)
    unsigned_headers = {"Content-Type": "application/json", "Idempotency-Key": "k"}
    not_json_headers, _ = _signed(good, key)
    altered = dict(good, payload={"notice": "other", "summary": "changed"})
    bad_hash = dict(good, payload_hash="sha256:" + "0" * 64)
    forged = _notice(key)
    forged["signatures"] = _notice(KeyPair.generate())["signatures"]
    not_an_event = {"type": "proffer"}
    return [
        ("valid", _signed(good, key)),
        ("unsigned", (unsigned_headers, m.canonical_json(good))),
        ("body changed after signing", (not_json_headers, b"{not json")),
        ("payload changed", _signed(altered, key)),
        ("bad payload hash", _signed(bad_hash, key)),
        ("record signed by another key", _signed(forged, key)),
        ("not an event", _signed(not_an_event, key)),
        ("schema", _signed(dict(good, subtype=7), key)),
    ]


def _outcome(call: Callable[[], CheckedPush | None]) -> tuple[str, str]:
    try:
        checked = call()
    except (SignatureError, InvalidValue) as exc:
        return type(exc).__name__, str(exc)
    assert checked is not None
    return "ok", checked.keyid


def test_a_worker_gives_exactly_the_answers_of_the_server() -> None:
    requests = _requests()
    inline = {name: _outcome(lambda h=h, b=b: check_push(URL, h, b)) for name, (h, b) in requests}
    assert inline["valid"][0] == "ok"
    assert all(outcome[0] != "ok" for name, outcome in inline.items() if name != "valid")

    async def test(workers: CheckWorkers) -> None:
        got: dict[str, tuple[str, str]] = {}
        results: dict[str, CheckedPush] = {}
        for name, (headers, body) in requests:
            try:
                checked = await workers.check(URL, headers, body)
            except (SignatureError, InvalidValue) as exc:
                got[name] = (type(exc).__name__, str(exc))
                continue
            assert checked is not None, "a forced check must run in the worker"
            got[name] = ("ok", checked.keyid)
            results[name] = checked
        assert got == inline
        assert workers.checked == len(requests)
        # The worker's result is what the server's own check gives: the record and the nonce to spend.
        headers, body = requests[0][1]
        mine = check_push(URL, headers, body)
        assert results["valid"].record == mine.record
        pairs = [[(k, n) for k, n, _ in c.nonces.seen] for c in (results["valid"], mine)]
        assert pairs[0] == pairs[1] and len(pairs[0]) == 1

    _run(test, CheckWorkers(1, always=True))


def test_a_lone_push_is_checked_in_the_server_and_overlapping_ones_in_a_worker() -> None:
    key = KeyPair.generate()

    async def test(workers: CheckWorkers) -> None:
        headers, body = _signed(_notice(key), key)
        async with workers.push():
            assert await workers.check(URL, headers, body) is None  # alone: no worker started for it
        assert workers.processes() == []
        async with workers.push(), workers.push():  # two pushes in progress: this one overlaps
            assert await workers.check(URL, headers, body) is None  # the worker is only starting
            [process] = workers.processes()
            for _ in range(600):
                headers, body = _signed(_notice(key), key)
                checked = await workers.check(URL, headers, body)
                if checked is not None:
                    break
                await asyncio.sleep(0.1)
            assert checked is not None and checked.keyid == key.did
        assert workers.checked == 1
        assert workers.processes() == [process]

    _run(test, CheckWorkers(1))


def test_no_workers_when_set_to_none() -> None:
    key = KeyPair.generate()

    async def test(workers: CheckWorkers) -> None:
        headers, body = _signed(_notice(key), key)
        async with workers.push(), workers.push():
            assert await workers.check(URL, headers, body) is None
        assert workers.processes() == []

    _run(test, CheckWorkers(0, always=True))


def test_a_push_held_by_a_worker_that_dies_is_handed_back_and_a_new_worker_starts() -> None:
    key = KeyPair.generate()

    async def test(workers: CheckWorkers) -> None:
        headers, body = _signed(_notice(key), key)
        assert await workers.check(URL, headers, body) is not None
        [first] = workers.processes()
        assert first.pid is not None
        os.kill(first.pid, signal.SIGSTOP)  # it holds the next push without answering
        headers, body = _signed(_notice(key, "held"), key)
        held = asyncio.ensure_future(workers.check(URL, headers, body))
        await asyncio.sleep(0.2)
        assert not held.done()
        os.kill(first.pid, signal.SIGKILL)
        # Handed back: None tells the caller to check this push itself, so nothing is lost.
        assert await asyncio.wait_for(held, 30) is None
        assert check_push(URL, headers, body).record["payload"]["summary"] == "held"
        headers, body = _signed(_notice(key, "after"), key)
        checked = await workers.check(URL, headers, body)  # a new worker
        assert checked is not None and checked.record["payload"]["summary"] == "after"
        [second] = workers.processes()
        assert second.pid != first.pid

    _run(test, CheckWorkers(1, always=True))


def test_closing_ends_the_workers() -> None:
    key = KeyPair.generate()
    workers = CheckWorkers(2, always=True)
    seen: list[Any] = []

    async def test(workers: CheckWorkers) -> None:
        headers, body = _signed(_notice(key), key)
        assert await workers.check(URL, headers, body) is not None
        seen.extend(workers.processes())

    _run(test, workers)
    assert seen
    for process in seen:
        assert process.poll() == 0  # it ended when its socket closed, it was not killed
    assert workers.processes() == []


def test_the_number_of_workers_comes_from_the_settings(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENVRM_CHECK_WORKERS", raising=False)
    assert Settings.resolve(tmp_path).check_workers is None
    assert 0 <= automatic_workers() <= 4
    monkeypatch.setenv("OPENVRM_CHECK_WORKERS", "0")
    assert Settings.resolve(tmp_path).check_workers == 0
    monkeypatch.setenv("OPENVRM_CHECK_WORKERS", "auto")
    assert Settings.resolve(tmp_path).check_workers is None
    assert Settings.resolve(tmp_path, check_workers=3).check_workers == 3
    for bad in ("-1", "two", "1000"):
        monkeypatch.setenv("OPENVRM_CHECK_WORKERS", bad)
        with pytest.raises(InvalidValue, match="OPENVRM_CHECK_WORKERS"):
            Settings.resolve(tmp_path)
    monkeypatch.delenv("OPENVRM_CHECK_WORKERS")
    with pytest.raises(InvalidValue, match="check workers"):
        Settings.resolve(tmp_path, check_workers=-1)


SCRIPT = """
import asyncio
from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.server.prechecks import CheckWorkers

# No `if __name__ == "__main__"` guard, as in a short script that serves the app: a worker must not run
# this file again.
async def main():
    workers = CheckWorkers(1, always=True)
    key = KeyPair.generate()
    record = m.make_event(key, "sha256:" + "ab" * 32, "notice", {"notice": "other", "summary": "x"}, None)
    body = m.canonical_json(record)
    url = "http://agent.example/vrm/p/h1/ledger"
    headers = sign_request("POST", url, {"Idempotency-Key": "k1"}, body, key)
    checked = await workers.check(url, headers, body)
    print("checked by a worker:", checked is not None and checked.keyid == key.did, workers.checked)
    await workers.close()

asyncio.run(main())
"""


def test_a_worker_never_runs_the_servers_main_script(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    done = subprocess.run(  # noqa: S603
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "checked by a worker: True 1"
    assert "Traceback" not in done.stderr
