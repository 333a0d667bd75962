"""The database layer against a real PostgreSQL server (TEST_DATABASE_URL).

Start one with `bash scripts/servers.sh start` and `eval "$(bash scripts/servers.sh env)"`.
Each run works in a fresh schema and drops it at the end, so reruns and parallel runs
never see each other's tables.
"""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from stratmaster.db import migrate
from stratmaster.db.engine import create_db_engine
from stratmaster.db.health import check_database
from stratmaster.db.tenants import TenantRepository

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        message = ("TEST_DATABASE_URL is not set: run `bash scripts/servers.sh start` and "
                   '`eval "$(bash scripts/servers.sh env)"`')
        if os.environ.get("STRATMASTER_REQUIRE_SERVERS") == "1":
            pytest.fail(message + " (STRATMASTER_REQUIRE_SERVERS=1 forbids skipping)")
        pytest.skip(message)
    return url


@pytest.fixture(scope="module")
def url(server_url):
    """A URL whose connections all use a fresh schema (search_path)."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(server_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    yield make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    with admin.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture
def engine(url):
    migrate.upgrade(url)
    engine = create_db_engine(url)
    yield engine
    engine.dispose()
    migrate.downgrade(url, "base")


def test_migrations_up_and_down(url):
    everything = migrate.all_revisions()
    assert migrate.status(url).pending == everything
    assert migrate.upgrade(url).at_head
    assert migrate.upgrade(url).at_head  # idempotent
    engine = create_db_engine(url)
    assert "tenants" in inspect(engine).get_table_names()
    columns = {c["name"]: c for c in inspect(engine).get_columns("tenants")}
    assert columns["first_seen_at"]["type"].timezone is True

    assert {"documents", "document_chunks", "idempotency_keys"} <= set(inspect(engine).get_table_names())
    # Step by step back to nothing: every downgrade runs on a real PostgreSQL.
    for revision in reversed(everything):
        assert migrate.status(url).current == revision
        migrate.downgrade(url, "-1")
    after = migrate.status(url)
    assert after.current is None and after.pending == everything
    assert not {"tenants", "documents"} & set(inspect(engine).get_table_names())
    engine.dispose()


def test_concurrent_touch_of_one_tenant_counts_every_request(engine):
    tenants = TenantRepository(engine)
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                tenants.touch("acme")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    record = tenants.get("acme")
    assert record is not None and record.request_count == threads * per_thread
    assert record.first_seen_at <= record.last_seen_at
    assert record.first_seen_at.utcoffset().total_seconds() == 0


def test_check_database_ok(engine):
    health = check_database(engine, "postgresql", False)
    assert health.status == "ok", health.detail
    assert health.detail == f"schema at head {migrate.head_revision()}"
    assert health.latency_ms is not None


def test_check_database_not_migrated(url):
    engine = create_db_engine(url)
    health = check_database(engine, "postgresql", False)
    assert health.status == "down" and health.detail.startswith("not migrated")
    engine.dispose()


def test_pool_gauge_rises_while_a_connection_is_checked_out(url):
    class FakeGauge:
        def __init__(self) -> None:
            self.values: list[float] = []
            self.tags: list[object] = []

        def set(self, value, tags=None):
            self.values.append(value)
            self.tags.append(tags)

    gauge = FakeGauge()
    tags = {"service": "test", "backend": "postgresql"}
    engine = create_db_engine(url, pool_in_use=gauge, metric_tags=tags)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        assert gauge.values[-1] == 1.0
        with engine.connect():
            assert gauge.values[-1] == 2.0
        assert gauge.values[-1] == 1.0
    assert gauge.values[-1] == 0.0
    assert all(t == tags for t in gauge.tags)
    engine.dispose()


def test_the_audit_log_is_append_only_on_postgresql(engine):
    from datetime import UTC, datetime

    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    from stratmaster.security.audit import AuditEntry, AuditLog

    audit = AuditLog(engine)
    audit.append(AuditEntry(datetime.now(UTC), "acme", "ana", ("admin",), "POST /evals/runs", "/evals/runs",
                            "c1", "success", 202))
    for statement in ("UPDATE audit_log SET outcome = 'failed'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    records, total = audit.list("acme")
    assert total == 1 and records[0].outcome == "success" and records[0].roles == ("admin",)
