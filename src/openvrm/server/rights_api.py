"""Rights and moves in the owner API: mail settings, GDPR requests, moves and the outbox.

Routes parse the request, call a core service and render its result; the rules live in
:mod:`openvrm.rights`, :mod:`openvrm.moves` and :mod:`openvrm.outbox`. Nothing leaves without an explicit
``"confirm": true``: without it, sending answers with a preview and changes nothing. What is sent goes
through the durable outbox first and is then handed to the person's own SMTP server at once.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from openvrm.errors import InvalidValue, NotFound
from openvrm.ledger.contracts import today_local
from openvrm.moves.service import MoveService
from openvrm.outbox.service import Outbox
from openvrm.outbox.settings import clean_mail_settings, load_mail_settings, save_mail_settings
from openvrm.rights.service import RightsService
from openvrm.server.api import content_disposition
from openvrm.server.ledger_api import read_import_form
from openvrm.server.problems import ProblemError, problem_responses
from openvrm.server.rights_views import (
    deliver,
    message_text,
    request_json,
    require_mail,
)
from openvrm.server.security import Principal, authenticate, owner
from openvrm.server.state import state_of
from openvrm.vault.core import UnlockedVault

router = APIRouter(
    prefix="/api/v1",
    responses=problem_responses(401, 403, 404, 409, 422),
)
Owner = Annotated[Principal, Depends(owner)]

# The core's vocabularies, spelled out so the API description lists them (a test keeps them equal).
RequestKind = Literal["access", "rectification", "erasure", "restriction", "portability", "objection"]
Language = Literal["en", "fr", "de"]
Channel = Literal["email", "post", "webform"]
TlsMode = Literal["starttls", "tls", "none"]
OutboxStatus = Literal["pending", "sending", "sent", "failed", "unconfirmed", "cancelled"]
RequestStatus = Literal["draft", "sent", "acknowledged", "answered", "overdue", "escalated", "closed"]
PDF = "application/pdf"
_PDF_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {PDF: {}}, "description": "a PDF letter"}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MailSettingsIn(_Body):
    host: str = Field(min_length=1, max_length=253, description="your provider's SMTP server")
    port: int | None = Field(default=None, ge=1, le=65535, description="default: 587, 465 or 25 by TLS mode")
    tls: TlsMode = "starttls"
    from_addr: str = Field(
        min_length=3, max_length=254, description="your address: the From of every message"
    )
    from_name: str | None = Field(default=None, max_length=200)
    username: str | None = Field(default=None, max_length=254)
    password: str | None = Field(
        default=None,
        max_length=1000,
        description="omit to keep the saved password (same username); it is never sent back",
    )
    clear_password: bool = Field(default=False, description="forget the saved password")


class RequestIn(_Body):
    vendor: str = Field(
        min_length=1, max_length=200, description="one of your vendors (id) or a directory slug"
    )
    kind: RequestKind
    language: Language | None = Field(
        default=None, description="default: the vendor's language, else English"
    )
    channel: Channel | None = Field(default=None, description="default: the directory's suggestion")
    to: str | None = Field(default=None, max_length=254, description="send to this e-mail address instead")
    details: str = Field(default="", max_length=5000, description="what to correct, what you dispute")
    elements: dict[str, str] = Field(
        default_factory=dict, max_length=30, description="identity elements by name: {'Kundennummer': '123'}"
    )


class ConfirmIn(_Body):
    confirm: bool = Field(default=False, description="true to send; otherwise a preview and no change")


class NoteIn(_Body):
    note: str = Field(default="", max_length=2000)


class EscalateIn(_Body):
    authority: str | None = Field(default=None, max_length=100, description="an authority slug")
    channel: Channel | None = None
    confirm: bool = Field(default=False, description="true to send; otherwise a preview and no change")


class MoveIn(_Body):
    field: str = Field(min_length=1, max_length=100, description="address, email, phone, name, iban, ...")
    value: str | dict[str, str] = Field(description="the new value; an address as its parts")
    contacts: dict[str, str] = Field(
        default_factory=dict, max_length=200, description="vendor id -> e-mail for vendors with no contact"
    )
    language: Language | None = None
    exclude: list[str] = Field(default_factory=list, max_length=500, description="vendor ids not to notify")
    confirm: bool = Field(default=False, description="true to change the field and notify; else a preview")


def pdf_response(data: bytes, filename: str) -> Response:
    return Response(data, media_type=PDF, headers={"Content-Disposition": content_disposition(filename)})


def _request(uv: UnlockedVault, request_id: str) -> dict[str, Any]:
    svc = RightsService(uv)
    today = today_local()
    rec = svc.get(request_id)
    return request_json(rec, svc.letter(rec.id, today=today), uv, today)


# -- mail settings --------------------------------------------------------------------------------


def _mail_json(uv: UnlockedVault) -> dict[str, Any]:
    settings = load_mail_settings(uv)
    d = settings.to_json()
    d.pop("password", None)
    return d | {"password_set": bool(settings.password)}


@router.get("/mail/settings", summary="Your SMTP settings (never the password: only whether one is set)")
def get_mail_settings(principal: Owner) -> dict[str, Any]:
    return _mail_json(principal.unlocked)


@router.put("/mail/settings", summary="Save your SMTP settings, sealed in the vault")
def put_mail_settings(body: MailSettingsIn, principal: Owner) -> dict[str, Any]:
    uv = principal.unlocked
    password = body.password
    if password is None and not body.clear_password and body.username:
        try:
            saved = load_mail_settings(uv)
        except NotFound:
            saved = None
        if saved is not None and saved.username == body.username:
            password = saved.password
    settings = clean_mail_settings(
        host=body.host,
        port=body.port,
        tls=body.tls,
        from_addr=body.from_addr,
        username=body.username or None,
        password=password or None,
        from_name=body.from_name or None,
    )
    save_mail_settings(uv, settings)
    return _mail_json(uv)


# -- GDPR requests --------------------------------------------------------------------------------


@router.get("/rights", summary="List GDPR requests with their state and legal deadline")
def list_requests(principal: Owner, status: RequestStatus | None = None) -> dict[str, Any]:
    today = today_local()
    items = RightsService(principal.unlocked).list(status=status, today=today)
    return {"today": today.isoformat(), "requests": [r.to_json(today) for r in items]}


@router.post(
    "/rights",
    summary="Write a GDPR request (a draft, sent only with POST /rights/{id}/send and confirm)",
    status_code=HTTP_201_CREATED,
)
def create_request(body: RequestIn, principal: Owner) -> dict[str, Any]:
    svc = RightsService(principal.unlocked)
    rec = svc.create(
        body.vendor,
        body.kind,
        language=body.language,
        channel=body.channel,
        to=body.to or None,
        details=body.details,
        elements=body.elements,
    )
    return _request(principal.unlocked, rec.id)


@router.get("/rights/{request_id}", summary="One request: letter, recipient, state, deadline, history")
def get_request(request_id: str, principal: Owner) -> dict[str, Any]:
    return _request(principal.unlocked, request_id)


@router.get(
    "/rights/{request_id}/letter.pdf",
    summary="The request as a PDF letter, for the post",
    response_class=Response,
    responses=_PDF_RESPONSE,
)
def request_letter_pdf(request_id: str, principal: Owner) -> Response:
    svc = RightsService(principal.unlocked)
    rec = svc.get(request_id)
    letter = svc.letter(request_id, today=today_local())
    return pdf_response(letter.pdf(), f"gdpr-{rec.kind}-{rec.vendor_name}.pdf")


@router.post(
    "/rights/{request_id}/send",
    summary="Send a draft: a preview unless confirm is true; e-mail goes out through the outbox at once",
)
async def send_request(
    request_id: str, request: Request, principal: Owner, body: ConfirmIn | None = None
) -> dict[str, Any]:
    uv = principal.unlocked
    current = await run_in_threadpool(_request, uv, request_id)
    if body is None or not body.confirm:
        return {"sent": False, **current}
    if current["channel"] == "email":
        require_mail(uv)
    await run_in_threadpool(partial(RightsService(uv).send, request_id, today=today_local()))
    report = await deliver(request, uv) if current["channel"] == "email" else None
    result = await run_in_threadpool(_request, uv, request_id)
    return {"sent": True, **result, "report": report.to_json() if report else None}


@router.post("/rights/{request_id}/acknowledge", summary="The vendor acknowledged the request")
def acknowledge_request(request_id: str, principal: Owner, body: NoteIn | None = None) -> dict[str, Any]:
    RightsService(principal.unlocked).acknowledge(request_id, body.note if body else "")
    return _request(principal.unlocked, request_id)


@router.post(
    "/rights/{request_id}/extend",
    summary="The vendor invoked the two-month extension (Art. 12(3) GDPR): the deadline moves",
)
def extend_request(request_id: str, principal: Owner, body: NoteIn | None = None) -> dict[str, Any]:
    RightsService(principal.unlocked).extend(request_id, body.note if body else "")
    return _request(principal.unlocked, request_id)


@router.delete(
    "/rights/{request_id}",
    summary="Discard a draft request (never sent)",
    status_code=HTTP_204_NO_CONTENT,
    response_class=Response,
)
def discard_request(request_id: str, principal: Owner) -> Response:
    RightsService(principal.unlocked).discard(request_id)
    return Response(status_code=HTTP_204_NO_CONTENT)


@router.post("/rights/{request_id}/close", summary="Close a request (satisfied, or given up)")
def close_request(request_id: str, principal: Owner, body: NoteIn | None = None) -> dict[str, Any]:
    RightsService(principal.unlocked).close(request_id, body.note if body else "")
    return _request(principal.unlocked, request_id)


async def _api_answer_form(request: Request, principal: Principal = Depends(authenticate)) -> FormData:
    # Read (bounded) after authentication and before the CSRF check, which may need the form's field.
    return await read_import_form(request)


async def answer_files(request: Request, form: FormData) -> list[tuple[str, bytes]]:
    """The ``file`` parts of an answer form, each within the upload limit."""
    limit = state_of(request).max_upload_bytes
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile) and f.filename]
    if not files:
        raise InvalidValue("choose one or more files of the vendor's answer (form field 'file')")
    loaded: list[tuple[str, bytes]] = []
    for upload in files:
        try:
            data = await upload.read()
        finally:
            await upload.close()
        if len(data) > limit:
            raise ProblemError(413, "payload-too-large", f"{upload.filename} is larger than the upload limit")
        loaded.append((upload.filename or "file", data))
    return loaded


@router.post(
    "/rights/{request_id}/answer",
    summary="Attach the vendor's answer (multipart 'file', repeatable); each file becomes a document",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "note": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def answer_request(
    request_id: str,
    request: Request,
    form: Annotated[FormData, Depends(_api_answer_form)],
    principal: Owner,
) -> dict[str, Any]:
    uv = principal.unlocked
    await run_in_threadpool(RightsService(uv).get, request_id)  # 404 before reading files
    files = await answer_files(request, form)
    note = form.get("note")
    result = await run_in_threadpool(
        partial(RightsService(uv).answer, request_id, files, note=note if isinstance(note, str) else "")
    )
    return {"request": await run_in_threadpool(_request, uv, request_id)} | {
        "files": [o.to_json() for o in result.outcomes]
    }


@router.get(
    "/rights/{request_id}/escalation",
    summary="Preview the complaint to the supervisory authority (changes nothing)",
)
def preview_escalation(
    request_id: str,
    principal: Owner,
    authority: Annotated[str | None, Query(max_length=100)] = None,
    channel: Channel | None = None,
) -> dict[str, Any]:
    result = RightsService(principal.unlocked).escalate(
        request_id, authority=authority, channel=channel, today=today_local(), send=False
    )
    return result.to_json() | {"sent": False}


@router.get(
    "/rights/{request_id}/escalation.pdf",
    summary="The complaint with the request's history, as a PDF",
    response_class=Response,
    responses=_PDF_RESPONSE,
)
def escalation_pdf(
    request_id: str,
    principal: Owner,
    authority: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    result = RightsService(principal.unlocked).escalate(
        request_id, authority=authority, today=today_local(), send=False
    )
    return pdf_response(result.history_pdf, f"complaint-{result.request.vendor_name}.pdf")


@router.post(
    "/rights/{request_id}/escalate",
    summary="Complain to the supervisory authority: a preview unless confirm is true",
)
async def escalate_request(request_id: str, request: Request, body: EscalateIn, principal: Owner) -> Any:
    uv = principal.unlocked
    svc = RightsService(uv)
    run = partial(
        svc.escalate, request_id, authority=body.authority, channel=body.channel, today=today_local()
    )
    preview = await run_in_threadpool(partial(run, send=False))
    if not body.confirm:
        return preview.to_json() | {"sent": False}
    if preview.channel == "email":
        require_mail(uv)
    result = await run_in_threadpool(run)
    report = await deliver(request, uv) if result.channel == "email" else None
    return result.to_json() | {"sent": True, "report": report.to_json() if report else None}


# -- moves ----------------------------------------------------------------------------------------


@router.post("/moves/plan", summary="Who holds the old value and how each is reached (changes nothing)")
def plan_move(body: MoveIn, principal: Owner) -> dict[str, Any]:
    plan = MoveService(principal.unlocked).plan(
        body.field, body.value, contacts=body.contacts, language=body.language, today=today_local()
    )
    return plan.to_json() | {"excluded": body.exclude}


@router.post(
    "/moves",
    summary="Change a profile field and notify the vendors that hold the old value (confirm: true)",
    responses={201: {"description": "the move, made"}, 200: {"description": "a preview; nothing changed"}},
)
async def start_move(body: MoveIn, request: Request, principal: Owner) -> Any:
    uv = principal.unlocked
    svc = MoveService(uv)
    plan = await run_in_threadpool(
        partial(svc.plan, body.field, body.value, contacts=body.contacts, language=body.language)
    )
    if not body.confirm:
        return {"started": False, "plan": plan.to_json(), "excluded": body.exclude}
    emails = [c for c in plan.candidates if c.channel == "email" and c.vendor_id not in set(body.exclude)]
    if emails:
        require_mail(uv)
    move = await run_in_threadpool(
        partial(
            svc.start,
            body.field,
            body.value,
            exclude=body.exclude,
            contacts=body.contacts,
            language=body.language,
            today=today_local(),
        )
    )
    report = await deliver(request, uv) if any(n.status == "pending" for n in move.notices) else None
    move = await run_in_threadpool(partial(svc.get, move.id, with_errors=True))
    content = {"started": True, **move.to_json(), "report": report.to_json() if report else None}
    return JSONResponse(content, status_code=HTTP_201_CREATED)


@router.get("/moves", summary="Moves made, with a per-status summary")
def list_moves(principal: Owner) -> dict[str, Any]:
    return {"moves": [m.to_json() for m in MoveService(principal.unlocked).list()]}


@router.get("/moves/{move_id}", summary="One move: each vendor's status, with the last delivery error")
def get_move(move_id: str, principal: Owner) -> dict[str, Any]:
    return MoveService(principal.unlocked).get(move_id, with_errors=True).to_json()


@router.post("/moves/{move_id}/vendors/{vendor_id}/acknowledge", summary="The vendor confirmed the change")
def acknowledge_notice(move_id: str, vendor_id: str, principal: Owner) -> dict[str, Any]:
    MoveService(principal.unlocked).acknowledge(move_id, vendor_id)
    return MoveService(principal.unlocked).get(move_id, with_errors=True).to_json()


@router.post("/moves/{move_id}/vendors/{vendor_id}/posted", summary="You posted the letter to this vendor")
def posted_notice(move_id: str, vendor_id: str, principal: Owner) -> dict[str, Any]:
    MoveService(principal.unlocked).posted(move_id, vendor_id)
    return MoveService(principal.unlocked).get(move_id, with_errors=True).to_json()


@router.get(
    "/moves/{move_id}/vendors/{vendor_id}/letter.pdf",
    summary="The change notice to this vendor as a PDF letter",
    response_class=Response,
    responses=_PDF_RESPONSE,
)
def notice_letter_pdf(move_id: str, vendor_id: str, principal: Owner) -> Response:
    svc = MoveService(principal.unlocked)
    letter = svc.letter(move_id, vendor_id)
    notice = next(n for n in svc.get(move_id).notices if n.vendor_id == vendor_id)
    return pdf_response(letter.pdf(), f"change-notice-{notice.vendor_name}.pdf")


@router.post("/moves/{move_id}/retry", summary="Send the failed notices again (confirm: true)")
async def retry_move(move_id: str, request: Request, principal: Owner, body: ConfirmIn | None = None) -> Any:
    uv = principal.unlocked
    svc = MoveService(uv)
    move = await run_in_threadpool(svc.get, move_id)
    failed = [n.vendor_id for n in move.notices if n.status == "failed"]
    if body is None or not body.confirm:
        return {"retried": 0, "failed": failed, "sent": False}
    if failed:
        require_mail(uv)
    count = await run_in_threadpool(svc.retry_failed, move_id)
    report = await deliver(request, uv) if count else None
    move = await run_in_threadpool(partial(svc.get, move_id, with_errors=True))
    return {"retried": count, "sent": True, **move.to_json(), "report": report.to_json() if report else None}


# -- outbox ---------------------------------------------------------------------------------------


@router.get("/outbox", summary="Outgoing messages and their state (never their text)")
def list_outbox(principal: Owner, status: OutboxStatus | None = None) -> dict[str, Any]:
    box = Outbox(principal.unlocked)
    return {"counts": box.counts(), "messages": [m.to_json() for m in box.list(status=status)]}


@router.get("/outbox/{message_id}", summary="One outgoing message, with its text")
def get_outbox_message(message_id: str, principal: Owner) -> dict[str, Any]:
    box = Outbox(principal.unlocked)
    return box.get(message_id).to_json() | {"body": message_text(box.message(message_id))}


@router.post("/outbox/send", summary="Deliver the messages that are due now (each confirmed when queued)")
async def send_outbox(request: Request, principal: Owner) -> dict[str, Any]:
    report = await deliver(request, principal.unlocked)
    return report.to_json()


@router.post(
    "/outbox/{message_id}/retry",
    summary="Send a failed, unconfirmed or cancelled message again (it may then arrive twice)",
)
async def retry_outbox(message_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    uv = principal.unlocked
    await run_in_threadpool(Outbox(uv).get, message_id)
    require_mail(uv)
    await run_in_threadpool(Outbox(uv).retry, message_id)
    report = await deliver(request, uv)
    entry = await run_in_threadpool(Outbox(uv).get, message_id)
    return entry.to_json() | {"report": report.to_json()}


@router.post("/outbox/{message_id}/confirm", summary="An unconfirmed message did arrive: mark it sent")
def confirm_outbox(message_id: str, principal: Owner) -> dict[str, Any]:
    return Outbox(principal.unlocked).confirm(message_id).to_json()


@router.post("/outbox/{message_id}/cancel", summary="Do not send a queued, failed or unconfirmed message")
def cancel_outbox(message_id: str, principal: Owner) -> dict[str, Any]:
    return Outbox(principal.unlocked).cancel(message_id).to_json()
