"""The pages for the person's agent: connections with vendors, their ledgers, grants and data requests.

Same rules as :mod:`openvrm.server.pages`: plain HTML forms (post, then redirect to the page that shows
the result), the session's CSRF token on every change, and a failed form re-rendered with its message and
a 4xx status (a vendor that cannot be reached is a 422 on the form, not a server error). Nothing is sent
to a vendor before the person presses a button that says so: the r-button landing page (``/connect``)
only reads the vendor's public discovery document, and ending a relationship has a confirmation step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response
from starlette.routing import Mount

from openvrm.agent.service import (
    DEFAULT_PURPOSE,
    AgentService,
    ConnectionRecord,
    ConnectResult,
    LedgerEntry,
    discovery_url_of,
)
from openvrm.errors import InvalidValue, NotFound, OpenVRMError
from openvrm.net import policy_for
from openvrm.profile.fields import display
from openvrm.profile.service import ProfileService
from openvrm.protocol.terms import DPV, Term, roster, term
from openvrm.server.forms import read_form, text_field
from openvrm.server.pages import render, see_other
from openvrm.server.problems import ProblemError
from openvrm.server.security import page_owner
from openvrm.server.sessions import OwnerSession
from openvrm.server.state import state_of
from openvrm.sharing.service import SharingService
from openvrm.vendors.service import VendorService

router = APIRouter(include_in_schema=False)
Page = Annotated[OwnerSession, Depends(page_owner)]
CONFIRM = "yes"
DEMO_PREFIX = "/demo-vendors/"

PURPOSES: tuple[tuple[str, str], ...] = (
    (DPV + "ServiceProvision", "Providing the service (ServiceProvision)"),
    (DPV + "PaymentManagement", "Payments (PaymentManagement)"),
    (DPV + "CustomerCare", "Customer care (CustomerCare)"),
)
RIGHTS: tuple[tuple[str, str], ...] = (
    ("access", "Access (Art. 15)"),
    ("rectification", "Rectification (Art. 16)"),
    ("erasure", "Erasure (Art. 17)"),
    ("restriction", "Restriction (Art. 18)"),
    ("portability", "Portability (Art. 20)"),
    ("objection", "Objection (Art. 21)"),
)
DEFAULT_SCOPE = "all personal data you hold about me under this relationship"
DONE = {
    "granted": "Granted. The vendor can fetch the values now.",
    "revoked": "Revoked. The vendor can no longer fetch these values.",
    "approved": "Approved. The vendor can fetch the values now.",
    "denied": "Denied. The vendor has been told.",
    "blocked": "Blocked. This vendor can no longer write to your ledger or fetch your data.",
    "unblocked": "Unblocked.",
    "ended": "The relationship is ended; your grants to this vendor are revoked.",
    "gdpr": "Your GDPR request is in the ledger.",
    "connected": "Connected: you and the vendor signed the agreement.",
}


class PageError(Exception):
    """A failure to show on the page: the message and its HTTP status."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _page_error(exc: Exception) -> PageError:
    if isinstance(exc, PageError):
        return exc
    if isinstance(exc, OpenVRMError):
        # A vendor that fails (502) is shown on the form like any refused input.
        return PageError(exc.message, exc.status if exc.status < 500 else 422)
    if isinstance(exc, ProblemError):
        return PageError(exc.detail[:1].upper() + exc.detail[1:] + ".", exc.status)
    raise exc


async def _attempt(action: Callable[[], Any]) -> tuple[Any, PageError | None]:
    """Run a blocking call off the event loop; a core, server or page error is returned, not raised."""
    try:
        return await run_in_threadpool(action), None
    except (OpenVRMError, ProblemError, PageError) as exc:
        return None, _page_error(exc)


def agent_of(request: Request, session: OwnerSession) -> AgentService:
    return AgentService(session.unlocked, policy=policy_for(state_of(request).settings))


def _not_found(request: Request, session: OwnerSession, error: PageError) -> Response:
    return render(request, "not_found.html", {"message": error.message}, session=session, status=error.status)


