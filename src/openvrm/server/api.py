"""The owner API under ``/api/v1``: parse the request, call a core service, render JSON.

Authentication is a session cookie (plus the CSRF header on changes) or ``Authorization: Bearer``
with an API token. Every error is an RFC 9457 problem document.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.status import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from openvrm import __version__
from openvrm.documents.service import DocumentService
from openvrm.profile.fields import FieldValue
from openvrm.profile.service import ProfileService
from openvrm.server.problems import problem_responses
from openvrm.server.security import (
    Principal,
    clear_session_cookie,
    log_in,
    log_out,
    owner,
    owner_session,
    set_session_cookie,
)
from openvrm.server.state import state_of
from openvrm.server.uploads import store_upload, upload_form
from openvrm.sharing.service import SharingService
from openvrm.summary import vault_summary
from openvrm.vault import tokens
from openvrm.vendors.service import VendorService

router = APIRouter(
    prefix="/api/v1",
    responses=problem_responses(401, 403, 404, 422),
)
Owner = Annotated[Principal, Depends(owner)]
OwnerSession = Annotated[Principal, Depends(owner_session)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_Body):
    passphrase: str = Field(min_length=1, max_length=1024, description="the vault passphrase")


class SessionOut(BaseModel):
    csrf_token: str = Field(description="send this in the X-CSRF-Token header on every change")


class FieldValueIn(_Body):
    value: str | dict[str, str] = Field(
        description="text, or for an address field an object of street, extra, postal_code, city, "
        "region, country"
    )


class VendorIn(_Body):
    name: str = Field(min_length=1, max_length=200)
    domains: list[str] = Field(default_factory=list, max_length=50)
    country: str | None = Field(default=None, description="ISO 3166 two-letter code")
    categories: list[str] = Field(default_factory=list, max_length=50)
    website: str | None = None
    notes: str = Field(default="", max_length=10000)


class RelationshipIn(_Body):
    status: str = "active"
    stance: str = "neutral"
    customer_number: str | None = None
    account: str | None = None
    since: date | None = None
    tags: list[str] = Field(default_factory=list, max_length=50)
    notes: str = Field(default="", max_length=10000)


class TokenIn(_Body):
    name: str = Field(min_length=1, max_length=100, description="what the token is for")


class HealthOut(BaseModel):
    status: str
    database: str
    vault: str
    version: str


# -- session ------------------------------------------------------------------------------------


@router.post("/session", summary="Log in: unlock the vault and start a session", response_model=SessionOut)
def create_session(body: LoginIn, request: Request, response: Response) -> SessionOut:
    session = log_in(request, body.passphrase)
    set_session_cookie(response, request, session)
    return SessionOut(csrf_token=session.csrf_token)


@router.delete(
    "/session",
    summary="Log out: end the session and lock its vault",
    status_code=HTTP_204_NO_CONTENT,
    response_class=Response,
)
def delete_session(request: Request, principal: OwnerSession) -> Response:
    log_out(request)
    response = Response(status_code=HTTP_204_NO_CONTENT)
    clear_session_cookie(response, request)
    return response


# -- tokens -------------------------------------------------------------------------------------


@router.get("/tokens", summary="List API tokens (never their secrets)")
def list_tokens(principal: OwnerSession) -> dict[str, Any]:
    return {"tokens": [t.to_json() for t in tokens.list_tokens(principal.unlocked, kind="api")]}


@router.post("/tokens", summary="Create an API token; the token is shown once", status_code=HTTP_201_CREATED)
def create_token(body: TokenIn, principal: OwnerSession) -> dict[str, Any]:
    token, info = tokens.create(principal.unlocked, body.name, kind="api")
    return {"token": token, **info.to_json()}


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke an API token",
    status_code=HTTP_204_NO_CONTENT,
    response_class=Response,
)
def revoke_token(token_id: str, principal: OwnerSession) -> Response:
    tokens.revoke(principal.unlocked.vault, token_id, kind="api")
    return Response(status_code=HTTP_204_NO_CONTENT)


# -- summary and profile ------------------------------------------------------------------------


@router.get("/summary", summary="Counts of what the vault holds")
def summary(principal: Owner) -> dict[str, int]:
    return vault_summary(principal.unlocked)


@router.get("/profile", summary="The current profile: every field and its value")
def get_profile(principal: Owner) -> dict[str, dict[str, FieldValue]]:
    return {"fields": ProfileService(principal.unlocked).current()}


@router.get("/profile/history", summary="Every change to the profile, or to one field, oldest first")
def profile_history(
    principal: Owner,
    field: Annotated[str | None, Query(max_length=100, description="a field key such as email")] = None,
) -> dict[str, Any]:
    return {"changes": [c.to_json() for c in ProfileService(principal.unlocked).history(field)]}


@router.put("/profile/{field}", summary="Set a profile field (the old value stays in the history)")
def set_profile_field(field: str, body: FieldValueIn, principal: Owner) -> dict[str, Any]:
    return ProfileService(principal.unlocked).set(field, body.value).to_json()


@router.delete("/profile/{field}", summary="Remove a profile field (recorded in the history)")
def unset_profile_field(field: str, principal: Owner) -> dict[str, Any]:
    return ProfileService(principal.unlocked).unset(field).to_json()


# -- vendors and relationships ------------------------------------------------------------------


@router.get("/vendors", summary="List vendors, by name")
def list_vendors(principal: Owner) -> dict[str, Any]:
    return {"vendors": [v.to_json() for v in VendorService(principal.unlocked).list()]}


@router.post("/vendors", summary="Add a vendor", status_code=HTTP_201_CREATED)
def add_vendor(body: VendorIn, principal: Owner) -> dict[str, Any]:
    return VendorService(principal.unlocked).add(**body.model_dump()).to_json()


@router.get("/vendors/{vendor_id}", summary="One vendor and its relationships")
def get_vendor(vendor_id: str, principal: Owner) -> dict[str, Any]:
    service = VendorService(principal.unlocked)
    vendor = service.get(vendor_id)
    return {**vendor.to_json(), "relationships": [r.to_json() for r in service.relationships(vendor.id)]}


@router.post(
    "/vendors/{vendor_id}/relationships",
    summary="Start a relationship with a vendor",
    status_code=HTTP_201_CREATED,
)
def add_relationship(vendor_id: str, body: RelationshipIn, principal: Owner) -> dict[str, Any]:
    return VendorService(principal.unlocked).relate(vendor_id, **body.model_dump()).to_json()


@router.get("/relationships", summary="List relationships, optionally of one vendor")
def list_relationships(
    principal: Owner, vendor_id: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    rels = VendorService(principal.unlocked).relationships(vendor_id)
    return {"relationships": [r.to_json() for r in rels]}


# -- documents ----------------------------------------------------------------------------------


@router.get("/documents", summary="List documents, optionally of one vendor")
def list_documents(
    principal: Owner, vendor_id: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    return {"documents": [d.to_json() for d in DocumentService(principal.unlocked).list(vendor_id=vendor_id)]}


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "vendor_id": {"type": "string"},
                        "kind": {
                            "type": "string",
                            "enum": [
                                "invoice",
                                "receipt",
                                "contract",
                                "letter",
                                "warranty",
                                "statement",
                                "other",
                            ],
                        },
                        "title": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/documents",
    summary="Upload a document (multipart); files above the size limit get 413",
    status_code=HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses=problem_responses(413),
)
async def upload_document(request: Request, principal: Owner) -> dict[str, Any]:
    result = await store_upload(request, principal.unlocked, await upload_form(request))
    return {"document": result.document.to_json(), "duplicate_of": result.duplicate_of}


@router.get("/documents/{document_id}", summary="One document's description")
def get_document(document_id: str, principal: Owner) -> dict[str, Any]:
    return DocumentService(principal.unlocked).get(document_id).to_json()


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / RFC 8187)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "document"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get(
    "/documents/{document_id}/content",
    summary="Download a document's file (always as an attachment)",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the file"}},
)
def document_content(document_id: str, principal: Owner) -> Response:
    doc, data = DocumentService(principal.unlocked).content(document_id)
    return Response(
        data,
        media_type=doc.media_type,
        headers={
            "Content-Disposition": content_disposition(doc.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


# -- shares and inbox ---------------------------------------------------------------------------


@router.get("/shares", summary="Profile fields shared with relationships")
def list_shares(principal: Owner) -> dict[str, Any]:
    return {"shares": [s.to_json() for s in SharingService(principal.unlocked).list()]}


@router.get("/inbox", summary="Items received while the vault was locked")
def list_inbox(principal: Owner) -> dict[str, Any]:
    items = principal.unlocked.inbox()
    return {"items": [{"id": i.id, "received_at": i.received_at.isoformat(), "item": i.item} for i in items]}


# -- health (no prefix; mounted by the app) -------------------------------------------------------

health_router = APIRouter()


@health_router.get(
    "/healthz",
    summary="Liveness: database reachable, vault present and locked or not",
    response_model=HealthOut,
    responses={503: {"model": HealthOut}},
)
def healthz(request: Request, response: Response) -> HealthOut:
    database, vault = state_of(request).health()
    if database == "error":
        response.status_code = 503
    return HealthOut(
        status="ok" if database != "error" else "degraded",
        database=database,
        vault=vault,
        version=__version__,
    )
