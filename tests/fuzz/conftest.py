"""Fuzzing runs in-process and must never reach the network: refuse every non-loopback resolution."""

from __future__ import annotations

import socket
from typing import Any

import pytest

_real_getaddrinfo = socket.getaddrinfo
_LOCAL = {"localhost", "127.0.0.1", "::1", "testserver"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and str(host) not in _LOCAL and not str(host).startswith("127."):
            raise OSError(f"fuzz tests do not resolve {host!r}")
        return _real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
