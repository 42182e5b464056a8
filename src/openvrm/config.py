"""Where a vault lives: home folder, database URL and blob store, from flags and the environment.

Precedence: explicit argument (``--home``) > environment (``OPENVRM_HOME``, ``OPENVRM_DATABASE_URL``,
``OPENVRM_BLOB_STORE``, ``OPENVRM_ALLOW_LOOPBACK_PEERS``, ``OPENVRM_CHECK_WORKERS``) > the user's data
directory (platformdirs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from platformdirs import user_data_path

from openvrm.errors import InvalidValue

BlobBackend = Literal["files", "database"]
MAX_CHECK_WORKERS = 64


def _check_workers_from_env() -> int | None:
    value = os.environ.get("OPENVRM_CHECK_WORKERS", "").strip().lower()
    if value in ("", "auto"):
        return None
    if not value.isdigit() or int(value) > MAX_CHECK_WORKERS:
        raise InvalidValue(
            f"OPENVRM_CHECK_WORKERS must be 'auto' or a number from 0 to {MAX_CHECK_WORKERS}, not {value!r}"
        )
    return int(value)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    blob_backend: BlobBackend
    # Outbound requests may reach vendors on loopback (http://127.0.0.1): tests and the demo only.
    allow_loopback_peers: bool = False
    # Worker processes that check overlapping protocol pushes (None: one per core beyond the server's own,
    # at most four; 0: none). See openvrm.server.prechecks.
    check_workers: int | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @classmethod
    def resolve(
        cls,
        home: Path | str | None = None,
        database_url: str | None = None,
        blob_backend: str | None = None,
        allow_loopback_peers: bool | None = None,
        check_workers: int | None = None,
    ) -> Settings:
        if home is None:
            env_home = os.environ.get("OPENVRM_HOME")
            home = Path(env_home) if env_home else user_data_path("openvrm", appauthor=False)
        home = Path(home).expanduser().absolute()
        url = database_url or os.environ.get("OPENVRM_DATABASE_URL") or f"sqlite:///{home / 'vault.db'}"
        if not (url.startswith("sqlite") or url.startswith("postgresql")):
            raise InvalidValue(
                f"unsupported database URL scheme in {url.split(':', 1)[0]!r}: use sqlite or postgresql"
            )
        backend = (
            blob_backend
            or os.environ.get("OPENVRM_BLOB_STORE")
            or ("files" if url.startswith("sqlite") else "database")
        )
        if backend not in ("files", "database"):
            raise InvalidValue(f"OPENVRM_BLOB_STORE must be 'files' or 'database', not {backend!r}")
        if allow_loopback_peers is None:
            flag = os.environ.get("OPENVRM_ALLOW_LOOPBACK_PEERS", "").strip().lower()
            if flag not in ("", "0", "false", "no", "1", "true", "yes"):
                raise InvalidValue(
                    f"OPENVRM_ALLOW_LOOPBACK_PEERS must be 1/true/yes or 0/false/no, not {flag!r}"
                )
            allow_loopback_peers = flag in ("1", "true", "yes")
        if check_workers is None:
            check_workers = _check_workers_from_env()
        elif not 0 <= check_workers <= MAX_CHECK_WORKERS:
            raise InvalidValue(f"check workers must be from 0 to {MAX_CHECK_WORKERS}, not {check_workers}")
        return cls(home, url, backend, allow_loopback_peers, check_workers)  # type: ignore[arg-type]

    def describe_database(self) -> str:
        """The database URL without any password, safe for logs and status output."""
        if self.is_sqlite:
            return self.database_url
        scheme, _, rest = self.database_url.partition("://")
        creds, at, host = rest.rpartition("@")
        if at and ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}{at}{host}"
