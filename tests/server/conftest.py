"""Fixtures for the server tests: an app over a fresh vault on each backend, and an in-process client.

The client is ``httpx.AsyncClient`` over ``httpx.ASGITransport``, with the app's lifespan run around it
(the transport does not run it by itself), so the app opens and closes its vault as under uvicorn.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from openvrm import logs
from openvrm.config import Settings
from openvrm.server.app import create_app
from openvrm.server.state import ServerState
from openvrm.vault.core import Vault
from tests.conftest import PASSPHRASE, fast_kdf


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def vault_settings(settings: Settings) -> Settings:
    """``settings`` with a vault created (fast KDF) and closed again, as `vrm init` leaves it."""
    with Vault.open(settings, create=True) as vault:
        vault.create(PASSPHRASE, kdf=fast_kdf())
    return settings


@pytest.fixture
def app(vault_settings: Settings) -> FastAPI:
    return create_app(vault_settings)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as c:
        yield c


def state(app: FastAPI) -> ServerState:
    s = app.state.openvrm
    assert isinstance(s, ServerState)
    return s


async def login(client: httpx.AsyncClient, passphrase: str = PASSPHRASE) -> str:
    """Log in through the API; return the CSRF token."""
    r = await client.post("/api/v1/session", json={"passphrase": passphrase})
    assert r.status_code == 200, r.text
    token = r.json()["csrf_token"]
    assert isinstance(token, str) and token
    return token


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert isinstance(body, dict)
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert str(body["type"]).startswith("https://openvrm.org/problems/")
    if code is not None:
        assert body["type"] == f"https://openvrm.org/problems/{code}"
    return body


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the ``openvrm`` loggers write during the test, as JSON lines."""
    logger = logging.getLogger(logs.LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    buf = io.StringIO()
    logs.configure(logging.DEBUG, stream=buf, loggers=(logs.LOGGER,))
    try:
        yield buf
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
