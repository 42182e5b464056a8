"""The guarded transports against real servers on 127.0.0.1 (nothing here leaves the machine)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from openvrm import __version__
from openvrm.net import (
    AsyncGuardedBackend,
    FetchError,
    GuardedBackend,
    GuardedTransport,
    IPAddress,
    ResponseTooLarge,
    UnsafeUrl,
    UrlPolicy,
    fetch_json,
    guarded_async_client,
    guarded_client,
)

LOOPBACK = UrlPolicy(allow_loopback=True)
BIG = 2 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    server: VendorServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers)))
        path = urlsplit(self.path).path
        query = parse_qs(urlsplit(self.path).query)
        if path == "/json":
            self._send(200, json.dumps({"vendor": "acme"}).encode(), "application/json")
        elif path == "/array":
            self._send(200, b"[1, 2]", "application/json")
        elif path == "/text":
            self._send(200, b"hello", "text/plain")
        elif path == "/big":
            self._send(200, b"x" * BIG, "application/json")
        elif path == "/big-streamed":  # HTTP/1.0 without Content-Length: the body ends when we close
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for _ in range(BIG // 65536):
                self.wfile.write(b" " * 65536)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"{}", "application/json")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class VendorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _serve(server: VendorServer) -> Iterator[VendorServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def vendor() -> Iterator[VendorServer]:
    yield from _serve(VendorServer())


@pytest.fixture
def tls_vendor(tmp_path: Path) -> Iterator[tuple[VendorServer, ssl.SSLContext]]:
    """An https server on 127.0.0.1 whose certificate names only ``vendor.test``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vendor.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("vendor.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = VendorServer()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    client_ctx = ssl.create_default_context(cadata=cert_pem.decode())
    yield from ((s, client_ctx) for s in _serve(server))


def mapping(names: dict[str, list[str]]) -> tuple[list[str], object]:
    """A resolver answering from ``names`` (and recording what it was asked)."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> Iterable[IPAddress | str]:
        asked.append(host)
        return names[host]

    return asked, resolve


class Rebinder:
    """A name that resolves to a public address the first time and to loopback afterwards."""

    def __init__(self) -> None:
        self.calls = 0

    def answer(self) -> list[str]:
        self.calls += 1
        return ["93.184.215.14"] if self.calls == 1 else ["127.0.0.1"]

    def __call__(self, host: str, port: int) -> list[str]:
        return self.answer()

    async def resolve_async(self, host: str, port: int) -> list[str]:
        return self.answer()


# --- sync -------------------------------------------------------------------------------------------------


def test_loopback_refused_by_default(vendor: VendorServer) -> None:
    with guarded_client() as client:
        with pytest.raises(UnsafeUrl, match="plain http"):
            client.get(f"http://127.0.0.1:{vendor.port}/json")
        with pytest.raises(UnsafeUrl, match="loopback"):
            client.get(f"https://127.0.0.1:{vendor.port}/json")
    assert vendor.seen == []


def test_localhost_refused_by_default_after_resolution(vendor: VendorServer) -> None:
    """A name (not a literal) that resolves to loopback: only the DNS check can catch it."""
    with guarded_client() as client, pytest.raises(UnsafeUrl, match="refusing to connect to localhost"):
        client.get(f"https://localhost:{vendor.port}/json")
    assert vendor.seen == []


def test_allowed_with_allow_loopback(vendor: VendorServer) -> None:
    with guarded_client(LOOPBACK) as client:
        response = client.get(f"http://127.0.0.1:{vendor.port}/json")
        assert response.json() == {"vendor": "acme"}
        # By name: connects to a vetted address, the Host header still names the host.
        assert client.get(f"http://localhost:{vendor.port}/json").status_code == 200
    headers = [h for _, h in vendor.seen]
    assert headers[0]["User-Agent"] == f"openvrm/{__version__}"
    assert headers[1]["Host"] == f"localhost:{vendor.port}"


def test_redirects_are_off_by_default(vendor: VendorServer) -> None:
    with guarded_client(LOOPBACK) as client:
        response = client.get(f"http://127.0.0.1:{vendor.port}/redirect?to=/json")
    assert response.status_code == 302
    assert len(vendor.seen) == 1


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "https://internal.test/",  # resolves to 10.1.2.3
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_refused_address_is_refused_at_the_hop(vendor: VendorServer, target: str) -> None:
    asked, resolve = mapping({"internal.test": ["10.1.2.3"], "localhost": ["127.0.0.1"]})
    with guarded_client(LOOPBACK, follow_redirects=True, resolver=resolve) as client:  # type: ignore[arg-type]
        with pytest.raises(UnsafeUrl):
            client.get(f"http://127.0.0.1:{vendor.port}/redirect?to={target}")
    assert [path.split("?")[0] for path, _ in vendor.seen] == ["/redirect"]


def test_allowed_redirects_are_followed_at_most_three_times(vendor: VendorServer) -> None:
    base = f"http://127.0.0.1:{vendor.port}"
    with guarded_client(LOOPBACK, follow_redirects=True) as client:
        assert client.get(f"{base}/redirect?to={base}/json").json() == {"vendor": "acme"}
        hop = f"{base}/json"
        for _ in range(4):
            hop = str(httpx.URL(f"{base}/redirect", params={"to": hop}))
        with pytest.raises(httpx.TooManyRedirects):
            client.get(hop)


def test_response_larger_than_the_limit_is_cut(vendor: VendorServer) -> None:
    with guarded_client(LOOPBACK) as client:
        with pytest.raises(ResponseTooLarge, match="larger than the limit of 1048576 bytes"):
            client.get(f"http://127.0.0.1:{vendor.port}/big")  # declared Content-Length
        with pytest.raises(ResponseTooLarge, match="larger than the limit"):
            client.get(f"http://127.0.0.1:{vendor.port}/big-streamed")  # counted while streaming
        small = UrlPolicy(allow_loopback=True, max_response_bytes=4)
    with guarded_client(small) as client:
        with pytest.raises(ResponseTooLarge, match="limit of 4 bytes"):
            client.get(f"http://127.0.0.1:{vendor.port}/text")


def test_dns_rebinding_is_refused_at_connect_time(vendor: VendorServer) -> None:
    """Public at the transport's check, loopback when the pool connects: the connect-time check refuses."""
    rebinder = Rebinder()
    with guarded_client(resolver=rebinder) as client, pytest.raises(UnsafeUrl, match="127.0.0.1"):
        client.get(f"https://rebind.test:{vendor.port}/json")
    assert rebinder.calls == 2
    assert vendor.seen == []


def test_backend_refuses_before_connecting() -> None:
    _, resolve = mapping({"mixed.test": ["8.8.8.8", "10.0.0.1"]})
    backend = GuardedBackend(UrlPolicy(), resolve)  # type: ignore[arg-type]
    with pytest.raises(UnsafeUrl, match="10.0.0.1"):
        backend.connect_tcp("mixed.test", 443)
    with pytest.raises(UnsafeUrl, match="unix"):
        backend.connect_unix_socket("/run/docker.sock")
    with pytest.raises(UnsafeUrl, match="not loopback"):
        GuardedBackend(LOOPBACK, loopback_only=True).connect_tcp("8.8.8.8", 80)


def test_unresolvable_names_are_connect_errors() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    with (
        guarded_client(resolver=fail) as client,
        pytest.raises(httpx.ConnectError, match="could not resolve"),
    ):
        client.get("https://nowhere.test/")


def test_tls_is_verified_for_the_name_not_the_address(
    tls_vendor: tuple[VendorServer, ssl.SSLContext],
) -> None:
    server, ctx = tls_vendor
    _, resolve = mapping({"vendor.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with guarded_client(LOOPBACK, resolver=resolve, verify=ctx) as client:  # type: ignore[arg-type]
        response = client.get(f"https://vendor.test:{server.port}/json")
        assert response.json() == {"vendor": "acme"}
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|hostname"):
            client.get(f"https://other.test:{server.port}/json")
    assert server.seen[0][1]["Host"] == f"vendor.test:{server.port}"


def test_the_shared_default_context_verifies_and_never_learns_a_custom_trust(
    tls_vendor: tuple[VendorServer, ssl.SSLContext],
) -> None:
    # Clients made with the default (certifi's roots) share one SSL context, made once per process: the
    # test server's private CA is trusted only by the client given it, before and after that client.
    server, ctx = tls_vendor
    _, resolve = mapping({"vendor.test": ["127.0.0.1"]})
    url = f"https://vendor.test:{server.port}/json"
    for trusting in (False, True, False):
        verify = ctx if trusting else True
        with guarded_client(LOOPBACK, resolver=resolve, verify=verify) as client:  # type: ignore[arg-type]
            if trusting:
                assert client.get(url).json() == {"vendor": "acme"}
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    client.get(url)
    first, second = GuardedTransport(), GuardedTransport()
    assert first._https._pool._ssl_context is second._https._pool._ssl_context  # made once, not per client
    first.close()
    second.close()


def test_client_factories_refuse_overrides() -> None:
    with pytest.raises(TypeError, match="transport"):
        guarded_client(transport=httpx.HTTPTransport())
    with pytest.raises(TypeError, match="max_redirects"):
        guarded_async_client(max_redirects=10)
    with guarded_client(UrlPolicy(timeout_seconds=2.5), headers={"X-Extra": "1"}) as client:
        assert client.timeout.connect == 2.5
        assert client.headers["User-Agent"] == f"openvrm/{__version__}"
        assert client.headers["X-Extra"] == "1"
        assert client.max_redirects == 3
        assert client.follow_redirects is False
    GuardedTransport().close()


# --- async ------------------------------------------------------------------------------------------------


def test_async_loopback_refused_and_allowed(vendor: VendorServer) -> None:
    async def scenario() -> None:
        async with guarded_async_client() as client:
            with pytest.raises(UnsafeUrl, match="plain http"):
                await client.get(f"http://127.0.0.1:{vendor.port}/json")
            with pytest.raises(UnsafeUrl, match="refusing to connect to localhost"):
                await client.get(f"https://localhost:{vendor.port}/json")
        assert vendor.seen == []
        async with guarded_async_client(LOOPBACK) as client:
            assert (await client.get(f"http://localhost:{vendor.port}/json")).json() == {"vendor": "acme"}

    asyncio.run(scenario())
    assert vendor.seen[0][1]["Host"] == f"localhost:{vendor.port}"
    assert vendor.seen[0][1]["User-Agent"] == f"openvrm/{__version__}"


def test_async_dns_rebinding_is_refused_at_connect_time(vendor: VendorServer) -> None:
    rebinder = Rebinder()

    async def scenario() -> None:
        async with guarded_async_client(resolver=rebinder.resolve_async) as client:
            with pytest.raises(UnsafeUrl, match="127.0.0.1"):
                await client.get(f"https://rebind.test:{vendor.port}/json")

    asyncio.run(scenario())
    assert rebinder.calls == 2
    assert vendor.seen == []


def test_async_backend_refuses_before_connecting() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["1.1.1.1", "169.254.169.254"]

    async def scenario() -> None:
        backend = AsyncGuardedBackend(UrlPolicy(), resolve)
        with pytest.raises(UnsafeUrl, match="169.254.169.254"):
            await backend.connect_tcp("metadata.test", 80)
        with pytest.raises(UnsafeUrl, match="unix"):
            await backend.connect_unix_socket("/run/docker.sock")

    asyncio.run(scenario())


def test_async_slow_resolution_times_out() -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(5)
        return ["8.8.8.8"]

    async def scenario() -> None:
        async with guarded_async_client(UrlPolicy(timeout_seconds=0.2), resolver=slow) as client:
            with pytest.raises(httpx.ConnectTimeout):
                await client.get("https://slow.test/")

    asyncio.run(scenario())


def test_fetch_json(vendor: VendorServer) -> None:
    base = f"http://127.0.0.1:{vendor.port}"

    async def scenario() -> None:
        async with guarded_async_client(LOOPBACK) as client:
            assert await fetch_json(client, f"{base}/json", LOOPBACK) == {"vendor": "acme"}
            with pytest.raises(FetchError, match="not an object"):
                await fetch_json(client, f"{base}/array", LOOPBACK)
            with pytest.raises(FetchError, match="did not answer JSON"):
                await fetch_json(client, f"{base}/text", LOOPBACK)
            with pytest.raises(FetchError, match="404"):
                await fetch_json(client, f"{base}/missing", LOOPBACK)
            with pytest.raises(FetchError, match="redirects are not followed"):
                await fetch_json(client, f"{base}/redirect?to=/json", LOOPBACK)
            with pytest.raises(ResponseTooLarge):
                await fetch_json(client, f"{base}/big", LOOPBACK)
            with pytest.raises(ResponseTooLarge):
                await fetch_json(client, f"{base}/big-streamed", LOOPBACK)
            with pytest.raises(UnsafeUrl):
                await fetch_json(client, f"{base}/json", UrlPolicy())
            # The body limit also holds when the transport's own limit is looser.
            with pytest.raises(ResponseTooLarge, match="limit of 5 bytes"):
                await fetch_json(client, f"{base}/json", UrlPolicy(allow_loopback=True, max_response_bytes=5))
        async with guarded_async_client(LOOPBACK, follow_redirects=True) as client:
            assert await fetch_json(client, f"{base}/redirect?to=/json", LOOPBACK) == {"vendor": "acme"}
            with pytest.raises(UnsafeUrl):
                await fetch_json(client, f"{base}/redirect?to=https://10.0.0.1/", LOOPBACK)
        async with guarded_async_client(LOOPBACK) as client:
            with pytest.raises(FetchError, match="failed"):
                await fetch_json(client, "http://127.0.0.1:1/json", LOOPBACK)  # nothing listens on port 1

    asyncio.run(scenario())


def test_ipv6_loopback_literal_is_vetted() -> None:
    with guarded_client() as client, pytest.raises(UnsafeUrl, match="::1"):
        client.get("https://[::1]:9/")
