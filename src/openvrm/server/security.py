"""Who is asking: owner sessions (cookie + CSRF token) and API tokens (``Authorization: Bearer``).

* A cookie-authenticated request that changes something (any method but GET, HEAD, OPTIONS) must carry
  the session's CSRF token in the ``X-CSRF-Token`` header (htmx sends it from ``hx-headers`` on
  ``<body>``) or, for a plain HTML form, in the ``csrf_token`` field. Tokens are compared in constant time.
* A bearer request unlocks the vault with an API token for that request only and locks it again after;
  it needs no CSRF token, since a browser never adds the header by itself.
* The login form is protected from login CSRF by a double-submit cookie: the form's hidden field must
  equal a random cookie set when the form was served.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import Response

from openvrm.crypto import constant_time_equal
from openvrm.errors import AuthError, WrongPassphrase
from openvrm.logs import get_logger, log_event
from openvrm.server.forms import UPLOAD_ROUTES, is_form, read_form, text_field
from openvrm.server.problems import ProblemError
from openvrm.server.sessions import ABSOLUTE_TIMEOUT, OwnerSession
from openvrm.server.state import ServerState, state_of
from openvrm.vault import tokens
from openvrm.vault.core import UnlockedVault

SESSION_COOKIE = "openvrm_session"
LOGIN_CSRF_COOKIE = "openvrm_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

log = get_logger("openvrm.server.auth")


@dataclass(frozen=True)
class Principal:
    """The caller of an API route: the unlocked vault, and whether it came from a session or a token."""

    unlocked: UnlockedVault
    via: Literal["session", "token"]
    session: OwnerSession | None = None


class LoginRequired(Exception):
    """A page was asked for without a live session: the handler redirects to /login."""


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, session: OwnerSession) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=int(ABSOLUTE_TIMEOUT),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def set_login_csrf_cookie(response: Response, request: Request, token: str) -> None:
    """Set the login form's double-submit cookie; the form's hidden field carries the same ``token``."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def login_csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    return bool(cookie and submitted) and constant_time_equal(cookie or "", submitted or "")


def log_in(request: Request, passphrase: str) -> OwnerSession:
    """Unlock the vault with the passphrase and start a session (blocking: Argon2id runs here).

    Throttled per client: after too many failures within the window, a 429 problem with Retry-After,
    before the passphrase is even tried.
    """
    state = state_of(request)
    client = client_key(request)
    wait = state.throttle.retry_after(client)
    if wait:
        log_event(log, "auth.login_throttled", retry_after=wait)
        raise ProblemError(
            429,
            "too-many-attempts",
            f"too many failed logins; wait {wait} seconds before trying again",
            title="Too many login attempts",
            headers={"Retry-After": str(wait)},
        )
    vault = state.require_vault()
    try:
        unlocked = vault.unlock(passphrase)
    except WrongPassphrase:
        state.throttle.failed(client)
        log_event(log, "auth.login_failed")
        raise
    state.throttle.succeeded(client)
    state.sessions.end(request.cookies.get(SESSION_COOKIE))
    session = state.sessions.create(unlocked)
    log_event(log, "auth.login")
    _file_inbox_later(state, unlocked)
    return session


def _file_inbox_later(state: ServerState, unlocked: UnlockedVault) -> None:
    """File protocol events and mail that arrived while the vault was locked, without holding up login."""
    from openvrm.agent.service import AgentService
    from openvrm.net import policy_for

    def run() -> None:
        try:
            agent = AgentService(unlocked, policy=policy_for(state.settings))
            filed, refused = agent.process_inbox()
            agent.deliver_pending()
            if filed or refused:
                log_event(log, "agent.inbox_filed", filed=filed, refused=refused)
        except Exception as exc:  # noqa: BLE001 - a background chore must not die silently
            log_event(log, "agent.inbox_failed", error=type(exc).__name__)
        try:
            from openvrm.mail.service import MailService

            mails = MailService(unlocked).file_inbox()
            if mails:
                log_event(log, "mail.inbox_filed", filed=mails)
        except Exception as exc:  # noqa: BLE001
            log_event(log, "mail.inbox_failed", error=type(exc).__name__)

    threading.Thread(target=run, name="openvrm-agent-inbox", daemon=True).start()


def log_out(request: Request) -> bool:
    ended = state_of(request).sessions.end(request.cookies.get(SESSION_COOKIE))
    if ended:
        log_event(log, "auth.logout")
    return ended


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise AuthError("use `Authorization: Bearer vrm_...` with an API token")
    return credentials.strip()


def authenticate(request: Request) -> Iterator[Principal]:
    """Resolve the caller (bearer token first, then the session cookie) or fail with 401."""
    token = _bearer(request)
    state = state_of(request)
    if token is not None:
        unlocked = tokens.unlock(state.require_vault(), token, kind="api")
        try:
            yield Principal(unlocked, "token")
        finally:
            unlocked.lock()
        return
    session = state.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise AuthError("log in first (POST /api/v1/session) or send an API token")
    yield Principal(session.unlocked, "session", session)


async def check_csrf(request: Request, session: OwnerSession) -> None:
    """Require the session's CSRF token on an unsafe, cookie-authenticated request."""
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and is_form(request):
        route = getattr(request.scope.get("route"), "path", None)
        limit = state_of(request).max_upload_bytes if route in UPLOAD_ROUTES else None
        submitted = text_field(await read_form(request, file_limit=limit), CSRF_FIELD)
    if not session.csrf_matches(submitted):
        log_event(log, "auth.csrf_rejected")
        raise ProblemError(
            403,
            "csrf-failed",
            f"this change needs the session's CSRF token in the {CSRF_HEADER} header",
            title="CSRF check failed",
        )


async def owner(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
    """The owner, by token or by session; unsafe session requests must pass the CSRF check."""
    if principal.session is not None:
        await check_csrf(request, principal.session)
    return principal


async def owner_session(principal: Principal = Depends(owner)) -> Principal:
    """Only a logged-in owner (not an API token): token management, logout."""
    if principal.session is None:
        raise ProblemError(403, "session-required", "this needs the owner's login session, not an API token")
    return principal


def page_session(request: Request) -> OwnerSession:
    session = state_of(request).sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired()
    return session


async def page_owner(request: Request, session: OwnerSession = Depends(page_session)) -> OwnerSession:
    """The owner of a page request; redirects to /login without a session, checks CSRF on changes."""
    await check_csrf(request, session)
    return session
