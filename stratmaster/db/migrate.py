"""Schema migrations: upgrade, downgrade and status, for SQLite and PostgreSQL.

Alembic is configured in code (the scripts ship inside the package), so an installed
platform migrates without an alembic.ini or a source checkout. Run migrations once, from
the operator's shell or a job, before starting replicas: `python scripts/migrate.py
upgrade` or `stratmaster migrate upgrade`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from stratmaster.db.engine import create_db_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit key: PostgreSQL advisory lock held while migrating ("STRATMIG").
_MIGRATION_LOCK_KEY = 0x53545241544D4947


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None  # None: never migrated (no alembic_version row)
    head: str
    pending: list[str] = field(default_factory=list)  # oldest first

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def all_revisions() -> list[str]:
    """Every revision from the first to head, in upgrade order."""
    script = ScriptDirectory.from_config(alembic_config())
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def status_of(connection: Connection) -> MigrationStatus:
    """Status read through an open connection (the health check reuses its own)."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None, "no migration scripts found"
    current = MigrationContext.configure(connection).get_current_revision()
    try:
        newer = script.iterate_revisions(head, current or "base")
        pending = [s.revision for s in reversed(list(newer))]
    except Exception:  # current is a revision this code does not know (a newer release)
        pending = []
    return MigrationStatus(current=current, head=head, pending=pending)


def upgrade(url: str, revision: str = "head") -> MigrationStatus:
    with _migration_connection(url) as connection:
        command.upgrade(_config_for(connection), revision)
        return status_of(connection)


def downgrade(url: str, revision: str) -> MigrationStatus:
    """Downgrade to `revision`: an id, "-1" for one step, or "base" to drop everything."""
    with _migration_connection(url) as connection:
        command.downgrade(_config_for(connection), revision)
        return status_of(connection)


def status(url: str) -> MigrationStatus:
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return status_of(connection)
    finally:
        engine.dispose()


def _config_for(connection: Connection) -> Config:
    config = alembic_config()
    config.attributes["connection"] = connection
    return config


@contextmanager
def _migration_connection(url: str) -> Iterator[Connection]:
    """A connection in one transaction; on PostgreSQL, holding the migration lock.

    PostgreSQL runs DDL in transactions, so a failed migration leaves nothing half done,
    and the advisory lock makes a second concurrent `upgrade` wait, then find nothing to do.
    """
    engine = create_db_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _signed(_MIGRATION_LOCK_KEY)})
            yield connection
    finally:
        engine.dispose()


def _signed(key: int) -> int:
    return key - (1 << 64) if key >= 1 << 63 else key


def run_migrate_command(argv: list[str]) -> int:
    """`migrate upgrade|status|downgrade [--revision R]` on the configured database.

    Prints the resulting status as JSON. Exit codes: 0 done, 1 the database refused or
    was unreachable, 2 bad configuration or arguments.
    """
    from sqlalchemy.engine import make_url

    from stratmaster.settings import ConfigurationError, load_settings

    parser = argparse.ArgumentParser(prog="migrate", description="Database schema migrations.")
    parser.add_argument("action", choices=("upgrade", "status", "downgrade"))
    parser.add_argument("--revision", help='target revision: upgrade default "head", downgrade default "-1" '
                        '(one step); "base" drops every table')
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad arguments, 0 on --help
        return int(exc.code or 0)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    url = settings.effective_database_url
    try:
        if args.action == "upgrade":
            result = upgrade(url, args.revision or "head")
        elif args.action == "downgrade":
            result = downgrade(url, args.revision or "-1")
        else:
            result = status(url)
    except Exception as exc:  # report, don't dump a traceback on an operator
        safe_url = make_url(url).render_as_string(hide_password=True)
        print(f"migrate {args.action} failed on {safe_url}: {_first_line(exc)}", file=sys.stderr)
        return 1
    report = {"action": args.action, "backend": settings.database_backend, **asdict(result),
              "at_head": result.at_head}
    print(json.dumps(report, indent=2))
    return 0


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"
