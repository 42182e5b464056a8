"""Owner API for intents (``/api/v1/intents``): the same actions as ``vrm intents``.

Write and edit drafts, publish to a relay (default: ``$OPENVRM_RELAY_URL``, else this server's own
``/relay``), fetch offers, compare them ranked with their score breakdown and savings, accept one (connect
to the vendor and grant only the chosen fields), withdraw, mute and unmute standing interests.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from openvrm.intents.service import IntentService, parse_features
from openvrm.intents.taxonomy import categories
from openvrm.net import policy_for
from openvrm.server.problems import problem_responses
from openvrm.server.security import Principal, owner
from openvrm.server.state import state_of

router = APIRouter(prefix="/api/v1", tags=["intents"], responses=problem_responses(401, 404, 409, 422))
Owner = Annotated[Principal, Depends(owner)]


def relay_url_for(request: Request) -> str:
    """``$OPENVRM_RELAY_URL``, else the relay mounted in this server."""
    return os.environ.get("OPENVRM_RELAY_URL") or str(request.base_url).rstrip("/") + "/relay"


def intents_for(request: Request, principal: Principal) -> IntentService:
    return IntentService(
        principal.unlocked, policy=policy_for(state_of(request).settings), relay_url=relay_url_for(request)
    )


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceIn(_In):
    amount: str = Field(max_length=30)
    currency: str = Field("EUR", max_length=3)
    per: str = Field("month", max_length=5)


class FeatureIn(_In):
    name: str = Field(max_length=60)
    value: str = Field("", max_length=200)
    required: bool = False


class WhereIn(_In):
    country: str | None = Field(None, max_length=2)
    region: str | None = Field(None, max_length=100)
    postal_code: str | None = Field(None, max_length=20)
    radius_km: int | None = Field(None, ge=1, le=1000)


class IntentIn(_In):
    category: str = Field(max_length=80)
    text: str = Field("", max_length=2000)
    kind: str = Field("rfp", pattern="^(rfp|interest)$")
    price_max: PriceIn | None = None
    features: list[FeatureIn] = Field(default_factory=list, max_length=20)
    quantity: int | None = Field(None, ge=1, le=100000)
    contract_months_max: int | None = Field(None, ge=0, le=120)
    where: WhereIn | None = None
    terms: list[str] | None = Field(None, max_length=5)
    expires_in_days: int | None = Field(None, ge=1, le=366)


class IntentEdit(_In):
    category: str | None = Field(None, max_length=80)
    text: str | None = Field(None, max_length=2000)
    price_max: PriceIn | None = None
    clear_price_max: bool = False
    features: list[FeatureIn] | None = Field(None, max_length=20)
    quantity: int | None = Field(None, ge=1, le=100000)
    contract_months_max: int | None = Field(None, ge=0, le=120)
    clear_contract_months_max: bool = False
    where: WhereIn | None = None
    terms: list[str] | None = Field(None, max_length=5)
    expires_in_days: int | None = Field(None, ge=1, le=366)


class PublishIn(_In):
    relay: str | None = Field(None, max_length=2048)


class AcceptIn(_In):
    offer: str = Field(max_length=64)
    fields: list[str] = Field(default_factory=list, max_length=20)


class MuteIn(_In):
    muted: bool = True


@router.get("/intents/categories", summary="The taxonomy of intent categories")
async def list_categories() -> list[dict[str, Any]]:
    return [{"id": c.id, "label": c.label, "aliases": list(c.aliases)} for c in categories().values()]


@router.get("/intents", summary="Your intents and standing interests, newest first")
async def list_intents(request: Request, principal: Owner) -> list[dict[str, Any]]:
    svc = intents_for(request, principal)
    return [i.to_json() for i in await run_in_threadpool(svc.list)]


@router.post("/intents", status_code=201, summary="Write a draft intent (nothing is sent yet)")
async def create_intent(body: IntentIn, request: Request, principal: Owner) -> dict[str, Any]:
    svc = intents_for(request, principal)
    record = await run_in_threadpool(
        lambda: svc.create(
            body.category,
            body.text,
            kind=body.kind,
            price=body.price_max.model_dump() if body.price_max else None,
            features=[f.model_dump() for f in body.features],
            quantity=body.quantity,
            contract_months_max=body.contract_months_max,
            where=body.where.model_dump(exclude_none=True) if body.where else None,
            terms=body.terms,
            expires_in_days=body.expires_in_days,
        )
    )
    return record.to_json()


@router.get("/intents/{intent_id}", summary="An intent and its offers side by side, ranked")
async def show_intent(intent_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    svc = intents_for(request, principal)
    return (await run_in_threadpool(svc.compare, intent_id)).to_json()


@router.patch("/intents/{intent_id}", summary="Edit a draft")
async def edit_intent(intent_id: str, body: IntentEdit, request: Request, principal: Owner) -> dict[str, Any]:
    svc = intents_for(request, principal)
    record = await run_in_threadpool(
        lambda: svc.edit(
            intent_id,
            category_id=body.category,
            text=body.text,
            price=body.price_max.model_dump() if body.price_max else None,
            clear_price=body.clear_price_max,
            features=[f.model_dump() for f in body.features] if body.features is not None else None,
            quantity=body.quantity,
            contract_months_max=body.contract_months_max,
            clear_contract_months=body.clear_contract_months_max,
            where=body.where.model_dump(exclude_none=True) if body.where else None,
            terms=body.terms,
            expires_in_days=body.expires_in_days,
        )
    )
    return record.to_json()


@router.post("/intents/{intent_id}/publish", summary="Sign with the intent's own key and post to the relay")
async def publish_intent(
    intent_id: str, request: Request, principal: Owner, body: PublishIn | None = None
) -> dict[str, Any]:
    svc = intents_for(request, principal)
    relay = body.relay if body else None
    return (await run_in_threadpool(lambda: svc.publish(intent_id, relay_url=relay))).to_json()


@router.post("/intents/{intent_id}/offers", summary="Fetch new offers from the relay")
async def fetch_offers(intent_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    svc = intents_for(request, principal)
    new = await run_in_threadpool(svc.fetch, intent_id)
    return {"new": new} | (await run_in_threadpool(svc.compare, intent_id)).to_json()


@router.post("/intents/{intent_id}/accept", summary="Accept an offer: connect and grant the chosen fields")
async def accept_offer(intent_id: str, body: AcceptIn, request: Request, principal: Owner) -> dict[str, Any]:
    svc = intents_for(request, principal)
    base = str(request.base_url).rstrip("/")
    result = await run_in_threadpool(
        lambda: svc.accept(intent_id, body.offer, agent_base_url=base, fields=body.fields)
    )
    return result.to_json()


@router.post("/intents/{intent_id}/withdraw", summary="Withdraw the intent (a signed decision)")
async def withdraw_intent(intent_id: str, request: Request, principal: Owner) -> dict[str, Any]:
    svc = intents_for(request, principal)
    return (await run_in_threadpool(svc.withdraw, intent_id)).to_json()


@router.post("/intents/{intent_id}/mute", summary="Mute or unmute a standing interest")
async def mute_intent(intent_id: str, body: MuteIn, request: Request, principal: Owner) -> dict[str, Any]:
    svc = intents_for(request, principal)
    return (await run_in_threadpool(svc.set_muted, intent_id, body.muted)).to_json()


__all__ = ["intents_for", "parse_features", "relay_url_for", "router"]
