"""Errors of outbound requests: a URL we refuse to fetch, and a fetch that went wrong."""

from __future__ import annotations

from openvrm.errors import InvalidValue, OpenVRMError


class UnsafeUrl(InvalidValue):
    """A URL (or the address it resolves to) that outbound requests must not reach."""

    title = "Unsafe URL"
    status = 422
    code = "unsafe-url"


class FetchError(OpenVRMError):
    """An allowed URL could not be fetched, or answered something unusable."""

    title = "Fetch failed"
    status = 502
    code = "fetch-failed"


class ResponseTooLarge(FetchError):
    """The response body went past the policy's ``max_response_bytes``."""

    title = "Response too large"
    code = "response-too-large"
