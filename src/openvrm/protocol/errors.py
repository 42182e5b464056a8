"""Errors of the protocol layer, rooted in the core exception tree (:mod:`openvrm.errors`)."""

from __future__ import annotations

from openvrm.errors import OpenVRMError


class SignatureError(OpenVRMError):
    """A signature, a signed record or a signed request was refused.

    The message says why (unsigned, wrong key, altered content, expired, replayed, ...) so a peer can fix its
    client; it never contains key material.
    """

    title = "Bad signature"
    status = 401
    code = "bad-signature"
