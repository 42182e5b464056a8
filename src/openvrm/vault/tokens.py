"""API tokens and CLI sessions.

Each token is ``vrm_<id>_<secret>`` with a 256-bit random secret. The store keeps the SHA-256 of the secret
(to find and compare it in constant time) and the vault key wrapped under a key derived from the secret
(HKDF; the secret's entropy makes a slow KDF unnecessary). A token therefore unlocks the vault by itself,
for scripts, while the server holds no key; deleting its row revokes it. Changing the passphrase does
not invalidate tokens (they wrap the vault key, not the passphrase key); revoke them explicitly.

A CLI session (``vrm unlock``) is the same thing with ``kind="session"`` and an expiry.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from openvrm.crypto import Sealer, constant_time_equal, hkdf
from openvrm.errors import AuthError, IntegrityError, InvalidValue, NotFound
from openvrm.profile.fields import _text
from openvrm.storage.models import AccessToken, new_id, utcnow
from openvrm.vault.core import UnlockedVault, Vault

KINDS = ("api", "session", "feed")
_KIND_NAMES = {"api": "API token", "feed": "calendar feed", "session": "session"}
_PREFIX = "vrm_"


@dataclass(frozen=True)
class TokenInfo:
    id: str
    kind: str
    name: str
    created_at: datetime
    expires_at: datetime | None

    def to_json(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


def _wrap_key(secret: bytes) -> Sealer:
    return Sealer(hkdf(secret, "openvrm/v1/token-wrap"))


def _parse(token: str) -> tuple[str, bytes]:
    if not isinstance(token, str) or not token.startswith(_PREFIX):
        raise AuthError("not an openvrm token")
    body = token[len(_PREFIX) :]
    token_id, _, secret_b64 = body.partition("_")
    try:
        secret = base64.urlsafe_b64decode(secret_b64 + "=" * (-len(secret_b64) % 4))
    except ValueError:
        raise AuthError("malformed token") from None
    if len(token_id) != 32 or len(secret) != 32:
        raise AuthError("malformed token")
    return token_id, secret


def create(
    vault: UnlockedVault, name: str, *, kind: str = "api", ttl: timedelta | None = None
) -> tuple[str, TokenInfo]:
    """Create a token; the returned string is shown once and never stored."""
    if kind not in KINDS:
        raise InvalidValue(f"token kind must be one of {', '.join(KINDS)}")
    name = _text(name, "a token name", max_len=100)
    secret = os.urandom(32)
    token_id = new_id()
    now = utcnow()
    expires = now + ttl if ttl else None
    row = AccessToken(
        id=token_id,
        kind=kind,
        secret_hash=hashlib.sha256(secret).hexdigest(),
        wrapped_key=_wrap_key(secret).seal(vault.key, f"access_tokens:{token_id}".encode()),
        created_at=now,
        expires_at=expires,
        sealed=vault.seal("access_tokens", token_id, {"name": name}),
    )
    with vault.db.write() as s:
        s.add(row)
    token = f"{_PREFIX}{token_id}_{base64.urlsafe_b64encode(secret).decode().rstrip('=')}"
    return token, TokenInfo(token_id, kind, name, now, expires)


def unlock(vault: Vault, token: str, *, kind: str | None = None) -> UnlockedVault:
    """Unlock ``vault`` with a token; :class:`AuthError` for an unknown, expired or revoked one."""
    token_id, secret = _parse(token)
    with vault.db.read() as s:
        row = s.get(AccessToken, token_id)
    if row is None or (kind is not None and row.kind != kind):
        raise AuthError("unknown or revoked token")
    if not constant_time_equal(hashlib.sha256(secret).hexdigest(), row.secret_hash):
        raise AuthError("unknown or revoked token")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise AuthError("the token has expired")
    try:
        key = _wrap_key(secret).open(row.wrapped_key, f"access_tokens:{token_id}".encode())
    except IntegrityError:
        raise AuthError("unknown or revoked token") from None
    return vault.unlock_with_key(key)


def list_tokens(vault: UnlockedVault, *, kind: str | None = None) -> list[TokenInfo]:
    with vault.db.read() as s:
        q = select(AccessToken).order_by(AccessToken.id)
        if kind:
            q = q.where(AccessToken.kind == kind)
        rows = list(s.scalars(q))
    return [
        TokenInfo(
            r.id, r.kind, vault.open("access_tokens", r.id, r.sealed)["name"], r.created_at, r.expires_at
        )
        for r in rows
    ]


def revoke(vault: Vault, token_id: str, *, kind: str | None = None) -> None:
    """Delete a token; with ``kind``, only a token of that kind (others are :class:`NotFound`)."""
    with vault.db.write() as s:
        row = s.get(AccessToken, token_id)
        if row is None or (kind is not None and row.kind != kind):
            what = _KIND_NAMES.get(kind or "", "token")
            raise NotFound(f"no {what} with id {token_id[:40]!r}")
        s.delete(row)


def revoke_kind(vault: Vault, kind: str) -> int:
    """Delete every token of ``kind`` (``vrm lock`` ends all CLI sessions); return how many."""
    with vault.db.write() as s:
        result = s.execute(delete(AccessToken).where(AccessToken.kind == kind))
        return int(getattr(result, "rowcount", 0) or 0)
