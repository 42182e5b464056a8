"""Storing an uploaded file as a document: shared by the API and the documents page."""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request

from openvrm.documents.service import AddResult, DocumentService
from openvrm.errors import InvalidValue
from openvrm.server.forms import file_field, read_form, text_field, too_large
from openvrm.server.state import state_of
from openvrm.vault.core import UnlockedVault

_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def clean_media_type(value: str | None) -> str | None:
    """The bare media type a client declared (``text/plain``), or None when absent or malformed."""
    if not value:
        return None
    bare = value.split(";", 1)[0].strip().lower()
    return bare if _MEDIA_TYPE.match(bare) else None


async def upload_form(request: Request) -> FormData:
    return await read_form(request, file_limit=state_of(request).max_upload_bytes)


async def store_upload(request: Request, unlocked: UnlockedVault, form: FormData) -> AddResult:
    """Read the form's ``file`` (size-checked) and add it with its optional vendor, kind and title."""
    limit = state_of(request).max_upload_bytes
    upload = file_field(form, "file")
    if upload is None or not upload.filename:
        raise InvalidValue("choose a file to upload (form field 'file')")
    if upload.size is not None and upload.size > limit:
        raise too_large(limit)
    data = await upload.read()
    if len(data) > limit:
        raise too_large(limit)
    if not data:
        raise InvalidValue("the file is empty")
    options: dict[str, Any] = {
        "filename": upload.filename,
        "media_type": clean_media_type(upload.content_type),
        "title": text_field(form, "title"),
        "kind": text_field(form, "kind") or "other",
        "vendor_id": text_field(form, "vendor_id"),
    }
    try:
        return await run_in_threadpool(lambda: DocumentService(unlocked).add(data, **options))
    finally:
        await upload.close()
