"""Research runs in the database: created once per idempotency key, each step's output kept once.

Both orchestrators write here, so `GET /research/runs/{id}` shows the same thing whichever
runs the steps. `save_step` keeps the first output of a step: a worker that crashed after
finishing a step but before reporting it, and ran it again, does not change the run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from stratmaster.db.models import ResearchRun, ResearchStep
from stratmaster.research.workflow import STEPS, TERMINAL_STATES


class IdempotencyConflict(ValueError):
    """The key was used before for a different request."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    tenant: str
    question: str
    request: dict[str, Any]
    orchestrator: str
    status: str
    current_step: str | None
    cancel_requested: bool
    result: dict[str, Any] | None
    reasons: list[Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    steps_done: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATES

    def progress(self) -> dict[str, Any]:
        return {"done": len(self.steps_done), "total": len(STEPS), "steps": list(self.steps_done)}


def request_sha256(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _record(row: Any, steps: tuple[str, ...] = ()) -> RunRecord:
    return RunRecord(row.id, row.tenant, row.question, dict(row.request), row.orchestrator, row.status,
                     row.current_step, bool(row.cancel_requested), row.result, row.reasons, row.error,
                     row.created_at, row.updated_at, steps)


class ResearchRunRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, tenant: str, request: dict[str, Any], orchestrator: str,
               idempotency_key: str | None = None) -> tuple[RunRecord, bool]:
        """(the run, whether it is new). The same key with the same request returns the first run;
        with another request it raises IdempotencyConflict."""
        digest = request_sha256(request)
        if idempotency_key is not None:
            existing = self._by_key(tenant, idempotency_key)
            if existing is not None:
                return self._checked(existing, digest, idempotency_key), False
        now = datetime.now(UTC)
        run_id = str(uuid.uuid4())
        try:
            with self._engine.begin() as connection:
                connection.execute(ResearchRun.__table__.insert().values(
                    id=run_id, tenant=tenant, idempotency_key=idempotency_key, request_sha256=digest,
                    question=str(request.get("question", "")), request=request, orchestrator=orchestrator,
                    status="queued", current_step=None, cancel_requested=False, created_at=now, updated_at=now))
        except IntegrityError:  # a concurrent request with the same key won the insert
            existing = self._by_key(tenant, idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return self._checked(existing, digest, idempotency_key), False
        found = self.get(tenant, run_id)
        assert found is not None
        return found, True

    def _by_key(self, tenant: str, key: str) -> Any:
        with self._engine.connect() as connection:
            return connection.execute(select(ResearchRun.__table__).where(
                ResearchRun.tenant == tenant, ResearchRun.idempotency_key == key)).first()

    def _checked(self, row: Any, digest: str, key: str | None) -> RunRecord:
        if row.request_sha256 != digest:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for a different request (run {row.id})")
        found = self.get(row.tenant, row.id)
        assert found is not None
        return found

    def get(self, tenant: str, run_id: str) -> RunRecord | None:
        """The run, or None when it is not this tenant's (another tenant's id is not confirmed)."""
        with self._engine.connect() as connection:
            row = connection.execute(select(ResearchRun.__table__).where(
                ResearchRun.tenant == tenant, ResearchRun.id == run_id)).first()
            if row is None:
                return None
            steps = connection.execute(select(ResearchStep.step).where(ResearchStep.run_id == run_id)).scalars()
            done = set(steps)
        return _record(row, tuple(s for s in STEPS if s in done))

    def get_any(self, run_id: str) -> RunRecord | None:
        """For orchestrators, which act on runs of every tenant."""
        with self._engine.connect() as connection:
            tenant = connection.execute(select(ResearchRun.tenant).where(ResearchRun.id == run_id)).scalar()
        return None if tenant is None else self.get(tenant, run_id)

    def list(self, tenant: str, limit: int = 20, offset: int = 0) -> tuple[list[RunRecord], int]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(ResearchRun.__table__).where(ResearchRun.tenant == tenant)
                                      .order_by(ResearchRun.created_at.desc(), ResearchRun.id)
                                      .limit(limit).offset(offset)).all()
            total = connection.scalar(select(func.count()).select_from(ResearchRun)
                                      .where(ResearchRun.tenant == tenant))
        return [_record(row) for row in rows], int(total or 0)

    def unfinished(self, orchestrator: str) -> list[str]:
        """Ids of runs an orchestrator should (re)start: not in a terminal state."""
        with self._engine.connect() as connection:
            return list(connection.execute(select(ResearchRun.id).where(
                ResearchRun.orchestrator == orchestrator, ResearchRun.status.not_in(TERMINAL_STATES))
                .order_by(ResearchRun.created_at)).scalars())

    def set_state(self, run_id: str, status: str, current_step: str | None = None, *,
                  result: dict[str, Any] | None = None, reasons: list[Any] | None = None,
                  error: str | None = None) -> None:
        """Move a run on; a run already in a terminal state stays there."""
        values: dict[str, Any] = {"status": status, "current_step": current_step, "updated_at": datetime.now(UTC)}
        if result is not None:
            values["result"] = result
        if reasons is not None:
            values["reasons"] = reasons
        if error is not None:
            values["error"] = error[:4000]
        with self._engine.begin() as connection:
            connection.execute(update(ResearchRun).where(ResearchRun.id == run_id,
                                                         ResearchRun.status.not_in(TERMINAL_STATES)).values(**values))

    def request_cancel(self, tenant: str, run_id: str) -> RunRecord | None:
        """Ask a run to stop; a queued run is cancelled at once. None when it is not this tenant's."""
        with self._engine.begin() as connection:
            changed = connection.execute(update(ResearchRun).where(
                ResearchRun.tenant == tenant, ResearchRun.id == run_id).values(cancel_requested=True))
            if changed.rowcount == 0:
                return None
            connection.execute(update(ResearchRun).where(ResearchRun.id == run_id, ResearchRun.status == "queued")
                               .values(status="cancelled", updated_at=datetime.now(UTC)))
        return self.get(tenant, run_id)

    def cancel_requested(self, run_id: str) -> bool:
        with self._engine.connect() as connection:
            return bool(connection.scalar(select(ResearchRun.cancel_requested).where(ResearchRun.id == run_id)))

    def save_step(self, run_id: str, step: str, output: dict[str, Any], attempts: int = 1,
                  seconds: float = 0.0) -> dict[str, Any]:
        """Keep a step's output; when it is there already (a crashed worker's re-run), the first one wins."""
        try:
            with self._engine.begin() as connection:
                connection.execute(ResearchStep.__table__.insert().values(
                    run_id=run_id, step=step, output=output, attempts=attempts, seconds=round(seconds, 4),
                    finished_at=datetime.now(UTC)))
            return output
        except IntegrityError:
            return self.step_outputs(run_id)[step]

    def step_outputs(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(ResearchStep.step, ResearchStep.output)
                                      .where(ResearchStep.run_id == run_id)).all()
        return {row.step: row.output for row in rows}

    def step_timings(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(ResearchStep.step, ResearchStep.attempts, ResearchStep.seconds)
                                      .where(ResearchStep.run_id == run_id)).all()
        return {row.step: {"attempts": row.attempts, "seconds": row.seconds} for row in rows}
