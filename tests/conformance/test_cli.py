"""`vrm conformance vendor`: JSON report and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from openvrm.cli.main import app
from openvrm.conformance.live import serve_factory_in_thread
from openvrm.vendor.app import create_vendor_app
from openvrm.vendor.kit import VendorKit
from tests.conformance.conftest import broken_vendor_app, vendor_config


def test_vendor_command_passes_with_json(tmp_path: Path) -> None:
    with serve_factory_in_thread(lambda url: create_vendor_app(vendor_config(url, tmp_path))) as url:
        result = CliRunner().invoke(app, ["conformance", "vendor", url, "--allow-loopback", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["counts"]["fail"] == 0


def test_vendor_command_table_and_exit_1_on_failure(tmp_path: Path) -> None:
    kits: list[VendorKit] = []

    def factory(url: str) -> object:
        kits.append(VendorKit(vendor_config(url, tmp_path)))
        return broken_vendor_app(kits[0], "accepts-unsigned")

    try:
        with serve_factory_in_thread(factory) as url:
            result = CliRunner().invoke(app, ["conformance", "vendor", url, "--allow-loopback"])
    finally:
        for kit in kits:
            kit.close()
    assert result.exit_code == 1
    assert "signature.unsigned" in result.stdout and "does not conform" in result.stdout


def test_agent_command_times_out(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["conformance", "agent", "--timeout", "1", "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["checks"][0]["name"] == "relationship.agreement"
    assert "connect your agent to http://127.0.0.1:" in result.stderr
