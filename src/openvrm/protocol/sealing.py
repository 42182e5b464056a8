"""Values sealed to a party's did:key, so only that party can read them (granted data, for a start).

A did:key names an Ed25519 signing key. To encrypt to the same identity without publishing a second key,
the Ed25519 public key is converted to its X25519 (Curve25519) form with libsodium's
``crypto_sign_ed25519_pk_to_curve25519`` and the value is put in a libsodium sealed box (X25519 +
XSalsa20-Poly1305, anonymous sender) through PyNaCl. The holder of the signing seed converts its secret key
the same way to open it. ADR 0006 records why one key serves both uses.

A sealed value travels as ``{"alg": "X25519-XSalsa20-Poly1305", "to": <kid>, "ciphertext": <base64url>}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from openvrm.errors import IntegrityError, InvalidValue
from openvrm.protocol.identity import KeyPair, public_key_from_did, raw_public_bytes

SEAL_ALG = "X25519-XSalsa20-Poly1305"
MAX_SEALED_BYTES = 256 * 1024


def _kid(did: str) -> str:
    return f"{did}#{did.removeprefix('did:key:')}"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64u(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue("the sealed value is not base64url") from None


def x25519_public(did: str) -> PublicKey:
    """The X25519 public key of an Ed25519 did:key."""
    ed = raw_public_bytes(public_key_from_did(did))
    return PublicKey(crypto_sign_ed25519_pk_to_curve25519(ed))


def x25519_private(key: KeyPair) -> PrivateKey:
    return PrivateKey(crypto_sign_ed25519_sk_to_curve25519(key.private_bytes + key.public_bytes))


def seal_for(did: str, data: bytes) -> dict[str, str]:
    """Seal ``data`` so that only the holder of ``did``'s key can open it."""
    if len(data) > MAX_SEALED_BYTES:
        raise InvalidValue(f"a sealed value is limited to {MAX_SEALED_BYTES} bytes")
    box = SealedBox(x25519_public(did))
    return {"alg": SEAL_ALG, "to": _kid(did), "ciphertext": _b64u(box.encrypt(data))}


def seal_json_for(did: str, value: Any) -> dict[str, str]:
    return seal_for(did, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def open_sealed(key: KeyPair, sealed: Any) -> bytes:
    """Open a value sealed to ``key``; raise if it is malformed, for someone else, or altered."""
    if not isinstance(sealed, dict) or sealed.get("alg") != SEAL_ALG:
        raise InvalidValue(f"a sealed value is an object with alg {SEAL_ALG}")
    if sealed.get("to") != _kid(key.did):
        raise InvalidValue("the value is sealed to another key")
    ciphertext = sealed.get("ciphertext")
    if not isinstance(ciphertext, str) or len(ciphertext) > MAX_SEALED_BYTES * 2:
        raise InvalidValue("the sealed value has no usable ciphertext")
    try:
        return bytes(SealedBox(x25519_private(key)).decrypt(_unb64u(ciphertext)))
    except CryptoError:
        raise IntegrityError("the sealed value cannot be opened: altered, or sealed to another key") from None


def open_sealed_json(key: KeyPair, sealed: Any) -> Any:
    data = open_sealed(key, sealed)
    try:
        return json.loads(data)
    except ValueError:
        raise IntegrityError("the sealed value does not hold JSON") from None
