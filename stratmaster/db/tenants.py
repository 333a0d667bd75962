"""Tenant bookkeeping: record that a tenant made a request, atomically, from any replica."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite

from stratmaster.db.models import Tenant

MAX_TENANT_KEY_LENGTH = 128

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
# Larger of two timestamps: last_seen_at never moves backwards when replicas' clocks or
# commit order disagree. (SQLite's two-argument max() is scalar, not the aggregate.)
_GREATEST = {"postgresql": func.greatest, "sqlite": func.max}


@dataclass(frozen=True, slots=True)
class TenantRecord:
    tenant_key: str
    first_seen_at: datetime
    last_seen_at: datetime
    request_count: int


_COLUMNS = (Tenant.tenant_key, Tenant.first_seen_at, Tenant.last_seen_at, Tenant.request_count)


def _record(row: Any) -> TenantRecord:
    return TenantRecord(row.tenant_key, row.first_seen_at, row.last_seen_at, row.request_count)


class TenantRepository:
    """Persistence for `tenants`, on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in _INSERTS:
            raise ValueError(f"unsupported database dialect {dialect!r}")
        self._engine = engine
        self._insert = _INSERTS[dialect]
        self._greatest = _GREATEST[dialect]

    def touch(self, tenant_key: str, *, now: datetime | None = None) -> TenantRecord:
        """Count one request for `tenant_key`, creating the tenant on first sight.

        One INSERT .. ON CONFLICT DO UPDATE .. RETURNING statement: concurrent replicas
        never lose an increment and never race to create the same tenant twice.
        """
        _check_key(tenant_key)
        now = now or datetime.now(UTC)
        insert = self._insert(Tenant).values(
            tenant_key=tenant_key, first_seen_at=now, last_seen_at=now, request_count=1
        )
        statement = insert.on_conflict_do_update(
            index_elements=[Tenant.tenant_key],
            set_={
                "last_seen_at": self._greatest(Tenant.last_seen_at, insert.excluded.last_seen_at),
                "request_count": Tenant.request_count + 1,
            },
        ).returning(*_COLUMNS)
        with self._engine.begin() as connection:
            return _record(connection.execute(statement).one())

    def get(self, tenant_key: str) -> TenantRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(*_COLUMNS).where(Tenant.tenant_key == tenant_key)).first()
        return None if row is None else _record(row)


def _check_key(tenant_key: str) -> None:
    if not tenant_key or len(tenant_key) > MAX_TENANT_KEY_LENGTH:
        raise ValueError(f"tenant_key must be 1 to {MAX_TENANT_KEY_LENGTH} characters")
