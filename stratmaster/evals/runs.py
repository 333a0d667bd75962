"""Eval runs: their rows in `eval_runs`, scoped by tenant, as `GET /evals/runs` lists them.

A run the evals service started is a pipeline (`retrieval_benchmark` or `eval_sweep`)
submitted as a Ray job. Its row follows the job's status; when the job succeeded, the
pipeline's result JSON and its gate table are stored on the row, so results outlive the
job and its output folder. A pipeline started any other way (`python -m pipelines.X`,
`stratmaster job submit`, `ray job submit`) records its finished result with `record()`
when given `--tenant`, so the API lists it beside the others.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from stratmaster.db.models import EvalRun

# What POST /evals/runs starts; every pipeline can record a finished run.
STARTABLE_KINDS = ("retrieval_benchmark", "eval_sweep")
KINDS = (*STARTABLE_KINDS, "compress_corpus")
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
        """A run about to be submitted: PENDING until its job reports."""
        return self._insert(STARTABLE_KINDS, tenant, kind, name, config, status="PENDING")

    def record(self, tenant: str, kind: str, name: str, config: dict[str, Any], result: dict[str, Any],
               gates: list[Any], submission_id: str | None = None,
               progress: dict[str, Any] | None = None) -> EvalRunRecord:
        """A run that finished outside the service (a pipeline run by hand or as a job): SUCCEEDED, in one insert."""
        return self._insert(KINDS, tenant, kind, name, config, status="SUCCEEDED", submission_id=submission_id,
                            progress=progress, result=result, gates=gates)

    def _insert(self, kinds: tuple[str, ...], tenant: str, kind: str, name: str, config: dict[str, Any],
                **values: Any) -> EvalRunRecord:
        if kind not in kinds:
            raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
        now = datetime.now(UTC)
        run_id = str(uuid.uuid4())
        with self._engine.begin() as connection:
            connection.execute(EvalRun.__table__.insert().values(
                id=run_id, tenant=tenant, kind=kind, name=name, config=config, created_at=now, updated_at=now,
                **values))
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



# --- a run's job and files ----------------------------------------------------------------------
RESULT_FILES = {"retrieval_benchmark": "benchmark.json", "eval_sweep": "sweep.json", "compress_corpus": "compress.json"}


class JobRunner(Protocol):
    """What the runs need of a job server (cluster.jobs.JobsClient has it)."""

    def submit(self, entrypoint: str, *, submission_id: str | None = None,
               metadata: dict[str, str] | None = None) -> str: ...

    def status(self, job_id: str) -> str: ...


@dataclass(frozen=True)
class RunFiles:
    """Where a run's config and outputs live: `<runs_dir>/<run id>/`."""

    folder: Path
    name: str
    kind: str

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def output(self) -> Path:
        return self.folder / "results"

    @property
    def result(self) -> Path:
        return self.output / self.name / RESULT_FILES[self.kind]

    @property
    def progress(self) -> Path:
        return self.output / self.name / "progress.json"


def entrypoint(python: str, root: Path, kind: str, files: RunFiles) -> str:
    """The job's shell command: the pipeline module, run from the repository with this interpreter."""
    return (f"cd {shlex.quote(str(root))} && {shlex.quote(python)} -m pipelines.{kind} "
            f"--config {shlex.quote(str(files.config))} --output-dir {shlex.quote(str(files.output))}")


def refresh(run: EvalRunRecord, runs: EvalRunRepository, jobs: JobRunner, files: RunFiles,
            gate: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> EvalRunRecord:
    """Bring a run's row up to date with its job: status, progress, and on success the result and gates."""
    if run.finished or run.submission_id is None:
        return run
    status = jobs.status(run.submission_id)
    changes: dict[str, Any] = {}
    progress = _read_json(files.progress)
    if progress is not None and progress != run.progress:
        changes["progress"] = progress
    if status == "SUCCEEDED":
        result = _read_json(files.result)
        if result is None:
            changes.update(status="FAILED", error=f"the job succeeded but wrote no {files.result.name}")
        else:
            changes.update(status=status, result=result, gates=gate(result))
    elif status != run.status:
        changes["status"] = status
        if status in ("FAILED", "STOPPED"):
            changes["error"] = f"the job {status.lower()}; its logs: stratmaster job logs {run.submission_id}"
    if changes:
        runs.update(run.tenant, run.id, **changes)
        found = runs.get(run.tenant, run.id)
        assert found is not None
        return found
    return run


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
