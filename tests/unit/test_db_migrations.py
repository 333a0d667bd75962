"""Migrations, the tenant repository and the database health check, on SQLite."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from stratmaster.db import migrate
from stratmaster.db.engine import create_db_engine
from stratmaster.db.health import check_database
from stratmaster.db.models import Base
from stratmaster.db.tenants import TenantRepository

HEAD = migrate.head_revision()
ALL = migrate.all_revisions()


@pytest.fixture
def url(tmp_path):
    # A folder that does not exist yet: the engine and migrations must create it.
    return f"sqlite:///{tmp_path / 'nested' / 'stratmaster.db'}"


@pytest.fixture
def engine(url):
    migrate.upgrade(url)
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def test_sqlite_connections_get_wal_busy_timeout_and_foreign_keys(url):
    engine = create_db_engine(url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_pool_gauge_follows_checkouts(url):
    recorded: list[tuple[float, object]] = []

    class FakeGauge:
        def set(self, value, tags=None):
            recorded.append((value, tags))

    tags = {"service": "test", "backend": "sqlite"}
    engine = create_db_engine(url, pool_in_use=FakeGauge(), metric_tags=tags)
    with engine.connect():
        with engine.connect():
            assert recorded[-1] == (2.0, tags)
    assert [value for value, _ in recorded] == [1.0, 2.0, 1.0, 0.0]
    engine.dispose()


def test_upgrade_and_downgrade(url):
    before = migrate.status(url)
    assert (before.current, before.head, before.pending) == (None, HEAD, ALL)

    after = migrate.upgrade(url)
    assert after.at_head and after.pending == []
    assert migrate.status(url) == after
    engine = create_db_engine(url)
    assert {"tenants", "alembic_version"} <= set(inspect(engine).get_table_names())

    gone = migrate.downgrade(url, "base")
    assert gone.current is None and gone.pending == ALL
    assert "tenants" not in inspect(engine).get_table_names()
    engine.dispose()


def test_models_match_the_migrated_schema(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_touch_counts_and_keeps_first_seen(engine):
    tenants = TenantRepository(engine)
    assert tenants.get("acme") is None
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    first = tenants.touch("acme", now=t0)
    second = tenants.touch("acme", now=t0 + timedelta(minutes=5))

    assert (first.request_count, second.request_count) == (1, 2)
    assert second.first_seen_at == first.first_seen_at == t0
    assert second.last_seen_at == t0 + timedelta(minutes=5)
    assert second.first_seen_at.tzinfo is not None
    assert tenants.get("acme") == second
    assert tenants.get("other") is None


def test_last_seen_never_moves_backwards(engine):
    tenants = TenantRepository(engine)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tenants.touch("acme", now=t0)
    late = tenants.touch("acme", now=t0 - timedelta(seconds=1))  # a replica with a slow clock
    assert late.last_seen_at == t0 and late.request_count == 2


def test_touch_rejects_bad_keys(engine):
    tenants = TenantRepository(engine)
    for key in ("", "x" * 129):
        with pytest.raises(ValueError):
            tenants.touch(key)


def test_concurrent_touch_from_two_engines_loses_nothing(url, engine):
    # Two engines stand in for two Serve replicas sharing the file.
    other = create_db_engine(url)
    repositories = [TenantRepository(engine), TenantRepository(other)]
    threads, per_thread = 4, 25

    def work(index: int) -> None:
        for _ in range(per_thread):
            repositories[index % 2].touch("shared")

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert repositories[0].get("shared").request_count == threads * per_thread
    other.dispose()


def _touch_in_a_process(url: str, times: int) -> None:
    engine = create_db_engine(url)
    repository = TenantRepository(engine)
    for _ in range(times):
        repository.touch("shared")
    engine.dispose()


def test_concurrent_touch_from_several_processes_loses_nothing(url, engine):
    # Separate processes, like Serve replicas: SQLite's file locks plus the busy timeout
    # serialise their writes.
    processes, per_process = 3, 30
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(_touch_in_a_process, url, per_process) for _ in range(processes)]:
            future.result()
    assert TenantRepository(engine).get("shared").request_count == processes * per_process


def test_check_database_on_a_migrated_database(engine):
    health = check_database(engine, "sqlite", True)
    assert health.status == "ok", health.detail
    assert health.detail == f"schema at head {HEAD}"
    assert health.latency_ms is not None and health.latency_ms >= 0
    assert (health.name, health.backend, health.embedded) == ("database", "sqlite", True)


def test_check_database_on_an_unmigrated_database(url):
    engine = create_db_engine(url)
    health = check_database(engine, "sqlite", True)
    assert health.status == "down"
    assert health.detail == f"not migrated (head {HEAD})"
    engine.dispose()


def test_check_database_reports_a_schema_behind_head(engine, tmp_path, monkeypatch):
    # This code's scripts plus a newer revision: the database (at head) is now behind.
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9000_next.py").write_text(
        f'revision = "9000"\ndown_revision = "{HEAD}"\nbranch_labels = None\ndepends_on = None\n'
        "def upgrade():\n    pass\ndef downgrade():\n    pass\n"
    )
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", scripts)

    assert migrate.status(str(engine.url)).pending == ["9000"]
    health = check_database(engine, "sqlite", True)
    assert health.status == "ok"
    assert health.detail == f"schema behind: current {HEAD}, head 9000"


def test_check_database_on_a_schema_newer_than_the_code(engine):
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    health = check_database(engine, "sqlite", True)
    assert health.status == "ok"
    assert health.detail.startswith("schema at unknown revision 9999")


def test_check_database_on_an_unreachable_database(tmp_path):
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "a-directory").mkdir()
    unopenable = create_db_engine(f"sqlite:///{tmp_path / 'a-directory'}")
    health = check_database(unopenable, "sqlite", True)
    assert health.status == "down" and health.latency_ms is None
    assert "unable to open database file" in health.detail

    # Nothing listens on port 1: refused at once, no server needed.
    refused = create_db_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    health = check_database(refused, "postgresql", False)
    assert health.status == "down"
    assert "OperationalError" in health.detail
    unopenable.dispose()
    refused.dispose()


def test_migrate_command_uses_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path / "data"))

    assert migrate.run_migrate_command(["status"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == ALL
    assert migrate.run_migrate_command(["upgrade"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["current"] == HEAD and report["at_head"] and report["backend"] == "sqlite"
    assert (tmp_path / "data" / "stratmaster.db").exists()
    assert migrate.run_migrate_command(["downgrade", "--revision", "base"]) == 0
    assert json.loads(capsys.readouterr().out)["current"] is None


def test_migrate_command_refuses_bad_configuration(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "mysql://somewhere/db")
    assert migrate.run_migrate_command(["status"]) == 2
    assert "DATABASE_URL" in capsys.readouterr().err
    assert migrate.run_migrate_command(["sideways"]) == 2
