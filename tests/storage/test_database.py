from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from openvrm.config import Settings
from openvrm.profile.service import ProfileService
from openvrm.storage.db import SCHEMA_HEAD, Database
from openvrm.storage.models import Base
from openvrm.vault.core import UnlockedVault, Vault


def test_migrations_match_the_models(vault: Vault) -> None:
    with vault.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert vault.db.current_revision() == vault.db.head_revision()


def test_migrate_is_idempotent(vault: Vault) -> None:
    vault.db.migrate()
    vault.db.migrate()
    assert vault.db.current_revision() == vault.db.head_revision()


def test_schema_head_names_the_newest_migration(vault: Vault) -> None:
    # SCHEMA_HEAD lets a vault already up to date skip Alembic; a new migration must move it too.
    assert vault.db.head_revision() == SCHEMA_HEAD, "add the new migration's revision to SCHEMA_HEAD"


def test_an_older_schema_is_still_migrated(settings: Settings) -> None:
    # A vault left at an older revision is not taken for up to date: opening it runs the migrations due.
    db = Database(settings.database_url)
    with db.engine.connect() as conn:
        cfg = db._alembic_config(conn)
        command.upgrade(cfg, "0005")
        conn.commit()
    assert db.current_revision() == "0005"
    db.migrate()
    assert db.current_revision() == SCHEMA_HEAD
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    db.dispose()


def test_opening_an_up_to_date_vault_does_not_load_alembic(sqlite_settings: Settings, tmp_path: Path) -> None:
    Vault.open(sqlite_settings, create=True).close()
    code = (
        "import sys; from openvrm.config import Settings; from openvrm.vault.core import Vault;"
        f"v = Vault.open(Settings.resolve({str(sqlite_settings.home)!r})); v.close();"
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_settings: Settings) -> None:
    v = Vault.open(sqlite_settings, create=True)
    with v.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    v.close()
    mode = (sqlite_settings.home / "vault.db").stat().st_mode & 0o777
    assert mode == 0o600


def test_concurrent_writers_lose_nothing(unlocked: UnlockedVault) -> None:
    svc = ProfileService(unlocked)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                svc.set(f"free.w{n}", f"value {i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    changes = svc.changes()
    assert len(changes) == 60
    assert svc.current() == {f"free.w{n}": "value 14" for n in range(4)}
    # ids sort in creation order, so each writer's history is in order
    for n in range(4):
        assert [c.value for c in svc.history(f"free.w{n}")] == [f"value {i}" for i in range(15)]


def test_a_second_process_style_connection_sees_committed_writes(sqlite_settings: Settings) -> None:
    v = Vault.open(sqlite_settings, create=True)
    other = Database(sqlite_settings.database_url)
    with v.db.write() as s:
        s.execute(sa.text("create table t (x int)"))
        s.execute(sa.text("insert into t values (1)"))
    with other.read() as s:
        assert s.execute(sa.text("select x from t")).scalar() == 1
    other.dispose()
    v.close()