def _values(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


def _list(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def _date(raw: str | None, what: str) -> date | None:
    if raw is None or not raw.strip():
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise PageError(f"{what} is a date like 2031-12-31, not {raw.strip()[:20]!r}") from None


# -- terms and small view helpers -----------------------------------------------------------------


def _latest_terms() -> list[Term]:
    latest: dict[str, Term] = {}
    for t in roster():
        if t.id not in latest or t.version_key() > latest[t.id].version_key():
            latest[t.id] = t
    return list(latest.values())


def term_of(ref: dict[str, str] | None) -> Term | None:
    if not ref:
        return None
    try:
        return term(str(ref.get("id")), str(ref.get("version")) if ref.get("version") else None)
    except (NotFound, InvalidValue):
        return None


def term_title(ref: dict[str, str] | None) -> str:
    t = term_of(ref)
    if t is not None:
        return t.title
    return str(ref.get("id")) if ref else "—"


def when(value: Any) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM' (UTC), or the text as given."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    text = str(value or "")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return text or "—"


def purpose_name(iri: str) -> str:
    return iri.rsplit("#", 1)[-1] if "#" in iri else iri


@dataclass(frozen=True)
class DemoVendor:
    name: str
    url: str


def demo_vendors(request: Request) -> list[DemoVendor]:
    """The reference vendors mounted in this server (``create_app(..., demo_vendors_url=...)``), if any."""
    found = []
    for route in request.app.routes:
        if isinstance(route, Mount) and route.path.startswith(DEMO_PREFIX):
            kit = getattr(getattr(route.app, "state", None), "kit", None)
            config = getattr(kit, "config", None)
            if config is not None:
                found.append(DemoVendor(str(config.name), str(config.base_url)))
    return found


def _helpers() -> dict[str, Any]:
    return {
        "term_title": term_title,
        "when": when,
        "purpose_name": purpose_name,
        "connect_link": connect_link,
    }


# -- the list and connecting ----------------------------------------------------------------------


def _list_context(request: Request, agent: AgentService) -> dict[str, Any]:
    connections = agent.connections()
    pending = agent.data_requests()
    return {
        "connections": list(reversed(connections)),
        "terms": _latest_terms(),
        "chosen_terms": ["service-delivery-only"],
        "demo_vendors": demo_vendors(request),
        "pending_count": len(pending),
        "form": {},
    } | _helpers()


@router.get("/connections")
async def connections_page(request: Request, session: Page) -> Response:
    agent = agent_of(request, session)
    ctx = await run_in_threadpool(_list_context, request, agent)
    return render(request, "connections.html", ctx, session=session)


def _chosen_terms(form: FormData) -> list[str]:
    chosen = list(dict.fromkeys(_list(form, "terms")))
    if not chosen:
        raise PageError("choose at least one of your terms to proffer")
    if len(chosen) > 5:
        raise PageError("proffer at most five terms")
    known = {t.id for t in roster()}
    for t in chosen:
        if t not in known:
            raise PageError(f"{t[:60]!r} is not a term of the roster")
    return chosen


@router.post("/connections")
async def connections_submit(request: Request, session: Page) -> Response:
    form = await read_form(request)
    agent = agent_of(request, session)
    url = (text_field(form, "url") or "").strip()
    base = str(request.base_url).rstrip("/")

    def connect() -> ConnectResult:
        if not url:
            raise PageError("enter the vendor's address, like https://shop.example")
        if len(url) > 2048:
            raise PageError("that address is too long")
        terms = _chosen_terms(form)
        return agent.connect(url, agent_base_url=base, terms=terms)

    result, error = await _attempt(connect)
    if error is None and result.decision == "accept" and result.connection is not None:
        return see_other(f"/connections/{result.connection.id}?done=connected")
    ctx = await run_in_threadpool(_list_context, request, agent)
    ctx["form"] = {"url": url}
    chosen = _list(form, "terms")
    if chosen:
        ctx["chosen_terms"] = chosen
    if error is not None:
        ctx["error"] = error.message[:1].upper() + error.message[1:]
        return render(request, "connections.html", ctx, session=session, status=error.status)
    ctx["result"] = {
        "decision": result.decision,
        "term": term_of(result.term),
        "term_ref": result.term,
        "reason": result.reason,
        "url": url,
    }
    return render(request, "connections.html", ctx, session=session)


def _discovery_from(params: dict[str, str]) -> str:
    """The discovery URL of ``/connect?discovery=...``, or of ``/connect?uri=web+vrm:connect?discovery=...``
    (the link a vendor's r-button opens, handed over by the browser's protocol handler)."""
    discovery = params.get("discovery")
    uri = params.get("uri")
    if not discovery and uri:
        scheme, sep, rest = uri.strip().partition(":")
        if not sep or scheme.lower() != "web+vrm":
            raise PageError("this link is not a web+vrm: link")
        action, _, query = rest.partition("?")
        if action.strip("/") != "connect":
            raise PageError(f"this web+vrm link asks for {action[:40]!r}; only 'connect' is known")
        values = parse_qs(query).get("discovery") or []
        discovery = values[0] if values else None
    if not discovery or not discovery.strip():
        raise PageError("the link names no vendor (it has no discovery address)")
    if len(discovery) > 2048:
        raise PageError("the vendor's address is too long")
    return discovery_url_of(discovery.strip())


@router.get("/connect")
async def connect_landing(request: Request, session: Page) -> Response:
    """The r-button's landing page: who the vendor is and what it accepts. Nothing is sent from here."""
    agent = agent_of(request, session)
    params = {k: v for k, v in request.query_params.items()}

    def look() -> dict[str, Any]:
        target = _discovery_from(params)
        doc = agent.discover(target)
        vendor_terms = [t for t in (term_of(ref) for ref in doc.get("terms", [])) if t is not None]
        accepted = {t.id for t in vendor_terms}
        ours = _latest_terms()
        chosen = [t.id for t in ours if t.id in accepted and t.id == "service-delivery-only"]
        if not chosen and vendor_terms:
            chosen = [vendor_terms[0].id]
        existing = [c for c in agent.connections() if c.vendor_did == doc["vendor"]]
        return {
            "target": target,
            "vendor_name": doc["name"],
            "vendor_did": doc["vendor"],
            "privacy_contact": doc.get("privacy_contact"),
            "vendor_terms": vendor_terms,
            "terms": ours,
            "chosen_terms": chosen or ["service-delivery-only"],
            "existing": existing,
        }

    ctx, error = await _attempt(look)
    if error is not None:
        return render(
            request,
            "connect.html",
            {"error": error.message, "target": None},
            session=session,
            status=error.status,
        )
    return render(request, "connect.html", ctx, session=session)


# -- one connection -------------------------------------------------------------------------------


def _profile_fields(session: OwnerSession) -> list[tuple[str, str]]:
    current = ProfileService(session.unlocked).current()
    return [(k, display(v)) for k, v in sorted(current.items())]


def _detail_context(
    request: Request, session: OwnerSession, agent: AgentService, connection_id: str
) -> dict[str, Any]:
    conn = agent.get(connection_id)
    ledger = agent.ledger(connection_id)
    grants = agent.grants(connection_id)
    pending = [e for e in ledger if e.subtype == "data-request" and e.state == "pending-decision"]
    return {
        "conn": conn,
        "agreement_term": term_of(conn.term),
        "ledger": list(reversed(ledger)),
        "grants": list(reversed(grants)),
        "pending": pending,
        "profile_fields": _profile_fields(session),
        "purposes": PURPOSES,
        "rights": RIGHTS,
        "default_scope": DEFAULT_SCOPE,
        "form": {},
        "done": DONE.get(request.query_params.get("done") or ""),
    } | _helpers()


async def _detail(
    request: Request,
    session: OwnerSession,
    connection_id: str,
    *,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    agent = agent_of(request, session)
    ctx, error = await _attempt(lambda: _detail_context(request, session, agent, connection_id))
    if error is not None:
        return _not_found(request, session, error)
    ctx |= extra or {}
    return render(request, "connection.html", ctx, session=session, status=status)


@router.get("/connections/{connection_id}")
async def connection_page(connection_id: str, request: Request, session: Page) -> Response:
    extra: dict[str, Any] = {}
    if request.query_params.get("verify") == "1":
        agent = agent_of(request, session)
        reports, error = await _attempt(lambda: agent.verify(connection_id))
        if error is not None:
            return _not_found(request, session, error)
        extra["report"] = reports[0]
    return await _detail(request, session, connection_id, extra=extra)


async def _connection_action(
    request: Request,
    session: OwnerSession,
    connection_id: str,
    action: Callable[[AgentService, FormData], Any],
    done: str,
) -> Response:
    """Run a form's action on a connection; redirect to its page, or re-render it with the error."""
    form = await read_form(request)
    agent = agent_of(request, session)
    try:
        await run_in_threadpool(agent.get, connection_id)
    except OpenVRMError as exc:
        return _not_found(request, session, _page_error(exc))
    _result, error = await _attempt(lambda: action(agent, form))
    if error is None:
        return see_other(f"/connections/{connection_id}?done={done}")
    extra = {"error": error.message[:1].upper() + error.message[1:], "form": _values(form)}
    return await _detail(request, session, connection_id, extra=extra, status=error.status)


def _grant(connection_id: str) -> Callable[[AgentService, FormData], Any]:
    def run(agent: AgentService, form: FormData) -> Any:
        fields = _list(form, "fields")
        if not fields:
            raise PageError("choose at least one profile field to grant")
        if len(fields) > 20:
            raise PageError("grant at most 20 fields at once")
        purpose = text_field(form, "purpose") or DEFAULT_PURPOSE
        if purpose not in dict(PURPOSES):
            raise PageError("choose one of the purposes offered")
        until = _date(text_field(form, "until"), "'Until'")
        return agent.grant(connection_id, fields, purpose=purpose, until=until)

    return run


@router.post("/connections/{connection_id}/grants")
async def grant_submit(connection_id: str, request: Request, session: Page) -> Response:
    return await _connection_action(request, session, connection_id, _grant(connection_id), "granted")


@router.post("/connections/{connection_id}/block")
async def block_submit(connection_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    blocked = text_field(form, "blocked")
    if blocked not in ("1", "0"):
        return await _detail(
            request, session, connection_id, extra={"error": "Block or unblock?"}, status=422
        )
    return await _connection_action(
        request,
        session,
        connection_id,
        lambda agent, _form: agent.set_blocked(connection_id, blocked == "1"),
        "blocked" if blocked == "1" else "unblocked",
    )


@router.post("/connections/{connection_id}/end")
async def end_submit(connection_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    reason = (text_field(form, "reason") or "").strip()
    if len(reason) > 300:
        return await _detail(
            request,
            session,
            connection_id,
            extra={"error": "Keep the reason under 300 characters.", "form": _values(form)},
            status=422,
        )
    if text_field(form, "confirm") != CONFIRM:
        return await _detail(
            request, session, connection_id, extra={"confirm_end": True, "form": _values(form)}
        )
    return await _connection_action(
        request,
        session,
        connection_id,
        lambda agent, _form: agent.end(connection_id, reason=reason or "ended by the person"),
        "ended",
    )


@router.post("/connections/{connection_id}/gdpr")
async def gdpr_submit(connection_id: str, request: Request, session: Page) -> Response:
    def run(agent: AgentService, form: FormData) -> Any:
        right = text_field(form, "right") or ""
        if right not in dict(RIGHTS):
            raise PageError("choose one of the rights offered")
        scope = (text_field(form, "scope") or DEFAULT_SCOPE).strip()
        if len(scope) > 500:
            raise PageError("keep the scope under 500 characters")
        return agent.gdpr_request(connection_id, right, scope=scope)

    return await _connection_action(request, session, connection_id, run, "gdpr")


# -- grants ---------------------------------------------------------------------------------------


@router.post("/grants/{grant_id}/revoke")
async def revoke_submit(grant_id: str, request: Request, session: Page) -> Response:
    agent = agent_of(request, session)
    grant, error = await _attempt(lambda: agent.revoke(grant_id))
    if error is not None:
        return _not_found(request, session, error)
    return see_other(f"/connections/{grant.connection_id}?done=revoked")


@router.get("/grants/{grant_id}/receipt.json")
async def grant_receipt(grant_id: str, request: Request, session: Page) -> Response:
    agent = agent_of(request, session)
    receipt, error = await _attempt(lambda: agent.kantara_receipt(grant_id))
    if error is not None:
        return _not_found(request, session, error)
    safe = "".join(c for c in grant_id if c.isalnum() or c in "-_")[:64]
    return Response(
        json.dumps(receipt, indent=2, ensure_ascii=False) + "\n",
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="consent-receipt-{safe}.json"',
            "Cache-Control": "no-store",
        },
    )


# -- data requests --------------------------------------------------------------------------------


def _requests_context(agent: AgentService) -> dict[str, Any]:
    pairs: list[tuple[ConnectionRecord, LedgerEntry]] = agent.data_requests()
    return {"requests": pairs, "form": {}} | _helpers()


@router.get("/data-requests")
async def data_requests_page(request: Request, session: Page) -> Response:
    agent = agent_of(request, session)
    ctx = await run_in_threadpool(_requests_context, agent)
    return render(request, "data_requests.html", ctx, session=session)


@router.post("/data-requests/{entry_id}")
async def data_request_submit(entry_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    agent = agent_of(request, session)
    back_to_list = text_field(form, "back") == "list"

    def answer() -> str:
        owner = next((c for c, e in agent.data_requests() if e.id == entry_id), None)
        decision = text_field(form, "decision")
        if decision not in ("approve", "deny"):
            raise PageError("approve or deny?")
        if owner is None:
            raise PageError("this data request is not waiting for your decision", 409)
        until = _date(text_field(form, "until"), "'Until'") if decision == "approve" else None
        agent.answer_data_request(entry_id, approve=decision == "approve", until=until)
        return owner.id

    connection_id, error = await _attempt(answer)
    done = "approved" if text_field(form, "decision") == "approve" else "denied"
    if error is None:
        return see_other(
            "/data-requests?done=" + done if back_to_list else f"/connections/{connection_id}?done={done}"
        )
    message = error.message[:1].upper() + error.message[1:]
    owner = None
    if not back_to_list:
        pairs = await run_in_threadpool(agent.data_requests, pending_only=False)
        owner = next((c for c, e in pairs if e.id == entry_id), None)
    if owner is not None:
        extra = {"error": message, "form": _values(form)}
        return await _detail(request, session, owner.id, extra=extra, status=error.status)
    ctx = await run_in_threadpool(_requests_context, agent)
    ctx |= {"error": message, "form": _values(form)}
    return render(request, "data_requests.html", ctx, session=session, status=error.status)


# -- who holds my data ----------------------------------------------------------------------------


def _holders_context(session: OwnerSession, agent: AgentService) -> dict[str, Any]:
    uv = session.unlocked
    profile = ProfileService(uv).current()
    holders = agent.holders()
    vendors = VendorService(uv)
    names = {v.id: v.name for v in vendors.list()}
    rel_vendor = {r.id: r.vendor_id for r in vendors.relationships()}
    shares = SharingService(uv).list(active_only=True)
    fields = sorted(set(profile) | {h.field for h in holders} | {s.field for s in shares})
    rows = []
    for f in fields:
        rows.append(
            {
                "field": f,
                "value": display(profile[f]) if f in profile else None,
                "holders": [h for h in holders if h.field == f],
                "shares": [
                    {
                        "vendor_id": rel_vendor.get(s.relationship_id),
                        "vendor_name": names.get(rel_vendor.get(s.relationship_id) or "", "?"),
                        "purpose": s.purpose,
                        "until": s.until,
                    }
                    for s in shares
                    if s.field == f
                ],
            }
        )
    return {"rows": rows} | _helpers()


@router.get("/holders")
async def holders_page(request: Request, session: Page) -> Response:
    agent = agent_of(request, session)
    ctx = await run_in_threadpool(_holders_context, session, agent)
    return render(request, "holders.html", ctx, session=session)


def connect_link(discovery_url: str) -> str:
    """The landing page link for a discovery URL (used by the demo vendor list)."""
    return "/connect?discovery=" + quote(discovery_url, safe="")


__all__ = ["connect_link", "router"]
