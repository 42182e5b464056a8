"""The relationship ledger in the owner API: directory, vendors, contracts, documents, reminders, spending.

Routes parse the request, call a core service and render its result; the rules live in the core
(:mod:`openvrm.ledger`, :mod:`openvrm.documents`, :mod:`openvrm.vendors`, :mod:`openvrm.directory`).
Money travels as text (``"15.99"``), dates as ``YYYY-MM-DD``. Besides ``/api/v1`` this module serves the
calendar feed, ``GET /feeds/calendar.ics?token=vrm_...``: calendar apps cannot log in, so the feed URL
carries a token of kind ``feed`` that unlocks the vault for that one request and can do nothing else.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import partial
from typing import Annotated, Any, Literal

from dateutil.relativedelta import relativedelta
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from openvrm.directory import directory
from openvrm.documents.importer import ImportOutcome, ImportService
from openvrm.documents.search import DocumentIndex
from openvrm.documents.service import DocumentService
from openvrm.errors import AuthError, InvalidValue, NotFound
from openvrm.ledger import spending
from openvrm.ledger.contracts import ContractService, today_local
from openvrm.ledger.upcoming import to_ics, upcoming
from openvrm.server.api import content_disposition
from openvrm.server.forms import FORM_OVERHEAD, _limited, content_type, too_large
from openvrm.server.problems import PROBLEM_RESPONSE, ProblemError, problem_responses
from openvrm.server.security import Principal, authenticate, owner, owner_session
from openvrm.server.state import state_of
from openvrm.server.uploads import clean_media_type
from openvrm.vault import tokens
from openvrm.vault.core import UnlockedVault
from openvrm.vendors.card import relationship_card
from openvrm.vendors.service import VendorService

router = APIRouter(
    prefix="/api/v1",
    responses=problem_responses(401, 403, 404, 422),
)
feeds_router = APIRouter()
Owner = Annotated[Principal, Depends(owner)]
OwnerSession = Annotated[Principal, Depends(owner_session)]

AMOUNT = r"^\d{1,12}([.,]\d{1,4})?$"
CURRENCY = r"^[A-Za-z]{3}$"
# An import request carries at most this many files, each within the server's upload limit, and the
# whole body within IMPORT_BODY_FACTOR upload limits.
MAX_IMPORT_FILES = 20
IMPORT_BODY_FACTOR = 4
FEED_DAYS = 366
ICS_MEDIA_TYPE = "text/calendar; charset=utf-8"

# The core's vocabularies, spelled out so the API description lists them (a test keeps them equal).
RelationshipStatus = Literal["active", "ended"]
Stance = Literal["trusted", "neutral", "blocked"]
BillingCycle = Literal["weekly", "monthly", "quarterly", "semiannual", "yearly", "one-off"]
NoticeUnit = Literal["days", "weeks", "months"]
DocumentKind = Literal["invoice", "receipt", "contract", "letter", "warranty", "statement", "other"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FromDirectoryIn(_Body):
    slug: str = Field(min_length=1, max_length=200, description="a directory slug, from GET /directory")


class MergeIn(_Body):
    other_id: str = Field(min_length=1, max_length=64, description="the vendor folded into this one")


class RelationshipPatch(_Body):
    status: RelationshipStatus | None = None
    stance: Stance | None = None
    tags: list[str] | None = Field(default=None, max_length=50, description="replaces the tags")
    folder: str | None = Field(default=None, max_length=300, description="such as home/utilities")
    notes: str | None = Field(default=None, max_length=10000)
    customer_number: str | None = Field(default=None, max_length=100)
    account: str | None = Field(default=None, max_length=200)
    since: date | None = None


class ContractIn(_Body):
    vendor_id: str = Field(min_length=1, max_length=64)
    plan: str = Field(min_length=1, max_length=200)
    price: str = Field(pattern=AMOUNT, description='the price per billing cycle, as text: "15.99"')
    currency: str = Field(default="EUR", pattern=CURRENCY)
    billing_cycle: BillingCycle = "monthly"
    start: date
    category: str | None = Field(default=None, max_length=60)
    minimum_term_months: int = Field(default=0, ge=0, le=600)
    auto_renewal: bool = True
    renewal_term_months: int = Field(default=0, ge=0, le=600)
    notice_value: int = Field(default=0, ge=0, le=3650)
    notice_unit: NoticeUnit = "days"
    variable: bool = Field(default=False, description="the amount changes from bill to bill")
    relationship_id: str | None = Field(default=None, max_length=64)
    notes: str = Field(default="", max_length=10000)


class PriceIn(_Body):
    price: str = Field(pattern=AMOUNT, description='the new price per billing cycle, as text: "17.99"')
    effective: date = Field(description="the first day the new price applies")
    currency: str | None = Field(default=None, pattern=CURRENCY)


class CancelIn(_Body):
    end: date | None = Field(
        default=None, description="the last day of the contract; by default the earliest end notice reaches"
    )


class PaymentIn(_Body):
    due_date: date | None = Field(
        default=None, description="the expected payment this settles (default: oldest unpaid)"
    )
    amount: str | None = Field(default=None, pattern=AMOUNT, description="default: the expected amount")
    paid_on: date | None = Field(default=None, description="default: today")
    note: str = Field(default="", max_length=1000)


class DocumentPatch(_Body):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    kind: DocumentKind | None = None
    vendor_id: str | None = Field(default=None, max_length=64)
    contract_id: str | None = Field(default=None, max_length=64)
    warranty_until: date | None = Field(default=None, description="null clears it")
    notes: str | None = Field(default=None, max_length=10000)


class FeedIn(_Body):
    name: str = Field(default="calendar", min_length=1, max_length=100, description="which calendar app")


# -- directory and vendors ----------------------------------------------------------------------


@router.get("/directory", summary="Search the bundled vendor directory (tolerant of case, accents, typos)")
def search_directory(
    principal: Owner,
    q: Annotated[str, Query(min_length=1, max_length=200, description="a name, brand or domain")],
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO 3166 code")] = None,
    category: Annotated[str | None, Query(max_length=60)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    hits = directory().search(q, country=country, category=category, limit=limit)
    return {"results": [h.to_json() for h in hits]}


@router.get("/directory/{slug}", summary="One directory entry, with its privacy contacts")
def get_directory_entry(slug: str, principal: Owner) -> dict[str, Any]:
    entry = directory().get(slug)
    if entry is None:
        raise NotFound(f"no directory entry {slug[:80]!r}")
    return entry.to_json()


@router.post(
    "/vendors/from-directory",
    summary="Add a vendor from the directory (or return the one already added from it)",
    status_code=HTTP_201_CREATED,
)
def add_vendor_from_directory(body: FromDirectoryIn, principal: Owner) -> dict[str, Any]:
    return VendorService(principal.unlocked).add_from_directory(body.slug).to_json()


@router.post("/vendors/{vendor_id}/merge", summary="Fold another vendor into this one (keeps this one)")
def merge_vendors(vendor_id: str, body: MergeIn, principal: Owner) -> dict[str, Any]:
    return VendorService(principal.unlocked).merge(vendor_id, body.other_id).to_json()


@router.patch("/relationships/{relationship_id}", summary="Change a relationship (only the fields sent)")
def edit_relationship(relationship_id: str, body: RelationshipPatch, principal: Owner) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    return VendorService(principal.unlocked).edit_relationship(relationship_id, **changes).to_json()


@router.get(
    "/relationships/{relationship_id}/card",
    summary="The relationship card: vendor, relationship, contracts, documents, payments, shares",
)
def get_relationship_card(
    relationship_id: str,
    principal: Owner,
    download: Annotated[bool, Query(description="send as a file to save")] = False,
) -> Response:
    card = relationship_card(principal.unlocked, relationship_id, today=today_local())
    headers: dict[str, str] = {}
    if download:
        name = f"relationship-card-{card['vendor']['name']}-{card['as_of']}.json"
        headers["Content-Disposition"] = content_disposition(name)
    return JSONResponse(card, headers=headers)


# -- contracts ----------------------------------------------------------------------------------


def _contract_detail(service: ContractService, contract_id: str, today: date) -> dict[str, Any]:
    contract = service.get(contract_id)
    horizon = today + relativedelta(years=1)
    return contract.to_json(today) | {
        "expected": [e.to_json() for e in service.expected(contract_id, until=horizon, today=today)],
        "payments": [p.to_json() for p in service.payments(contract_id=contract_id)],
    }


@router.get("/contracts", summary="List contracts and subscriptions, with their deadlines and costs")
def list_contracts(
    principal: Owner, vendor_id: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    today = today_local()
    items = ContractService(principal.unlocked).list(vendor_id=vendor_id)
    return {"today": today.isoformat(), "contracts": [c.to_json(today) for c in items]}


@router.post("/contracts", summary="Add a contract or subscription", status_code=HTTP_201_CREATED)
def add_contract(body: ContractIn, principal: Owner) -> dict[str, Any]:
    fields = body.model_dump()
    vendor_id = fields.pop("vendor_id")
    contract = ContractService(principal.unlocked).add(vendor_id, **fields)
    return contract.to_json(today_local())


@router.get(
    "/contracts/{contract_id}",
    summary="One contract: deadlines, expected payments (past and the next year) and payments made",
)
def get_contract(contract_id: str, principal: Owner) -> dict[str, Any]:
    return _contract_detail(ContractService(principal.unlocked), contract_id, today_local())


@router.post("/contracts/{contract_id}/price", summary="Record a price change from a date on")
def set_contract_price(contract_id: str, body: PriceIn, principal: Owner) -> dict[str, Any]:
    service = ContractService(principal.unlocked)
    service.set_price(contract_id, body.price, effective=body.effective, currency=body.currency)
    return _contract_detail(service, contract_id, today_local())


@router.post("/contracts/{contract_id}/cancel", summary="Mark a contract cancelled (notice given)")
def cancel_contract(contract_id: str, principal: Owner, body: CancelIn | None = None) -> dict[str, Any]:
    today = today_local()
    service = ContractService(principal.unlocked)
    service.cancel(contract_id, today=today, end=body.end if body else None)
    return _contract_detail(service, contract_id, today)


@router.post(
    "/contracts/{contract_id}/payments",
    summary="Mark an expected payment paid",
    status_code=HTTP_201_CREATED,
)
def pay_contract(contract_id: str, body: PaymentIn, principal: Owner) -> dict[str, Any]:
    payment = ContractService(principal.unlocked).pay(contract_id, **body.model_dump(), today=today_local())
    return payment.to_json()


@router.get("/costs", summary="Monthly and yearly cost of active contracts, by vendor or category")
def costs(principal: Owner, by: Literal["vendor", "category"] = "vendor") -> dict[str, Any]:
    lines = ContractService(principal.unlocked).costs(by=by, today=today_local())
    return {"by": by, "costs": [line.to_json() for line in lines]}


# -- documents ----------------------------------------------------------------------------------


async def read_import_form(request: Request) -> FormData:
    """The multipart body of an import: up to MAX_IMPORT_FILES files, the whole body size-limited as it
    streams (the same guard as a single upload, with a larger ceiling). Cached like ``read_form``."""
    cached = getattr(request.state, "openvrm_form", None)
    if isinstance(cached, FormData):
        return cached
    if content_type(request) != "multipart/form-data":
        raise ProblemError(415, "unsupported-media-type", "send the files as multipart/form-data")
    per_file = state_of(request).max_upload_bytes
    limit = per_file * IMPORT_BODY_FACTOR + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(per_file * IMPORT_BODY_FACTOR)
    stream = _limited(request, limit, per_file * IMPORT_BODY_FACTOR)
    parser = MultiPartParser(request.headers, stream, max_files=MAX_IMPORT_FILES, max_fields=20)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ProblemError(400, "bad-form", f"the form could not be read: {exc.message}") from None
    request.state.openvrm_form = form
    return form


async def import_uploads(request: Request, form: FormData, unlocked: UnlockedVault) -> list[ImportOutcome]:
    """Import every ``file`` of the form, in order; a file over the upload limit is a rejected outcome."""
    limit = state_of(request).max_upload_bytes
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile) and f.filename]
    if not files:
        raise InvalidValue("choose one or more files to import (form field 'file')")
    service = ImportService(unlocked)
    outcomes: list[ImportOutcome] = []
    for upload in files:
        name = upload.filename or "file"
        try:
            if upload.size is not None and upload.size > limit:
                outcomes.append(ImportOutcome(name, "rejected", too_large(limit).detail))
                continue
            data = await upload.read()
            if not data:
                outcomes.append(ImportOutcome(name, "rejected", "the file is empty"))
                continue
            media_type = clean_media_type(upload.content_type)
            if media_type == "application/octet-stream":
                media_type = None  # let the parsers look at the name and the bytes
            outcomes += await run_in_threadpool(
                partial(service.import_bytes, data, filename=name, media_type=media_type)
            )
        finally:
            await upload.close()
    return outcomes


async def _api_import_form(request: Request, principal: Principal = Depends(authenticate)) -> FormData:
    # Read (bounded) after authentication and before the CSRF check, which may need the form's field.
    return await read_import_form(request)


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}


@router.post(
    "/documents/import",
    summary="Import bills and documents (multipart, field 'file', repeatable): one outcome per file",
    openapi_extra=_IMPORT_BODY,
    responses=problem_responses(413, 415),
)
async def import_documents(
    request: Request, form: Annotated[FormData, Depends(_api_import_form)], principal: Owner
) -> dict[str, Any]:
    outcomes = await import_uploads(request, form, principal.unlocked)
    return {"outcomes": [o.to_json() for o in outcomes]}


@router.get("/documents/search", summary="Search documents by words, vendor, kind, dates and totals")
def search_documents(
    principal: Owner,
    q: Annotated[str, Query(max_length=200)] = "",
    vendor_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: DocumentKind | None = None,
    since: date | None = None,
    until: date | None = None,
    min_total: Annotated[Decimal | None, Query(ge=0, max_digits=16, decimal_places=4)] = None,
    max_total: Annotated[Decimal | None, Query(ge=0, max_digits=16, decimal_places=4)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    hits = DocumentIndex.for_vault(principal.unlocked).search(
        q,
        vendor_id=vendor_id,
        kind=kind,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        min_total=min_total,
        max_total=max_total,
        limit=limit,
    )
    return {"results": [h.to_json() for h in hits]}


@router.patch("/documents/{document_id}", summary="Change a document's title, kind, links or warranty end")
def edit_document(document_id: str, body: DocumentPatch, principal: Owner) -> dict[str, Any]:
    return (
        DocumentService(principal.unlocked).edit(document_id, **body.model_dump(exclude_unset=True)).to_json()
    )


# -- reminders ----------------------------------------------------------------------------------

Days = Annotated[int, Query(ge=1, le=731, description="how many days ahead")]


@router.get("/upcoming", summary="Deadlines, renewals, payments, bills and warranty ends coming up")
def get_upcoming(principal: Owner, days: Days = 60) -> dict[str, Any]:
    today = today_local()
    events = upcoming(principal.unlocked, today=today, days=days)
    return {"today": today.isoformat(), "days": days, "events": [e.to_json() for e in events]}


def ics_response(data: bytes, filename: str | None = None) -> Response:
    headers = {"Content-Disposition": content_disposition(filename)} if filename else {}
    return Response(data, media_type=ICS_MEDIA_TYPE, headers=headers)


@router.get(
    "/upcoming.ics",
    summary="The upcoming events as an iCalendar file",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}, "description": "an iCalendar file"}},
)
def get_upcoming_ics(principal: Owner, days: Days = FEED_DAYS) -> Response:
    events = upcoming(principal.unlocked, today=today_local(), days=days)
    return ics_response(to_ics(events), "openvrm-upcoming.ics")


def feed_url(request: Request, token: str) -> str:
    return str(request.url_for("calendar_feed").include_query_params(token=token))


@router.get("/feeds", summary="List calendar feed tokens (never their secrets)")
def list_feeds(principal: OwnerSession) -> dict[str, Any]:
    return {"feeds": [t.to_json() for t in tokens.list_tokens(principal.unlocked, kind="feed")]}


@router.post(
    "/feeds",
    summary="Create a calendar feed URL; it is shown once and can only read the calendar",
    status_code=HTTP_201_CREATED,
)
def create_feed(body: FeedIn, request: Request, principal: OwnerSession) -> dict[str, Any]:
    token, info = tokens.create(principal.unlocked, body.name, kind="feed")
    return {"token": token, "url": feed_url(request, token), **info.to_json()}


@router.delete(
    "/feeds/{token_id}",
    summary="Revoke a calendar feed URL",
    status_code=HTTP_204_NO_CONTENT,
    response_class=Response,
)
def revoke_feed(token_id: str, principal: OwnerSession) -> Response:
    tokens.revoke(principal.unlocked.vault, token_id, kind="feed")
    return Response(status_code=HTTP_204_NO_CONTENT)


@feeds_router.get(
    "/feeds/calendar.ics",
    name="calendar_feed",
    summary="The calendar feed for calendar apps: needs a feed token in the URL",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "an iCalendar file"},
        401: PROBLEM_RESPONSE,
    },
)
def calendar_feed(
    request: Request,
    token: Annotated[str | None, Query(max_length=200, description="a feed token, vrm_...")] = None,
) -> Response:
    if not token:
        raise AuthError("this feed needs its token: use the feed URL shown when it was created")
    unlocked = tokens.unlock(state_of(request).require_vault(), token, kind="feed")
    try:
        events = upcoming(unlocked, today=today_local(), days=FEED_DAYS)
    finally:
        unlocked.lock()
    return ics_response(to_ics(events))


# -- spending -----------------------------------------------------------------------------------


@router.get(
    "/spending",
    summary="What went out, by vendor, category or month (JSON or CSV)",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}, "description": "the totals"}},
)
def get_spending(
    principal: Owner,
    by: Literal["vendor", "category", "month"] = "vendor",
    since: date | None = None,
    until: date | None = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    rows = spending.totals(spending.entries(principal.unlocked), by=by, since=since, until=until)
    if format == "csv":
        return Response(
            spending.to_csv(rows, by),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": content_disposition(f"spending-by-{by}.csv")},
        )
    return {
        "by": by,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "rows": [r.to_json() for r in rows],
    }
