"""The live side of the agent checks: a conformance vendor on this machine that agents connect to.

`vrm conformance agent` starts :class:`ConformanceVendor` (the vendor kit with a temporary store, under
uvicorn in a thread), waits until an agent has made a relationship with it, then runs
:class:`~openvrm.conformance.agent.AgentChecks` against that agent.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from openvrm.conformance.agent import AgentChecks
from openvrm.conformance.report import Progress, Report
from openvrm.net import UrlPolicy

CONFORMANCE_TERMS = (
    "service-delivery-only",
    "service-delivery-plus-portability",
    "no-ai-training",
    "goods-and-services-only",
)


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a daemon thread; yield its base URL, stop it afterwards."""
    with serve_factory_in_thread(lambda _url: app, host, port) as url:
        yield url


@contextlib.contextmanager
def serve_factory_in_thread(
    factory: Callable[[str], Any], host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Like :func:`serve_in_thread`, for an app that must know its own base URL: ``factory(url)``."""
    import uvicorn

    with _bound(host, port) as sock:
        bound_host, bound_port = sock.getsockname()[:2]
        url = f"http://{_url_host(bound_host)}:{bound_port}"
        yield from _run(uvicorn, factory(url), sock, url)


@contextlib.contextmanager
def _bound(host: str, port: int) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        yield sock
    finally:
        sock.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _run(uvicorn: Any, app: Any, sock: socket.socket, url: str) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise RuntimeError("the HTTP server did not start")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class ConformanceVendor:
    """A vendor kit with a temporary store served on ``host:port`` (``port`` 0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, allow_loopback: bool = True) -> None:
        self.host = host
        self.port = port
        self.allow_loopback = allow_loopback
        self._stack = contextlib.ExitStack()
        self.url = ""
        self._kit: Any = None

    @property
    def kit(self) -> Any:
        """The running :class:`~openvrm.vendor.kit.VendorKit`."""
        if self._kit is None:
            raise RuntimeError("the conformance vendor is not running")
        return self._kit

    def __enter__(self) -> ConformanceVendor:
        from openvrm.vendor.app import create_vendor_app
        from openvrm.vendor.config import VendorConfig
        from openvrm.vendor.kit import VendorKit

        try:
            store = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="vrm-conformance-")))
            sock = self._stack.enter_context(_bound(self.host, self.port))
            bound_host, bound_port = sock.getsockname()[:2]
            self.url = f"http://{_url_host(bound_host)}:{bound_port}"
            config = VendorConfig(
                name="openvrm conformance vendor",
                base_url=self.url,
                store_dir=store,
                accepted_terms=CONFORMANCE_TERMS,
                privacy_contact="privacy@conformance.invalid",
                allow_loopback=self.allow_loopback,
            )
            kit = VendorKit(config)
            self._stack.callback(kit.close)
            import uvicorn

            self._stack.enter_context(
                contextlib.contextmanager(_run)(uvicorn, create_vendor_app(config, kit=kit), sock, self.url)
            )
            self._kit = kit
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._kit = None
        self._stack.close()

    def wait_for_agent(self, timeout: float, *, poll: float = 0.2) -> str | None:
        """The agreement id of the first relationship an agent makes within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.kit.relationships()
            if found:
                return str(found[0].agreement_id)
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)

    def checks(self, agreement_id: str, **options: Any) -> AgentChecks:
        return AgentChecks.from_kit(self.kit, agreement_id, **options)


def check_agent(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 300,
    policy: UrlPolicy | None = None,
    on_ready: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Start a conformance vendor, wait for an agent to connect, and check that agent."""
    policy = policy or UrlPolicy(allow_loopback=True)
    with ConformanceVendor(host, port, allow_loopback=policy.allow_loopback) as vendor:
        if on_ready is not None:
            on_ready(vendor.url + "/")
        agreement_id = vendor.wait_for_agent(timeout)
        if agreement_id is None:
            report = Report("agent", vendor.url, progress=progress)
            report.failed(
                "relationship.agreement", "5.3", f"no agent connected to {vendor.url}/ within {timeout:g} s"
            )
            return report
        time.sleep(0.5)  # let the agent finish filing the agreement before it is pushed to
        return vendor.checks(agreement_id, policy=policy, progress=progress).run()
