"""Ed25519 key pairs and their ``did:key`` identifiers.

A ``did:key`` for Ed25519 is ``did:key:z`` followed by the base58btc encoding (multibase prefix ``z``) of the
multicodec ``ed25519-pub`` varint (``0xed 0x01``) and the 32 raw public key bytes. Such identifiers start with
``did:key:z6Mk``. The identifier *is* the key, so no registry is needed to resolve it.

Only Ed25519 is accepted: a ``did:key`` with another codec is refused, never silently reinterpreted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import OKPKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from openvrm.errors import InvalidValue

DID_KEY_PREFIX = "did:key:"
MULTIBASE_BASE58BTC = "z"
ED25519_PUB_CODEC = b"\xed\x01"
ED25519_KEY_BYTES = 32


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def verify_ed25519(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    """Check an Ed25519 ``signature`` of ``data``; raise ``cryptography``'s ``InvalidSignature`` if it fails.

    The same check as ``Ed25519PublicKey.verify`` (RFC 8032, with what libsodium refuses on top: small-order
    keys and points, non-canonical encodings), done by libsodium through PyNaCl, which takes about half the
    time of OpenSSL's here (≈ 45 against ≈ 100 µs). Every signed request and ledger event is checked with it.
    """
    try:
        VerifyKey(public_key.public_bytes_raw()).verify(data, signature)
    except (BadSignatureError, ValueError, TypeError):
        raise InvalidSignature() from None


def did_from_public_key(public_key: Ed25519PublicKey) -> str:
    """The ``did:key`` identifier of an Ed25519 public key."""
    encoded = base58.b58encode(ED25519_PUB_CODEC + raw_public_bytes(public_key)).decode("ascii")
    return DID_KEY_PREFIX + MULTIBASE_BASE58BTC + encoded


def public_key_from_did(did: str) -> Ed25519PublicKey:
    """Resolve an Ed25519 ``did:key`` to its public key.

    A DID URL fragment (``did:key:z6Mk...#z6Mk...``) is accepted only if it repeats the identifier, as in a
    did:key verification method id. Raises :class:`~openvrm.errors.InvalidValue` saying what is wrong: not a
    ``did:key``, not base58btc, not an Ed25519 key, or the wrong length.

    The identifier *is* the key, so a decoded key never goes stale: the last few thousand are kept (every
    signed request and record resolves its signer's did:key, often the same few). A refused identifier is
    not kept; it is refused again, with the same reason, each time.
    """
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise InvalidValue("not a did:key identifier (it must start with 'did:key:')")
    return _decode_did_key(did)


@functools.lru_cache(maxsize=4096)
def _decode_did_key(did: str) -> Ed25519PublicKey:
    identifier, _, fragment = did[len(DID_KEY_PREFIX) :].partition("#")
    if fragment and fragment != identifier:
        raise InvalidValue("the did:key fragment does not name the key itself")
    if not identifier.startswith(MULTIBASE_BASE58BTC):
        raise InvalidValue("the did:key is not multibase base58btc (it must start with 'z')")
    try:
        decoded = base58.b58decode(identifier[1:])
    except ValueError:
        raise InvalidValue("the did:key is not valid base58btc") from None
    if not decoded.startswith(ED25519_PUB_CODEC):
        raise InvalidValue("the did:key is not an Ed25519 public key (wrong multicodec)")
    raw = decoded[len(ED25519_PUB_CODEC) :]
    if len(raw) != ED25519_KEY_BYTES:
        raise InvalidValue(f"an Ed25519 did:key holds 32 key bytes, this one holds {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 signing key and its public half.

    The protocol uses a pairwise key pair per relationship and a fresh one per intent, so key pairs are cheap
    values. :attr:`private_bytes` is the 32-byte seed to store (sealed) and :meth:`from_private_bytes` loads
    it again.
    """

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, seed: bytes) -> KeyPair:
        if len(seed) != ED25519_KEY_BYTES:
            raise InvalidValue("an Ed25519 private key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def private_bytes(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_bytes(self) -> bytes:
        return raw_public_bytes(self.public_key)

    @functools.cached_property
    def did(self) -> str:
        """The key's ``did:key``, computed once per key pair (a signed record names it more than once)."""
        return did_from_public_key(self.public_key)

    @functools.cached_property
    def jws_key(self) -> OKPKey:
        """The key as joserfc's JWK, made once per key pair (joserfc derives its JWK form to check it)."""
        return OKPKey.import_key(self.private_key)

    def sign(self, data: bytes) -> bytes:
        """A raw 64-byte Ed25519 signature over ``data``."""
        return self.private_key.sign(data)

    def __repr__(self) -> str:  # never print the private key
        return f"KeyPair(did={self.did!r})"
