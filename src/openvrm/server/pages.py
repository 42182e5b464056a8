"""The web pages: Jinja2 templates, htmx for in-place updates, plain HTML forms that work without it.

Pages need a session cookie; without one they redirect to /login. Every form carries the session's CSRF
token (a hidden field for plain submits; htmx sends the ``X-CSRF-Token`` header from ``<body>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from openvrm.documents.service import KINDS as DOCUMENT_KINDS
from openvrm.documents.service import DocumentService
from openvrm.errors import OpenVRMError, VaultNotFound, WrongPassphrase
from openvrm.ledger.contracts import today_local
from openvrm.profile.fields import ADDRESS_PARTS, FIELD_TYPES, FieldValue, display, parse_key
from openvrm.profile.service import ProfileService
from openvrm.server.forms import read_form, text_field
from openvrm.server.ledger_views import dashboard_context, vendor_list_context
from openvrm.server.problems import ProblemError
from openvrm.server.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_session_cookie,
    log_in,
    log_out,
    login_csrf_ok,
    new_login_csrf,
    page_owner,
    set_login_csrf_cookie,
    set_session_cookie,
)
from openvrm.server.sessions import OwnerSession
from openvrm.server.state import state_of
from openvrm.server.uploads import store_upload, upload_form
from openvrm.summary import vault_summary
from openvrm.vendors.service import VendorService

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str


# The main navigation, in order. A new capability adds its page here and nowhere else.
NAV: list[NavItem] = [
    NavItem("Dashboard", "/"),
    NavItem("Profile", "/profile"),
    NavItem("Vendors", "/vendors"),
    NavItem("Connections", "/connections"),
    NavItem("Intents", "/intents"),
    NavItem("Contracts", "/contracts"),
    NavItem("Documents", "/documents"),
    NavItem("Upcoming", "/upcoming"),
    NavItem("Spending", "/spending"),
    NavItem("Rights", "/rights"),
    NavItem("Moves", "/moves"),
    NavItem("Outbox", "/outbox"),
    NavItem("Mailbox", "/mailbox"),
]

# htmx settings, sent in <meta name="htmx-config">: no eval (the CSP forbids it anyway), no injected
# indicator styles (the CSP forbids inline styles), and swap 422 answers so forms can show their errors.
HTMX_CONFIG: dict[str, Any] = {
    "allowEval": False,
    "includeIndicatorStyles": False,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "422", "swap": True, "error": False},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}

SUMMARY_LABELS = (
    ("vendors", "Vendors", "/vendors"),
    ("relationships", "Relationships", "/vendors"),
    ("documents", "Documents", "/documents"),
    ("profile_fields", "Profile fields", "/profile"),
    ("shares", "Active shares", None),
    ("inbox", "Inbox items", None),
)

router = APIRouter(include_in_schema=False)
Page = Annotated[OwnerSession, Depends(page_owner)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    session: OwnerSession | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    ctx: dict[str, Any] = {
        "nav": NAV,
        "active": request.url.path,
        "csrf_token": session.csrf_token if session else None,
        "htmx_config": HTMX_CONFIG,
        "display": display,
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, template, ctx, status_code=status, headers=headers)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- login and logout ---------------------------------------------------------------------------


def _login_page(request: Request, *, error: str | None = None, status: int = 200, **headers: str) -> Response:
    token = new_login_csrf()
    context = {"error": error, "absent": state_of(request).current_vault() is None, "login_csrf": token}
    response = render(request, "login.html", context, status=status, headers=headers or None)
    set_login_csrf_cookie(response, request, token)
    return response


@router.get("/login")
def login_page(request: Request) -> Response:
    if state_of(request).sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
        return see_other("/")
    return _login_page(request)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    form = await read_form(request)
    if not login_csrf_ok(request, text_field(form, "csrf_token")):
        return _login_page(request, error="The login form had expired. Please try again.", status=403)
    passphrase = form.get("passphrase")
    if not isinstance(passphrase, str) or not passphrase:
        return _login_page(request, error="Enter your passphrase.", status=422)
    try:
        session = await run_in_threadpool(log_in, request, passphrase)
    except WrongPassphrase:
        return _login_page(request, error="That passphrase does not unlock this vault.", status=401)
    except VaultNotFound:
        return _login_page(
            request, error="There is no vault here yet: create one with `vrm init`.", status=404
        )
    except ProblemError as exc:
        return _login_page(
            request, error=exc.detail[:1].upper() + exc.detail[1:] + ".", status=exc.status, **exc.headers
        )
    response = see_other("/")
    set_session_cookie(response, request, session)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout_submit(request: Request, session: Page) -> Response:
    log_out(request)
    response = see_other("/login")
    clear_session_cookie(response, request)
    return response


# -- dashboard ----------------------------------------------------------------------------------


@router.get("/")
def dashboard(request: Request, session: Page) -> Response:
    counts = vault_summary(session.unlocked)
    cards = [
        {"key": k, "label": label, "href": href, "count": counts[k]} for k, label, href in SUMMARY_LABELS
    ]
    ledger = dashboard_context(session.unlocked, today_local())
    return render(request, "dashboard.html", {"cards": cards} | ledger, session=session)


# -- profile ------------------------------------------------------------------------------------


def _profile_context(session: OwnerSession, history_field: str | None = None) -> dict[str, Any]:
    service = ProfileService(session.unlocked)
    fields: dict[str, FieldValue] = service.current()
    history = service.history(history_field) if history_field else []
    return {
        "fields": fields,
        "field_types": list(FIELD_TYPES.values()),
        "address_parts": ADDRESS_PARTS,
        "history_field": history_field,
        "history": list(reversed(history)),
    }


@router.get("/profile")
def profile_page(request: Request, session: Page) -> Response:
    field = request.query_params.get("field")
    try:
        ctx = _profile_context(session, field)
    except OpenVRMError as exc:
        ctx = _profile_context(session) | {"history_error": exc.message}
    return render(request, "profile.html", ctx, session=session)


@router.get("/profile/history")
def profile_history_fragment(request: Request, session: Page) -> Response:
    field = request.query_params.get("field")
    if not is_htmx(request):
        return see_other("/profile" + (f"?{urlencode({'field': field})}" if field else ""))
    try:
        ctx = _profile_context(session, field)
    except OpenVRMError as exc:
        ctx = {"history_field": field, "history": [], "history_error": exc.message}
    return render(request, "_history.html", ctx, session=session)


@router.post("/profile")
async def profile_submit(request: Request, session: Page) -> Response:
    form = await read_form(request)
    key = (text_field(form, "field") or "").strip()
    error: str | None = None
    try:
        ftype, _ = parse_key(key)
        value: FieldValue
        if ftype.name == "address":
            value = {p: (text_field(form, p) or "") for p in ADDRESS_PARTS}
        else:
            value = text_field(form, "value") or ""
        change = await run_in_threadpool(ProfileService(session.unlocked).set, key, value)
        key = change.field
    except OpenVRMError as exc:
        error = exc.message
    if error is None and not is_htmx(request):
        return see_other(f"/profile?field={key}")
    if error is None:
        ctx = await run_in_threadpool(_profile_context, session, key)
        ctx |= {"saved": key, "oob_history": True}
        return render(request, "_profile_panel.html", ctx, session=session)
    ctx = await run_in_threadpool(_profile_context, session)
    ctx |= {"error": error, "form": {k: v for k, v in form.items() if isinstance(v, str)}}
    template = "_profile_panel.html" if is_htmx(request) else "profile.html"
    return render(request, template, ctx, session=session, status=422)


# -- vendors ------------------------------------------------------------------------------------


def _vendors_context(session: OwnerSession) -> dict[str, Any]:
    service = VendorService(session.unlocked)
    rel_counts: dict[str, int] = {}
    for rel in service.relationships():
        rel_counts[rel.vendor_id] = rel_counts.get(rel.vendor_id, 0) + 1
    return {"vendors": service.list(), "rel_counts": rel_counts}


@router.get("/vendors")
def vendors_page(request: Request, session: Page) -> Response:
    params = request.query_params
    listing = vendor_list_context(
        session.unlocked,
        tag=params.get("tag"),
        folder=params.get("folder"),
        query=params.get("q"),
        country=params.get("country"),
    )
    return render(request, "vendors.html", _vendors_context(session) | listing, session=session)


@router.post("/vendors")
async def vendors_submit(request: Request, session: Page) -> Response:
    form = await read_form(request)
    domain = text_field(form, "domain")
    try:
        await run_in_threadpool(
            lambda: VendorService(session.unlocked).add(
                text_field(form, "name") or "",
                domains=[domain] if domain else [],
                country=text_field(form, "country"),
            )
        )
    except OpenVRMError as exc:
        ctx = await run_in_threadpool(_vendors_context, session)
        ctx |= {"error": exc.message, "form": {k: v for k, v in form.items() if isinstance(v, str)}}
        return render(request, "vendors.html", ctx, session=session, status=exc.status)
    return see_other("/vendors")


# -- documents ----------------------------------------------------------------------------------


DOCUMENTS_PER_PAGE = 50


def _page_number(request: Request) -> int:
    """``?page=N`` of a list page: anything that is not a plausible page number shows the first page."""
    raw = request.query_params.get("page", "1")
    return max(int(raw), 1) if raw.isdigit() and len(raw) < 7 else 1


def _documents_context(session: OwnerSession, page: int = 1) -> dict[str, Any]:
    vendors = VendorService(session.unlocked).list()
    service = DocumentService(session.unlocked)
    documents, total = service.newest(limit=DOCUMENTS_PER_PAGE, offset=(page - 1) * DOCUMENTS_PER_PAGE)
    last_page = max(1, -(-total // DOCUMENTS_PER_PAGE))
    if page > last_page:  # past the end (documents were deleted, or a hand-typed URL): show the last page
        page = last_page
        documents, total = service.newest(limit=DOCUMENTS_PER_PAGE, offset=(page - 1) * DOCUMENTS_PER_PAGE)
    first = (page - 1) * DOCUMENTS_PER_PAGE + 1
    return {
        "documents": documents,
        "pager": {
            "page": page,
            "last": last_page,
            "total": total,
            "first": first,
            "through": first + len(documents) - 1,
        },
        "vendors": vendors,
        "vendor_names": {v.id: v.name for v in vendors},
        "kinds": DOCUMENT_KINDS,
    }


@router.get("/documents")
def documents_page(request: Request, session: Page) -> Response:
    ctx = _documents_context(session, _page_number(request))
    return render(request, "documents.html", ctx, session=session)


@router.post("/documents")
async def documents_submit(request: Request, session: Page) -> Response:
    try:
        await store_upload(request, session.unlocked, await upload_form(request))
    except (OpenVRMError, ProblemError) as exc:
        message = exc.message if isinstance(exc, OpenVRMError) else exc.detail
        ctx = await run_in_threadpool(_documents_context, session)
        return render(request, "documents.html", ctx | {"error": message}, session=session, status=exc.status)
    return see_other("/documents")
