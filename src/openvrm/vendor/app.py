"""The vendor kit over HTTP: discovery, the relationship and ledger endpoints, the r-button, a home page.

Every POST is read with a size limit (413 before more is read), its RFC 9421 signature verified (401),
de-duplicated by signer and Idempotency-Key (the stored first response; 409 for another body), and only
then handed to :class:`~openvrm.vendor.kit.VendorKit`. Errors are RFC 9457 problem documents.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from openvrm import __version__
from openvrm.errors import OpenVRMError
from openvrm.server.problems import (
    http_error_handler,
    internal_error_response,
    openvrm_error_handler,
    problem_responses,
    validation_error_handler,
)
from openvrm.vendor.config import VendorConfig
from openvrm.vendor.errors import PayloadTooLarge
from openvrm.vendor.kit import VendorKit
from openvrm.vendor.rbutton import home_page, rbutton_js

_JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    },
    "parameters": [
        {"name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "Signature", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "Signature-Input", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "Content-Digest", "in": "header", "required": True, "schema": {"type": "string"}},
    ],
}
_JSON_OBJECT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the signed answer, countersigned agreement or acknowledgement",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    **problem_responses(401, 403, 404, 409, 413, 422),
}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            too_big = False
        if too_big:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    return bytes(body)


def _signed_url(base_url: str, request: Request) -> tuple[str, str]:
    """The absolute URL the client signed (our public base URL + the path under our mount), and the path."""
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = base_url + path + (f"?{query}" if query else "")
    return url, path


def _link_intent(kit: VendorKit, body: bytes) -> None:
    """When an agreement came from one of our offers (its proffer names the intent), record the link."""
    from openvrm.vendor.relay_client import link_relationship

    try:
        record = json.loads(body)
    except ValueError:
        return
    if (
        isinstance(record, dict)
        and record.get("type") == "agreement"
        and isinstance(record.get("agreement_id"), str)
    ):
        link_relationship(kit, record["agreement_id"])


async def _internal_error(request: Request, exc: Exception) -> Response:
    return internal_error_response(None)


def create_vendor_app(config: VendorConfig, *, kit: VendorKit | None = None) -> FastAPI:
    """The vendor's ASGI application (FastAPI); ``app.state.kit`` is its :class:`VendorKit`."""
    kit = kit or VendorKit(config)
    app = FastAPI(
        title=f"{config.name} (openvrm vendor kit)",
        version=__version__,
        description="The vendor side of the openvrm protocol 0.1 (draft): discovery, relationship, ledger.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.kit = kit
    app.state.relay_client_factory = None  # tests may route the rules' offers through their own client
    app.add_exception_handler(OpenVRMError, openvrm_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(Exception, _internal_error)

    async def signed_write(endpoint: str, request: Request) -> Response:
        body = await _read_body(request, config.max_body_bytes)
        url, path = _signed_url(config.base_url, request)
        headers = dict(request.headers)
        stored = await run_in_threadpool(kit.handle_write, endpoint, "POST", url, path, headers, body)
        return Response(stored.body, status_code=stored.status_code, media_type=stored.media_type)

    @app.get("/.well-known/vrm", summary="The vendor's discovery document", tags=["vrm"])
    async def discovery() -> JSONResponse:
        return JSONResponse(kit.discovery(), headers={"Cache-Control": "public, max-age=300"})

    @app.post(
        "/vrm/relationship",
        summary="Send a proffer (answered) or an agreement (countersigned)",
        tags=["vrm"],
        openapi_extra=_JSON_OBJECT_BODY,
        responses=_JSON_OBJECT_RESPONSE,
    )
    async def relationship(request: Request) -> Response:
        response = await signed_write("relationship", request)
        if response.status_code == 200:
            await run_in_threadpool(_link_intent, kit, bytes(response.body))
        return response

    @app.post(
        "/vrm/relay-hook",
        summary="An intent relay delivers an intent or a decision (signed by the relay's key)",
        tags=["relay"],
        openapi_extra=_JSON_OBJECT_BODY,
        responses={
            202: {"description": "stored; the rules answer afterwards", "content": {"application/json": {}}},
            **problem_responses(401, 409, 413, 422),
        },
        status_code=202,
    )
    async def relay_hook(request: Request) -> Response:
        from openvrm.vendor.relay_client import answer_intent, handle_relay_hook

        body = await _read_body(request, config.max_body_bytes)
        url, path = _signed_url(config.base_url, request)
        result = await run_in_threadpool(handle_relay_hook, kit, url, path, dict(request.headers), body)
        # The rules run after the answer is sent (a background task in the threadpool), so the relay gets
        # its 2xx at once and a slow rule or relay never holds the delivery.
        task = None
        if result.intent is not None and result.relay_url is not None:
            task = BackgroundTask(
                answer_intent, kit, result.relay_url, result.intent, app.state.relay_client_factory
            )
        stored = result.response
        return Response(
            stored.body, status_code=stored.status_code, media_type=stored.media_type, background=task
        )

    @app.post(
        "/vrm/ledger",
        summary="Send a ledger event (answered with a signed ack) or a late ack of one of ours",
        tags=["vrm"],
        openapi_extra=_JSON_OBJECT_BODY,
        responses=_JSON_OBJECT_RESPONSE,
    )
    async def ledger(request: Request) -> Response:
        return await signed_write("ledger", request)

    @app.get("/vrm/rbutton.js", summary="The r-button script", tags=["pages"])
    async def rbutton() -> Response:
        return Response(
            rbutton_js(config.base_url + "/.well-known/vrm"),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    @app.get("/", summary="The vendor's home page with the r-button", tags=["pages"])
    async def home() -> HTMLResponse:
        return HTMLResponse(home_page(config.name, config.base_url))

    @app.get("/healthz", summary="Liveness", tags=["pages"])
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app
