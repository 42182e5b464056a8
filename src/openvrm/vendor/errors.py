"""Errors of the vendor kit, in the core exception tree (:mod:`openvrm.errors`)."""

from __future__ import annotations

from openvrm.errors import NotFound, OpenVRMError


class NotAParty(OpenVRMError):
    """A signed request from a key that is not the relationship's person (or the proffer's)."""

    title = "Not a party to this relationship"
    status = 403
    code = "not-a-party"


class UnknownRelationship(NotFound):
    """No relationship (agreement) with this id is known to the vendor."""

    title = "Unknown relationship"
    code = "unknown-relationship"


class PayloadTooLarge(OpenVRMError):
    title = "Request body too large"
    status = 413
    code = "payload-too-large"


class AgentError(OpenVRMError):
    """The person's agent could not be reached, or answered something unusable."""

    title = "The person's agent failed"
    status = 502
    code = "agent-failed"

    def __init__(self, message: str, *, event_id: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.http_status = http_status


class AgentUnreachable(AgentError):
    title = "The person's agent is unreachable"
    code = "agent-unreachable"


class AgentRefused(AgentError):
    """The agent answered with an error (a problem document) or a refusing acknowledgement."""

    title = "The person's agent refused the request"
    code = "agent-refused"
