"""The audit log: every write and administrative action, appended, never changed.

The edge stack appends a record after each call of an endpoint whose rule is `audited`
(stratmaster/security/rbac.py), whatever its outcome: `success` (2xx/3xx), `denied` (the
caller lacked the permission), `failed` (any other 4xx/5xx). Unauthenticated calls are
not recorded here (they have no verified subject; the access log has them). Admins read
their own tenant's records with `GET /security/audit-logs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select

from stratmaster.db.models import AuditRecord

OUTCOMES = ("success", "denied", "failed")


def outcome_of(status: int) -> str:
    if status < 400:
        return "success"
    return "denied" if status == 403 else "failed"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    tenant: str
    subject: str
    roles: tuple[str, ...]
    action: str
    resource: str
    correlation_id: str | None
    outcome: str
    status: int
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        entry = asdict(self)
        entry["at"] = self.at.isoformat()
        entry["roles"] = list(self.roles)
        return entry


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(at=row.at, tenant=row.tenant, subject=row.subject,
                      roles=tuple(r for r in row.roles.split(",") if r), action=row.action, resource=row.resource,
                      correlation_id=row.correlation_id, outcome=row.outcome, status=row.status, id=row.id)


class AuditLog:
    """Append and read; there is deliberately no update or delete (the table refuses them too)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def append(self, entry: AuditEntry) -> None:
        if entry.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {entry.outcome!r}")
        with self._engine.begin() as connection:
            connection.execute(insert(AuditRecord).values(
                at=entry.at.astimezone(UTC), tenant=entry.tenant, subject=entry.subject[:256],
                roles=",".join(entry.roles)[:256], action=entry.action[:256], resource=entry.resource[:1024],
                correlation_id=entry.correlation_id, outcome=entry.outcome, status=entry.status))

    def list(self, tenant: str, *, subject: str | None = None, action: str | None = None,
             outcome: str | None = None, since: datetime | None = None, until: datetime | None = None,
             limit: int = 50, offset: int = 0) -> tuple[list[AuditEntry], int]:
        """The tenant's records, newest first, filtered; and how many match in all."""
        conditions = [AuditRecord.tenant == tenant]
        if subject is not None:
            conditions.append(AuditRecord.subject == subject)
        if action is not None:
            conditions.append(AuditRecord.action.contains(action, autoescape=True))
        if outcome is not None:
            conditions.append(AuditRecord.outcome == outcome)
        if since is not None:
            conditions.append(AuditRecord.at >= since)
        if until is not None:
            conditions.append(AuditRecord.at < until)
        with self._engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(AuditRecord).where(*conditions))
            rows = connection.execute(select(AuditRecord).where(*conditions)
                                      .order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
                                      .limit(limit).offset(offset)).all()
        return [_entry(row) for row in rows], int(total or 0)


def entry_now(**fields: Any) -> AuditEntry:
    return AuditEntry(at=datetime.now(UTC), **fields)
