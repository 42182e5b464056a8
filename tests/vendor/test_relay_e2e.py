"""End to end over real loopback HTTP: the real relay (openvrm.relay) and a vendor app, each under uvicorn.

A vendor with a webhook and a pull-only vendor register and subscribe; a person publishes an intent as the
agent would (make_intent + a signed POST); the webhook brings it to the first vendor, whose rules answer;
the second reads it from the feed and answers; the person opens both offers with the intent key and
accepts one; the decision marks the intent accepted at the winner and declined at the other.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.intents import make_decision, make_intent, open_offer
from openvrm.vendor import VendorConfig, VendorKit, create_vendor_app
from openvrm.vendor.relay_client import RelayClient, intent_state, received_intents
from openvrm.vendor.rules import rules_document
from tests.vendor.test_relay_rules import TELCO_RULE

relay_app = pytest.importorskip("openvrm.relay.app", reason="the relay is not built yet")


def free_socket() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def serve(app: FastAPI, sock: socket.socket) -> Iterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def signed(method: str, url: str, key: KeyPair, record: Any = None) -> httpx.Response:
    body = b"" if record is None else json.dumps(record).encode()
    headers = {"Content-Type": "application/json"}
    if method == "POST":
        headers["Idempotency-Key"] = m.new_uuid()
    headers = sign_request(method, url, headers, body, key)
    return httpx.request(method, url, content=body, headers=headers, timeout=30)


def vendor_config(tmp_path: Path, slug: str, base_url: str, price: str) -> VendorConfig:
    cfg = VendorConfig(
        name=f"Vendor {slug}",
        base_url=base_url,
        store_dir=tmp_path / slug,
        accepted_terms=("service-delivery-only", "intent-only"),
        allow_loopback=True,
    )
    rule = json.loads(json.dumps(TELCO_RULE))
    rule["offer"]["price"] = price
    cfg.rules_file.parent.mkdir(parents=True, exist_ok=True)
    cfg.rules_file.write_text(rules_document([rule]))
    return cfg


def test_intent_to_offer_to_decision_over_loopback(tmp_path: Path) -> None:
    from openvrm.relay.config import RelayConfig

    relay_sock, relay_url = free_socket()
    vendor_sock, vendor_url = free_socket()
    relay = relay_app.create_relay_app(
        RelayConfig(name="test relay", base_url=relay_url, store_dir=tmp_path / "relay", allow_loopback=True),
        workers=1,
    )
    hooked_cfg = vendor_config(tmp_path, "hooked", vendor_url, "12.99")
    hooked_app = create_vendor_app(hooked_cfg)
    hooked: VendorKit = hooked_app.state.kit
    puller = VendorKit(vendor_config(tmp_path, "puller", "http://127.0.0.1:9", "11.50"))
    try:
        with serve(relay, relay_sock), serve(hooked_app, vendor_sock):
            hooked_client = RelayClient(hooked, relay_url)
            doc = hooked_client.register(webhook=True)
            assert doc.get("webhook") == f"{vendor_url}/vrm/relay-hook"
            sub = hooked_client.subscribe(["telecom.mobile"], regions=["FR"])
            assert [s["subscription_id"] for s in hooked_client.subscriptions()] == [sub]
            pull_client = RelayClient(puller, relay_url)
            pull_client.register(webhook=False)
            pull_client.subscribe(
                ["telecom"], price_min={"amount": "5", "currency": "EUR"}, keywords=["mobile", "fibre"]
            )

            # The person publishes an intent, signed with a key made for it.
            key = KeyPair.generate()
            intent = make_intent(
                key,
                category="telecom.mobile",
                text="A mobile plan with 50 GB, no lock-in",
                constraints={"price_max": {"amount": "15", "currency": "EUR", "per": "month"}},
                where={"country": "FR"},
                expires_at=m.now_utc() + timedelta(days=7),
            )
            r = signed("POST", f"{relay_url}/intents", key, intent)
            assert r.status_code == 201 and r.json()["matched"] == 2, r.text

            # The webhook brings it to the hooked vendor; its rules answer in the background.
            wait_for(lambda: intent_state(hooked, intent["intent_id"]) == "offered", "the webhook and rules")

            # The pull-only vendor reads the feed and answers with its rules.
            page = pull_client.poll()
            assert [i["intent_id"] for i in page.intents] == [intent["intent_id"]]
            assert pull_client.cursor() == page.next is not None
            assert pull_client.answer(page.intents[0])["offer_id"]
            assert pull_client.poll().items == []  # the cursor was kept

            r = signed("GET", f"{relay_url}/intents/{intent['intent_id']}/offers", key)
            assert r.status_code == 200, r.text
            offers = [open_offer(e, key, intent) for e in r.json()["offers"]]
            by_vendor = {o["vendor"]: o for o in offers}
            assert by_vendor[hooked.did]["price"]["amount"] == "12.99"
            assert by_vendor[puller.did]["price"]["amount"] == "11.50"

            # The person accepts the hooked vendor's offer.
            chosen = by_vendor[hooked.did]
            decision = make_decision(key, intent, "accepted", offer_id=chosen["offer_id"])
            r = signed("POST", f"{relay_url}/intents/{intent['intent_id']}/decision", key, decision)
            assert r.status_code == 200, r.text
            wait_for(lambda: intent_state(hooked, intent["intent_id"]) == "accepted", "the decision webhook")
            (info,) = received_intents(hooked)
            assert info.offer_id == chosen["offer_id"] and info.state == "accepted"
            page = pull_client.poll()
            assert [d["intent_id"] for d in page.decisions] == [intent["intent_id"]]
            assert intent_state(puller, intent["intent_id"]) == "declined"
    finally:
        hooked.close()
        puller.close()


def test_demo_vendors_register_at_the_mounted_relay_and_answer(tmp_path: Path) -> None:
    """The person's server with the relay at /relay and the three reference vendors wired to it."""
    import dataclasses

    from openvrm.config import Settings
    from openvrm.server.app import create_app
    from openvrm.vendor.demo import ensure_relay_registration, mount_reference_vendors

    settings = dataclasses.replace(Settings.resolve(tmp_path / "home"), allow_loopback_peers=True)
    sock, url = free_socket()
    # What create_app(settings, demo_vendors_url=url, relay=True) does once it passes relay_url to the
    # demo vendors; mounted here so the test does not depend on it.
    app = create_app(settings, relay=True)
    mounted = mount_reference_vendors(
        url, tmp_path / "demo-vendors", relay_url=f"{url}/relay", register_in_background=False
    )
    for path, vendor_app in mounted:
        app.mount(path, vendor_app)
    kits = {a.state.kit.config.name: a.state.kit for _, a in mounted}
    try:
        with serve(app, sock):
            assert ensure_relay_registration(app) == dict.fromkeys(kits, True)
            assert ensure_relay_registration(app) == dict.fromkeys(kits, True)  # once only
            telco = RelayClient(kits["Example Telco"], f"{url}/relay")
            assert len(telco.subscriptions()) == 1

            def publish(category: str, text: str) -> tuple[KeyPair, dict[str, Any]]:
                key = KeyPair.generate()
                intent = make_intent(
                    key,
                    category=category,
                    text=text,
                    where={"country": "FR"},
                    expires_at=m.now_utc() + timedelta(days=7),
                )
                r = signed("POST", f"{url}/relay/intents", key, intent)
                assert r.status_code == 201, r.text
                return key, intent

            _, mobile = publish("telecom.mobile", "A mobile plan")
            _, power = publish("energy.electricity", "Green electricity for a flat")
            _, news = publish("media.news", "A daily newspaper")
            wait_for(
                lambda: intent_state(kits["Example Telco"], mobile["intent_id"]) == "offered", "telco's offer"
            )
            wait_for(
                lambda: intent_state(kits["Example Energy"], power["intent_id"]) == "offered",
                "energy's offer",
            )
            assert intent_state(kits["Example Telco"], power["intent_id"]) is None
            books = RelayClient(kits["Example Books"], f"{url}/relay")
            page = books.poll()
            assert [i["intent_id"] for i in page.intents] == [news["intent_id"]]
            assert books.answer(page.intents[0])["offer_id"] is None  # books answers by hand
            assert intent_state(kits["Example Books"], news["intent_id"]) == "open"
    finally:
        for kit in kits.values():
            kit.close()


