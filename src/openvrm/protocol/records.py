"""Canonical JSON (RFC 8785) and signed records (compact JWS with Ed25519).

Agreements, consent records and ledger events are JSON objects that both sides keep identical copies of. To
make "identical" exact, a record is always serialised with the JSON Canonicalization Scheme (RFC 8785, JCS):
the same object gives the same bytes on every side, so its hash and signature are stable.

* :func:`canonical_json` gives those bytes.
* :func:`record_hash` is the lowercase **hex** SHA-256 of the canonical bytes (64 characters); it is the id
  of an agreement and the building block of ledger event ids.
* :func:`sign_record` makes a compact JWS whose payload is the canonical bytes and whose protected header is
  ``{"alg": "Ed25519", "kid": <did:key of the signer>}``. ``Ed25519`` is the fully-specified JOSE name for
  EdDSA over Ed25519 (RFC 9864), which supersedes the polymorphic ``EdDSA``.
* :func:`verify_record` accepts only that shape: algorithm ``Ed25519`` and nothing else (so ``none``, HMAC
  with the public key as secret, or any other algorithm is refused before any key is used), no header
  parameters beyond ``alg``, ``kid`` and ``typ``, a valid signature by the given key, and a payload that is a
  JSON object *in canonical form*. Anything else raises :class:`~openvrm.protocol.errors.SignatureError`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from openvrm.errors import InvalidValue
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair

JWS_ALGORITHM = "Ed25519"
ALLOWED_HEADER_PARAMETERS = frozenset({"alg", "kid", "typ"})


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value.

    Raises :class:`~openvrm.errors.InvalidValue` for values JSON cannot carry exactly (integers beyond
    I-JSON's 2**53 range, NaN, infinities, non-string keys, non-JSON types). Money belongs in strings.
    """
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidValue(f"the record cannot be canonicalised as JSON: {exc}") from None


def record_hash(obj: Any) -> str:
    """SHA-256 of the canonical form of ``obj``, as 64 lowercase hex characters."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def sign_record(obj: dict[str, Any], key: KeyPair) -> str:
    """Sign a JSON object; return a compact JWS whose payload is its canonical form."""
    if not isinstance(obj, dict):
        raise InvalidValue("a signed record is a JSON object")
    header = {"alg": JWS_ALGORITHM, "kid": key.did}
    return jws.serialize_compact(
        header, canonical_json(obj), OKPKey.import_key(key.private_key), algorithms=[JWS_ALGORITHM]
    )


def verify_record(token: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Verify a compact JWS made by :func:`sign_record` with ``public_key``; return the record.

    The caller chooses the key (from the relationship, or from the ``did:key`` it expects); the ``kid`` in
    the header is informative only and is never used to pick a key.
    """
    if not isinstance(token, str) or token.count(".") != 2:
        raise SignatureError("the signed record is not a compact JWS")
    try:
        signature = jws.deserialize_compact(token, OKPKey.import_key(public_key), algorithms=[JWS_ALGORITHM])
    except JoseError as exc:
        raise SignatureError(f"the record's signature was refused ({exc.error})") from None
    except (ValueError, TypeError):
        raise SignatureError("the signed record is malformed") from None
    header = signature.headers()
    if header.get("alg") != JWS_ALGORITHM:  # joserfc enforces this too; kept as a second lock
        raise SignatureError(f"the record must be signed with {JWS_ALGORITHM}")
    extra = set(header) - ALLOWED_HEADER_PARAMETERS
    if extra:
        raise SignatureError(f"the record's JWS header has unexpected parameters: {', '.join(sorted(extra))}")
    try:
        record = json.loads(signature.payload)
    except ValueError:
        raise SignatureError("the signed payload is not JSON") from None
    if not isinstance(record, dict):
        raise SignatureError("the signed payload is not a JSON object")
    if canonical_json(record) != signature.payload:
        raise SignatureError("the signed payload is not in RFC 8785 canonical form")
    return record
