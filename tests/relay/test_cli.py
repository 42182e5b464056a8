"""`vrm relay stats` over a relay store; `vrm relay serve` is exercised through its app in test_api."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from openvrm.cli.main import app
from openvrm.protocol.identity import KeyPair
from openvrm.relay import Relay, RelayConfig

from .conftest import intent_for


def test_stats(tmp_path: Path) -> None:
    store = tmp_path / "relay"
    config = RelayConfig(name="CLI relay", base_url="http://127.0.0.1:8790", store_dir=store)
    config.save()
    relay = Relay(config)
    try:
        v = KeyPair.generate()
        relay.register_vendor(v.did, {"name": "V"})
        relay.subscribe(v.did, {"categories": ["telecom"]})
        author = KeyPair.generate()
        relay.publish(intent_for(author), author.did)
    finally:
        relay.close()
    assert (store / "relay.key").stat().st_mode & 0o077 == 0
    runner = CliRunner()
    result = runner.invoke(app, ["relay", "stats", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["vendors"] == 1 and data["subscriptions"] == 1 and data["open_intents"] == 1
    assert data["deliveries"] == {"pending": 0, "delivered": 0, "failed": 0, "pull-only": 1}
    text = runner.invoke(app, ["relay", "stats", "--store", str(store)])
    assert text.exit_code == 0 and "open intents: 1" in text.output
    missing = runner.invoke(app, ["relay", "stats", "--store", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "no relay configuration" in missing.output
