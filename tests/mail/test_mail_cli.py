"""`vrm mail …` through the real app, and `vrm mail serve` as a real process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openvrm.cli import context as cli_context
from tests.cli.test_cli import Vrm
from tests.mail.support import REAL, body_of, message, send, wait_for, zone_for
from tests.outbox.support import free_port, smtp_sink

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vrm(tmp_path: Path) -> Vrm:
    v = Vrm(tmp_path / "home")
    v("init")
    return v


def _table(text: str) -> list[list[str]]:
    """The cells of each row of a Rich table (the header first), as printed."""
    return [
        [c.strip() for c in line.strip("┃│").split("┃" if "┃" in line else "│")]
        for line in text.splitlines()
        if line.startswith(("┃", "│"))
    ]


def test_alias_life_from_the_cli(vrm: Vrm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_context.out, "_width", 300)  # wide: each row on one line
    shop = vrm.json("vendors", "add", "Shop & Co", "--domain", "shop.example")
    assert "gateway is not set up" in vrm("mail", "alias", "create", shop["id"], code=1).stderr
    cfg = vrm.json("mail", "gateway", "setup", "--domain", "mail.example", "--forward-to", REAL)
    assert cfg["domains"] == ["mail.example"] and cfg["downstream"] is None
    bad = vrm(
        "mail", "gateway", "setup", "--domain", "mail.example", "--forward-to", "me@mail.example", code=1
    )
    assert "real mailbox" in bad.stderr
    a = vrm.json("mail", "alias", "create", shop["id"])
    assert a["address"].startswith("shop-co.") and a["address"].endswith("@mail.example")
    w = vrm.json("mail", "alias", "create", shop["id"], "--style", "words")
    assert w["address"].count(".") == 3
    assert {x["id"] for x in vrm.json("mail", "alias", "list", "--vendor", shop["id"])} == {a["id"], w["id"]}
    assert vrm.json("mail", "alias", "disable", a["id"])["state"] == "disabled"
    assert vrm.json("mail", "alias", "enable", a["id"])["state"] == "active"
    ruled = vrm.json("mail", "alias", "rules", "--vendor", shop["id"], "--mode", "transactional_only")
    assert {r["mode"] for r in ruled} == {"transactional_only"}
    assert "mode is one of" in vrm("mail", "alias", "rules", a["id"], "--mode", "sometimes", code=1).stderr
    vrm("mail", "alias", "delete", w["id"])
    assert [x["id"] for x in vrm.json("mail", "alias", "list")] == [a["id"]]
    # A vendor added with --alias gets one at once; a relationship made with --alias too.
    other = vrm.json("vendors", "add", "Books", "--alias")
    assert other["alias"]["vendor_id"] == other["id"]
    rel = vrm.json("vendors", "relate", other["id"], "--alias")
    assert rel["alias"]["id"] == other["alias"]["id"]  # the alias it has, not a second one
    # With --auto-alias every new relationship brings its vendor an alias (one, not one per relationship).
    vrm("mail", "gateway", "setup", "--domain", "mail.example", "--forward-to", REAL, "--auto-alias")
    third = vrm.json("vendors", "add", "Grocer")
    assert vrm.json("mail", "alias", "list", "--vendor", third["id"]) == []
    vrm("vendors", "relate", third["id"])
    vrm("vendors", "relate", third["id"])
    assert len(vrm.json("mail", "alias", "list", "--vendor", third["id"])) == 1
    assert vrm.json("mail", "gateway", "show")["auto_alias"] is True
    # The card carries the aliases.
    card = vrm.json("vendors", "card", rel["id"])
    assert [a["id"] for a in card["mail"]["aliases"]] == [other["alias"]["id"]] and card["mail"][
        "leaks"
    ] == []
    sent = vrm.json(
        "mail", "send", a["id"], "--to", "help@shop.example", "--subject", "Hello", "--body", "Hi"
    )
    assert sent["recipients"] == ["help@shop.example"] and sent["sender"] == a["address"]
    assert [e["id"] for e in vrm.json("mail", "queue")] == [sent["id"]]
    assert "no server to deliver through" in vrm("mail", "deliver", code=1).stderr
    key = vrm("mail", "key").stdout.strip()
    assert key.startswith("vrm-mail-") and len(key) > 40
    # As text: each value under its own header (the id column was once given twice, shifting them all)
    aliases = _table(vrm("mail", "alias", "list", "--vendor", shop["id"]).stdout)
    assert aliases[0] == ["id", "address", "vendor", "state", "rules", "delivery"]
    assert aliases[1][:5] == [a["id"], a["address"], "Shop & Co", "active", "transactional_only"]
    assert aliases[1][5]
    queue = _table(vrm("mail", "queue").stdout)
    assert queue[0] == ["id", "state", "attempts", "next attempt", "to", "last error"]
    assert queue[1][0] == sent["id"] and queue[1][4] == "help@shop.example"


def test_mail_serve_runs_as_a_real_process(vrm: Vrm, tmp_path: Path) -> None:
    """`vrm mail serve` with only the mail key: it refuses strangers, takes vendor mail, forwards it."""
    shop = vrm.json("vendors", "add", "Shop", "--domain", "shop.example")
    zone = zone_for("shop.example")
    zone_file = tmp_path / "zone.json"
    zone_file.write_text(
        json.dumps(
            {f"{n} {t}": [b"".join(v).decode() for v in vals] for (n, t), vals in zone.records.items()}
        )
    )
    with smtp_sink() as (sink, sink_port):
        vrm.json(
            "mail",
            "gateway",
            "setup",
            "--domain",
            "mail.example",
            "--forward-to",
            REAL,
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(sink_port),
            "--smtp-tls",
            "none",
        )
        alias = vrm.json("mail", "alias", "create", shop["id"])
        key = vrm("mail", "key").stdout.strip()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVRM_")}
        env |= {"OPENVRM_HOME": str(vrm.home), "OPENVRM_MAIL_KEY": key}  # no passphrase
        cmd = [
            sys.executable,
            "-m",
            "openvrm.cli.main",
            "mail",
            "serve",
            "--port",
            str(port),
            "--dns-zone",
            str(zone_file),
        ]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: _listening(port), 30), proc.stderr.read() if proc.stderr else ""
            raw = message(sender="billing@shop.example", to=alias["address"])
            assert send(port, "bounce@shop.example", [alias["address"]], raw) == {}
            assert wait_for(lambda: len(sink.messages) == 1, 30)
            assert "thanks for your order" in body_of(sink.messages[0])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""  # a clean stop on SIGTERM
    msgs = vrm.json("mail", "messages")
    assert len(msgs) == 1 and msgs[0]["auth"]["dkim"][0]["result"] == "pass" and msgs[0]["forwarded"]
    shown = vrm.json("mail", "message", msgs[0]["id"])
    assert shown["subject"] == "Your order" and shown["leak"]["leaked"] is False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        time.sleep(0.1)
        return False


def test_vrm_serve_runs_the_gateway_beside_the_app(vrm: Vrm, tmp_path: Path) -> None:
    """`vrm serve --mail-port` (what `make run` uses): the web app and the gateway in one process."""
    shop = vrm.json("vendors", "add", "Shop", "--domain", "shop.example")
    vrm.json(
        "mail", "gateway", "setup", "--domain", "mail.example", "--forward-to", REAL, "--deliver", "vault"
    )
    alias = vrm.json("mail", "alias", "create", shop["id"])
    zone_file = tmp_path / "zone.json"
    zone_file.write_text(json.dumps(zone_for("shop.example").to_json()))
    web, smtp = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVRM_")}
    env |= {"OPENVRM_HOME": str(vrm.home), "OPENVRM_MAIL_KEY": vrm("mail", "key").stdout.strip()}
    cmd = [sys.executable, "-m", "openvrm.cli.main", "serve", "--port", str(web), "--mail-port", str(smtp)]
    proc = subprocess.Popen(
        [*cmd, "--mail-dns-zone", str(zone_file)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(lambda: _listening(web) and _listening(smtp), 30), (
            proc.stderr.read() if proc.stderr else ""
        )
        raw = message(sender="billing@shop.example", to=alias["address"])
        assert send(smtp, "bounce@shop.example", [alias["address"]], raw) == {}
        import httpx

        assert httpx.get(f"http://127.0.0.1:{web}/healthz").json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    [m] = vrm.json("mail", "messages")
    assert m["subject"] == "Your order" and m["kept"] and m["auth"]["dmarc"] == "pass"
