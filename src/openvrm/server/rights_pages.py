"""The pages for rights and moves: mail setup, GDPR requests, moves and the outbox.

Same rules as :mod:`openvrm.server.pages`: every form works as a plain HTML submit (post, then redirect
to the page that shows the result) and carries the session's CSRF token. Nothing is sent from a page
without a confirmation step: a new request, a move and a complaint are first shown as a preview, and only
the preview's own button (which posts ``confirm=yes``) sends. A form that fails re-renders its page with
the message and the status it maps to.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from openvrm.directory import directory
from openvrm.errors import NotFound, OpenVRMError
from openvrm.ledger.contracts import today_local
from openvrm.moves.service import MoveService
from openvrm.outbox.service import STATUSES as OUTBOX_STATUSES
from openvrm.outbox.service import DeliveryReport, Outbox
from openvrm.outbox.settings import TLS_MODES, clean_mail_settings, load_mail_settings, save_mail_settings
from openvrm.profile.fields import ADDRESS_PARTS, parse_key
from openvrm.rights.letters import LANGUAGES
from openvrm.rights.service import EMAIL_NOT_LEFT, RightsService
from openvrm.server.forms import read_form, text_field
from openvrm.server.ledger_api import read_import_form
from openvrm.server.pages import render, see_other
from openvrm.server.problems import ProblemError
from openvrm.server.rights_api import answer_files
from openvrm.server.rights_views import (
    CHANNEL_NAMES,
    KIND_NAMES,
    LANGUAGE_NAMES,
    MOVABLE_NAMES,
    NOTICE_NAMES,
    deliver,
    message_text,
    missing_elements,
    movable_fields,
    recipient,
    require_mail,
)
from openvrm.server.security import page_owner, page_session
from openvrm.server.sessions import OwnerSession
from openvrm.vendors.service import VendorService

router = APIRouter(include_in_schema=False)
Page = Annotated[OwnerSession, Depends(page_owner)]
CONFIRM = "yes"


class PageError(Exception):
    """A failure to show on the page: the message and its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _as_page_error(exc: Exception) -> PageError:
    if isinstance(exc, OpenVRMError):
        return PageError(exc.message, exc.status)
    if isinstance(exc, ProblemError):
        return PageError(exc.detail[:1].upper() + exc.detail[1:] + ".", exc.status)
    raise exc


async def _attempt(action: Callable[[], Any]) -> tuple[Any, PageError | None]:
    """Run a blocking core call off the event loop; a core or server error is returned, not raised."""
    try:
        return await run_in_threadpool(action), None
    except (OpenVRMError, ProblemError) as exc:
        return None, _as_page_error(exc)


async def _deliver(request: Request, session: OwnerSession) -> tuple[DeliveryReport | None, PageError | None]:
    try:
        return await deliver(request, session.unlocked), None
    except (OpenVRMError, ProblemError) as exc:
        return None, _as_page_error(exc)


def _not_found(request: Request, session: OwnerSession, error: PageError) -> Response:
    return render(request, "not_found.html", {"message": error.message}, session=session, status=error.status)


