"""Each tenant's source allowlist, in the database; empty (nothing fetched) until an admin sets it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select

from stratmaster.db.models import SourceAllowlist
from stratmaster.research.sources import normalise_allowlist

MAX_HOSTS = 500


class AllowlistRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, tenant: str) -> list[str]:
        with self._engine.connect() as connection:
            hosts = connection.scalar(select(SourceAllowlist.hosts).where(SourceAllowlist.tenant == tenant))
        return list(hosts or [])

    def replace(self, tenant: str, hosts: list[str], by: str) -> list[str]:
        """Set the tenant's allowlist; ValueError naming an entry that is not a host or IP."""
        normalised = normalise_allowlist(hosts)
        if len(normalised) > MAX_HOSTS:
            raise ValueError(f"at most {MAX_HOSTS} hosts, got {len(normalised)}")
        with self._engine.begin() as connection:
            connection.execute(delete(SourceAllowlist).where(SourceAllowlist.tenant == tenant))
            connection.execute(insert(SourceAllowlist).values(tenant=tenant, hosts=normalised, updated_by=by[:256],
                                                             updated_at=datetime.now(UTC)))
        return normalised
