"""httpx transports that refuse unsafe destinations at connection time.

Each request is checked twice:

1. in the transport, before anything is sent: :func:`~openvrm.net.policy.check_url` on the URL of this
   hop (so every redirect hop is checked too), then the host is resolved and every address vetted;
2. in the connection pool's network backend, when a new TCP connection is opened: the host is resolved
   again, every address vetted again, and the socket is connected to one of those vetted addresses, not
   to the name. A DNS answer that changes between the two (DNS rebinding) meets the second check.

TLS still uses the original host name: httpcore passes it as ``server_hostname`` to ``start_tls``, so SNI
and certificate verification are for the name, and httpx writes the Host header from the URL.

httpx 0.28 has no public way to give :class:`httpx.HTTPTransport` a network backend, so
:class:`_PinnedTransport` keeps httpx's request handling and swaps in a connection pool built with ours
(httpx is pinned; ``tests/net`` exercises the swap end to end).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import anyio
import httpcore
import httpx

from openvrm import __version__
from openvrm.net.errors import FetchError, ResponseTooLarge, UnsafeUrl
from openvrm.net.policy import IPAddress, UrlPolicy, check_addresses, check_url

Resolver = Callable[[str, int], Iterable[IPAddress | str]]
AsyncResolver = Callable[[str, int], Awaitable[Iterable[IPAddress | str]]]

USER_AGENT = f"openvrm/{__version__}"
MAX_REDIRECTS = 3
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
_VerifyTypes = ssl.SSLContext | str | bool


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves ``host`` to."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


async def async_system_resolver(host: str, port: int) -> list[str]:
    """:func:`system_resolver` without blocking the event loop (the loop's getaddrinfo)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _vet(
    host: str, addresses: Iterable[IPAddress | str], policy: UrlPolicy, loopback_only: bool
) -> list[IPAddress]:
    return check_addresses(host, addresses, policy, loopback_only=loopback_only)


def resolve_and_check(
    host: str, port: int, policy: UrlPolicy, *, resolver: Resolver | None = None, loopback_only: bool = False
) -> list[IPAddress]:
    """Resolve ``host`` and vet every address; :class:`UnsafeUrl` if any is refused.

    Resolution failures raise :class:`httpcore.ConnectError`.
    """
    literal = _literal(host)
    if literal is not None:
        return _vet(host, [literal], policy, loopback_only)
    try:
        addresses = list((resolver or system_resolver)(host, port))
    except OSError as exc:
        raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
    return _vet(host, addresses, policy, loopback_only)


async def async_resolve_and_check(
    host: str,
    port: int,
    policy: UrlPolicy,
    *,
    resolver: AsyncResolver | None = None,
    loopback_only: bool = False,
    timeout: float | None = None,
) -> list[IPAddress]:
    """The async :func:`resolve_and_check`; a resolution slower than ``timeout`` is a connect timeout."""
    literal = _literal(host)
    if literal is not None:
        return _vet(host, [literal], policy, loopback_only)
    try:
        with anyio.fail_after(timeout):
            addresses = list(await (resolver or async_system_resolver)(host, port))
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
    except OSError as exc:
        raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
    return _vet(host, addresses, policy, loopback_only)


# --- network backends: resolve, vet, connect to the vetted address --------------------------------------


