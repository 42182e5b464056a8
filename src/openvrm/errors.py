"""The one exception tree of the openvrm core.

Every error a person can cause or meet derives from :class:`OpenVRMError`; front ends turn it into one
clear line (CLI) or an RFC 9457 problem document (HTTP) and never show a traceback::

    OpenVRMError
    ├── VaultError
    │   ├── VaultNotFound          no vault at this home / database
    │   ├── VaultExists            `init` on a vault that already exists
    │   ├── VaultLocked            an operation needs the vault key
    │   ├── WrongPassphrase
    │   ├── VaultTooNew            written by a newer openvrm
    │   └── StorageDamaged         the database cannot be read as a vault
    ├── IntegrityError             a ciphertext or blob failed authentication / its hash
    ├── InvalidValue               a value from outside failed validation
    ├── NotFound                   a record asked for by id does not exist
    ├── Conflict                   the change clashes with what is stored
    ├── ArchiveError               an export archive is truncated, tampered with or malformed
    └── AuthError                  missing or bad credentials on the server
"""

from __future__ import annotations


class OpenVRMError(Exception):
    """Base of every error the core raises on purpose.

    ``title`` is a short, stable summary for problem documents; ``status`` is the HTTP status a server
    maps it to; ``code`` is a stable machine-readable slug.
    """

    title = "openvrm error"
    status = 500
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class VaultError(OpenVRMError):
    title = "Vault error"
    status = 409
    code = "vault-error"


class VaultNotFound(VaultError):
    title = "No vault"
    status = 404
    code = "vault-not-found"


class VaultExists(VaultError):
    title = "Vault already exists"
    code = "vault-exists"


class VaultLocked(VaultError):
    title = "Vault is locked"
    status = 423
    code = "vault-locked"


class WrongPassphrase(VaultError):
    title = "Wrong passphrase"
    status = 401
    code = "wrong-passphrase"


class VaultTooNew(VaultError):
    title = "Vault written by a newer openvrm"
    code = "vault-too-new"


class StorageDamaged(VaultError):
    title = "Vault storage is damaged"
    status = 500
    code = "storage-damaged"


class IntegrityError(OpenVRMError):
    title = "Integrity check failed"
    status = 500
    code = "integrity-error"


class InvalidValue(OpenVRMError):
    title = "Invalid value"
    status = 422
    code = "invalid-value"


class NotFound(OpenVRMError):
    title = "Not found"
    status = 404
    code = "not-found"


class Conflict(OpenVRMError):
    title = "Conflict"
    status = 409
    code = "conflict"


class ArchiveError(OpenVRMError):
    title = "Bad archive"
    status = 422
    code = "bad-archive"


class AuthError(OpenVRMError):
    title = "Not authenticated"
    status = 401
    code = "not-authenticated"
