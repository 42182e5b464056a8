"""RFC 9457 problem documents: every error the server returns has this one shape.

``{"type": "https://openvrm.org/problems/<code>", "title", "status", "detail", "instance"}`` served as
``application/problem+json``. Core errors carry their own status, title and code; HTTP errors and request
validation errors are mapped here; anything else is a generic 500 whose cause goes to the logs only as a
type and a place (see :mod:`openvrm.logs`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from openvrm.errors import AuthError, OpenVRMError

PROBLEM_BASE = "https://openvrm.org/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemError(Exception):
    """An error raised by the server layer itself (CSRF, throttling, sizes), rendered as a problem."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})


def slug(status: int) -> str:
    """``404`` -> ``not-found``: a stable code for a bare HTTP status."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http-error"
    return re.sub(r"[^a-z0-9]+", "-", phrase.lower()).strip("-")


def instance_of(request: Request) -> str | None:
    request_id = getattr(request.state, "request_id", None)
    return f"urn:uuid:{request_id}" if request_id else None


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE)


ACCEPT_SIGNATURE = (
    'vrm=("@method" "@target-uri" "@authority" "@path" "content-digest");alg="ed25519";tag="openvrm"'
)


def _auth_headers(status: int) -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="openvrm"'} if status == 401 else {}


async def openvrm_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenVRMError)  # noqa: S101 - registered for this class only
    if exc.code == "bad-signature":
        # RFC 9421 section 5: tell the peer which signature to send (label, components, algorithm).
        headers = {"Accept-Signature": ACCEPT_SIGNATURE}
    else:
        headers = _auth_headers(exc.status) if isinstance(exc, AuthError) or exc.status == 401 else {}
    return problem_response(
        exc.status, exc.code, exc.title, exc.message, instance=instance_of(request), headers=headers
    )


async def problem_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for this class only
    headers = {**_auth_headers(exc.status), **exc.headers}
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, instance=instance_of(request), headers=headers
    )


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this class only
    status = exc.status_code
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "HTTP error"
    if status == 404 and exc.detail in (None, "", "Not Found"):
        detail = "there is nothing at this address"
    elif status == 405 and exc.detail in (None, "", "Method Not Allowed"):
        detail = "this address does not accept that method"
    else:
        detail = str(exc.detail) if exc.detail else title
    headers = {**_auth_headers(status), **(exc.headers or {})}
    return problem_response(
        status, slug(status), title, detail, instance=instance_of(request), headers=headers
    )


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where, rest = parts[0], parts[1:]
        return f"{where}.{'.'.join(rest)}" if rest else where
    return ".".join(parts) or "request"


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """422 listing each invalid field and why, without echoing the values sent (they may be secrets)."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    invalid = [
        {"name": _field_name(err.get("loc", ())), "reason": str(err.get("msg", ""))} for err in exc.errors()
    ]
    names = ", ".join(dict.fromkeys(i["name"] for i in invalid)) or "the request"
    return problem_response(
        422,
        "validation-error",
        "Invalid request",
        f"the request is not valid: check {names}",
        instance=instance_of(request),
        extra={"invalid_params": invalid},
    )


def internal_error_response(request_id: str | None) -> JSONResponse:
    return problem_response(
        500,
        "internal-error",
        "Internal server error",
        "something went wrong on the server; nothing was shown or logged about your data",
        instance=f"urn:uuid:{request_id}" if request_id else None,
    )


# The OpenAPI description of a problem response, for routes and routers to list the statuses they use.
PROBLEM_RESPONSE: dict[str, Any] = {
    "content": {PROBLEM_MEDIA_TYPE: {}},
    "description": "a problem document (RFC 9457)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for FastAPI: each status answered with a problem document."""
    return dict.fromkeys(statuses, PROBLEM_RESPONSE)
