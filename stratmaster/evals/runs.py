"""Eval runs the evals service started: their rows in `eval_runs`, scoped by tenant.

A run is a pipeline (`retrieval_benchmark` or `eval_sweep`) submitted as a Ray job. Its row
follows the job's status; when the job succeeded, the pipeline's result JSON and its gate
table are stored on the row, so results outlive the job and its output folder.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from stratmaster.db.models import EvalRun

KINDS = ("retrieval_benchmark", "eval_sweep")
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@dataclass(frozen=True, slots=True)
class EvalRunRecord:
    id: str
    tenant: str
    kind: str
    name: str
    status: str
    submission_id: str | None
    config: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    gates: list[Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def _record(row: EvalRun) -> EvalRunRecord:
    return EvalRunRecord(row.id, row.tenant, row.kind, row.name, row.status, row.submission_id, dict(row.config),
                         row.progress, row.result, row.gates, row.error, row.created_at, row.updated_at)


class EvalRunRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, tenant: str, kind: str, name: str, config: dict[str, Any]) -> EvalRunRecord:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        now = datetime.now(UTC)
        run_id = str(uuid.uuid4())
        with self._engine.begin() as connection:
            connection.execute(EvalRun.__table__.insert().values(
                id=run_id, tenant=tenant, kind=kind, name=name, status="PENDING", config=config,
                created_at=now, updated_at=now))
        found = self.get(tenant, run_id)
        assert found is not None
        return found

    def get(self, tenant: str, run_id: str) -> EvalRunRecord | None:
        """The run, or None when it does not exist for this tenant (another tenant's id is not confirmed)."""
        with Session(self._engine) as session:
            row = session.scalars(select(EvalRun).where(EvalRun.tenant == tenant, EvalRun.id == run_id)).first()
            return None if row is None else _record(row)

    def list(self, tenant: str, limit: int = 50, offset: int = 0) -> tuple[list[EvalRunRecord], int]:
        """Newest first, and how many the tenant has in all."""
        with Session(self._engine) as session:
            rows = session.scalars(select(EvalRun).where(EvalRun.tenant == tenant)
                                   .order_by(EvalRun.created_at.desc(), EvalRun.id).limit(limit).offset(offset))
            records = [_record(row) for row in rows]
            total = session.scalar(select(func.count()).select_from(EvalRun).where(EvalRun.tenant == tenant))
        return records, int(total or 0)

    def update(self, tenant: str, run_id: str, **changes: Any) -> None:
        allowed = {"status", "submission_id", "progress", "result", "gates", "error"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._engine.begin() as connection:
            connection.execute(update(EvalRun).where(EvalRun.tenant == tenant, EvalRun.id == run_id)
                               .values(**changes, updated_at=datetime.now(UTC)))

