"""The pages for intents: write one, publish it, watch offers arrive, compare them, accept one.

Same rules as :mod:`openvrm.server.agent_pages`: plain HTML forms (post, then redirect to the page that
shows the result), the session's CSRF token on every change, a failed form re-rendered with its message
and a 4xx status (a relay or vendor that cannot be reached is a 422 on the form). Nothing leaves the vault
before the person presses Publish; accepting an offer connects to that vendor only and grants only the
fields ticked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from openvrm.errors import OpenVRMError
from openvrm.intents.ranking import WEIGHTS
from openvrm.intents.service import IntentService, feature
from openvrm.intents.taxonomy import categories
from openvrm.net import policy_for
from openvrm.profile.fields import display
from openvrm.profile.service import ProfileService
from openvrm.server.agent_pages import PageError, _attempt, _list, _page_error, _values, when
from openvrm.server.forms import read_form, text_field
from openvrm.server.intent_api import relay_url_for
from openvrm.server.pages import render, see_other
from openvrm.server.security import page_owner
from openvrm.server.sessions import OwnerSession
from openvrm.server.state import state_of

router = APIRouter(include_in_schema=False)
Page = Annotated[OwnerSession, Depends(page_owner)]
MAX_FEATURE_ROWS = 3
DONE = {
    "created": "Draft saved. Nothing has left your vault yet.",
    "edited": "Draft saved.",
    "published": "Published under a key made for this intent only.",
    "fetched": "Offers fetched.",
    "accepted": "Accepted: you are now connected to this vendor under the intent's terms.",
    "withdrawn": "Withdrawn. Vendors are told the intent is closed.",
    "muted": "Muted: this interest is not polled and its offers are hidden.",
    "unmuted": "Unmuted.",
}
PART_LABELS = {
    "price": "Price",
    "required": "Required features",
    "optional": "Optional features",
    "contract": "Contract length",
    "terms": "Terms",
}
VIOLATION_LABELS = {
    "price": "over your price ceiling",
    "currency": "another currency",
    "contract": "contract longer than you allow",
}


def intents_of(request: Request, session: OwnerSession) -> IntentService:
    return IntentService(
        session.unlocked, policy=policy_for(state_of(request).settings), relay_url=relay_url_for(request)
    )


def violation_label(v: str) -> str:
    if v.startswith("feature:"):
        return f"missing required feature {v.split(':', 1)[1]}"
    return VIOLATION_LABELS.get(v, v)


def _helpers() -> dict[str, Any]:
    return {
        "when": when,
        "violation_label": violation_label,
        "part_labels": PART_LABELS,
        "weights": WEIGHTS,
        "categories": list(categories().values()),
    }


def _int(form: FormData, name: str, what: str) -> int | None:
    raw = text_field(form, name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise PageError(f"{what} is a whole number, not {raw.strip()[:20]!r}") from None


def _features(form: FormData) -> list[dict[str, Any]]:
    out = []
    for n in range(MAX_FEATURE_ROWS):
        name = (text_field(form, f"feature_name_{n}") or "").strip()
        if not name:
            continue
        value = (text_field(form, f"feature_value_{n}") or "").strip()
        out.append(feature(name, value, required=text_field(form, f"feature_required_{n}") == "1"))
    return out


def _fields_of(form: FormData) -> dict[str, Any]:
    """The intent form's values, as keyword arguments of :meth:`IntentService.create`/``edit``."""
    amount = text_field(form, "price_amount")
    price = None
    if amount is not None:
        price = {
            "amount": amount.strip(),
            "currency": (text_field(form, "price_currency") or "EUR").strip(),
            "per": (text_field(form, "price_per") or "month").strip(),
        }
    return {
        "text": (text_field(form, "text") or "").strip(),
        "price": price,
        "features": _features(form),
        "quantity": _int(form, "quantity", "The quantity"),
        "contract_months_max": _int(form, "contract_months_max", "The longest contract"),
        "where": {
            "country": text_field(form, "country"),
            "region": text_field(form, "region"),
            "postal_code": text_field(form, "postal_code"),
            "radius_km": text_field(form, "radius_km"),
        },
        "expires_in_days": _int(form, "expires_in_days", "The expiry"),
    }


