"""What an outbound URL may be, and which addresses it may reach.

Two layers, both needed:

* :func:`check_url` looks at the URL alone (scheme, userinfo, host spelling, port, length) and, when the
  host is an IP literal, at that address;
* :func:`check_addresses` looks at every address a host name resolves to. The transports in
  :mod:`openvrm.net.transport` call it again at connection time, on the addresses they then connect to.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from openvrm.net.errors import UnsafeUrl

if TYPE_CHECKING:
    from openvrm.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
MiB = 1024 * 1024
DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class UrlPolicy:
    """Which outbound URLs are allowed.

    ``https`` is always required, except that ``http`` may reach a loopback address when
    ``allow_loopback`` is set (tests and the demo run on ``http://127.0.0.1``).
    ``allow_private`` opens the RFC 1918 ranges and IPv6 unique-local addresses, nothing more: link-local
    (cloud metadata), CGNAT and the other special ranges stay refused whatever the policy.
    """

    allow_loopback: bool = False
    allow_private: bool = False
    max_response_bytes: int = 1 * MiB
    timeout_seconds: float = 10
    allowed_ports: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        if self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")


@dataclass(frozen=True)
class ParsedTarget:
    """A URL that passed the static checks."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) form, lower case, without brackets
    port: int  # the effective port (the scheme's default when none is written)
    ip: IPAddress | None  # the address when the host is an IP literal


def policy_for(settings: Settings) -> UrlPolicy:
    """The outbound policy for a running openvrm: loopback peers only when the settings allow them."""
    return UrlPolicy(allow_loopback=settings.allow_loopback_peers)


# --- addresses ------------------------------------------------------------------------------------------

_net = ipaddress.ip_network

_PRIVATE = (_net("10.0.0.0/8"), _net("172.16.0.0/12"), _net("192.168.0.0/16"), _net("fc00::/7"))
_CGNAT = _net("100.64.0.0/10")
_NAT64 = _net("64:ff9b::/96")
_V4_COMPATIBLE = _net("::/96")
# Special-purpose ranges refused by name, whatever this Python's ipaddress tables say.
_SPECIAL: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_net("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (_net("192.0.0.0/24"), "IETF protocol assignments (192.0.0.0/24)"),
    (_net("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_net("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_net("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_net("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"),
    (_net("192.88.99.0/24"), "6to4 relay anycast (192.88.99.0/24)"),
    (_net("240.0.0.0/4"), "reserved (240.0.0.0/4)"),
    (_net("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"),
    (_net("100::/64"), "discard-only (100::/64)"),
    (_net("2001::/23"), "IETF protocol assignments (2001::/23)"),
    (_net("2001:db8::/32"), "documentation (2001:db8::/32)"),
    (_net("3fff::/20"), "documentation (3fff::/20)"),
    (_net("fec0::/10"), "site-local (fec0::/10)"),
)
_STRICT = UrlPolicy()


def address_refusal(address: IPAddress | str, policy: UrlPolicy) -> str | None:
    """Why ``address`` may not be reached under ``policy``, or None when it may."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return f"{ip} carries a zone id"
        if ip.ipv4_mapped is not None:
            return f"{ip} is an IPv4-mapped IPv6 address (of {ip.ipv4_mapped})"
        if ip in _NAT64:
            # A NAT64 gateway reaches the embedded IPv4 address: judge that one, strictly.
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            reason = address_refusal(embedded, _STRICT)
            return f"{ip} is a NAT64 address of {embedded}, which is {reason}" if reason else None
        if ip.sixtofour is not None:
            reason = address_refusal(ip.sixtofour, _STRICT)
            if reason:
                return f"{ip} is a 6to4 address of {ip.sixtofour}, which is {reason}"
        if ip.teredo is not None:
            return f"{ip} is a Teredo tunnel address"
        if ip in _V4_COMPATIBLE and not ip.is_loopback:
            return f"{ip} is an IPv4-compatible IPv6 address or unspecified"
    if ip.is_loopback:
        return None if policy.allow_loopback else f"{ip} is a loopback address"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_link_local:
        return f"{ip} is link-local (this includes cloud metadata services)"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if any(ip in net for net in _PRIVATE):
        return None if policy.allow_private else f"{ip} is a private address"
    if ip in _CGNAT:
        return f"{ip} is in the shared (CGNAT) range 100.64.0.0/10"
    for net, label in _SPECIAL:
        if ip in net:
            return f"{ip} is {label}"
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


def check_addresses(
    host: str, addresses: Iterable[IPAddress | str], policy: UrlPolicy, *, loopback_only: bool = False
) -> list[IPAddress]:
    """Every address ``host`` resolved to, all vetted; :class:`UnsafeUrl` if any one is refused.

    ``loopback_only`` (plain http) also refuses any address that is not loopback.
    """
    vetted: list[IPAddress] = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            raise UnsafeUrl(f"{host} resolved to something that is not an address: {address!r}") from None
        reason = address_refusal(ip, policy)
        if reason is None and loopback_only and not ip.is_loopback:
            reason = f"{ip} is not loopback, and plain http may only reach loopback"
        if reason is not None:
            raise UnsafeUrl(f"refusing to connect to {host}: {reason}")
        if ip not in vetted:
            vetted.append(ip)
    if not vetted:
        raise UnsafeUrl(f"{host} resolved to no address")
    return vetted


# --- URLs -----------------------------------------------------------------------------------------------

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_DOTTED_QUAD = re.compile(r"^(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}$")


def _host_ip(host: str) -> IPAddress | None:
    """The address of an IP-literal host, None for a name; refuses spellings that hide an address."""
    if ":" in host:
        if "%" in host:
            raise UnsafeUrl(f"IPv6 zone ids are not allowed in URLs: {host!r}")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeUrl(f"malformed IPv6 address {host!r}") from None
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # Browsers and inet_aton read a host whose last label is a number as an IPv4 address, in
        # decimal, octal or hex, whole or in parts: only the plain dotted quad is accepted.
        if not _DOTTED_QUAD.match(host):
            raise UnsafeUrl(f"the host {host!r} is an IPv4 address in a disguised form")
        try:
            return ipaddress.IPv4Address(host)
        except ValueError:
            raise UnsafeUrl(f"malformed IPv4 address {host!r}") from None
    return None


def check_url(url: str | httpx.URL, policy: UrlPolicy) -> ParsedTarget:
    """Validate ``url`` without touching the network; :class:`UnsafeUrl` when refused."""
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"URL is longer than {MAX_URL_LENGTH} characters")
    if isinstance(url, str) and (
        any(ord(c) < 0x21 or ord(c) == 0x7F for c in url) or "\\" in url.split("?", 1)[0]
    ):
        raise UnsafeUrl("URL contains whitespace, control characters or backslashes")
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    scheme = parsed.scheme
    if scheme not in ("https", "http"):
        raise UnsafeUrl(f"the scheme {scheme or '(none)'!r} is not allowed: use https")
    authority = text.split("://", 1)[1].split("/", 1)[0] if "://" in text else ""
    if parsed.userinfo or "@" in authority:
        raise UnsafeUrl("URLs with a user name or password (user:pass@) are not allowed")
    try:
        host = parsed.raw_host.decode("ascii").lower()
    except UnicodeDecodeError:
        raise UnsafeUrl("the host is not valid ASCII after IDNA encoding") from None
    if not host:
        raise UnsafeUrl("URL has no host")
    if len(host) > MAX_HOST_LENGTH:
        raise UnsafeUrl("host name is too long")
    ip = _host_ip(host)
    if ip is None:
        labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
        if not all(_LABEL.match(label) and len(label) <= 63 for label in labels):
            raise UnsafeUrl(f"{host!r} is not a valid host name")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise UnsafeUrl(f"port {port} is out of range")
    if policy.allowed_ports is not None and port not in policy.allowed_ports:
        raise UnsafeUrl(f"port {port} is not allowed")
    if scheme == "http":
        if not policy.allow_loopback:
            raise UnsafeUrl("plain http is not allowed: use https")
        if not (host in ("localhost", "localhost.") or (ip is not None and ip.is_loopback)):
            raise UnsafeUrl("plain http is only allowed to loopback: use https")
    if ip is not None:
        check_addresses(host, [ip], policy, loopback_only=scheme == "http")
    return ParsedTarget(url=str(parsed), scheme=scheme, host=host, port=port, ip=ip)
