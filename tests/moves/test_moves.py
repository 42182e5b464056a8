"""Moves: who holds the old value, one notice per vendor through the outbox, per-vendor status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openvrm.documents.importer import ImportService
from openvrm.errors import InvalidValue
from openvrm.moves import MoveService
from openvrm.outbox import Outbox, SmtpTransport, load_mail_settings
from openvrm.profile.service import ProfileService
from openvrm.sharing.service import SharingService
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.service import VendorService
from tests.cli.test_cli import person_with_vendor
from tests.outbox.support import smtp_sink, use_sink

OLD = {"street": "12 Rue des Lilas", "postal_code": "75011", "city": "Paris", "country": "FR"}
NEW = {"street": "3 Allée des Chênes", "postal_code": "69003", "city": "Lyon", "country": "FR"}


def setup_vendors(uv: UnlockedVault) -> dict[str, str]:
    p = ProfileService(uv)
    p.set("name", "Anna Example")
    p.set("email", "anna@example.org")
    p.set("address", OLD)
    vs = VendorService(uv)
    bank = vs.add("Bank of Tests", country="FR")
    shop = vs.add("Shop Seven")
    post_only = vs.add_from_directory("4wmarketplace")
    nobody = vs.add("Nobody Corp")
    unrelated = vs.add("Unrelated Ltd")
    rel = vs.relate(bank.id, customer_number="C-1001")
    vs.relate(post_only.id)
    vs.relate(nobody.id)
    SharingService(uv).share(rel.id, "address", purpose="statements")
    # A document of Shop Seven carries the old address in its text.
    ImportService(uv, create_vendors=False).import_bytes(
        b"Delivery note\nShip to: Anna Example, 12 Rue des Lilas, 75011 Paris\n",
        filename="delivery.txt",
        vendor_id=shop.id,
    )
    return {
        "bank": bank.id,
        "shop": shop.id,
        "post": post_only.id,
        "nobody": nobody.id,
        "other": unrelated.id,
    }


def test_plan_finds_holders_and_channels(unlocked: UnlockedVault) -> None:
    ids = setup_vendors(unlocked)
    plan = MoveService(unlocked).plan(
        "address", NEW, contacts={ids["bank"]: "privacy@bank.example", ids["shop"]: "dpo@shop.example"}
    )
    found = {c.vendor_id: c for c in plan.candidates}
    assert set(found) == {ids["bank"], ids["shop"], ids["post"], ids["nobody"]}
    assert "shared address" in found[ids["bank"]].reasons and found[ids["bank"]].customer_number == "C-1001"
    assert any(r.startswith("document") for r in found[ids["shop"]].reasons)
    assert found[ids["post"]].channel == "post"
    assert found[ids["nobody"]].channel == "none" and "--contact" in (found[ids["nobody"]].missing or "")
    assert ProfileService(unlocked).get("address") == OLD  # planning changes nothing


def test_move_notifies_once_per_vendor_and_tracks_status(unlocked: UnlockedVault) -> None:
    ids = setup_vendors(unlocked)
    contacts = {ids["bank"]: "privacy@bank.example", ids["shop"]: "dpo@shop.example"}
    svc = MoveService(unlocked)
    with smtp_sink(refuse={"dpo@shop.example"}) as (sink, port):
        use_sink(unlocked, port)
        move = svc.start("address", NEW, contacts=contacts, exclude=[])
        assert ProfileService(unlocked).get("address") == {**NEW}
        assert ProfileService(unlocked).history("address")[-1].source == "move"
        status = {n.vendor_id: n.status for n in move.notices}
        assert status == {ids["bank"]: "pending", ids["shop"]: "pending", ids["post"]: "to-post",
                          ids["nobody"]: "no-contact"}  # fmt: skip
        # Running the same move again writes nothing new.
        again = svc.start("address", NEW, contacts=contacts)
        assert again.id == move.id and len(Outbox(unlocked).list()) == 2
        Outbox(unlocked).deliver_now(SmtpTransport(load_mail_settings(unlocked)))
        after = svc.get(move.id, with_errors=True)
        st = {n.vendor_id: n for n in after.notices}
        assert st[ids["bank"]].status == "sent" and st[ids["shop"]].status == "pending"
        assert "550" in (st[ids["shop"]].last_error or "")
        mail = sink.messages[0]
        body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert (
            "C-1001" in str(mail["Subject"]) and "3 Allée des Chênes" in body and "12 Rue des Lilas" in body
        )
        letter = svc.letter(move.id, ids["post"])
        assert letter.pdf().startswith(b"%PDF")
        assert svc.posted(move.id, ids["post"]).summary()["sent"] == 2
        assert svc.acknowledge(move.id, ids["bank"]).summary()["acknowledged"] == 1
        assert after.summary()["no-contact"] == 1


def test_opt_out_and_bad_input(unlocked: UnlockedVault) -> None:
    ids = setup_vendors(unlocked)
    svc = MoveService(unlocked)
    with pytest.raises(InvalidValue, match="not among the vendors"):
        svc.start("address", NEW, exclude=[ids["other"]])
    with pytest.raises(InvalidValue, match="a postal address needs"):
        svc.plan("address", {"street": "1 Road"})
    with pytest.raises(InvalidValue, match="not a valid e-mail"):
        svc.plan("email", "nope")
    with pytest.raises(InvalidValue, match="already has this value"):
        svc.plan("email", "anna@example.org")
    with pytest.raises(InvalidValue, match="no phone field"):
        svc.plan("phone", "+33 6 12 34 56 78")
    with pytest.raises(InvalidValue, match="one of address"):
        svc.plan("birth-date", "1990-01-01")
    # Only post and no-contact vendors left: no mail server needed.
    move = svc.start("address", NEW, exclude=[ids["bank"], ids["shop"]])
    assert {n.status for n in move.notices} == {"skipped", "to-post", "no-contact"}
    assert Outbox(unlocked).list() == []


def test_move_through_the_cli_previews_then_sends(tmp_path: Path) -> None:
    vrm, vendor = person_with_vendor(tmp_path / "home", "Bank of Tests", email="old@example.org")
    vrm("vendors", "relate", vendor, "--customer-number", "C-9")
    with smtp_sink() as (sink, port):
        vrm(
            "mail",
            "setup",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--tls",
            "none",
            "--from",
            "old@example.org",
        )
        args = ["move", "email", "new@example.org", "--contact", f"{vendor}=privacy@bank.example"]
        preview = vrm(*args)
        assert "preview only" in preview.stderr and "Bank of Tests" in preview.stdout
        assert vrm.json("profile", "get", "email")["value"] == "old@example.org"
        assert sink.messages == []
        done = json.loads(vrm(*args, "--yes", "--json").stdout)
        assert done["summary"] == {"sent": 1} and done["delivery"]["sent"] == 1
        assert vrm.json("profile", "get", "email")["value"] == "new@example.org"
        assert len(sink.messages) == 1
        assert vrm.json("outbox", "list")[0]["status"] == "sent"
        assert vrm.json("moves", "list")[0]["summary"] == {"sent": 1}
        # GDPR request through the CLI: preview by default, sent with --yes.
        vrm("profile", "set", "address", "--street", "1 Road", "--city", "Berlin", "--country", "DE")
        req = vrm("rights", "request", "7mind", "access", "--json")
        rid = json.loads(req.stdout)["id"]
        assert json.loads(req.stdout)["status"] == "draft" and len(sink.messages) == 1
        sent = vrm.json("rights", "send", rid, "--yes")
        assert sent["status"] == "sent" and len(sink.messages) == 2
        assert vrm.json("rights", "list")[0]["deadline"] == sent["deadline"]
    err = vrm("rights", "request", "nope-not-a-vendor", "access", code=1)
    assert "unknown vendor" in err.stderr
