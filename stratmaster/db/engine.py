"""One place that turns a database URL into a configured SQLAlchemy engine.

Every replica and script builds its engine here, so SQLite pragmas, PostgreSQL pool sizes
and the pool-in-use gauge are the same everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from stratmaster.telemetry import NULL, Gauge

# Per process: Serve runs several replicas, each with its own pool, so the server sees up
# to replicas x (POOL_SIZE + MAX_OVERFLOW) connections; PostgreSQL's default
# max_connections (100) leaves room for about ten replicas.
POOL_SIZE = 5
MAX_OVERFLOW = 5
POOL_TIMEOUT_S = 10  # fail a request rather than queue 30 s (the default) for a connection
CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_MS = 5000


def create_db_engine(
    url: str,
    *,
    pool_in_use: Gauge = NULL,
    metric_tags: Mapping[str, str] | None = None,
) -> Engine:
    """Create an engine for a `sqlite:///` or `postgresql+psycopg://` URL.

    SQLite: the parent folder is created, and every connection gets WAL, a 5 s busy
    timeout and foreign keys. SQLite serialises writers across processes with file locks;
    WAL lets readers proceed during a write and the busy timeout makes a writer wait its
    turn instead of failing with "database is locked", so several Serve replicas on one
    machine can share the file safely.

    PostgreSQL: a bounded pool with pre-ping (connections dropped by a restart or a proxy
    are replaced instead of failing a request) and a connect timeout.

    `pool_in_use` is set to the number of connections currently checked out of this
    engine's pool, with `metric_tags` as given (see telemetry.DB_POOL_IN_USE).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed)
    elif backend == "postgresql":
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
            pool_timeout=POOL_TIMEOUT_S,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
    else:
        raise ValueError(f"unsupported database backend {backend!r}: use sqlite or postgresql+psycopg")
    _track_pool_in_use(engine, pool_in_use, dict(metric_tags) if metric_tags is not None else None)
    return engine


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so switching to WAL also waits for a lock holder.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return engine


def _track_pool_in_use(engine: Engine, gauge: Gauge, tags: dict[str, str] | None) -> None:
    """Count connections between checkout and checkin (or detach) and report the count."""
    lock = threading.Lock()
    in_use = 0

    def change(delta: int) -> None:
        nonlocal in_use
        with lock:
            in_use = max(0, in_use + delta)
            value = in_use
        gauge.set(float(value), tags=tags)

    event.listen(engine, "checkout", lambda *_: change(+1))
    event.listen(engine, "checkin", lambda *_: change(-1))
    # A detached connection never checks in: stop counting it when it leaves the pool.
    event.listen(engine, "detach", lambda *_: change(-1))
