"""Reading form bodies (URL-encoded and multipart) with a hard size limit, streaming.

The body is counted as it arrives and the read stops with a 413 problem as soon as it passes the limit,
so an oversized upload never lands in memory or on disk in full. The parsed form is cached on the
request, so the CSRF check and the route read the same form once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from openvrm.server.problems import ProblemError

# Room for the multipart framing and the small text fields that travel with a file.
FORM_OVERHEAD = 64 * 1024
SMALL_FORM_LIMIT = 64 * 1024
# Route templates whose forms may carry one file (up to the server's upload limit).
UPLOAD_ROUTES = frozenset({"/api/v1/documents", "/documents"})


def too_large(limit: int) -> ProblemError:
    if limit >= 1024 * 1024:
        size = f"{limit // (1024 * 1024)} MiB"
    elif limit >= 1024:
        size = f"{limit // 1024} KiB"
    else:
        size = f"{limit} bytes"
    return ProblemError(413, "payload-too-large", f"the upload is larger than the {size} limit")


async def _limited(request: Request, limit: int, shown: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(shown)
        yield chunk


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_form(request: Request) -> bool:
    return content_type(request) in ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: Request, *, file_limit: int | None = None) -> FormData:
    """Parse the request's form; ``file_limit`` allows one file of that many bytes (else no files).

    The result is cached on ``request.state``; the first caller sets the limit.
    """
    cached = getattr(request.state, "openvrm_form", None)
    if isinstance(cached, FormData):
        return cached
    kind = content_type(request)
    limit = (file_limit + FORM_OVERHEAD) if file_limit is not None else SMALL_FORM_LIMIT
    shown = file_limit if file_limit is not None else SMALL_FORM_LIMIT
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(shown)
    stream = _limited(request, limit, shown)
    try:
        if kind == "multipart/form-data":
            parser = MultiPartParser(
                request.headers, stream, max_files=1 if file_limit is not None else 0, max_fields=50
            )
            form = await parser.parse()
        elif kind == "application/x-www-form-urlencoded":
            form = await FormParser(request.headers, stream, max_fields=50).parse()
        else:
            raise ProblemError(
                415, "unsupported-media-type", "send this form as multipart/form-data or URL-encoded"
            )
    except MultiPartException as exc:
        raise ProblemError(400, "bad-form", f"the form could not be read: {exc.message}") from None
    request.state.openvrm_form = form
    return form


def text_field(form: FormData, name: str) -> str | None:
    """A text field's value, or None when it is absent, empty or a file."""
    value = form.get(name)
    if isinstance(value, str) and value.strip():
        return value
    return None


def file_field(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) else None
