"""`vrm vendor ...` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from openvrm.cli.main import app
from openvrm.protocol import messages as m
from openvrm.vendor import VendorKit
from tests.vendor.helpers import Person, config


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["vendor", "--help"])
    assert result.exit_code == 0
    for name in ("serve", "relationships", "push", "request-data", "grants", "snippet", "retry"):
        assert name in result.output
    push = CliRunner().invoke(app, ["vendor", "push", "--help"])
    assert push.exit_code == 0 and "receipt" in push.output and "notice" in push.output
    serve = CliRunner().invoke(app, ["vendor", "serve", "--help"])
    assert serve.exit_code == 0 and "--accept" in serve.output


def test_snippet() -> None:
    result = CliRunner().invoke(app, ["vendor", "snippet", "--base-url", "https://shop.example/"])
    assert result.exit_code == 0
    assert "<div data-vrm-rbutton></div>" in result.output
    assert '<script src="https://shop.example/vrm/rbutton.js" async></script>' in result.output


def test_relationships_json(tmp_path: Path) -> None:
    store = tmp_path / "vendor"
    cfg = config(tmp_path)
    cfg.save()
    empty = CliRunner().invoke(app, ["vendor", "relationships", "--store", str(store), "--json"])
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.output) == []
    kit = VendorKit(cfg)
    person = Person()
    proffer = person.proffer(kit.did, "service-delivery-only")
    answer = kit.answer_proffer(proffer, person.key.did)
    agreement = kit.accept_agreement(m.make_agreement(person.key, proffer, answer), person.key.did)
    kit.close()
    result = CliRunner().invoke(app, ["vendor", "relationships", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["agreement_id"] == agreement["agreement_id"] and row["status"] == "active"
    assert row["person"] == person.key.did and row["term"] == "service-delivery-only@1.0.0"
    text = CliRunner().invoke(app, ["vendor", "relationships", "--store", str(store)])
    assert text.exit_code == 0 and "active" in text.output


def test_errors_are_one_line(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["vendor", "relationships", "--store", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "vrm vendor serve" in missing.output
    config(tmp_path).save()
    unknown = CliRunner().invoke(
        app,
        ["vendor", "push", "notice", "sha256:abcdef", "--summary", "x", "--store", str(tmp_path / "vendor")],
    )
    assert unknown.exit_code == 1 and "no relationship" in unknown.output