def _values(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


def _confirmed(form: FormData) -> bool:
    return text_field(form, "confirm") == CONFIRM


def _report_notice(report: DeliveryReport | None) -> str | None:
    if report is None:
        return None
    parts = [f"{report.sent} sent"]
    if report.retrying:
        parts.append(f"{report.retrying} to retry later")
    if report.failed:
        parts.append(f"{report.failed} failed")
    if report.unconfirmed:
        parts.append(f"{report.unconfirmed} unconfirmed")
    return "Mail server: " + ", ".join(parts) + "."


# -- mail setup -----------------------------------------------------------------------------------


def _mail_context(session: OwnerSession) -> dict[str, Any]:
    try:
        settings = load_mail_settings(session.unlocked)
    except NotFound:
        return {"mail": None, "tls_modes": TLS_MODES}
    d = settings.to_json()
    d.pop("password", None)
    return {"mail": d | {"password_set": bool(settings.password)}, "tls_modes": TLS_MODES}


@router.get("/mail")
async def mail_page(request: Request, session: Page) -> Response:
    ctx = await run_in_threadpool(_mail_context, session)
    ctx["saved"] = request.query_params.get("saved") == "1"
    return render(request, "mail.html", ctx, session=session)


@router.post("/mail")
async def mail_submit(request: Request, session: Page) -> Response:
    form = await read_form(request)
    uv = session.unlocked

    def save() -> None:
        port_raw = (text_field(form, "port") or "").strip()
        if port_raw and (not port_raw.isdigit() or len(port_raw) > 5):
            raise PageError(f"the port is a number from 1 to 65535, not {port_raw[:20]!r}", 422)
        username = (text_field(form, "username") or "").strip() or None
        password = form.get("password") if isinstance(form.get("password"), str) else None
        if not password and form.get("clear_password") != "on" and username:
            try:
                saved = load_mail_settings(uv)
            except NotFound:
                saved = None
            if saved is not None and saved.username == username:
                password = saved.password
        settings = clean_mail_settings(
            host=(text_field(form, "host") or "").strip(),
            port=int(port_raw) if port_raw else None,
            tls=text_field(form, "tls") or "starttls",
            from_addr=(text_field(form, "from_addr") or "").strip(),
            username=username,
            password=str(password) if password else None,
            from_name=(text_field(form, "from_name") or "").strip() or None,
        )
        save_mail_settings(uv, settings)

    try:
        await run_in_threadpool(save)
    except (OpenVRMError, ProblemError, PageError) as exc:
        error = exc if isinstance(exc, PageError) else _as_page_error(exc)
        ctx = await run_in_threadpool(_mail_context, session)
        form_values = _values(form)
        form_values.pop("password", None)  # never echoed back
        ctx |= {"error": error.message, "form": form_values}
        return render(request, "mail.html", ctx, session=session, status=error.status)
    return see_other("/mail?saved=1")


# -- GDPR requests --------------------------------------------------------------------------------


def _list_context(session: OwnerSession) -> dict[str, Any]:
    today = today_local()
    svc = RightsService(session.unlocked)
    items = svc.list(today=today)
    items.sort(key=lambda r: (r.stored_status == "closed", r.deadline or today, r.created_at or ""))
    return {
        "requests": items,
        "today": today,
        "kind_names": KIND_NAMES,
        "channel_names": CHANNEL_NAMES,
        "emails": svc.email_states(items),
        "email_not_left": EMAIL_NOT_LEFT,
    }


@router.get("/rights")
async def rights_page(request: Request, session: Page) -> Response:
    ctx = await run_in_threadpool(_list_context, session)
    return render(request, "rights.html", ctx, session=session)


def _new_context(session: OwnerSession, request: Request) -> dict[str, Any]:
    params = request.query_params
    q = (params.get("q") or "").strip()[:200]
    vendor = (params.get("vendor") or "").strip()[:200]
    hits = directory().search(q, limit=10) if q else []
    chosen = directory().get(vendor) if vendor else None
    return {
        "vendors": VendorService(session.unlocked).list(),
        "query": q,
        "hits": hits,
        "chosen_entry": chosen,
        "kinds": KIND_NAMES,
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        "channels": CHANNEL_NAMES,
        "form": {"vendor": vendor, "kind": params.get("kind") or ""},
    }


@router.get("/rights/new")
async def rights_new(request: Request, session: Page) -> Response:
    ctx = await run_in_threadpool(_new_context, session, request)
    return render(request, "rights_new.html", ctx, session=session)


def _elements(raw: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (raw or "").splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise PageError(f"write each identity element as Name = value, not {line.strip()[:60]!r}", 422)
        found[key.strip()] = value.strip()
    return found


@router.post("/rights")
async def rights_create(request: Request, session: Page) -> Response:
    form = await read_form(request)
    vendor = text_field(form, "vendor") or text_field(form, "vendor_slug") or ""
    kind = (text_field(form, "kind") or "")[:40]

    def create() -> Any:
        return RightsService(session.unlocked).create(
            vendor,
            kind,
            language=text_field(form, "language"),
            channel=text_field(form, "channel"),
            to=(text_field(form, "to") or "").strip() or None,
            details=text_field(form, "details") or "",
            elements=_elements(text_field(form, "elements")),
        )

    try:
        rec = await run_in_threadpool(create)
    except (OpenVRMError, ProblemError, PageError) as exc:
        error = exc if isinstance(exc, PageError) else _as_page_error(exc)
        ctx = await run_in_threadpool(_new_context, session, request)
        ctx |= {"error": error.message, "missing": missing_elements(exc), "form": _values(form)}
        return render(request, "rights_new.html", ctx, session=session, status=error.status)
    return see_other(f"/rights/{rec.id}")


def _request_context(session: OwnerSession, request_id: str) -> dict[str, Any]:
    today = today_local()
    svc = RightsService(session.unlocked)
    rec = svc.get(request_id)
    delivery = None
    if rec.outbox_id:
        try:
            delivery = Outbox(session.unlocked).get(rec.outbox_id)
        except NotFound:
            delivery = None
    return {
        "rec": rec,
        "status": rec.status(today),
        "letter": svc.letter(rec.id, today=today),
        "recipient": recipient(rec),
        "delivery": delivery,
        "today": today,
        "kind_names": KIND_NAMES,
        "channel_names": CHANNEL_NAMES,
        "language_names": LANGUAGE_NAMES,
        "documents": rec.documents,
    }


async def _request_page(
    request: Request,
    session: OwnerSession,
    request_id: str,
    *,
    error: PageError | None = None,
    status: int = 200,
    **extra: Any,
) -> Response:
    ctx, failed = await _attempt(partial(_request_context, session, request_id))
    if failed is not None:
        return _not_found(request, session, failed)
    if error is not None:
        ctx["error"] = error.message
        status = error.status
    return render(request, "rights_request.html", ctx | extra, session=session, status=status)


@router.get("/rights/{request_id}")
async def rights_request_page(request_id: str, request: Request, session: Page) -> Response:
    notice = {"sent": "The request was sent.", "answered": None}.get(request.query_params.get("done") or "")
    return await _request_page(request, session, request_id, notice=notice)


@router.post("/rights/{request_id}/send")
async def rights_send(request_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    uv = session.unlocked
    rec, error = await _attempt(lambda: RightsService(uv).get(request_id))
    if error is not None:
        return _not_found(request, session, error)
    if not _confirmed(form):
        return await _request_page(request, session, request_id, confirm_needed=True)
    if rec.channel == "email":
        _, error = await _attempt(lambda: require_mail(uv))
        if error is not None:
            return await _request_page(request, session, request_id, error=error, mail_missing=True)
    _, error = await _attempt(lambda: RightsService(uv).send(request_id, today=today_local()))
    if error is not None:
        return await _request_page(request, session, request_id, error=error)
    if rec.channel == "email":
        report, error = await _deliver(request, session)
        if error is not None:
            return await _request_page(request, session, request_id, error=error)
        return await _request_page(request, session, request_id, notice=_report_notice(report))
    return see_other(f"/rights/{request_id}?done=sent")


def _note_route(action: str) -> Callable[..., Any]:
    async def route(request_id: str, request: Request, session: Page) -> Response:
        form = await read_form(request)
        note = (text_field(form, "note") or "").strip()[:2000]
        _, error = await _attempt(lambda: getattr(RightsService(session.unlocked), action)(request_id, note))
        if error is not None:
            if error.status == 404:
                return _not_found(request, session, error)
            return await _request_page(request, session, request_id, error=error)
        return see_other(f"/rights/{request_id}")

    route.__name__ = f"rights_{action}"
    return route


for _action, _path in (("acknowledge", "acknowledge"), ("extend", "extend"), ("close", "close")):
    router.post(f"/rights/{{request_id}}/{_path}")(_note_route(_action))


async def _page_answer_form(request: Request, session: OwnerSession = Depends(page_session)) -> FormData:
    # Read (bounded) once logged in and before the CSRF check, which reads the form's csrf_token.
    return await read_import_form(request)


@router.post("/rights/{request_id}/answer")
async def rights_answer(
    request_id: str,
    request: Request,
    form: Annotated[FormData, Depends(_page_answer_form)],
    session: Page,
) -> Response:
    uv = session.unlocked
    _, error = await _attempt(lambda: RightsService(uv).get(request_id))
    if error is not None:
        return _not_found(request, session, error)
    try:
        files = await answer_files(request, form)
    except (OpenVRMError, ProblemError) as exc:
        return await _request_page(request, session, request_id, error=_as_page_error(exc))
    note = (text_field(form, "note") or "").strip()[:2000]
    result, error = await _attempt(lambda: RightsService(uv).answer(request_id, files, note=note))
    if error is not None:
        return await _request_page(request, session, request_id, error=error)
    return await _request_page(request, session, request_id, outcomes=result.outcomes)


def _escalation_context(
    session: OwnerSession, request_id: str, authority: str | None, channel: str | None
) -> dict[str, Any]:
    svc = RightsService(session.unlocked)
    result = svc.escalate(request_id, authority=authority, channel=channel, today=today_local(), send=False)
    authorities = sorted(directory().authorities, key=lambda a: a.name.casefold())
    return {
        "result": result,
        "rec": result.request,
        "authorities": authorities,
        "channel_names": CHANNEL_NAMES,
        "kind_names": KIND_NAMES,
        "pdf_url": f"/api/v1/rights/{request_id}/escalation.pdf?"
        + urlencode({"authority": result.authority.slug}),
    }


@router.get("/rights/{request_id}/escalate")
async def rights_escalate_preview(request_id: str, request: Request, session: Page) -> Response:
    params = request.query_params
    authority = (params.get("authority") or "").strip()[:100] or None
    channel = params.get("channel") or None
    ctx, error = await _attempt(partial(_escalation_context, session, request_id, authority, channel))
    if error is not None:
        if error.status == 404 and authority is None:
            return _not_found(request, session, error)
        return await _request_page(request, session, request_id, error=error)
    return render(request, "rights_escalate.html", ctx, session=session)


@router.post("/rights/{request_id}/escalate")
async def rights_escalate(request_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    uv = session.unlocked
    authority = (text_field(form, "authority") or "").strip()[:100] or None
    channel = text_field(form, "channel")
    preview, error = await _attempt(partial(_escalation_context, session, request_id, authority, channel))
    if error is not None:
        if error.status == 404 and authority is None:
            return _not_found(request, session, error)
        return await _request_page(request, session, request_id, error=error)
    if not _confirmed(form):
        return render(request, "rights_escalate.html", preview | {"confirm_needed": True}, session=session)
    chosen = preview["result"].channel
    if chosen == "email":
        _, error = await _attempt(lambda: require_mail(uv))
        if error is not None:
            ctx = preview | {"error": error.message, "mail_missing": True}
            return render(request, "rights_escalate.html", ctx, session=session, status=error.status)
    _, error = await _attempt(
        lambda: RightsService(uv).escalate(
            request_id, authority=preview["result"].authority.slug, channel=chosen, today=today_local()
        )
    )
    if error is not None:
        return await _request_page(request, session, request_id, error=error)
    notice = "The complaint was recorded."
    if chosen == "email":
        report, error = await _deliver(request, session)
        if error is not None:
            return await _request_page(request, session, request_id, error=error)
        notice = _report_notice(report) or notice
    return await _request_page(request, session, request_id, notice=notice)


# -- moves ----------------------------------------------------------------------------------------


def _moves_context(session: OwnerSession) -> dict[str, Any]:
    return {
        "moves": list(reversed(MoveService(session.unlocked).list())),
        "fields": movable_fields(session.unlocked),
        "address_parts": ADDRESS_PARTS,
        "movable_names": MOVABLE_NAMES,
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
    }


@router.get("/moves")
async def moves_page(request: Request, session: Page) -> Response:
    ctx = await run_in_threadpool(_moves_context, session)
    ctx["form"] = {"field": request.query_params.get("field", "")}
    return render(request, "moves.html", ctx, session=session)


def _move_value(form: FormData, field: str) -> Any:
    ftype, _ = parse_key(field)
    if ftype.name == "address":
        return {p: v.strip() for p in ADDRESS_PARTS if (v := text_field(form, p))}
    return (text_field(form, "value") or "").strip()


def _contacts(form: FormData) -> dict[str, str]:
    return {
        k.removeprefix("contact:"): v.strip()
        for k, v in form.items()
        if k.startswith("contact:") and isinstance(v, str) and v.strip()
    }


async def _moves_error(request: Request, session: OwnerSession, form: FormData, error: PageError) -> Response:
    ctx = await run_in_threadpool(_moves_context, session)
    ctx |= {"error": error.message, "form": _values(form)}
    return render(request, "moves.html", ctx, session=session, status=error.status)


@router.post("/moves/plan")
async def moves_plan(request: Request, session: Page) -> Response:
    """Who holds the old value: the list to review before anything changes."""
    form = await read_form(request)
    field = (text_field(form, "field") or "").strip()
    language = text_field(form, "language")

    def plan() -> Any:
        return MoveService(session.unlocked).plan(
            field, _move_value(form, field), contacts=_contacts(form), language=language, today=today_local()
        )

    result, error = await _attempt(plan)
    if error is not None:
        return await _moves_error(request, session, form, error)
    ctx = {
        "plan": result,
        "form": _values(form),
        "excluded": set(form.getlist("exclude")),
        "address_parts": ADDRESS_PARTS,
        "is_address": isinstance(result.new, dict),
        "movable_names": MOVABLE_NAMES,
    }
    return render(request, "move_plan.html", ctx, session=session)


@router.post("/moves")
async def moves_start(request: Request, session: Page) -> Response:
    form = await read_form(request)
    if not _confirmed(form):
        return await moves_plan(request, session)
    uv = session.unlocked
    field = (text_field(form, "field") or "").strip()
    language = text_field(form, "language")
    exclude = [x for x in form.getlist("exclude") if isinstance(x, str)]
    contacts = _contacts(form)

    def start() -> Any:
        svc = MoveService(uv)
        value = _move_value(form, field)
        plan = svc.plan(field, value, contacts=contacts, language=language, today=today_local())
        if any(c.channel == "email" and c.vendor_id not in exclude for c in plan.candidates):
            require_mail(uv)
        return svc.start(
            field, value, exclude=exclude, contacts=contacts, language=language, today=today_local()
        )

    move, error = await _attempt(start)
    if error is not None:
        return await _moves_error(request, session, form, error)
    if any(n.status == "pending" for n in move.notices):
        report, error = await _deliver(request, session)
        if error is not None:
            return await _move_page(request, session, move.id, error=error)
        return await _move_page(request, session, move.id, notice=_report_notice(report))
    return see_other(f"/moves/{move.id}")


def _move_context(session: OwnerSession, move_id: str) -> dict[str, Any]:
    move = MoveService(session.unlocked).get(move_id, with_errors=True)
    ftype, _ = parse_key(move.field)
    return {
        "move": move,
        "summary": sorted(move.summary().items()),
        "notice_names": NOTICE_NAMES,
        "field_name": MOVABLE_NAMES.get(ftype.name, move.field),
        "failed": [n for n in move.notices if n.status == "failed"],
    }


async def _move_page(
    request: Request, session: OwnerSession, move_id: str, *, error: PageError | None = None, **extra: Any
) -> Response:
    ctx, failed = await _attempt(partial(_move_context, session, move_id))
    if failed is not None:
        return _not_found(request, session, failed)
    status = 200
    if error is not None:
        ctx["error"], status = error.message, error.status
    return render(request, "move.html", ctx | extra, session=session, status=status)


@router.get("/moves/{move_id}")
async def move_page(move_id: str, request: Request, session: Page) -> Response:
    return await _move_page(request, session, move_id)


@router.post("/moves/{move_id}/vendors/{vendor_id}/acknowledge")
async def move_acknowledge(move_id: str, vendor_id: str, request: Request, session: Page) -> Response:
    _, error = await _attempt(lambda: MoveService(session.unlocked).acknowledge(move_id, vendor_id))
    if error is not None:
        return await _move_page(request, session, move_id, error=error)
    return see_other(f"/moves/{move_id}")


@router.post("/moves/{move_id}/vendors/{vendor_id}/posted")
async def move_posted(move_id: str, vendor_id: str, request: Request, session: Page) -> Response:
    _, error = await _attempt(lambda: MoveService(session.unlocked).posted(move_id, vendor_id))
    if error is not None:
        return await _move_page(request, session, move_id, error=error)
    return see_other(f"/moves/{move_id}")


@router.post("/moves/{move_id}/retry")
async def move_retry(move_id: str, request: Request, session: Page) -> Response:
    uv = session.unlocked
    move, error = await _attempt(lambda: MoveService(uv).get(move_id))
    if error is not None:
        return _not_found(request, session, error)
    if not any(n.status == "failed" for n in move.notices):
        return see_other(f"/moves/{move_id}")
    _, error = await _attempt(lambda: require_mail(uv))
    if error is None:
        _, error = await _attempt(lambda: MoveService(uv).retry_failed(move_id))
    if error is not None:
        return await _move_page(request, session, move_id, error=error)
    report, error = await _deliver(request, session)
    if error is not None:
        return await _move_page(request, session, move_id, error=error)
    return await _move_page(request, session, move_id, notice=_report_notice(report))


# -- outbox ---------------------------------------------------------------------------------------


def _outbox_context(session: OwnerSession, status: str | None) -> dict[str, Any]:
    box = Outbox(session.unlocked)
    return {
        "messages": list(reversed(box.list(status=status))),
        "counts": box.counts(),
        "statuses": OUTBOX_STATUSES,
        "filter_status": status,
        "mail": _mail_context(session)["mail"],
    }


async def _outbox_page(
    request: Request, session: OwnerSession, *, error: PageError | None = None, **extra: Any
) -> Response:
    status = request.query_params.get("status")
    status = status if status in OUTBOX_STATUSES else None
    ctx = await run_in_threadpool(_outbox_context, session, status)
    code = 200
    if error is not None:
        ctx["error"], code = error.message, error.status
    return render(request, "outbox.html", ctx | extra, session=session, status=code)


@router.get("/outbox")
async def outbox_page(request: Request, session: Page) -> Response:
    return await _outbox_page(request, session)


@router.post("/outbox/send")
async def outbox_send(request: Request, session: Page) -> Response:
    await read_form(request)
    report, error = await _deliver(request, session)
    return await _outbox_page(request, session, error=error, notice=_report_notice(report))


def _message_context(session: OwnerSession, message_id: str) -> dict[str, Any]:
    box = Outbox(session.unlocked)
    entry = box.get(message_id)
    return {"m": entry, "body": message_text(box.message(message_id))}


async def _message_page(
    request: Request, session: OwnerSession, message_id: str, *, error: PageError | None = None, **extra: Any
) -> Response:
    ctx, failed = await _attempt(partial(_message_context, session, message_id))
    if failed is not None:
        return _not_found(request, session, failed)
    status = 200
    if error is not None:
        ctx["error"], status = error.message, error.status
    return render(request, "outbox_message.html", ctx | extra, session=session, status=status)


@router.get("/outbox/{message_id}")
async def outbox_message(message_id: str, request: Request, session: Page) -> Response:
    return await _message_page(request, session, message_id)


@router.post("/outbox/{message_id}/retry")
async def outbox_retry(message_id: str, request: Request, session: Page) -> Response:
    uv = session.unlocked
    _, error = await _attempt(lambda: Outbox(uv).get(message_id))
    if error is not None:
        return _not_found(request, session, error)
    _, error = await _attempt(lambda: require_mail(uv))
    if error is None:
        _, error = await _attempt(lambda: Outbox(uv).retry(message_id))
    if error is not None:
        return await _message_page(request, session, message_id, error=error)
    report, error = await _deliver(request, session)
    return await _message_page(request, session, message_id, error=error, notice=_report_notice(report))


@router.post("/outbox/{message_id}/confirm")
async def outbox_confirm(message_id: str, request: Request, session: Page) -> Response:
    _, error = await _attempt(lambda: Outbox(session.unlocked).confirm(message_id))
    if error is not None:
        if error.status == 404:
            return _not_found(request, session, error)
        return await _message_page(request, session, message_id, error=error)
    return see_other(f"/outbox/{message_id}")


@router.post("/outbox/{message_id}/cancel")
async def outbox_cancel(message_id: str, request: Request, session: Page) -> Response:
    _, error = await _attempt(lambda: Outbox(session.unlocked).cancel(message_id))
    if error is not None:
        if error.status == 404:
            return _not_found(request, session, error)
        return await _message_page(request, session, message_id, error=error)
    return see_other(f"/outbox/{message_id}")
