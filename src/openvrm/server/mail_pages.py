"""The pages of the relationship mailbox: one address per vendor, the mail it received, and leaks.

``/mailbox`` lists the aliases (create one for a vendor, enable, disable, delete, choose its rules) and
the filed messages, newest first, with a flag on each that was written by someone other than the vendor;
``/mailbox/messages/{id}`` shows one message: its summary, SPF/DKIM/DMARC results, the leak verdict (with
"This sender is the vendor" to clear it), the text if the message was kept, and the bills imported from
it. Both pages file what the gateway received while the vault was locked before showing anything.

(``/mail`` is the outbox's SMTP settings page, hence ``/mailbox``.) Same rules as
:mod:`openvrm.server.agent_pages`: plain forms, the CSRF token on every change, post then redirect, a
refused form re-rendered with its message and a 4xx status. Message text is shown as escaped text, never
as HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from openvrm.mail.routing import DELIVERIES, MODES
from openvrm.mail.service import STYLES, MailService
from openvrm.server.agent_pages import PageError, _attempt, _values, when
from openvrm.server.forms import read_form, text_field
from openvrm.server.pages import render, see_other
from openvrm.server.security import page_owner
from openvrm.server.sessions import OwnerSession
from openvrm.vendors.service import VendorService

router = APIRouter(include_in_schema=False)
Page = Annotated[OwnerSession, Depends(page_owner)]
DONE = {
    "setup": "Gateway settings saved.",
    "created": "Alias created. Give this address to the vendor.",
    "enabled": "Alias enabled: it accepts mail again.",
    "disabled": "Alias disabled: mail to it is refused.",
    "deleted": "Alias deleted: mail to it is refused.",
    "rules": "Rules saved.",
    "cleared": "Noted: this sender is the vendor. Its domain joins the vendor's domains.",
    "sent": "Queued: the gateway sends it as the alias (see `vrm mail queue`).",
}
MODE_LABELS = {
    "forward_all": "Forward everything",
    "transactional_only": "Only transactional mail (bills, receipts)",
    "mute_promotions": "Everything but promotions",
}
DELIVERY_LABELS = {"forward": "Forward to my mailbox", "vault": "Keep in the vault only"}
STYLE_LABELS = {"vendor": "Vendor name (shop.x7k2@…)", "words": "Random words (amber.fox.42@…)"}


def _helpers() -> dict[str, Any]:
    return {
        "when": when,
        "modes": [(m, MODE_LABELS.get(m, m)) for m in MODES],
        "deliveries": [(d, DELIVERY_LABELS.get(d, d)) for d in DELIVERIES],
        "styles": [(s, STYLE_LABELS.get(s, s)) for s in STYLES],
    }


def _message_view(m: Any, vendor_names: dict[str, str]) -> dict[str, Any]:
    d: dict[str, Any] = m.to_json()
    d["vendor_name"] = vendor_names.get(m.vendor_id or "", "")
    d["received"] = m.received_at
    return d


def _list_context(session: OwnerSession) -> dict[str, Any]:
    uv = session.unlocked
    svc = MailService(uv)
    filed = svc.file_inbox()
    vendors = sorted(VendorService(uv).list(), key=lambda v: v.name.lower())
    names = {v.id: v.name for v in vendors}
    cfg = svc.config()
    return {
        "config": cfg,
        "vendors": vendors,
        "aliases": sorted(svc.aliases(), key=lambda a: (a.vendor_name.lower(), a.created_at)),
        "messages": [_message_view(m, names) for m in svc.messages()],
        "filed": filed,
        "form": {},
        "setup_form": {
            "domains": ", ".join(cfg.domains) if cfg else "",
            "forward_to": cfg.forward_to if cfg else "",
            "deliver": cfg.deliver if cfg else "forward",
        },
    } | _helpers()


async def _list_page(
    request: Request, session: OwnerSession, *, extra: dict[str, Any] | None = None, status: int = 200
) -> Response:
    ctx = await run_in_threadpool(_list_context, session)
    ctx["done"] = DONE.get(request.query_params.get("done") or "")
    q = request.query_params
    subject = (q.get("reply_subject") or "")[:280]
    if subject and not subject.lower().startswith("re:"):
        subject = "Re: " + subject
    ctx["send_form"] = {"alias_id": q.get("reply_alias"), "to": q.get("reply_to"), "subject": subject}
    ctx |= extra or {}
    return render(request, "mailbox.html", ctx, session=session, status=status)


@router.get("/mailbox")
async def mailbox_page(request: Request, session: Page) -> Response:
    return await _list_page(request, session)


async def _change(
    request: Request,
    session: OwnerSession,
    action: Callable[[MailService, FormData], Any],
    done: str,
    *,
    form_key: str = "form",
) -> Response:
    form = await read_form(request)
    svc = MailService(session.unlocked)
    _result, error = await _attempt(lambda: action(svc, form))
    if error is None:
        vendor_id = text_field(form, "vendor_id")
        if text_field(form, "back") == "vendor" and vendor_id:
            return see_other(f"/vendors/{quote(vendor_id.strip(), safe='')}?alias=1")
        return see_other(f"/mailbox?done={done}")
    message = error.message[:1].upper() + error.message[1:]
    return await _list_page(
        request, session, extra={"error": message, form_key: _values(form)}, status=error.status
    )


@router.post("/mailbox/gateway")
async def gateway_submit(request: Request, session: Page) -> Response:
    def run(svc: MailService, form: FormData) -> Any:
        domains = [d.strip() for d in (text_field(form, "domains") or "").replace(",", " ").split()]
        forward_to = (text_field(form, "forward_to") or "").strip()
        if not domains or not forward_to:
            raise PageError("give at least one alias domain and your real address")
        return svc.setup(
            domains=domains, forward_to=forward_to, deliver=text_field(form, "deliver") or "forward"
        )

    return await _change(request, session, run, "setup", form_key="setup_form")


@router.post("/mailbox/aliases")
async def alias_create(request: Request, session: Page) -> Response:
    def run(svc: MailService, form: FormData) -> Any:
        vendor_id = (text_field(form, "vendor_id") or "").strip()
        if not vendor_id:
            raise PageError("choose the vendor this address is for")
        note = (text_field(form, "note") or "").strip() or None
        return svc.create_alias(vendor_id, style=text_field(form, "style") or "vendor", note=note)

    return await _change(request, session, run, "created")


@router.post("/mailbox/aliases/{alias_id}/enable")
async def alias_enable(alias_id: str, request: Request, session: Page) -> Response:
    return await _change(request, session, lambda svc, _f: svc.set_enabled(alias_id, True), "enabled")


@router.post("/mailbox/aliases/{alias_id}/disable")
async def alias_disable(alias_id: str, request: Request, session: Page) -> Response:
    return await _change(request, session, lambda svc, _f: svc.set_enabled(alias_id, False), "disabled")


@router.post("/mailbox/aliases/{alias_id}/delete")
async def alias_delete(alias_id: str, request: Request, session: Page) -> Response:
    return await _change(request, session, lambda svc, _f: svc.delete_alias(alias_id), "deleted")


@router.post("/mailbox/aliases/{alias_id}/rules")
async def alias_rules(alias_id: str, request: Request, session: Page) -> Response:
    def run(svc: MailService, form: FormData) -> Any:
        return svc.set_rules(
            alias_id=alias_id, mode=text_field(form, "mode"), deliver=text_field(form, "deliver")
        )

    return await _change(request, session, run, "rules")


@router.post("/mailbox/send")
async def send_submit(request: Request, session: Page) -> Response:
    def run(svc: MailService, form: FormData) -> Any:
        return svc.send(
            (text_field(form, "alias_id") or "").strip(),
            to=(text_field(form, "to") or "").strip(),
            subject=text_field(form, "subject") or "",
            body=text_field(form, "body") or "",
        )

    return await _change(request, session, run, "sent", form_key="send_form")


# -- one message -------------------------------------------------------------------------------------


def _message_context(session: OwnerSession, message_id: str) -> dict[str, Any]:
    uv = session.unlocked
    svc = MailService(uv)
    svc.file_inbox()
    record = svc.message(message_id)
    names = {v.id: v.name for v in VendorService(uv).list()}
    return {
        "message": _message_view(record, names),
        "leaked": record.leaked,
        "body": svc.body(message_id) if record.blob else None,
    } | _helpers()


@router.get("/mailbox/messages/{message_id}")
async def message_page(message_id: str, request: Request, session: Page) -> Response:
    ctx, error = await _attempt(lambda: _message_context(session, message_id))
    if error is not None:
        return render(
            request, "not_found.html", {"message": error.message}, session=session, status=error.status
        )
    ctx["done"] = DONE.get(request.query_params.get("done") or "")
    return render(request, "mailbox_message.html", ctx, session=session)


@router.post("/mailbox/messages/{message_id}/not-a-leak")
async def not_a_leak_submit(message_id: str, request: Request, session: Page) -> Response:
    await read_form(request)
    svc = MailService(session.unlocked)
    _result, error = await _attempt(lambda: svc.clear_leak(message_id))
    if error is None:
        return see_other(f"/mailbox/messages/{message_id}?done=cleared")
    ctx, err2 = await _attempt(lambda: _message_context(session, message_id))
    if err2 is not None:
        return render(
            request, "not_found.html", {"message": err2.message}, session=session, status=err2.status
        )
    ctx["error"] = error.message[:1].upper() + error.message[1:]
    return render(request, "mailbox_message.html", ctx, session=session, status=error.status)
