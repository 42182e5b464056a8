"""HTTP Message Signatures (RFC 9421) with Ed25519, for every protocol request.

A signed request carries:

* ``Content-Digest: sha-256=:<base64>:`` (RFC 9530) of the body, even when the body is empty;
* ``Signature-Input`` / ``Signature`` with label ``vrm`` and tag ``openvrm``, covering :data:`COVERED` (the
  method, the full target URI, the authority, the path and the content digest) and carrying ``created``,
  ``nonce``, ``keyid`` (the signer's ``did:key``) and ``alg="ed25519"``.

:class:`RequestVerifier` refuses a request, with a :class:`~openvrm.protocol.errors.SignatureError` saying
why, unless: the body is within ``max_body_bytes``; the signature verifies under the key the resolver gives
for ``keyid``; every component of :data:`COVERED` is covered; the digest matches the body; ``created`` is at
most ``max_age`` old and at most ``max_skew`` in the future (by the injected clock); and the nonce has not
been seen for that key within the window (:class:`NonceStore`).

Everything works on plain values (method, absolute URL, headers, body bytes) so httpx and ASGI requests can
both be adapted; :func:`sign_httpx_request` and :func:`verify_httpx_request` are the httpx adapters.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    SigningKey,
    VerificationKey,
    algorithms,
)

from openvrm.errors import InvalidValue
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair, public_key_from_did, verify_ed25519

if TYPE_CHECKING:
    import httpx

SIGNATURE_LABEL = "vrm"
SIGNATURE_TAG = "openvrm"
COVERED: tuple[str, ...] = ("@method", "@target-uri", "@authority", "@path", "content-digest")
DEFAULT_MAX_AGE = timedelta(seconds=300)
DEFAULT_MAX_SKEW = timedelta(seconds=5)
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IDEMPOTENCY_HEADER = "idempotency-key"

# The components every signature must cover, as serialized Structured Field Strings (the form the library
# accepts as well as bare names, without serializing them again on every request).
_REQUIRED = tuple(f'"{name}"' for name in COVERED)
_REQUIRED_WRITE = (*_REQUIRED, f'"{IDEMPOTENCY_HEADER}"')
_DIGEST_COMPONENT = '"content-digest"'

Clock = Callable[[], datetime]
KeyResolver = Callable[[str], Ed25519PublicKey | None]
"""Maps a ``keyid`` to the public key trusted for it, or ``None`` when the key is unknown."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` field value of ``body`` with SHA-256."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def did_key_resolver(keyid: str) -> Ed25519PublicKey | None:
    """Resolve any Ed25519 ``did:key``: proves who holds the key, not that the key is welcome."""
    try:
        return public_key_from_did(keyid)
    except InvalidValue:
        return None


def known_keys(keys: Mapping[str, Ed25519PublicKey]) -> KeyResolver:
    """A resolver that trusts exactly the given ``keyid -> public key`` mapping."""
    trusted = dict(keys)
    return trusted.get


class NonceStore(Protocol):
    """Remembers nonces long enough to refuse a replayed request.

    ``remember`` records ``nonce`` for ``keyid`` until ``expires_at`` and returns ``True`` if it was new, or
    ``False`` if it was already recorded and has not expired. It must be atomic: of two concurrent calls with
    the same pair, only one may return ``True``. ``now`` is the verifier's clock, for expiring old entries.
    """

    def remember(self, keyid: str, nonce: str, expires_at: datetime, now: datetime) -> bool: ...


