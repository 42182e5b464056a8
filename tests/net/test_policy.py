"""Static URL checks and address classification: every refused range, spelled every way."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from openvrm.config import Settings
from openvrm.errors import InvalidValue
from openvrm.net import UnsafeUrl, UrlPolicy, address_refusal, check_addresses, check_url, policy_for

DEFAULT = UrlPolicy()
LOOPBACK = UrlPolicy(allow_loopback=True)

REFUSED_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("0.0.0.0", "unspecified"),  # noqa: S104
    ("::", "unspecified"),
    ("0.1.2.3", "this network"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.1", "benchmarking"),
    ("192.0.2.1", "TEST-NET-1"),
    ("198.51.100.1", "TEST-NET-2"),
    ("203.0.113.1", "TEST-NET-3"),
    ("192.0.0.8", "IETF"),
    ("192.88.99.1", "6to4 relay"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard"),
    ("2001:2::1", "IETF"),
    ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:169.254.169.254", "IPv4-mapped"),
    ("::ffff:8.8.8.8", "IPv4-mapped"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::10.0.0.1", "IPv4-compatible"),
    ("64:ff9b::127.0.0.1", "NAT64"),
    ("64:ff9b::10.0.0.1", "NAT64"),
    ("64:ff9b::169.254.169.254", "NAT64"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4"),  # 127.0.0.1
    ("2002:a00:1::1", "6to4"),  # 10.0.0.1
    ("2002:a9fe:a9fe::1", "6to4"),  # 169.254.169.254
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
]

PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "kind"), REFUSED_ADDRESSES)
def test_refused_addresses(address: str, kind: str) -> None:
    reason = address_refusal(address, DEFAULT)
    assert reason is not None
    assert kind.lower() in reason.lower()
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeUrl, match="refusing"):
        check_url(f"https://{host}/.well-known/vrm", DEFAULT)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address, DEFAULT) is None
    host = f"[{address}]" if ":" in address else address
    target = check_url(f"https://{host}/x", DEFAULT)
    assert target.ip == ipaddress.ip_address(address)
    assert target.port == 443


def test_allow_loopback_opens_loopback_only() -> None:
    assert address_refusal("127.0.0.1", LOOPBACK) is None
    assert address_refusal("::1", LOOPBACK) is None
    for still_refused in ("10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "64:ff9b::127.0.0.1", "0.0.0.0"):  # noqa: S104
        assert address_refusal(still_refused, LOOPBACK) is not None, still_refused


def test_allow_private_opens_rfc1918_and_ula_only() -> None:
    private = UrlPolicy(allow_private=True)
    for opened in ("10.0.0.1", "172.16.5.4", "192.168.0.10", "fd00::1"):
        assert address_refusal(opened, private) is None
    for still_refused in ("127.0.0.1", "169.254.169.254", "fe80::1", "100.64.0.1", "64:ff9b::10.0.0.1"):
        assert address_refusal(still_refused, private) is not None, still_refused


def test_any_refused_address_refuses_the_host() -> None:
    with pytest.raises(UnsafeUrl, match="10.0.0.1"):
        check_addresses("vendor.example", ["8.8.8.8", "10.0.0.1"], DEFAULT)
    with pytest.raises(UnsafeUrl, match="no address"):
        check_addresses("vendor.example", [], DEFAULT)
    with pytest.raises(UnsafeUrl, match="not an address"):
        check_addresses("vendor.example", ["not-an-ip"], DEFAULT)
    with pytest.raises(UnsafeUrl, match="plain http"):
        check_addresses("localhost", ["127.0.0.1", "8.8.8.8"], LOOPBACK, loopback_only=True)
    assert check_addresses("v", ["8.8.8.8", "8.8.8.8", "1.1.1.1"], DEFAULT) == [
        ipaddress.ip_address("8.8.8.8"),
        ipaddress.ip_address("1.1.1.1"),
    ]


REFUSED_URLS = [
    ("http://2130706433/", "disguised"),
    ("https://2130706433/", "disguised"),
    ("https://0x7f000001/", "disguised"),
    ("https://0x7f.1/", "disguised"),
    ("https://0x7f.0.0.1/", "disguised"),
    ("https://127.1/", "disguised"),
    ("https://0177.0.0.1/", "IPv4"),
    ("https://017700000001/", "disguised"),
    ("https://10.0.0.1./", "disguised"),
    ("https://example.0x10/", "disguised"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://user:pass@vendor.example/", "user name or password"),
    ("https://user@vendor.example/", "user name or password"),
    ("https://@vendor.example/", "user name or password"),
    ("https://vendor.example\\@127.0.0.1/", "backslash"),
    ("https://vendor.example /", "whitespace"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://vendor.example/", "scheme"),
    ("ftp://vendor.example/", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("//vendor.example/", "scheme"),
    ("vendor.example/path", "scheme"),
    ("http://vendor.example/", "plain http"),
    ("http://93.184.215.14/", "plain http"),
    ("https:///nohost", "no host"),
    ("https://vendor.example:0/", "port"),
    ("https://vendor.example:70000/", "port"),
    ("https://ven%64or.example/", "not a valid host"),
    ("https://a..b.example/", "not a valid host"),
    ("https://-bad.example/", "not a valid host"),
    ("https://vendor.example/" + "a" * 2048, "longer than 2048"),
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED_URLS)
def test_refused_urls(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        check_url(url, LOOPBACK)  # refused even when loopback is allowed
    assert why.lower() in str(caught.value).lower()


def test_http_needs_loopback_permission_and_a_loopback_host() -> None:
    with pytest.raises(UnsafeUrl, match="plain http"):
        check_url("http://127.0.0.1:8765/", DEFAULT)
    with pytest.raises(UnsafeUrl, match="plain http"):
        check_url("http://localhost:8765/", DEFAULT)
    for ok in (
        "http://127.0.0.1:8765/x",
        "http://localhost:8765/x",
        "http://[::1]:8765/x",
        "http://127.0.0.2/",
    ):
        assert check_url(ok, LOOPBACK).scheme == "http"
    with pytest.raises(UnsafeUrl, match="only allowed to loopback"):
        check_url("http://vendor.example/", LOOPBACK)
    with pytest.raises(UnsafeUrl, match="loopback"):
        check_url("https://127.0.0.1/", DEFAULT)


def test_accepted_urls_are_parsed() -> None:
    target = check_url("https://Vendor.Example:8443/.well-known/vrm?x=1", DEFAULT)
    assert (target.scheme, target.host, target.port, target.ip) == ("https", "vendor.example", 8443, None)
    assert check_url("https://bücher.example/", DEFAULT).host == "xn--bcher-kva.example"
    assert check_url("https://1e100.net/", DEFAULT).host == "1e100.net"
    assert check_url("https://" + "a" * 60 + ".example/" + "p" * 1900, DEFAULT).port == 443


def test_allowed_ports() -> None:
    policy = UrlPolicy(allowed_ports=frozenset({443}))
    assert check_url("https://vendor.example/", policy).port == 443
    with pytest.raises(UnsafeUrl, match="port 8443 is not allowed"):
        check_url("https://vendor.example:8443/", policy)


def test_unsafe_url_is_an_invalid_value_with_its_own_code() -> None:
    with pytest.raises(InvalidValue) as caught:
        check_url("ftp://x.example/", DEFAULT)
    assert isinstance(caught.value, UnsafeUrl)
    assert (caught.value.code, caught.value.status) == ("unsafe-url", 422)


def test_policy_defaults_and_validation() -> None:
    assert DEFAULT == UrlPolicy(False, False, 1024 * 1024, 10, None)
    with pytest.raises(ValueError, match="max_response_bytes"):
        UrlPolicy(max_response_bytes=0)
    with pytest.raises(ValueError, match="timeout"):
        UrlPolicy(timeout_seconds=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("0", False), ("no", False), ("1", True), ("true", True), ("YES", True)],
)
def test_setting_allow_loopback_peers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("OPENVRM_ALLOW_LOOPBACK_PEERS", raising=False)
    else:
        monkeypatch.setenv("OPENVRM_ALLOW_LOOPBACK_PEERS", value)
    settings = Settings.resolve(home=tmp_path)
    assert settings.allow_loopback_peers is expected
    assert policy_for(settings) == UrlPolicy(allow_loopback=expected)


def test_setting_explicit_argument_wins_and_bad_values_fail(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENVRM_ALLOW_LOOPBACK_PEERS", "1")
    assert Settings.resolve(home=tmp_path, allow_loopback_peers=False).allow_loopback_peers is False
    monkeypatch.setenv("OPENVRM_ALLOW_LOOPBACK_PEERS", "maybe")
    with pytest.raises(InvalidValue, match="OPENVRM_ALLOW_LOOPBACK_PEERS"):
        Settings.resolve(home=tmp_path)
