"""Database health: reachable, how fast, and whether the schema is migrated."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from stratmaster.db.migrate import status_of
from stratmaster.health import ComponentHealth

STATEMENT_TIMEOUT_MS = 2000


def check_database(engine: Engine, backend: str, embedded: bool) -> ComponentHealth:
    """Run `SELECT 1` and read the migration status; never raises.

    Down when unreachable or never migrated (requests would fail on missing tables). A
    schema behind head is still ok, but said so: old tables serve the code that exists
    until the operator runs the pending migrations.
    """

    def result(status: str, detail: str, latency_ms: float | None = None) -> ComponentHealth:
        return ComponentHealth(name="database", status=status, backend=backend, embedded=embedded,
                               latency_ms=latency_ms, detail=detail)

    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # A probe must answer quickly: don't wait behind a lock for the full request timeout.
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
            connection.execute(text("SELECT 1")).scalar_one()
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            migration = status_of(connection)
    except Exception as exc:  # a health probe reports failures, it does not raise them
        cause = getattr(exc, "orig", None) or exc
        lines = str(cause).strip().splitlines()
        return result("down", f"{type(cause).__name__}: {lines[0] if lines else ''}")
    if migration.current is None:
        return result("down", f"not migrated (head {migration.head})", latency_ms)
    if migration.at_head:
        return result("ok", f"schema at head {migration.head}", latency_ms)
    if migration.pending:
        return result("ok", f"schema behind: current {migration.current}, head {migration.head}", latency_ms)
    return result("ok", f"schema at unknown revision {migration.current} (newer code?), head {migration.head}",
                  latency_ms)
