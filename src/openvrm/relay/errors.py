"""Errors of the relay, in the core exception tree (:mod:`openvrm.errors`)."""

from __future__ import annotations

from openvrm.errors import Conflict, NotFound, OpenVRMError


class Forbidden(OpenVRMError):
    """A validly signed request from a key that may not do this (another vendor's offer, say)."""

    title = "Forbidden"
    status = 403
    code = "forbidden"


class UnknownIntent(NotFound):
    title = "Unknown intent"
    code = "unknown-intent"


class UnknownSubscription(NotFound):
    title = "Unknown subscription"
    code = "unknown-subscription"


class IntentClosed(Conflict):
    """The intent was accepted, withdrawn or has expired: it takes no more offers or decisions."""

    title = "The intent is closed"
    code = "intent-closed"


class LimitReached(Conflict):
    title = "Limit reached"
    code = "limit-reached"


class PayloadTooLarge(OpenVRMError):
    title = "Request body too large"
    status = 413
    code = "payload-too-large"


class RateLimited(OpenVRMError):
    """Over a rate limit; ``retry_after`` is the number of seconds until a request would be accepted."""

    title = "Too many requests"
    status = 429
    code = "rate-limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
