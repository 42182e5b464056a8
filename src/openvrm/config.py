"""Where a vault lives: home folder, database URL and blob store, from flags and the environment.

Precedence: explicit argument (``--home``) > environment (``OPENVRM_HOME``, ``OPENVRM_DATABASE_URL``,
``OPENVRM_BLOB_STORE``, ``OPENVRM_ALLOW_LOOPBACK_PEERS``) > the user's data directory (platformdirs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from platformdirs import user_data_path

from openvrm.errors import InvalidValue

BlobBackend = Literal["files", "database"]


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    blob_backend: BlobBackend
    # Outbound requests may reach vendors on loopback (http://127.0.0.1): tests and the demo only.
    allow_loopback_peers: bool = False

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
        return cls(home, url, backend, allow_loopback_peers)  # type: ignore[arg-type]

    def describe_database(self) -> str:
        """The database URL without any password, safe for logs and status output."""
        if self.is_sqlite:
            return self.database_url
        scheme, _, rest = self.database_url.partition("://")
        creds, at, host = rest.rpartition("@")
        if at and ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}{at}{host}"