def _form_of(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = _values(form)
    return values


# -- the list ---------------------------------------------------------------------------------------


def _list_context(svc: IntentService) -> dict[str, Any]:
    items = svc.list()
    return {
        "requests": [i for i in items if i.kind == "rfp"],
        "interests": [i for i in items if i.kind == "interest"],
        "form": {"expires_in_days": "14", "price_currency": "EUR", "price_per": "month"},
        "feature_rows": range(MAX_FEATURE_ROWS),
    } | _helpers()


@router.get("/intents")
async def intents_page(request: Request, session: Page) -> Response:
    svc = intents_of(request, session)
    ctx = await run_in_threadpool(_list_context, svc)
    return render(request, "intents.html", ctx, session=session)


@router.post("/intents")
async def intents_submit(request: Request, session: Page) -> Response:
    form = await read_form(request)
    svc = intents_of(request, session)

    def create() -> Any:
        cat = text_field(form, "category")
        if not cat:
            raise PageError("choose what you are looking for (a category)")
        kind = "interest" if text_field(form, "kind") == "interest" else "rfp"
        fields = _fields_of(form)
        return svc.create(cat.strip(), fields.pop("text"), kind=kind, **fields)

    record, error = await _attempt(create)
    if error is None:
        return see_other(f"/intents/{record.id}?done=created")
    ctx = await run_in_threadpool(_list_context, svc)
    ctx["form"] = _form_of(form)
    ctx["error"] = error.message[:1].upper() + error.message[1:]
    return render(request, "intents.html", ctx, session=session, status=error.status)


# -- one intent --------------------------------------------------------------------------------------


def _profile_fields(session: OwnerSession) -> list[tuple[str, str]]:
    current = ProfileService(session.unlocked).current()
    return [(k, display(v)) for k, v in sorted(current.items())]


def _edit_form(record: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "category": record.category,
        "text": record.text,
        "expires_in_days": str(record.expires_in_days),
        "price_currency": "EUR",
        "price_per": "month",
    }
    pm = record.constraints.get("price_max")
    if pm:
        form |= {"price_amount": pm["amount"], "price_currency": pm["currency"], "price_per": pm["per"]}
    for n, f in enumerate(record.constraints.get("features", [])[:MAX_FEATURE_ROWS]):
        form |= {f"feature_name_{n}": f["name"], f"feature_value_{n}": f["value"]}
        if f["required"]:
            form[f"feature_required_{n}"] = "1"
    if "quantity" in record.constraints:
        form["quantity"] = str(record.constraints["quantity"])
    if "contract_months_max" in record.constraints:
        form["contract_months_max"] = str(record.constraints["contract_months_max"])
    for k, v in record.where.items():
        form[k] = str(v)
    return form


def _detail_context(session: OwnerSession, svc: IntentService, intent_id: str) -> dict[str, Any]:
    comparison = svc.compare(intent_id)
    return {
        "intent": comparison.intent,
        "comparison": comparison,
        "profile_fields": _profile_fields(session),
        "form": _edit_form(comparison.intent),
        "feature_rows": range(MAX_FEATURE_ROWS),
    } | _helpers()


async def _detail(
    request: Request,
    session: OwnerSession,
    intent_id: str,
    *,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    svc = intents_of(request, session)
    ctx, error = await _attempt(lambda: _detail_context(session, svc, intent_id))
    if error is not None:
        return render(
            request, "not_found.html", {"message": error.message}, session=session, status=error.status
        )
    ctx["done"] = DONE.get(request.query_params.get("done") or "")
    ctx |= extra or {}
    return render(request, "intent.html", ctx, session=session, status=status)


@router.get("/intents/{intent_id}")
async def intent_page(intent_id: str, request: Request, session: Page) -> Response:
    return await _detail(request, session, intent_id)


async def _action(
    request: Request,
    session: OwnerSession,
    intent_id: str,
    action: Callable[[IntentService, FormData], Any],
    done: str,
) -> Response:
    form = await read_form(request)
    svc = intents_of(request, session)
    try:
        await run_in_threadpool(svc.get, intent_id)
    except OpenVRMError as exc:
        err = _page_error(exc)
        return render(request, "not_found.html", {"message": err.message}, session=session, status=err.status)
    _result, error = await _attempt(lambda: action(svc, form))
    if error is None:
        return see_other(f"/intents/{intent_id}?done={done}")
    extra: dict[str, Any] = {"error": error.message[:1].upper() + error.message[1:]}
    if done == "edited":
        extra["form"] = _form_of(form)
    return await _detail(request, session, intent_id, extra=extra, status=error.status)


@router.post("/intents/{intent_id}/edit")
async def edit_submit(intent_id: str, request: Request, session: Page) -> Response:
    def run(svc: IntentService, form: FormData) -> Any:
        fields = _fields_of(form)
        return svc.edit(
            intent_id,
            category_id=text_field(form, "category"),
            clear_price=fields["price"] is None,
            clear_contract_months=fields["contract_months_max"] is None,
            **fields,
        )

    return await _action(request, session, intent_id, run, "edited")


@router.post("/intents/{intent_id}/publish")
async def publish_submit(intent_id: str, request: Request, session: Page) -> Response:
    return await _action(request, session, intent_id, lambda svc, _f: svc.publish(intent_id), "published")


@router.post("/intents/{intent_id}/fetch")
async def fetch_submit(intent_id: str, request: Request, session: Page) -> Response:
    return await _action(request, session, intent_id, lambda svc, _f: svc.fetch(intent_id), "fetched")


@router.post("/intents/{intent_id}/accept")
async def accept_submit(intent_id: str, request: Request, session: Page) -> Response:
    base = str(request.base_url).rstrip("/")

    def run(svc: IntentService, form: FormData) -> Any:
        offer = text_field(form, "offer")
        if not offer:
            raise PageError("choose the offer to accept")
        fields = _list(form, "fields")
        if len(fields) > 20:
            raise PageError("grant at most 20 fields at once")
        return svc.accept(intent_id, offer.strip(), agent_base_url=base, fields=fields)

    return await _action(request, session, intent_id, run, "accepted")


@router.post("/intents/{intent_id}/withdraw")
async def withdraw_submit(intent_id: str, request: Request, session: Page) -> Response:
    return await _action(request, session, intent_id, lambda svc, _f: svc.withdraw(intent_id), "withdrawn")


@router.post("/intents/{intent_id}/mute")
async def mute_submit(intent_id: str, request: Request, session: Page) -> Response:
    def run(svc: IntentService, form: FormData) -> Any:
        return svc.set_muted(intent_id, text_field(form, "muted") != "0")

    form = await read_form(request)
    done = "unmuted" if text_field(form, "muted") == "0" else "muted"
    return await _action(request, session, intent_id, run, done)
