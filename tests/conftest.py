"""Shared fixtures: a vault on each storage backend.

Storage tests run on SQLite and on PostgreSQL. PostgreSQL is the machine's server at
``OPENVRM_TEST_POSTGRES`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets
its own schema, dropped afterwards. In CI (``CI=true``) a missing PostgreSQL fails the run; elsewhere the
PostgreSQL half skips with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from openvrm.config import Settings
from openvrm.crypto import KdfParams
from openvrm.vault.core import UnlockedVault, Vault

PG_URL = os.environ.get("OPENVRM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PASSPHRASE = "correct horse battery staple"

# Cheap Argon2id for the many vaults tests create; the default parameters are exercised by the tests
# that go through `vrm init` and by bench/vault.py.
FAST_KDF = {"time_cost": 1, "memory_kib": 8 * 1024, "parallelism": 1}


def fast_kdf() -> KdfParams:
    return KdfParams.new(**FAST_KDF)


_pg_error: str | None = None
_pg_checked = False


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    global _pg_error, _pg_checked
    if not _pg_checked:
        _pg_checked = True
        try:
            engine = sa.create_engine(PG_URL)
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            engine.dispose()
        except Exception as exc:  # any failure to connect means "not available"
            _pg_error = f"PostgreSQL at {PG_URL} is not reachable: {type(exc).__name__}: {str(exc)[:200]}"
    return _pg_error


def require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI requires PostgreSQL. {reason}")
    pytest.skip(reason)


@contextmanager
def new_pg_schema() -> Iterator[str]:
    """A database URL whose search_path is a fresh, empty schema of its own; the schema is dropped after.

    The schema's name is random, so tests in parallel workers (pytest-xdist) never share one.
    """
    require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    engine = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        # synchronous_commit=off: a commit returns before its WAL reaches the disk. Only a crash of the
        # server itself could lose it, and no test crashes the server; what others see is unchanged.
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A database URL whose search_path is a fresh, empty schema."""
    with new_pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a new vault on the parametrised backend (home is always a temp folder)."""
    if backend == "sqlite":
        return Settings.resolve(tmp_path / "home")
    url = request.getfixturevalue("pg_schema_url")
    return Settings.resolve(tmp_path / "home", database_url=url)


@pytest.fixture
def vault(settings: Settings) -> Iterator[Vault]:
    v = Vault.open(settings, create=True)
    yield v
    v.close()


@pytest.fixture
def unlocked(vault: Vault) -> UnlockedVault:
    return vault.create(PASSPHRASE, kdf=fast_kdf())


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings.resolve(tmp_path / "home")


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own vault or passphrase."""
    for name in (
        "OPENVRM_HOME",
        "OPENVRM_DATABASE_URL",
        "OPENVRM_BLOB_STORE",
        "OPENVRM_PASSPHRASE",
        "OPENVRM_PASSPHRASE_FILE",
        "OPENVRM_SESSION",
        "OPENVRM_KDF",
    ):
        monkeypatch.delenv(name, raising=False)
