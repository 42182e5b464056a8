"""`vrm intents ...` through the real app: drafts locally, then publish/offers/show/accept against a live
relay and vendors on loopback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from openvrm.config import Settings
from openvrm.vault.core import Vault
from tests.cli.test_cli import Vrm
from tests.conftest import PASSPHRASE, fast_kdf
from tests.intents.conftest import VENDOR_PREFIX, send_offer, serve_app, subscribe


def test_intents_from_the_command_line(tmp_path: Path) -> None:
    vrm = Vrm(tmp_path / "home")
    vrm("init")
    vrm("profile", "set", "email", "ada@example.org")
    cats = vrm.json("intents", "categories")
    assert any(c["id"] == "telecom.mobile" for c in cats)
    assert "telecom.mobile" in vrm("intents", "categories").stdout
    new = vrm.json(
        "intents",
        "new",
        "--category",
        "telecom.mobile",
        "--text",
        "50 GB SIM",
        "--max-price",
        "15",
        "--currency",
        "EUR",
        "--per",
        "month",
        "--feature",
        "data_gb=50",
        "--required",
        "data_gb",
        "--contract-months-max",
        "0",
        "--country",
        "FR",
        "--expires-in",
        "14",
    )
    assert new["state"] == "draft" and new["constraints"]["price_max"]["amount"] == "15"
    assert new["constraints"]["features"] == [{"name": "data_gb", "value": "50", "required": True}]
    # an edit changes only what it is given: a new amount keeps the ceiling's currency and period
    yearly = vrm.json(
        "intents", "edit", new["id"], "--max-price", "150", "--currency", "USD", "--per", "year"
    )
    assert yearly["constraints"]["price_max"] == {"amount": "150", "currency": "USD", "per": "year"}
    cheaper = vrm.json("intents", "edit", new["id"], "--max-price", "120")
    assert cheaper["constraints"]["price_max"] == {"amount": "120", "currency": "USD", "per": "year"}
    monthly = vrm.json("intents", "edit", new["id"], "--per", "month")
    assert monthly["constraints"]["price_max"] == {"amount": "120", "currency": "USD", "per": "month"}
    edited = vrm.json("intents", "edit", new["id"], "--text", "60 GB SIM", "--no-max-price")
    assert edited["text"] == "60 GB SIM" and "price_max" not in edited["constraints"]
    assert "give --max-price" in vrm("intents", "edit", new["id"], "--currency", "GBP", code=1).stderr
    interest = vrm.json("intents", "new", "--category", "mobility.bike", "--text", "e-bikes", "--interest")
    assert interest["kind"] == "interest" and interest["expires_in_days"] == 366
    assert vrm.json("intents", "mute", interest["id"])["muted"] is True
    assert vrm.json("intents", "unmute", interest["id"])["muted"] is False
    assert "only a standing interest" in vrm("intents", "mute", new["id"], code=1).stderr
    assert "not a category" in vrm("intents", "new", "--category", "nope", code=1).stderr
    listed = vrm.json("intents", "list")
    assert {i["id"] for i in listed} == {new["id"], interest["id"]}
    assert new["id"] in vrm("intents", "list").stdout
    assert "No offers yet" in vrm("intents", "show", new["id"]).stdout
    assert vrm.json("intents", "withdraw", interest["id"])["state"] == "withdrawn"

    # Against a live relay and vendors.
    server = replace(Settings.resolve(tmp_path / "server"), allow_loopback_peers=True)
    with Vault.open(server, create=True) as vault:
        vault.create(PASSPHRASE, kdf=fast_kdf()).lock()
    vrm.env["OPENVRM_ALLOW_LOOPBACK_PEERS"] = "1"
    with serve_app(server, tmp_path / "vendors") as (url, _app, vendors):
        relay = f"{url}/relay"
        key = vendors["fibre"].state.kit.key
        discovery = f"{url}{VENDOR_PREFIX}/fibre/.well-known/vrm"
        subscribe(relay, key, "Fibre & Co", ["telecom"], discovery)
        published = vrm.json("intents", "publish", new["id"], "--relay", relay)
        assert published["state"] == "published" and published["relay_url"] == relay
        intent = vrm.json("intents", "show", new["id"])["intent"]
        assert intent["author"] == new["author"]
        signed = intent["published"]
        assert signed["type"] == "intent" and signed["author"] == new["author"]
        offer = send_offer(
            relay,
            key,
            signed,
            name="Fibre & Co",
            discovery=discovery,
            amount="9.99",
            features=[{"name": "data_gb", "value": "80"}],
        )
        assert vrm.json("intents", "offers", new["id"])["new"] == 1
        shown = vrm.json("intents", "show", new["id"])
        assert [o["offer_id"] for o in shown["offers"]] == [offer["offer_id"]]
        assert shown["offers"][0]["score"]["violating"] is False
        assert "Fibre & Co" in vrm("intents", "show", new["id"]).stdout
        accepted = vrm.json(
            "intents", "accept", new["id"], offer["offer_id"], "--field", "email", "--agent-url", url
        )
        assert accepted["intent"]["state"] == "accepted" and accepted["granted"] == ["email"]
        assert accepted["connection"]["connection"]["term"]["id"] == "intent-only"
