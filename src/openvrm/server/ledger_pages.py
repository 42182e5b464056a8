"""The ledger's pages: directory search, a page per vendor, contracts, imports, search, reminders, spending.

Same rules as :mod:`openvrm.server.pages`: every form works as a plain HTML submit (post, then redirect
to the page that shows the result); htmx only makes some of them update in place. A form that fails
re-renders its page with the core's message and the status it maps to (422, 404, 409).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from dateutil.relativedelta import relativedelta
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from openvrm.documents.search import DocumentIndex
from openvrm.documents.service import KINDS as DOCUMENT_KINDS
from openvrm.documents.service import DocumentService
from openvrm.errors import InvalidValue, NotFound, OpenVRMError
from openvrm.ledger import spending
from openvrm.ledger.contracts import ContractService, today_local
from openvrm.ledger.terms import CYCLES, NOTICE_UNITS
from openvrm.ledger.upcoming import KINDS as EVENT_KINDS
from openvrm.ledger.upcoming import upcoming
from openvrm.mail.service import MailService
from openvrm.server.forms import read_form, text_field
from openvrm.server.ledger_api import feed_url, import_uploads, read_import_form
from openvrm.server.ledger_views import spending_charts, vendor_list_context
from openvrm.server.pages import is_htmx, render, see_other
from openvrm.server.problems import ProblemError
from openvrm.server.security import page_owner, page_session
from openvrm.server.sessions import OwnerSession
from openvrm.sharing.service import SharingService
from openvrm.vault import tokens
from openvrm.vendors.card import relationship_card
from openvrm.vendors.service import STANCES, STATUSES, VendorService

router = APIRouter(include_in_schema=False)
Page = Annotated[OwnerSession, Depends(page_owner)]


def _form_values(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _int(form: FormData, name: str, what: str) -> int:
    raw = (text_field(form, name) or "0").strip()
    if not raw.isdigit() or len(raw) > 5:
        raise InvalidValue(f"{what} must be a whole number of 0 or more, not {raw[:20]!r}")
    return int(raw)


def _tags(raw: str | None) -> list[str]:
    return [t.strip() for t in (raw or "").split(",") if t.strip()]


async def _attempt(action: Callable[[], Any]) -> tuple[Any, OpenVRMError | None]:
    """Run a blocking core call off the event loop; a core error is returned, not raised."""
    try:
        return await run_in_threadpool(action), None
    except OpenVRMError as exc:
        return None, exc


# -- vendors: directory, vendor page, relationship, merge, card ---------------------------------


@router.get("/vendors/directory")
def directory_results(request: Request, session: Page) -> Response:
    """Directory hits for the search box: a fragment for htmx, else the vendor page with the hits."""
    q, country = request.query_params.get("q"), request.query_params.get("country")
    if not is_htmx(request):
        params = {k: v for k, v in (("q", q), ("country", country)) if v}
        return see_other("/vendors" + (f"?{urlencode(params)}" if params else ""))
    ctx = vendor_list_context(session.unlocked, tag=None, folder=None, query=q, country=country)
    return render(request, "_directory_results.html", ctx, session=session)


@router.post("/vendors/from-directory")
async def add_from_directory(request: Request, session: Page) -> Response:
    form = await read_form(request)
    slug = text_field(form, "slug") or ""
    vendor, error = await _attempt(lambda: VendorService(session.unlocked).add_from_directory(slug))
    if error is not None:
        ctx = await run_in_threadpool(
            lambda: vendor_list_context(session.unlocked, tag=None, folder=None, query=None, country=None)
        )
        return render(
            request, "vendors.html", ctx | {"error": error.message}, session=session, status=error.status
        )
    return see_other(f"/vendors/{vendor.id}")


def _vendor_context(session: OwnerSession, vendor_id: str) -> dict[str, Any]:
    uv = session.unlocked
    today = today_local()
    vendors = VendorService(uv)
    vendor = vendors.get(vendor_id)
    rels = vendors.relationships(vendor.id)
    contracts = ContractService(uv)
    own_contracts = contracts.list(vendor_id=vendor.id)
    mail = MailService(uv)
    contract_ids = {c.id for c in own_contracts}
    rel_ids = {r.id for r in rels}
    return {
        "vendor": vendor,
        "relationships": rels,
        "contracts": [c.to_json(today) for c in own_contracts],
        "documents": DocumentService(uv).list(vendor_id=vendor.id),
        "payments": [p for p in contracts.payments() if p.contract_id in contract_ids],
        "shares": [s for s in SharingService(uv).list() if s.relationship_id in rel_ids],
        "others": [v for v in vendors.list() if v.id != vendor.id],
        "aliases": mail.aliases(vendor_id=vendor.id),
        "mail_ready": mail.config() is not None,
        "statuses": STATUSES,
        "stances": STANCES,
        "today": today,
    }


async def _vendor_page(
    request: Request,
    session: OwnerSession,
    vendor_id: str,
    *,
    error: OpenVRMError | None = None,
    **extra: Any,
) -> Response:
    try:
        ctx = await run_in_threadpool(_vendor_context, session, vendor_id)
    except NotFound as exc:
        return render(request, "not_found.html", {"message": exc.message}, session=session, status=404)
    if error is not None:
        ctx |= {"error": error.message}
    return render(request, "vendor.html", ctx | extra, session=session, status=error.status if error else 200)


@router.get("/vendors/{vendor_id}")
async def vendor_page(vendor_id: str, request: Request, session: Page) -> Response:
    params = request.query_params
    return await _vendor_page(
        request,
        session,
        vendor_id,
        saved=params.get("saved") == "1",
        merged=params.get("merged") == "1",
        alias_created=params.get("alias") == "1",
    )


@router.post("/vendors/{vendor_id}/relationships")
async def start_relationship(vendor_id: str, request: Request, session: Page) -> Response:
    _, error = await _attempt(lambda: VendorService(session.unlocked).relate(vendor_id))
    if error is not None:
        return await _vendor_page(request, session, vendor_id, error=error)
    return see_other(f"/vendors/{vendor_id}")


@router.post("/relationships/{relationship_id}")
async def edit_relationship(relationship_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    service = VendorService(session.unlocked)
    rel, error = await _attempt(lambda: service.relationship(relationship_id))
    if error is not None:
        return render(request, "not_found.html", {"message": error.message}, session=session, status=404)
    changes = {
        "status": text_field(form, "status"),
        "stance": text_field(form, "stance"),
        "tags": _tags(text_field(form, "tags")),
        # "" clears a field (the core keeps a field only when a value is None)
        "folder": text_field(form, "folder") or "",
        "notes": (text_field(form, "notes") or "").strip(),
        "customer_number": text_field(form, "customer_number") or "",
        "account": text_field(form, "account") or "",
        "since": text_field(form, "since") or "",
    }
    _, error = await _attempt(lambda: service.edit_relationship(relationship_id, **changes))
    if error is not None:
        return await _vendor_page(request, session, rel.vendor_id, error=error, form=_form_values(form))
    return see_other(f"/vendors/{rel.vendor_id}?saved=1#relationship-{relationship_id}")


@router.post("/vendors/{vendor_id}/merge")
async def merge_vendor(vendor_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    other = text_field(form, "other_id") or ""
    _, error = await _attempt(lambda: VendorService(session.unlocked).merge(vendor_id, other))
    if error is not None:
        return await _vendor_page(request, session, vendor_id, error=error)
    return see_other(f"/vendors/{vendor_id}?merged=1")


@router.get("/relationships/{relationship_id}/card")
async def card_page(relationship_id: str, request: Request, session: Page) -> Response:
    def build() -> dict[str, Any]:
        MailService(session.unlocked).file_inbox()  # the mail part shows what the gateway just received
        return relationship_card(session.unlocked, relationship_id, today=today_local())

    card, error = await _attempt(build)
    if error is not None:
        return render(
            request, "not_found.html", {"message": error.message}, session=session, status=error.status
        )
    return render(request, "card.html", {"card": card, "event_kinds": EVENT_KINDS}, session=session)


# -- contracts ----------------------------------------------------------------------------------


def _contracts_context(session: OwnerSession) -> dict[str, Any]:
    today = today_local()
    vendors = VendorService(session.unlocked).list()
    service = ContractService(session.unlocked)
    return {
        "contracts": [c.to_json(today) for c in service.list()],
        "vendors": vendors,
        "vendor_names": {v.id: v.name for v in vendors},
        "costs": service.costs(by="vendor", today=today),
        "cycles": list(CYCLES),
        "notice_units": NOTICE_UNITS,
        "today": today,
    }


@router.get("/contracts")
async def contracts_page(request: Request, session: Page) -> Response:
    ctx = await run_in_threadpool(_contracts_context, session)
    ctx["form"] = {"vendor_id": request.query_params.get("vendor_id", ""), "start": ctx["today"].isoformat()}
    return render(request, "contracts.html", ctx, session=session)


@router.post("/contracts")
async def contracts_submit(request: Request, session: Page) -> Response:
    form = await read_form(request)

    def add() -> Any:
        return ContractService(session.unlocked).add(
            text_field(form, "vendor_id") or "",
            plan=text_field(form, "plan") or "",
            price=text_field(form, "price") or "",
            currency=text_field(form, "currency") or "EUR",
            billing_cycle=text_field(form, "billing_cycle") or "monthly",
            start=text_field(form, "start") or "",
            category=text_field(form, "category"),
            minimum_term_months=_int(form, "minimum_term_months", "the minimum term"),
            notice_value=_int(form, "notice_value", "the notice period"),
            notice_unit=text_field(form, "notice_unit") or "days",
            auto_renewal=form.get("auto_renewal") == "on",
            variable=form.get("variable") == "on",
        )

    contract, error = await _attempt(add)
    if error is not None:
        ctx = await run_in_threadpool(_contracts_context, session)
        ctx |= {"error": error.message, "form": _form_values(form)}
        return render(request, "contracts.html", ctx, session=session, status=error.status)
    return see_other(f"/contracts/{contract.id}")


def _contract_context(session: OwnerSession, contract_id: str) -> dict[str, Any]:
    today = today_local()
    service = ContractService(session.unlocked)
    contract = service.get(contract_id)
    expected = service.expected(contract_id, until=today + relativedelta(years=1), today=today)
    return {
        "contract": contract.to_json(today),
        "vendor": VendorService(session.unlocked).get(contract.vendor_id),
        "expected": list(reversed(expected)),
        # offer "mark paid" on what is due or overdue, and on the next payment ahead only
        "next_due": min((e.due_date for e in expected if e.status == "upcoming"), default=None),
        "payments": service.payments(contract_id=contract_id),
        "today": today,
    }


async def _contract_page(
    request: Request,
    session: OwnerSession,
    contract_id: str,
    *,
    error: OpenVRMError | None = None,
    template: str = "contract.html",
    **extra: Any,
) -> Response:
    try:
        ctx = await run_in_threadpool(_contract_context, session, contract_id)
    except NotFound as exc:
        return render(request, "not_found.html", {"message": exc.message}, session=session, status=404)
    ctx |= extra
    if error is not None:
        ctx["error"] = error.message
    return render(request, template, ctx, session=session, status=error.status if error else 200)


@router.get("/contracts/{contract_id}")
async def contract_page(contract_id: str, request: Request, session: Page) -> Response:
    return await _contract_page(request, session, contract_id)


@router.post("/contracts/{contract_id}/price")
async def contract_price(contract_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    _, error = await _attempt(
        lambda: ContractService(session.unlocked).set_price(
            contract_id, text_field(form, "price") or "", effective=text_field(form, "effective") or ""
        )
    )
    if error is not None:
        return await _contract_page(request, session, contract_id, error=error)
    return see_other(f"/contracts/{contract_id}")


@router.post("/contracts/{contract_id}/cancel")
async def contract_cancel(contract_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    _, error = await _attempt(
        lambda: ContractService(session.unlocked).cancel(
            contract_id, today=today_local(), end=text_field(form, "end")
        )
    )
    if error is not None:
        return await _contract_page(request, session, contract_id, error=error)
    return see_other(f"/contracts/{contract_id}")


@router.post("/contracts/{contract_id}/payments")
async def contract_pay(contract_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    _, error = await _attempt(
        lambda: ContractService(session.unlocked).pay(
            contract_id,
            due_date=text_field(form, "due_date"),
            amount=text_field(form, "amount"),
            paid_on=text_field(form, "paid_on"),
            today=today_local(),
        )
    )
    if is_htmx(request):
        # htmx swaps 2xx and 422 answers only (pages.HTMX_CONFIG): a refused payment shows as 422 here.
        extra = (
            {"paid_due": text_field(form, "due_date")} if error is None else {"payment_error": error.message}
        )
        response = await _contract_page(
            request, session, contract_id, template="_contract_payments.html", **extra
        )
        if error is not None and response.status_code == 200:
            response.status_code = 422
        return response
    if error is not None:
        return await _contract_page(request, session, contract_id, error=error)
    return see_other(f"/contracts/{contract_id}#payments")


# -- documents: import, search, detail -----------------------------------------------------------


async def _page_import_form(request: Request, session: OwnerSession = Depends(page_session)) -> FormData:
    # Read (bounded) once logged in and before the CSRF check, which reads the form's csrf_token.
    return await read_import_form(request)


@router.post("/documents/import")
async def documents_import(
    request: Request, form: Annotated[FormData, Depends(_page_import_form)], session: Page
) -> Response:
    try:
        outcomes = await import_uploads(request, form, session.unlocked)
    except (OpenVRMError, ProblemError) as exc:
        message = exc.message if isinstance(exc, OpenVRMError) else exc.detail
        template = "_import_results.html" if is_htmx(request) else "import_results.html"
        return render(
            request, template, {"error": message, "outcomes": []}, session=session, status=exc.status
        )
    template = "_import_results.html" if is_htmx(request) else "import_results.html"
    return render(request, template, {"outcomes": outcomes}, session=session)


def _search_context(session: OwnerSession, request: Request) -> dict[str, Any]:
    params = request.query_params
    q = (params.get("q") or "").strip()[:200]
    kind = params.get("kind") or None
    vendor_id = params.get("vendor_id") or None
    vendors = VendorService(session.unlocked).list()
    hits = DocumentIndex.for_vault(session.unlocked).search(
        q, kind=kind if kind in DOCUMENT_KINDS else None, vendor_id=vendor_id
    )
    return {
        "query": q,
        "kind": kind,
        "vendor_id": vendor_id,
        "hits": hits,
        "vendor_names": {v.id: v.name for v in vendors},
        "vendors": vendors,
        "kinds": DOCUMENT_KINDS,
        "searched": bool(q or kind or vendor_id),
    }


@router.get("/documents/search")
async def documents_search(request: Request, session: Page) -> Response:
    ctx = await run_in_threadpool(_search_context, session, request)
    template = "_document_results.html" if is_htmx(request) else "document_search.html"
    return render(request, template, ctx, session=session)


def _document_context(session: OwnerSession, document_id: str) -> dict[str, Any]:
    docs = DocumentService(session.unlocked)
    doc = docs.get(document_id)
    vendors = VendorService(session.unlocked).list()
    return {
        "document": doc,
        "vendors": vendors,
        "vendor_names": {v.id: v.name for v in vendors},
        "kinds": DOCUMENT_KINDS,
        "line_items": doc.fields.get("line_items") or [],
    }


async def _document_page(
    request: Request,
    session: OwnerSession,
    document_id: str,
    *,
    error: OpenVRMError | None = None,
    **extra: Any,
) -> Response:
    try:
        ctx = await run_in_threadpool(_document_context, session, document_id)
    except NotFound as exc:
        return render(request, "not_found.html", {"message": exc.message}, session=session, status=404)
    if error is not None:
        ctx["error"] = error.message
    return render(
        request, "document.html", ctx | extra, session=session, status=error.status if error else 200
    )


@router.get("/documents/{document_id}")
async def document_page(document_id: str, request: Request, session: Page) -> Response:
    saved = request.query_params.get("saved") == "1"
    return await _document_page(request, session, document_id, saved=saved)


@router.post("/documents/{document_id}")
async def document_edit(document_id: str, request: Request, session: Page) -> Response:
    form = await read_form(request)
    changes = {
        "title": text_field(form, "title"),
        "kind": text_field(form, "kind"),
        "vendor_id": text_field(form, "vendor_id"),
        "warranty_until": text_field(form, "warranty_until") or "",  # "" clears it
    }
    _, error = await _attempt(lambda: DocumentService(session.unlocked).edit(document_id, **changes))
    if error is not None:
        if isinstance(error, NotFound) and "document" in error.message:
            return render(request, "not_found.html", {"message": error.message}, session=session, status=404)
        return await _document_page(request, session, document_id, error=error, form=_form_values(form))
    return see_other(f"/documents/{document_id}?saved=1")


# -- reminders ----------------------------------------------------------------------------------


def _upcoming_context(session: OwnerSession, days: int) -> dict[str, Any]:
    today = today_local()
    return {
        "events": upcoming(session.unlocked, today=today, days=days),
        "event_kinds": EVENT_KINDS,
        "days": days,
        "today": today,
        "feeds": tokens.list_tokens(session.unlocked, kind="feed"),
    }


def _days(request: Request) -> int:
    raw = request.query_params.get("days", "60")
    return min(max(int(raw), 1), 731) if raw.isdigit() and len(raw) < 5 else 60


@router.get("/upcoming")
async def upcoming_page(request: Request, session: Page) -> Response:
    ctx = await run_in_threadpool(_upcoming_context, session, _days(request))
    return render(request, "upcoming.html", ctx, session=session)


@router.post("/upcoming/feeds")
async def create_feed(request: Request, session: Page) -> Response:
    form = await read_form(request)
    name = text_field(form, "name") or "calendar"
    created, error = await _attempt(lambda: tokens.create(session.unlocked, name, kind="feed"))
    ctx = await run_in_threadpool(_upcoming_context, session, 60)
    if error is not None:
        return render(
            request, "upcoming.html", ctx | {"error": error.message}, session=session, status=error.status
        )
    token, info = created
    ctx |= {"new_feed_url": feed_url(request, token), "new_feed": info}
    return render(request, "upcoming.html", ctx, session=session, status=201)


@router.post("/upcoming/feeds/{token_id}/revoke")
async def revoke_feed(token_id: str, request: Request, session: Page) -> Response:
    def revoke() -> None:
        if token_id not in {t.id for t in tokens.list_tokens(session.unlocked, kind="feed")}:
            raise NotFound("no such calendar feed; it may have been revoked already")
        tokens.revoke(session.unlocked.vault, token_id)

    _, error = await _attempt(revoke)
    if error is not None:
        ctx = await run_in_threadpool(_upcoming_context, session, 60)
        return render(
            request, "upcoming.html", ctx | {"error": error.message}, session=session, status=error.status
        )
    return see_other("/upcoming?revoked=1")


# -- spending -----------------------------------------------------------------------------------


def _optional_day(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


@router.get("/spending")
async def spending_page(request: Request, session: Page) -> Response:
    params = request.query_params
    by = params.get("by") if params.get("by") in spending.GROUPINGS else "vendor"
    since, until = _optional_day(params.get("since")), _optional_day(params.get("until"))

    def context() -> dict[str, Any]:
        rows = spending.totals(
            spending.entries(session.unlocked), by=by or "vendor", since=since, until=until
        )
        return {"rows": rows, "charts": spending_charts(session.unlocked, today_local())}

    ctx = await run_in_threadpool(context)
    query = {"by": by, "format": "csv"} | {
        k: v.isoformat() for k, v in (("since", since), ("until", until)) if v is not None
    }
    ctx |= {
        "by": by,
        "groupings": spending.GROUPINGS,
        "since": since,
        "until": until,
        "csv_url": "/api/v1/spending?" + urlencode(query),
        "bad_dates": bool((params.get("since") and not since) or (params.get("until") and not until)),
    }
    return render(request, "spending.html", ctx, session=session)
