"""Benchmark: filing the events a vendor pushed while the vault was locked, against filing them live.

The person's real server (``create_app``, the three reference vendors mounted) runs under uvicorn on
loopback, in this process, on a fresh vault; the reference telco's kit connects to it. Each round:

1. Live (the baseline): with an owner session open, the kit pushes N signed receipts; the server checks and
   files each one and answers with its signed acknowledgement, in the same request.
2. Queued: with no session, the kit pushes N more; the server checks each one and keeps it sealed in the
   inbox (202). Then the person's agent files them, as logging in does (``AgentService.process_inbox``):
   each one checked against the chain and filed, and its signed acknowledgement POSTed to the vendor.

Prints events per second of the live pushes and of the filing, and the ratio (filing / live): how much
more a person pays for being away than for being there. The pushes of step 2 are not timed.

    python bench/filing.py [--events 200] [--rounds 3] [--postgres URL]

Figures go in docs/benchmarks.md. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx

from openvrm.agent.service import ACK_SENDERS, AgentService
from openvrm.config import Settings
from openvrm.conformance.live import serve_factory_in_thread
from openvrm.profile.service import ProfileService
from openvrm.server.app import create_app
from openvrm.server.security import CSRF_HEADER
from openvrm.vault.core import Vault
from openvrm.vendor.demo import reference_configs
from openvrm.vendor.kit import PushResult, VendorKit

PASSPHRASE = "benchmark passphrase"
LINES = [{"description": "Mobile plan", "amount": "19.99"}]


def run(events: int, rounds: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = replace(
            Settings.resolve(Path(tmp) / "home", database_url=database_url), allow_loopback_peers=True
        )
        vault = Vault.open(settings, create=True)
        unlocked = vault.create(PASSPHRASE)
        ProfileService(unlocked).set("email", "ada@example.org")
        made: list[object] = []

        def app_for(url: str) -> object:
            made.append(create_app(settings, demo_vendors_url=url))
            return made[0]

        with serve_factory_in_thread(app_for) as url:
            kit = next(
                VendorKit(c)
                for c in reference_configs(url, settings.home / "demo-vendors")
                if c.base_url.endswith("/telco")
            )
            agent = AgentService(unlocked)
            result = agent.connect(f"{url}/demo-vendors/telco", agent_base_url=url)
            assert result.connection is not None and result.connection.agreement_id is not None
            agreement = result.connection.agreement_id
            live_times: list[float] = []
            filing_times: list[float] = []
            serial = 0
            with httpx.Client(base_url=url, timeout=120) as owner:
                for _ in range(rounds):
                    login = owner.post("/api/v1/session", json={"passphrase": PASSPHRASE})
                    login.raise_for_status()
                    start = time.perf_counter()
                    for _ in range(events):
                        serial += 1
                        pushed = push(kit, agreement, serial)
                        assert pushed.state == "acked", pushed
                    live_times.append(time.perf_counter() - start)
                    csrf = {CSRF_HEADER: login.json()["csrf_token"]}
                    owner.delete("/api/v1/session", headers=csrf).raise_for_status()
                    for _ in range(events):
                        serial += 1
                        pushed = push(kit, agreement, serial)
                        assert pushed.state == "delivered", pushed  # queued: no session is open
                    start = time.perf_counter()
                    filed, refused = agent.process_inbox()
                    filing_times.append(time.perf_counter() - start)
                    assert (filed, refused) == (events, 0), (filed, refused)
            kit.close()
        unlocked.lock()
        vault.close()
    live, filing = statistics.median(live_times), statistics.median(filing_times)
    backend = "PostgreSQL" if database_url else "SQLite"
    print(f"filing: {events} events a round, median of {rounds}, {backend}, {ACK_SENDERS} acks at once")
    print(f"  live pushes (filed in their request)      : {events / live:8.1f} events/s")
    print(
        f"  queued, filed after login (acks POSTed)   : {events / filing:8.1f} events/s"
        f"   ratio {live / filing:.2f}"
    )


def push(kit: VendorKit, agreement: str, serial: int) -> PushResult:
    return kit.push_receipt(agreement, f"R-{serial}", "2026-12-01", "19.99", "EUR", LINES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--postgres", metavar="URL", help="run on this PostgreSQL database instead of SQLite")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    run(args.events, args.rounds, args.postgres)


if __name__ == "__main__":
    main()