def test_the_cli_registers_subscribes_polls_and_offers(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openvrm.cli.main import app as cli
    from openvrm.relay.config import RelayConfig

    relay_sock, relay_url = free_socket()
    relay = relay_app.create_relay_app(
        RelayConfig(name="test relay", base_url=relay_url, store_dir=tmp_path / "relay", allow_loopback=True)
    )
    cfg = vendor_config(tmp_path, "cli", "http://127.0.0.1:9", "13.00")
    cfg.save()
    store = str(cfg.store_dir)
    runner = CliRunner()

    def vrm(*args: str) -> Any:
        result = runner.invoke(cli, ["vendor", "relay", *args, "--store", store, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if result.stdout.strip() else None

    with serve(relay, relay_sock):
        assert vrm("register", relay_url, "--no-webhook") == {"relay": relay_url, "webhook": None}
        sub = vrm("subscribe", "--category", "telecom.mobile", "--region", "FR", "--price-max", "20")
        assert [s["subscription_id"] for s in vrm("subscriptions")] == [sub["subscription_id"]]
        keys = {}
        for price in ("15", "11"):
            key = KeyPair.generate()
            intent = make_intent(
                key,
                category="telecom.mobile",
                text="mobile",
                constraints={"price_max": {"amount": price, "currency": "EUR", "per": "month"}},
                where={"country": "FR"},
                expires_at=m.now_utc() + timedelta(days=3),
            )
            assert signed("POST", f"{relay_url}/intents", key, intent).status_code == 201
            keys[intent["intent_id"]] = (key, intent)
        polled = vrm("poll", "--answer")
        assert sorted(polled["intents"]) == sorted(keys)
        answered = {i for i, a in polled["answers"].items() if a["offer_id"]}
        over_budget = next(i for i in keys if i not in answered)
        assert "over the intent's budget" in polled["answers"][over_budget]["reason"]
        assert vrm("poll")["intents"] == []
        # The over-budget intent is answered by hand.
        offer = vrm(
            "offer", over_budget[:8], "--price", "10.50", "--include", "40 GB", "--feature", "esim=yes"
        )
        key, intent = keys[over_budget]
        r = signed("GET", f"{relay_url}/intents/{over_budget}/offers", key)
        (opened,) = [open_offer(e, key, intent) for e in r.json()["offers"]]
        assert opened == offer and opened["features"] == [{"name": "esim", "value": "yes"}]
        states = {i["intent_id"]: i["state"] for i in vrm("intents")}
        assert states == dict.fromkeys(keys, "offered")
        vrm("unsubscribe", sub["subscription_id"])
        assert vrm("subscriptions") == []
