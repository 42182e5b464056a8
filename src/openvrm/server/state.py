"""What the running server holds: the opened vault, the owner sessions and the login throttle."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import text
from starlette.requests import Request

from openvrm.config import Settings
from openvrm.errors import VaultNotFound
from openvrm.server.prechecks import CheckWorkers, automatic_workers
from openvrm.server.sessions import LoginThrottle, SessionStore
from openvrm.vault.core import MAX_FILE_BYTES, Vault


@dataclass
class ServerState:
    settings: Settings
    sessions: SessionStore = field(default_factory=SessionStore)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    max_upload_bytes: int = MAX_FILE_BYTES
    vault: Vault | None = None
    checks: CheckWorkers = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _vault_seen: bool = False

    def __post_init__(self) -> None:
        workers = self.settings.check_workers
        self.checks = CheckWorkers(automatic_workers() if workers is None else workers)

    def open(self) -> None:
        """Open the store if the vault's database exists; a missing vault is not an error here."""
        with self._lock:
            if self.vault is not None:
                return
            try:
                self.vault = Vault.open(self.settings)
            except VaultNotFound:
                self.vault = None

    def close(self) -> None:
        self.sessions.end_all()
        with self._lock:
            if self.vault is not None:
                self.vault.close()
                self.vault = None
            self._vault_seen = False

    def current_vault(self) -> Vault | None:
        """The opened vault if one exists now (it may have been created since the server started)."""
        if self.vault is None:
            self.open()
        vault = self.vault
        if vault is None:
            return None
        if not self._vault_seen:
            # A vault, once created, is not removed under a running server: ask the database once.
            if not vault.exists():
                return None
            self._vault_seen = True
        return vault

    def require_vault(self) -> Vault:
        vault = self.current_vault()
        if vault is None:
            raise VaultNotFound("there is no vault here yet; create one with `vrm init`, then log in")
        return vault

    def health(self) -> tuple[str, str]:
        """(database, vault): database "ok" | "error" | "absent"; vault "locked" | "unlocked" | "absent"."""
        try:
            if self.vault is None:
                self.open()
            if self.vault is None:
                return "absent", "absent"
            with self.vault.db.read() as s:
                s.execute(text("select 1"))
            exists = self.vault.exists()
        except Exception:  # any failure to reach the database is reported, never raised
            return "error", "absent"
        if not exists:
            return "ok", "absent"
        return "ok", ("unlocked" if self.sessions.active_count() else "locked")


def state_of(request: Request) -> ServerState:
    state = request.app.state.openvrm
    assert isinstance(state, ServerState)  # noqa: S101 - set by create_app
    return state
