"""Building and running the openvrm server.

``create_app(settings)`` returns the FastAPI application: the owner API (``/api/v1``), the pages, the
static files and ``/healthz``. The vault is opened in the app's lifespan; it must already exist (when it
does not, ``/healthz`` says so and logging in answers with a clear problem). ``run`` serves the app with
uvicorn, its access log replaced by openvrm's structured request log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from openvrm import __version__
from openvrm.config import Settings
from openvrm.errors import OpenVRMError
from openvrm.logs import configure, get_logger, log_event
from openvrm.server import (
    agent_api,
    agent_pages,
    api,
    intent_api,
    intent_pages,
    ledger_api,
    ledger_pages,
    mail_api,
    mail_pages,
    pages,
    rights_api,
    rights_pages,
)
from openvrm.server.middleware import RequestMiddleware
from openvrm.server.problems import (
    ProblemError,
    http_error_handler,
    openvrm_error_handler,
    problem_error_handler,
    validation_error_handler,
)
from openvrm.server.security import LoginRequired
from openvrm.server.state import ServerState

STATIC = Path(__file__).parent / "static"
log = get_logger("openvrm.server")

DESCRIPTION = """\
The owner API of an openvrm vault. Log in with `POST /api/v1/session` (a session cookie, and a CSRF token
to send as `X-CSRF-Token` on every change) or send an API token as `Authorization: Bearer vrm_...`.
Errors are RFC 9457 problem documents (`application/problem+json`).
"""


async def _login_required(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request") == "true":
        # htmx follows HX-Redirect with a full page load instead of swapping the login page into a panel.
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    return RedirectResponse("/login", status_code=303)


def create_app(settings: Settings, *, demo_vendors_url: str | None = None, relay: bool = False) -> FastAPI:
    """The openvrm server application for the vault at ``settings``.

    With ``demo_vendors_url`` (the URL this server is reachable at), three reference vendors of the vendor
    kit are mounted under ``/demo-vendors/`` so every protocol exchange can be tried on one machine; the
    agent may then reach loopback addresses. With ``relay``, an intent relay (:mod:`openvrm.relay`, its
    store in ``<home>/relay``) is mounted at ``/relay``.
    """
    if demo_vendors_url is not None and not settings.allow_loopback_peers:
        settings = dataclasses.replace(settings, allow_loopback_peers=True)
    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.open()
        log_event(
            log,
            "server.start",
            backend="sqlite" if settings.is_sqlite else "postgresql",
            vault="present" if state.current_vault() is not None else "absent",
            version=__version__,
        )
        try:
            yield
        finally:
            await state.checks.close()
            state.close()
            log_event(log, "server.stop")

    app = FastAPI(
        title="openvrm",
        version=__version__,
        summary="Vendor Relationship Management for people: the owner API of an encrypted vault.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.openvrm = state
    app.add_exception_handler(OpenVRMError, openvrm_error_handler)
    app.add_exception_handler(ProblemError, problem_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_middleware(RequestMiddleware)
    app.include_router(api.health_router)
    # The ledger's routers go first: their fixed paths (/api/v1/documents/search, /documents/search)
    # must win over the general /documents/{document_id} routes.
    app.include_router(ledger_api.router)
    app.include_router(ledger_api.feeds_router)
    # Rights, moves and the outbox: fixed paths (/rights/new, /outbox/send, /moves/plan) are declared
    # before their /{id} routes inside each router; no other router serves these prefixes.
    app.include_router(rights_api.router)
    app.include_router(agent_api.router)
    app.include_router(agent_api.protocol_router)
    app.include_router(intent_api.router)
    app.include_router(mail_api.router)
    app.include_router(api.router)
    app.include_router(ledger_pages.router)
    app.include_router(rights_pages.router)
    app.include_router(agent_pages.router)
    app.include_router(intent_pages.router)
    app.include_router(mail_pages.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    if demo_vendors_url is not None:
        from openvrm.vendor.demo import mount_reference_vendors

        relay_url = f"{demo_vendors_url.rstrip('/')}/relay" if relay else None
        for path, vendor_app in mount_reference_vendors(
            demo_vendors_url, settings.home / "demo-vendors", relay_url=relay_url
        ):
            app.mount(path, vendor_app)
    if relay:
        from openvrm.relay.app import mounted_relay_app

        app.mount("/relay", mounted_relay_app(settings.home / "relay", settings.allow_loopback_peers))
    return app


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    demo_vendors: bool = False,
    relay: bool = False,
) -> None:
    """Serve the app with uvicorn until interrupted; logs are JSON lines on stderr."""
    configure(logging.INFO)
    config = uvicorn.Config(
        create_app(settings, demo_vendors_url=f"http://{host}:{port}" if demo_vendors else None, relay=relay),
        host=host,
        port=port,
        access_log=False,  # replaced by the "http.request" events of RequestMiddleware
        log_config=None,  # keep the JSON handlers installed by configure()
        server_header=False,
        proxy_headers=True,
    )
    uvicorn.Server(config).run()
