"""The relay over HTTP (docs/protocol.md 12.2): discovery plus the signed calls, as a FastAPI app.

Every call but discovery is signed (RFC 9421); bodies are read with a size limit (413 before more is
read); the work is done by :meth:`openvrm.relay.service.Relay.handle` in a thread. Errors are RFC 9457
problem documents; 429 answers carry ``Retry-After``. The app serves at its root, so mounted at
``/relay`` in the person's server its calls are ``<server>/relay/...``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from openvrm import __version__
from openvrm.errors import OpenVRMError
from openvrm.relay.config import RelayConfig
from openvrm.relay.errors import PayloadTooLarge, RateLimited
from openvrm.relay.service import Relay
from openvrm.relay.worker import ClientFactory, WorkerPool
from openvrm.server.problems import (
    http_error_handler,
    instance_of,
    internal_error_response,
    openvrm_error_handler,
    problem_response,
    problem_responses,
    validation_error_handler,
)

_SIGNED: dict[str, Any] = {
    "parameters": [
        {"name": "Signature", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "Signature-Input", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "Content-Digest", "in": "header", "required": True, "schema": {"type": "string"}},
    ],
}
_SIGNED_WRITE: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    },
    "parameters": [
        *_SIGNED["parameters"],
        {"name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string"}},
    ],
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the result", "content": {"application/json": {"schema": {"type": "object"}}}},
    **problem_responses(401, 403, 404, 409, 413, 422, 429),
}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return bytes(body)


def _base_and_path(config: RelayConfig, request: Request) -> tuple[str, str]:
    """The relay's public base URL (configured, or as this request reached it) and the call's path."""
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if config.from_request_url:
        host = request.headers.get("host") or request.url.netloc
        return f"{request.url.scheme}://{host}{root}".rstrip("/"), path
    return config.base_url, path


async def _rate_limited(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimited)  # noqa: S101 - registered for this class only
    return problem_response(
        exc.status,
        exc.code,
        exc.title,
        exc.message,
        instance=instance_of(request),
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    return internal_error_response(None)


def create_relay_app(
    config: RelayConfig,
    *,
    relay: Relay | None = None,
    workers: int = 0,
    client_factory: ClientFactory | None = None,
) -> FastAPI:
    """The relay's ASGI app; ``app.state.relay`` is its :class:`Relay`.

    With ``workers`` > 0, that many delivery threads run while the app is up (started by the lifespan,
    or by the first request when the app is mounted inside another, whose lifespan does not reach it).
    """
    core = relay or Relay(config)
    pool = WorkerPool(core, workers, client_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.start()
        try:
            yield
        finally:
            pool.stop()

    app = FastAPI(
        title=f"{config.name} (openvrm relay)",
        version=__version__,
        description="An intentcasting relay (openvrm protocol 0.1, section 12): intents in, offers back.",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.relay = core
    app.state.workers = pool
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_exception_handler(OpenVRMError, openvrm_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, _internal_error)

    async def call(name: str, request: Request, **params: str) -> Response:
        pool.start()
        body = await _read_body(request, config.max_body_bytes)
        base, path = _base_and_path(config, request)
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = base + path + (f"?{query}" if query else "")
        merged = {k: v for k, v in request.query_params.items() if k in ("after", "limit")} | params
        client = request.client.host if request.client else None
        stored = await run_in_threadpool(
            core.handle,
            name,
            request.method,
            url,
            path,
            dict(request.headers),
            body,
            params=merged,
            client=client,
        )
        return Response(stored.body, status_code=stored.status_code, media_type=stored.media_type)

    @app.get("/.well-known/vrm-relay", summary="The relay's discovery document", tags=["relay"])
    async def discovery(request: Request) -> JSONResponse:
        base, _ = _base_and_path(config, request)
        return JSONResponse(core.discovery(base), headers={"Cache-Control": "public, max-age=300"})

    @app.post("/vendors", summary="Register a vendor (or update it)", tags=["vendors"],
              openapi_extra=_SIGNED_WRITE, responses=_RESPONSES)  # fmt: skip
    async def register(request: Request) -> Response:
        return await call("register", request)

    @app.post("/subscriptions", summary="Subscribe to intents", status_code=201, tags=["vendors"],
              openapi_extra=_SIGNED_WRITE, responses=_RESPONSES)  # fmt: skip
    async def subscribe(request: Request) -> Response:
        return await call("subscribe", request)

    @app.get("/subscriptions", summary="The vendor's subscriptions", tags=["vendors"],
             openapi_extra=_SIGNED, responses=_RESPONSES)  # fmt: skip
    async def subscriptions(request: Request) -> Response:
        return await call("subscriptions", request)

    @app.delete("/subscriptions/{subscription_id}", summary="Delete a subscription", tags=["vendors"],
                openapi_extra=_SIGNED_WRITE | {"requestBody": None}, responses=_RESPONSES)  # fmt: skip
    async def unsubscribe(request: Request, subscription_id: str) -> Response:
        return await call("unsubscribe", request, subscription_id=subscription_id)

    @app.get("/feed", summary="The vendor's pull feed of intents and decisions", tags=["vendors"],
             openapi_extra=_SIGNED, responses=_RESPONSES)  # fmt: skip
    async def feed(request: Request) -> Response:
        return await call("feed", request)

    @app.post("/offers", summary="Send a sealed offer", status_code=201, tags=["vendors"],
              openapi_extra=_SIGNED_WRITE, responses=_RESPONSES)  # fmt: skip
    async def offers(request: Request) -> Response:
        return await call("offer", request)

    @app.post("/intents", summary="Publish an intent", status_code=201, tags=["publishers"],
              openapi_extra=_SIGNED_WRITE, responses=_RESPONSES)  # fmt: skip
    async def publish(request: Request) -> Response:
        return await call("publish", request)

    @app.get("/intents/{intent_id}/offers", summary="The offers for an intent", tags=["publishers"],
             openapi_extra=_SIGNED, responses=_RESPONSES)  # fmt: skip
    async def intent_offers(request: Request, intent_id: str) -> Response:
        return await call("offers", request, intent_id=intent_id)

    @app.post("/intents/{intent_id}/decision", summary="Close an intent", tags=["publishers"],
              openapi_extra=_SIGNED_WRITE, responses=_RESPONSES)  # fmt: skip
    async def decision(request: Request, intent_id: str) -> Response:
        return await call("decision", request, intent_id=intent_id)

    @app.get("/healthz", summary="Liveness", tags=["relay"])
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app


def mounted_relay_app(store_dir: Path, allow_loopback: bool = False, *, workers: int = 1) -> FastAPI:
    """The relay as ``vrm serve --relay`` mounts it at ``/relay``: its store in ``store_dir``, its URL
    taken from each request (``$OPENVRM_PUBLIC_URL/relay`` is only the default it advertises)."""
    public = os.environ.get("OPENVRM_PUBLIC_URL") or "http://127.0.0.1:8765"
    config = RelayConfig(
        name="openvrm relay",
        base_url=public.rstrip("/") + "/relay",
        store_dir=store_dir,
        allow_loopback=allow_loopback,
        from_request_url=True,
    )
    config.save()  # so `vrm relay stats --store <home>/relay` finds it
    return create_relay_app(config, workers=workers)
