"""Outbound HTTP that cannot be pointed at us: the SSRF guard for every URL that comes from outside.

Vendors give us URLs (their ``/.well-known/vrm`` document, protocol endpoints, webhooks); fetch them only
through :func:`guarded_async_client` / :func:`guarded_client`, or :func:`fetch_json`. See the section
"Outbound requests (SSRF)" of docs/security.md.
"""

from __future__ import annotations

from openvrm.net.errors import FetchError, ResponseTooLarge, UnsafeUrl
from openvrm.net.policy import (
    IPAddress,
    ParsedTarget,
    UrlPolicy,
    address_refusal,
    check_addresses,
    check_url,
    policy_for,
)
from openvrm.net.transport import (
    USER_AGENT,
    AsyncGuardedBackend,
    AsyncResolver,
    GuardedAsyncTransport,
    GuardedBackend,
    GuardedTransport,
    Resolver,
    async_resolve_and_check,
    async_system_resolver,
    fetch_json,
    guarded_async_client,
    guarded_client,
    resolve_and_check,
    system_resolver,
)

__all__ = [
    "USER_AGENT",
    "AsyncGuardedBackend",
    "AsyncResolver",
    "FetchError",
    "GuardedAsyncTransport",
    "GuardedBackend",
    "GuardedTransport",
    "IPAddress",
    "ParsedTarget",
    "ResponseTooLarge",
    "Resolver",
    "UnsafeUrl",
    "UrlPolicy",
    "address_refusal",
    "async_resolve_and_check",
    "async_system_resolver",
    "check_addresses",
    "check_url",
    "fetch_json",
    "guarded_async_client",
    "guarded_client",
    "policy_for",
    "resolve_and_check",
    "system_resolver",
]