class GuardedBackend(httpcore.NetworkBackend):
    """A sync httpcore network backend that connects only to addresses the policy allows."""

    def __init__(self, policy: UrlPolicy, resolver: Resolver | None = None, *, loopback_only: bool = False):
        self._policy = policy
        self._resolver = resolver
        self._loopback_only = loopback_only
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_and_check(
            host, port, self._policy, resolver=self._resolver, loopback_only=self._loopback_only
        )
        last: Exception = httpcore.ConnectError(f"no address of {host} could be reached")
        for ip in addresses:
            try:
                return self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise UnsafeUrl("connections to unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """The async :class:`GuardedBackend` (anyio: asyncio or trio)."""

    def __init__(
        self, policy: UrlPolicy, resolver: AsyncResolver | None = None, *, loopback_only: bool = False
    ):
        self._policy = policy
        self._resolver = resolver
        self._loopback_only = loopback_only
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await async_resolve_and_check(
            host,
            port,
            self._policy,
            resolver=self._resolver,
            loopback_only=self._loopback_only,
            timeout=timeout,
        )
        last: Exception = httpcore.ConnectError(f"no address of {host} could be reached")
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeUrl("connections to unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's transport, with a connection pool that uses ``backend``."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: GuardedBackend, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


class _AsyncPinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(
        self, ssl_context: ssl.SSLContext, backend: AsyncGuardedBackend, limits: httpx.Limits
    ) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


# --- size limit -----------------------------------------------------------------------------------------


def _too_large(request: httpx.Request, limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"the response from {request.url} is larger than the limit of {limit} bytes")


def _declared_too_large(request: httpx.Request, response: httpx.Response, limit: int) -> bool:
    if request.method == "HEAD":
        return False
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


class _LimitedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, request: httpx.Request, limit: int) -> None:
        self._inner, self._request, self._limit = inner, request, limit

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise _too_large(self._request, self._limit)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _AsyncLimitedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request, limit: int) -> None:
        self._inner, self._request, self._limit = inner, request, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise _too_large(self._request, self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _ssl_context(verify: _VerifyTypes) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        return _verifying_context()
    return httpx.create_ssl_context(verify=verify, trust_env=False)


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    """The default context (certificates checked against certifi's roots), made once per process.

    Loading the root certificates takes tens of milliseconds, and the agent opens a client for each
    exchange (each acknowledgement it sends, say). An ``SSLContext`` may be shared by many connections and
    threads; nothing here changes it after it is made, except httpcore setting its ALPN protocols on each
    connection, always to HTTP/1.1 here (no pool of ours speaks HTTP/2), so that never differs.
    """
    return httpx.create_ssl_context(verify=True, trust_env=False)


# --- the transports -------------------------------------------------------------------------------------


class GuardedTransport(httpx.BaseTransport):
    """A sync httpx transport that only reaches what ``policy`` allows (see the module docstring)."""

    def __init__(
        self,
        policy: UrlPolicy | None = None,
        *,
        resolver: Resolver | None = None,
        verify: _VerifyTypes = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        self.policy = policy if policy is not None else UrlPolicy()
        self._resolver = resolver
        ctx = _ssl_context(verify)
        self._https = _PinnedTransport(ctx, GuardedBackend(self.policy, resolver), limits)
        self._http = _PinnedTransport(ctx, GuardedBackend(self.policy, resolver, loopback_only=True), limits)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = check_url(request.url, self.policy)
        plain = target.scheme == "http"
        try:
            resolve_and_check(
                target.host, target.port, self.policy, resolver=self._resolver, loopback_only=plain
            )
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        response = (self._http if plain else self._https).handle_request(request)
        limit = self.policy.max_response_bytes
        if _declared_too_large(request, response, limit):
            response.close()
            raise _too_large(request, limit)
        if not isinstance(response.stream, httpx.SyncByteStream):  # pragma: no cover - httpx invariant
            raise TypeError("a sync transport returned an async stream")
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_LimitedStream(response.stream, request, limit),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._https.close()
        self._http.close()


class GuardedAsyncTransport(httpx.AsyncBaseTransport):
    """An async httpx transport that only reaches what ``policy`` allows (see the module docstring)."""

    def __init__(
        self,
        policy: UrlPolicy | None = None,
        *,
        resolver: AsyncResolver | None = None,
        verify: _VerifyTypes = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        self.policy = policy if policy is not None else UrlPolicy()
        self._resolver = resolver
        ctx = _ssl_context(verify)
        self._https = _AsyncPinnedTransport(ctx, AsyncGuardedBackend(self.policy, resolver), limits)
        self._http = _AsyncPinnedTransport(
            ctx, AsyncGuardedBackend(self.policy, resolver, loopback_only=True), limits
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = check_url(request.url, self.policy)
        plain = target.scheme == "http"
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            await async_resolve_and_check(
                target.host,
                target.port,
                self.policy,
                resolver=self._resolver,
                loopback_only=plain,
                timeout=timeout,
            )
        except httpcore.ConnectTimeout as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        response = await (self._http if plain else self._https).handle_async_request(request)
        limit = self.policy.max_response_bytes
        if _declared_too_large(request, response, limit):
            await response.aclose()
            raise _too_large(request, limit)
        if not isinstance(response.stream, httpx.AsyncByteStream):  # pragma: no cover - httpx invariant
            raise TypeError("an async transport returned a sync stream")
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_AsyncLimitedStream(response.stream, request, limit),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._https.aclose()
        await self._http.aclose()


# --- clients --------------------------------------------------------------------------------------------

_NOT_OVERRIDABLE = ("transport", "mounts", "proxy", "trust_env", "max_redirects", "app")


def _client_options(policy: UrlPolicy, follow_redirects: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    refused = [name for name in _NOT_OVERRIDABLE if name in kwargs]
    if refused:
        raise TypeError(f"a guarded client sets {', '.join(refused)} itself")
    headers = httpx.Headers({"User-Agent": USER_AGENT})
    headers.update(kwargs.pop("headers", None) or {})
    kwargs.setdefault("timeout", httpx.Timeout(policy.timeout_seconds))
    return {
        **kwargs,
        "headers": headers,
        "follow_redirects": follow_redirects,
        "max_redirects": MAX_REDIRECTS,
        "trust_env": False,
    }


def guarded_client(
    policy: UrlPolicy | None = None,
    *,
    follow_redirects: bool = False,
    resolver: Resolver | None = None,
    verify: _VerifyTypes = True,
    **kwargs: Any,
) -> httpx.Client:
    """An :class:`httpx.Client` on a :class:`GuardedTransport`: policy timeouts, at most 3 redirects (each
    one checked) when ``follow_redirects`` is set, and the openvrm User-Agent."""
    policy = policy if policy is not None else UrlPolicy()
    transport = GuardedTransport(policy, resolver=resolver, verify=verify)
    return httpx.Client(transport=transport, **_client_options(policy, follow_redirects, kwargs))


def guarded_async_client(
    policy: UrlPolicy | None = None,
    *,
    follow_redirects: bool = False,
    resolver: AsyncResolver | None = None,
    verify: _VerifyTypes = True,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """The async :func:`guarded_client`."""
    policy = policy if policy is not None else UrlPolicy()
    transport = GuardedAsyncTransport(policy, resolver=resolver, verify=verify)
    return httpx.AsyncClient(transport=transport, **_client_options(policy, follow_redirects, kwargs))


# --- JSON documents -------------------------------------------------------------------------------------


async def fetch_json(client: httpx.AsyncClient, url: str, policy: UrlPolicy) -> dict[str, Any]:
    """GET ``url`` and return its body, which must be a JSON object of at most
    ``policy.max_response_bytes`` (decoded) bytes.

    Raises :class:`UnsafeUrl` for a refused URL (or redirect hop), :class:`ResponseTooLarge`,
    and :class:`FetchError` for everything else that goes wrong (network, status, not JSON).
    """
    check_url(url, policy)
    limit = policy.max_response_bytes
    body = bytearray()
    try:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.is_redirect:
                location = response.headers.get("location", "?")
                raise FetchError(f"GET {url} redirected to {location}, and redirects are not followed here")
            if response.status_code != 200:
                raise FetchError(f"GET {url} answered {response.status_code} {response.reason_phrase}")
            request = response.request
            if _declared_too_large(request, response, limit):
                raise _too_large(request, limit)
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _too_large(request, limit)
    except httpx.TooManyRedirects as exc:
        raise FetchError(f"GET {url}: more than {MAX_REDIRECTS} redirects") from exc
    except httpx.TimeoutException as exc:
        raise FetchError(f"GET {url} timed out") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"GET {url} failed: {exc}") from exc
    try:
        document = json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(f"GET {url} did not answer JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise FetchError(f"GET {url} answered JSON that is not an object")
    return document
