"""The mail key: the one secret the SMTP gateway holds.

It is derived from the vault key (HKDF, its own label), so the person's unlocked vault can always make it,
and it opens only the mail tables (settings, aliases, reverse aliases, the spool). Addresses are looked up
by a keyed hash of their normalised form, so the database never holds an alias in the clear.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from openvrm.crypto import KEY_BYTES, Sealer, hkdf, keyed_hash
from openvrm.errors import IntegrityError, InvalidValue
from openvrm.vault.core import UnlockedVault, encode_payload

MAIL_KEY_LABEL = "openvrm/v1/mail"


def normalise_address(address: str) -> str:
    """``Local@Domain.`` → ``local@domain``: the form every lookup hashes."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local or not domain:
        raise InvalidValue(f"not an e-mail address: {address[:80]!r}")
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidValue(f"not a valid mail domain: {domain[:80]!r}") from None
    return f"{local.lower()}@{domain.lower()}"


class MailKeys:
    """Seals mail rows and hashes addresses; made from the vault or from an exported mail key."""

    def __init__(self, mail_key: bytes) -> None:
        if len(mail_key) != KEY_BYTES:
            raise InvalidValue("a mail key is 32 bytes")
        self._raw = mail_key
        self._sealer = Sealer(hkdf(mail_key, "openvrm/v1/mail/records"))
        self._lookup = hkdf(mail_key, "openvrm/v1/mail/lookup")

    @classmethod
    def from_vault(cls, vault: UnlockedVault) -> MailKeys:
        return cls(hkdf(vault.key, MAIL_KEY_LABEL))

    @classmethod
    def from_text(cls, text: str) -> MailKeys:
        """The form `vrm mail key` prints (for a gateway started without the passphrase)."""
        try:
            raw = base64.urlsafe_b64decode(text.strip().removeprefix("vrm-mail-") + "==")
        except (binascii.Error, ValueError):
            raise InvalidValue("the mail key is not in the form `vrm mail key` prints") from None
        if len(raw) != KEY_BYTES:
            raise InvalidValue("the mail key is not in the form `vrm mail key` prints")
        return cls(raw)

    def to_text(self) -> str:
        return "vrm-mail-" + base64.urlsafe_b64encode(self._raw).decode().rstrip("=")

    def lookup(self, address: str) -> str:
        return keyed_hash(self._lookup, b"address:" + normalise_address(address).encode())

    def pair(self, alias_id: str, contact: str) -> str:
        return keyed_hash(self._lookup, f"pair:{alias_id}:{normalise_address(contact)}".encode())

    def seal(self, table: str, record_id: str, payload: Mapping[str, Any]) -> bytes:
        return self._sealer.seal(encode_payload(payload), f"{table}:{record_id}".encode())

    def open(self, table: str, record_id: str, sealed: bytes) -> dict[str, Any]:
        data = self._sealer.open(sealed, f"{table}:{record_id}".encode(), what=f"{table} record {record_id}")
        value = json.loads(data)
        if not isinstance(value, dict):
            raise IntegrityError(f"{table} record {record_id} does not hold an object")
        return value
