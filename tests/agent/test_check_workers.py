"""Overlapping pushes to the live agent are checked in worker processes, and every one is taken once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from tests.agent.conftest import World
from tests.agent.test_endpoint_security import _notice, _setup, _signed_post, _traces

from openvrm.server.prechecks import CheckWorkers


def test_overlapping_pushes_go_to_a_worker_and_all_are_taken_once(world: World) -> None:
    checks = world.app.state.openvrm.checks
    assert isinstance(checks, CheckWorkers)
    checks.size, checks.always = 1, False  # as on a two-core server: one worker, used when pushes overlap
    aid, ledger_url, _, key = _setup(world)
    sent = 0
    deadline = time.monotonic() + 120
    with ThreadPoolExecutor(8) as pool:
        # Bursts of 8 concurrent pushes until a worker has started and checked some (the first burst
        # starts it; until it is ready, pushes are checked in the server).
        while checks.checked == 0 and time.monotonic() < deadline:
            records = [_notice(aid, key) for _ in range(16)]
            answers = list(pool.map(lambda r: _signed_post(ledger_url, r, key), records))
            assert [a.status_code for a in answers] == [202] * len(records), answers[0].text
            sent += len(records)
    assert checks.checked > 0
    assert _traces(world) == (0, sent)  # every push queued once, whoever checked it
    # A lone push is still checked in the server.
    before = checks.checked
    assert _signed_post(ledger_url, _notice(aid, key), key).status_code == 202
    assert checks.checked == before
    # Replays are refused the same way when a worker checks them.
    record = _notice(aid, key)
    body_and_headers = _signed_post(ledger_url, record, key).request
    with ThreadPoolExecutor(4) as pool:
        again = list(
            pool.map(
                lambda _: httpx.post(
                    ledger_url, content=body_and_headers.content, headers=body_and_headers.headers
                ),
                range(4),
            )
        )
    assert [a.status_code for a in again] == [401] * 4
    assert _traces(world) == (0, sent + 2)