@dataclass
class MemoryNonceStore:
    """An in-process :class:`NonceStore` for tests and single-process use."""

    _seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def remember(self, keyid: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
        with self._lock:
            for pair in [pair for pair, until in self._seen.items() if until <= now]:
                del self._seen[pair]
            if (keyid, nonce) in self._seen:
                return False
            self._seen[(keyid, nonce)] = expires_at
            return True


@dataclass
class _Message:
    """The request shape http-message-signatures reads (method, url, headers)."""

    method: str
    url: str
    headers: dict[str, str]


class _SignerKeys(HTTPSignatureKeyResolver):
    def __init__(self, key: KeyPair) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> SigningKey:
        return self._key.private_key

    def resolve_public_key(self, key_id: str) -> VerificationKey | None:
        return self._key.public_key


class _VerifierKeys(HTTPSignatureKeyResolver):
    def __init__(self, resolver: KeyResolver) -> None:
        self._resolver = resolver

    def resolve_public_key(self, key_id: str) -> VerificationKey | None:
        return self._resolver(key_id)


class _Ed25519(algorithms.ED25519):
    """The library's ``ed25519`` algorithm (its key checks, its id) with the signature checked by libsodium:
    a custom algorithm class is the library's documented way to plug in a verifier (see
    :func:`~openvrm.protocol.identity.verify_ed25519`)."""

    def verify(self, signature: bytes, message: bytes) -> None:
        verify_ed25519(self.public_key, signature, message)


class _ClockedVerifier(HTTPMessageVerifier):
    """The library verifier with its time checks done against an injected clock."""

    def __init__(self, resolver: KeyResolver, clock: Clock, max_age: timedelta, max_skew: timedelta) -> None:
        super().__init__(signature_algorithm=_Ed25519, key_resolver=_VerifierKeys(resolver))
        self._clock = clock
        self._max_age = max_age
        self._max_skew = max_skew

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        now = self._clock()
        created = sig_input.params.get("created")
        if type(created) is not int:
            raise InvalidSignature('the signature has no "created" time')
        created_at = datetime.fromtimestamp(created, UTC)
        if created_at > now + self._max_skew:
            raise InvalidSignature("the signature is dated in the future")
        if created_at < now - self._max_age:
            raise InvalidSignature("the signature has expired (created outside the replay window)")
        expires = sig_input.params.get("expires")
        if expires is not None and (type(expires) is not int or datetime.fromtimestamp(expires, UTC) < now):
            raise InvalidSignature("the signature has expired")


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    key: KeyPair,
    *,
    created: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus ``Content-Digest``, ``Signature-Input`` and ``Signature`` for the request.

    ``url`` is the absolute URL as sent; ``created`` defaults to now and ``nonce`` to 128 random bits. Any
    ``Content-Digest`` or signature fields already in ``headers`` are replaced.
    """
    replaced = {"content-digest", "signature", "signature-input"}
    out = {name: value for name, value in headers.items() if name.lower() not in replaced}
    out["Content-Digest"] = content_digest(body)
    covered = COVERED
    if any(name.lower() == IDEMPOTENCY_HEADER for name in out):
        covered = (*COVERED, IDEMPOTENCY_HEADER)
    elif method.upper() in WRITE_METHODS:
        raise InvalidValue("a protocol write must carry an Idempotency-Key header")
    message = _Message(method.upper(), url, out)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_SignerKeys(key))
    try:
        signer.sign(
            message,
            key_id=key.did,
            created=created or utc_now(),
            nonce=nonce or secrets.token_urlsafe(16),
            label=SIGNATURE_LABEL,
            tag=SIGNATURE_TAG,
            covered_component_ids=covered,
            use_existing_digest=True,
        )
    except HTTPMessageSignaturesException as exc:
        raise InvalidValue(f"the request cannot be signed: {exc}") from None
    return message.headers


@dataclass(frozen=True)
class VerifiedRequest:
    """What a valid signature proves: who signed (``keyid``), when, and with which nonce."""

    keyid: str
    created: datetime
    nonce: str


@dataclass
class RequestVerifier:
    """Verifies signed protocol requests; see the module documentation for the rules."""

    resolver: KeyResolver
    nonces: NonceStore
    max_age: timedelta = DEFAULT_MAX_AGE
    max_skew: timedelta = DEFAULT_MAX_SKEW
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    clock: Clock = utc_now

    def verify(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> VerifiedRequest:
        """Return the verified signer of the request, or raise :class:`SignatureError` saying why."""
        if len(body) > self.max_body_bytes:
            raise SignatureError(f"the request body is larger than {self.max_body_bytes} bytes")
        names = {name.lower() for name in headers}
        if "signature" not in names or "signature-input" not in names:
            raise SignatureError("the request is not signed")
        required = _REQUIRED
        if method.upper() in WRITE_METHODS:
            if IDEMPOTENCY_HEADER not in names:
                raise SignatureError("a write must carry an Idempotency-Key header")
            required = _REQUIRED_WRITE
        message = _Message(method, url, dict(headers))
        verifier = _ClockedVerifier(self.resolver, self.clock, self.max_age, self.max_skew)
        try:
            results = verifier.verify(message, max_age=None, expect_tag=SIGNATURE_TAG)
            if len(results) != 1:
                raise SignatureError("the request must carry exactly one openvrm signature")
            # The coverage policy, checked on the verified result's covered identifiers. The library keys
            # them by their serialized form, which is canonical (RFC 9651 serialization), and a plain
            # component serializes to exactly its quoted name: a component covered only with parameters
            # ("content-digest";sf) is another identifier and does not count. This is what the library's
            # ``require_components`` checks, without parsing every identifier a second and third time.
            missing = [name for name in required if name not in results[0].covered_components]
            if missing:
                raise InvalidSignature(f"Required component {missing[0]} was not covered by the signature")
            # The signed Content-Digest (its coverage is required above) checked against the body by the
            # library: the covered value alone, the subset its API takes for a caller's coverage policy,
            # instead of parsing every covered identifier again to find it.
            digest = results[0].covered_components.get(_DIGEST_COMPONENT)
            if digest is None or not ContentDigest.verify_components({_DIGEST_COMPONENT: digest}, body):
                raise InvalidSignature("The message body requires a signed Content-Digest")
        except (InvalidSignature, HTTPMessageSignaturesException) as exc:
            raise SignatureError(f"the request signature was refused: {_reason(exc)}") from None
        params = results[0].parameters
        keyid, nonce, created = params.get("keyid"), params.get("nonce"), params.get("created")
        if not isinstance(keyid, str) or not isinstance(created, int):
            raise SignatureError("the request signature lacks keyid or created")
        if not isinstance(nonce, str) or not nonce:
            raise SignatureError("the request signature has no nonce")
        created_at = datetime.fromtimestamp(created, UTC)
        # Kept for twice the window (docs/protocol.md 3.1); older signatures are refused by age anyway.
        until = created_at + 2 * self.max_age + self.max_skew
        if not self.nonces.remember(keyid, nonce, until, self.clock()):
            raise SignatureError("the request nonce was already used (replayed request)")
        return VerifiedRequest(keyid, created_at, nonce)


def _reason(exc: Exception) -> str:
    """The library's message, with the key resolver's 'unknown key' made plain."""
    text = str(exc)
    if "Unable to resolve verification key" in text:
        return "the signing key is not known"
    return text or "the signature does not match the request"


def sign_httpx_request(request: httpx.Request, key: KeyPair, **options: Any) -> None:
    """Sign an ``httpx.Request`` in place (its body must already be read, as it is for built requests)."""
    signed = sign_request(
        request.method, str(request.url), dict(request.headers), request.content, key, **options
    )
    for name in ("Content-Digest", "Signature-Input", "Signature"):
        request.headers[name] = signed[name]


def verify_httpx_request(request: httpx.Request, verifier: RequestVerifier) -> VerifiedRequest:
    """Verify an ``httpx.Request`` (for test clients and relays that receive httpx objects)."""
    return verifier.verify(request.method, str(request.url), dict(request.headers), request.content)
