"""Owner API for the relationship mailbox (``/api/v1/mail/...``): the same actions as ``vrm mail``.

The gateway's settings (the password of the downstream server is never sent back, only whether one is
set), one alias per vendor relationship (create, enable or disable, rules, delete), the filed messages
with their authentication results and leak verdicts ("this sender is the vendor" clears a leak), and
writing to a vendor as an alias. Reading messages first files what the gateway received while the vault
was locked, so new mail shows at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from openvrm.errors import InvalidValue
from openvrm.mail.routing import Downstream, GatewayConfig
from openvrm.mail.service import MailService
from openvrm.server.problems import problem_responses
from openvrm.server.security import Principal, owner
from openvrm.vault.core import UnlockedVault

router = APIRouter(prefix="/api/v1/mail", tags=["mailbox"], responses=problem_responses(401, 404, 409, 422))
Owner = Annotated[Principal, Depends(owner)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DownstreamIn(_In):
    host: str = Field(min_length=1, max_length=253, description="your provider's SMTP server, or a local MTA")
    port: int = Field(587, ge=1, le=65535)
    tls: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = Field(None, max_length=254)
    password: str | None = Field(
        None, max_length=1000, description="omit to keep the saved password (same host and login)"
    )
    clear_password: bool = False
    validate_certs: bool = True


class GatewayIn(_In):
    domains: list[str] = Field(min_length=1, max_length=10, description="the alias domains, first is default")
    forward_to: str = Field(min_length=3, max_length=254, description="your real mailbox")
    deliver: Literal["forward", "vault"] = "forward"
    downstream: DownstreamIn | None = Field(
        None, description="omit to use the SMTP server of your mail settings (if any)"
    )
    max_message_bytes: int | None = Field(None, ge=1024, le=50 * 1024 * 1024)
    max_recipients: int | None = Field(None, ge=1, le=100)


class AliasIn(_In):
    vendor_id: str = Field(min_length=1, max_length=64)
    style: Literal["vendor", "words"] = "vendor"
    domain: str | None = Field(None, max_length=253)
    note: str | None = Field(None, max_length=200)


class AliasEdit(_In):
    enabled: bool | None = None
    mode: Literal["forward_all", "transactional_only", "mute_promotions"] | None = None
    deliver: Literal["forward", "vault"] | None = None


class SendIn(_In):
    alias_id: str = Field(min_length=1, max_length=64)
    to: str = Field(min_length=3, max_length=254)
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field("", max_length=200_000)


def gateway_json(cfg: GatewayConfig) -> dict[str, Any]:
    """The settings as shown: the downstream password replaced by ``password_set``."""
    d = cfg.to_json()
    if cfg.downstream is not None:
        ds = dict(d["downstream"])
        ds.pop("password", None)
        d["downstream"] = ds | {"password_set": bool(cfg.downstream.password)}
    return d


def _downstream(uv: UnlockedVault, svc: MailService, body: DownstreamIn) -> Downstream:
    password = body.password
    if password is None and not body.clear_password:
        current = svc.config()
        saved = current.downstream if current else None
        if saved is not None and saved.host == body.host and saved.username == body.username:
            password = saved.password
    return Downstream(
        host=body.host.strip(),
        port=body.port,
        tls=body.tls,
        username=body.username or None,
        password=password or None,
        validate_certs=body.validate_certs,
    )


# -- the gateway's settings ------------------------------------------------------------------------


@router.get("/gateway", summary="The gateway's settings (never the downstream password)")
async def get_gateway(principal: Owner) -> dict[str, Any]:
    svc = MailService(principal.unlocked)
    cfg = await run_in_threadpool(svc.routes.require_config)
    return gateway_json(cfg)


@router.put("/gateway", summary="Save the gateway's settings, sealed by the mail key")
async def put_gateway(body: GatewayIn, principal: Owner) -> dict[str, Any]:
    uv = principal.unlocked
    svc = MailService(uv)

    def save() -> GatewayConfig:
        downstream = _downstream(uv, svc, body.downstream) if body.downstream else None
        return svc.setup(
            domains=body.domains,
            forward_to=body.forward_to,
            deliver=body.deliver,
            downstream=downstream,
            max_message_bytes=body.max_message_bytes,
            max_recipients=body.max_recipients,
        )

    return gateway_json(await run_in_threadpool(save))


# -- aliases ---------------------------------------------------------------------------------------


@router.get("/aliases", summary="Your aliases, optionally one vendor's")
async def list_aliases(
    principal: Owner, vendor_id: Annotated[str | None, Query(max_length=64)] = None
) -> list[dict[str, Any]]:
    svc = MailService(principal.unlocked)
    return [a.to_json() for a in await run_in_threadpool(lambda: svc.aliases(vendor_id=vendor_id))]


@router.post("/aliases", status_code=201, summary="Make a new address for one vendor")
async def create_alias(body: AliasIn, principal: Owner) -> dict[str, Any]:
    svc = MailService(principal.unlocked)
    alias = await run_in_threadpool(
        lambda: svc.create_alias(body.vendor_id, style=body.style, domain=body.domain, note=body.note or None)
    )
    return alias.to_json()


@router.get("/aliases/{alias_id}", summary="One alias")
async def show_alias(alias_id: str, principal: Owner) -> dict[str, Any]:
    svc = MailService(principal.unlocked)
    return (await run_in_threadpool(svc.alias, alias_id)).to_json()


@router.patch("/aliases/{alias_id}", summary="Enable or disable an alias, or change its rules")
async def edit_alias(alias_id: str, body: AliasEdit, principal: Owner) -> dict[str, Any]:
    svc = MailService(principal.unlocked)

    def edit() -> dict[str, Any]:
        if body.enabled is None and body.mode is None and body.deliver is None:
            raise InvalidValue("say what to change: enabled, mode and/or deliver")
        svc.alias(alias_id)  # a 404 before any change
        if body.mode is not None or body.deliver is not None:
            svc.set_rules(alias_id=alias_id, mode=body.mode, deliver=body.deliver)
        if body.enabled is not None:
            svc.set_enabled(alias_id, body.enabled)
        return svc.alias(alias_id).to_json()

    return await run_in_threadpool(edit)


@router.delete("/aliases/{alias_id}", status_code=204, summary="Delete an alias: mail to it is refused")
async def delete_alias(alias_id: str, principal: Owner) -> None:
    svc = MailService(principal.unlocked)
    await run_in_threadpool(svc.delete_alias, alias_id)


# -- messages --------------------------------------------------------------------------------------


@router.get("/messages", summary="Filed messages, newest first (files the gateway's inbox first)")
async def list_messages(
    principal: Owner,
    vendor_id: Annotated[str | None, Query(max_length=64)] = None,
    alias_id: Annotated[str | None, Query(max_length=64)] = None,
    leaks: bool = False,
) -> list[dict[str, Any]]:
    svc = MailService(principal.unlocked)

    def run() -> list[dict[str, Any]]:
        svc.file_inbox()
        return [m.to_json() for m in svc.messages(vendor_id=vendor_id, alias_id=alias_id, leaks_only=leaks)]

    return await run_in_threadpool(run)


@router.get("/messages/{message_id}", summary="One message: summary, authentication, leak verdict, text")
async def show_message(message_id: str, principal: Owner) -> dict[str, Any]:
    svc = MailService(principal.unlocked)

    def run() -> dict[str, Any]:
        svc.file_inbox()
        record = svc.message(message_id)
        return record.to_json() | {"body": svc.body(message_id) if record.blob else None}

    return await run_in_threadpool(run)


@router.post(
    "/messages/{message_id}/not-a-leak",
    summary="This sender is the vendor: its domain joins the vendor's, like messages are cleared",
)
async def not_a_leak(message_id: str, principal: Owner) -> dict[str, Any]:
    svc = MailService(principal.unlocked)
    return (await run_in_threadpool(svc.clear_leak, message_id)).to_json()


@router.post("/send", status_code=202, summary="Write to a vendor as an alias (queued in the spool)")
async def send(body: SendIn, principal: Owner) -> dict[str, Any]:
    svc = MailService(principal.unlocked)
    entry = await run_in_threadpool(
        lambda: svc.send(body.alias_id, to=body.to, subject=body.subject, body=body.body)
    )
    return entry.to_json()


__all__ = ["gateway_json", "router"]
