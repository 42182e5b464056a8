"""Vault cryptography: key derivation, sealing, and the box key pair.

Design (see docs/security.md):

* The **vault key** is 32 random bytes. It never touches disk in the clear: it is stored wrapped
  (AES-256-GCM) under a key-encryption key derived from the passphrase with **Argon2id**. Changing the
  passphrase re-wraps the vault key and re-encrypts nothing else.
* Purpose keys are derived from the vault key with HKDF-SHA256 (one for records, one for blobs, one for
  blob addresses), so no key is used for two jobs.
* A sealed value is ``version (1 byte) || nonce (12 bytes) || AES-256-GCM ciphertext+tag``. The caller
  passes associated data naming the record (kind and id), so a ciphertext copied onto another record fails
  authentication instead of decrypting.
* The **box key pair** (X25519, libsodium sealed boxes via PyNaCl) lets the server accept items while the
  vault is locked: anyone may seal to the public half; only an unlocked vault opens them.

All primitives come from ``cryptography``, ``argon2-cffi`` and ``PyNaCl``; nothing here is home-made.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from openvrm.errors import IntegrityError, InvalidValue

KEY_BYTES = 32
NONCE_BYTES = 12
SEAL_VERSION = 1


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters, stored beside the wrapped key so they can be raised later.

    The defaults are the second recommended option of RFC 9106 (t=3, m=64 MiB, p=4), which is stronger
    than the OWASP Password Storage Cheat Sheet minimums for Argon2id (m=19 MiB/t=2/p=1 or m=46 MiB/t=1/p=1).
    """

    salt: bytes
    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    @classmethod
    def new(cls, *, time_cost: int = 3, memory_kib: int = 64 * 1024, parallelism: int = 4) -> KdfParams:
        return cls(os.urandom(16), time_cost, memory_kib, parallelism)

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": "argon2id",
            "version": 19,
            "salt": self.salt.hex(),
            "time_cost": self.time_cost,
            "memory_kib": self.memory_kib,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KdfParams:
        if data.get("algorithm") != "argon2id":
            raise IntegrityError(f"unknown key derivation {data.get('algorithm')!r}")
        return cls(
            bytes.fromhex(str(data["salt"])),
            int(data["time_cost"]),
            int(data["memory_kib"]),
            int(data["parallelism"]),
        )


def derive_kek(passphrase: str, params: KdfParams) -> bytes:
    """Derive the key-encryption key from a passphrase with Argon2id."""
    if not passphrase:
        raise InvalidValue("the passphrase is empty")
    return hash_secret_raw(
        passphrase.encode("utf-8"),
        params.salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


def hkdf(key: bytes, label: str, length: int = KEY_BYTES) -> bytes:
    """Derive a purpose key from ``key``; ``label`` names the purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label.encode()).derive(key)


def random_key() -> bytes:
    return os.urandom(KEY_BYTES)


class Sealer:
    """AES-256-GCM with a random nonce per value and caller-supplied associated data."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return bytes((SEAL_VERSION,)) + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes, *, what: str = "value") -> bytes:
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[0] != SEAL_VERSION:
            raise IntegrityError(f"{what} is not a sealed value (damaged or truncated)")
        nonce = sealed[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + NONCE_BYTES :], aad)
        except InvalidTag:
            raise IntegrityError(
                f"{what} failed its integrity check (damaged, or moved from another record)"
            ) from None


def keyed_hash(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 as hex: content addresses that reveal nothing to someone without the key."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def constant_time_equal(a: bytes | str, b: bytes | str) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


@dataclass(frozen=True)
class BoxKeyPair:
    """The vault's X25519 key pair for sealed boxes (items received while locked)."""

    secret: bytes
    public: bytes

    @classmethod
    def generate(cls) -> BoxKeyPair:
        key = PrivateKey.generate()
        return cls(bytes(key), bytes(key.public_key))

    def open(self, sealed: bytes) -> bytes:
        try:
            return SealedBox(PrivateKey(self.secret)).decrypt(sealed)
        except CryptoError:
            raise IntegrityError("an inbox item failed its integrity check") from None


def seal_to(public_key: bytes, plaintext: bytes) -> bytes:
    """Seal ``plaintext`` so that only the holder of the matching secret key can read it."""
    if len(public_key) != KEY_BYTES:
        raise InvalidValue("a box public key is 32 bytes")
    return SealedBox(PublicKey(public_key)).encrypt(plaintext)
