"""The vendor checks pass against the reference vendor kit and fail, naming the check, against broken ones."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from openvrm.conformance import VENDOR_CHECKS, check_vendor
from openvrm.conformance.live import serve_factory_in_thread
from openvrm.conformance.vendor import report_text
from openvrm.net import UrlPolicy
from openvrm.server.app import create_app
from openvrm.vendor.app import create_vendor_app
from openvrm.vendor.kit import VendorKit
from tests.conformance.conftest import LOOPBACK, Person, broken_vendor_app, vendor_config


@pytest.fixture
def reference_server(person: Person) -> Iterator[str]:
    """The person's server with the three reference vendors mounted, under uvicorn on loopback."""
    with serve_factory_in_thread(lambda url: create_app(person.settings, demo_vendors_url=url)) as url:
        yield url


@pytest.mark.parametrize("slug", ["telco", "books"])
def test_reference_vendors_conform(reference_server: str, slug: str) -> None:
    seen: list[str] = []
    report = check_vendor(
        f"{reference_server}/demo-vendors/{slug}", policy=LOOPBACK, progress=lambda c: seen.append(c.name)
    )
    assert report.ok, report_text(report)
    assert [c.name for c in report.checks] == [name for name, _ in VENDOR_CHECKS] == seen
    assert report.counts() == {"pass": len(VENDOR_CHECKS), "fail": 0, "skip": 0}
    expected = "alternative" if slug == "telco" else "reject"
    assert report.get("proffer.unlisted-terms").detail == f"signed {expected}"


def test_standalone_kit_conforms_from_its_discovery_url(tmp_path: Path) -> None:
    with serve_factory_in_thread(lambda url: create_vendor_app(vendor_config(url, tmp_path))) as url:
        report = check_vendor(url + "/.well-known/vrm", policy=LOOPBACK)
    assert report.ok, report_text(report)
    assert report.to_json()["counts"]["pass"] == len(VENDOR_CHECKS)


def test_loopback_vendor_is_refused_without_allow_loopback(tmp_path: Path) -> None:
    with serve_factory_in_thread(lambda url: create_vendor_app(vendor_config(url, tmp_path))) as url:
        report = check_vendor(url, policy=UrlPolicy())
    assert not report.ok
    assert report.get("discovery.fetch").outcome == "fail"
    assert "refused" in report.get("discovery.fetch").detail
    assert {c.outcome for c in report.checks[1:]} == {"skip"}


def test_unreachable_vendor_fails_discovery() -> None:
    with socket.socket() as sock:  # a free port, closed again: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = check_vendor(f"http://127.0.0.1:{port}", policy=LOOPBACK)
    assert report.get("discovery.fetch").outcome == "fail"
    assert not report.ok


@pytest.mark.parametrize(
    ("flaw", "failing"),
    [
        ("accepts-unsigned", "signature.unsigned"),
        ("unsigned-answer", "proffer.accept"),
        ("crashes-on-garbage", "body.garbage"),
    ],
)
def test_broken_vendor_fails_the_named_check(tmp_path: Path, flaw: str, failing: str) -> None:
    kits: list[VendorKit] = []

    def factory(url: str) -> object:
        kits.append(VendorKit(vendor_config(url, tmp_path)))
        return broken_vendor_app(kits[0], flaw)

    try:
        with serve_factory_in_thread(factory) as url:
            report = check_vendor(url, policy=LOOPBACK)
    finally:
        for kit in kits:
            kit.close()
    assert not report.ok
    failed = [c.name for c in report.failures]
    assert failing in failed, report_text(report)
    if flaw == "unsigned-answer":
        assert "signature" in report.get("proffer.accept").detail
        assert report.get("agreement.countersigned").outcome == "skip"
    if flaw == "crashes-on-garbage":
        assert "500" in report.get("body.garbage").detail
    if flaw == "accepts-unsigned":
        assert failed == ["signature.unsigned"]
