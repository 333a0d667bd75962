"""Alembic environment: runs on the connection `stratmaster.db.migrate` passes in.

`migrate.py` opens the connection (with the platform's engine settings and, on
PostgreSQL, a lock that keeps two replicas from migrating at once) and hands it over in
`config.attributes["connection"]`. Run through the `alembic` command instead, the URL is
`sqlalchemy.url` if set, else the platform settings (DATABASE_URL or the SQLite default).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from stratmaster.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from stratmaster.settings import load_settings

    return load_settings().effective_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from stratmaster.db.engine import create_db_engine

    engine = create_db_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
