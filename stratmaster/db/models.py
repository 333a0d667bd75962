"""Tables, as SQLAlchemy 2 typed declarative models.

Migrations (`migrations/versions/`) are the source of truth for the schema; these models
must match them, which `tests/unit/test_db_migrations.py` checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: Alembic can only drop or alter a constraint it can name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored and returned in UTC on every backend.

    PostgreSQL keeps the offset (timestamptz); SQLite has no datetime type and drops it,
    so values are normalised to UTC on the way in and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware value (datetime.now(UTC))")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    """A tenant seen in a verified token; created on its first request."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The token's tenant claim: the only tenant identity the platform trusts.
    tenant_key: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    request_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class Document(Base):
    """A tenant's ingested document: provenance and where its original is stored.

    Indexes (keyword, vector, graph) are written before this row, so a row's
    `content_sha256` always names content that is fully indexed; a failed ingest leaves
    the old row, and a retry redoes the work.
    """

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant", "document_id", name="uq_documents_tenant_document_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    document_id: Mapped[str] = mapped_column(String(256), nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    content_type: Mapped[str] = mapped_column(String(32), nullable=False)
    metadata_json: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False)
    content_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    parser_version: Mapped[str] = mapped_column(String(32), nullable=False)
    object_key: Mapped[str] = mapped_column(Text, nullable=False)
    char_count: Mapped[int] = mapped_column(Integer, nullable=False)
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False)
    ingested_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class DocumentChunk(Base):
    """A chunk of a document's normalised text, with its character span for citations."""

    __tablename__ = "document_chunks"
    __table_args__ = (Index("ix_document_chunks_tenant_document_id", "tenant", "document_id"),)

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    chunk_id: Mapped[str] = mapped_column(String(320), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(256), nullable=False)
    ordinal: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    start: Mapped[int] = mapped_column(Integer, nullable=False)
    end: Mapped[int] = mapped_column(Integer, nullable=False)
    token_count: Mapped[int] = mapped_column(Integer, nullable=False)


class IdempotencyRecord(Base):
    """The stored answer to a request made with an `Idempotency-Key`, per tenant."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), nullable=False)
    request_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    response_json: Mapped[dict[str, Any]] = mapped_column("response", JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class EvalRun(Base):
    """A benchmark or sweep the evals service submitted as a Ray job, per tenant.

    `status` follows the job (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED); `result` is the
    pipeline's result JSON once it succeeded, `gates` its gate table from
    configs/evals/thresholds.yaml.
    """

    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_tenant_created_at", "tenant", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    submission_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    gates: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class RouterCall(Base):
    """One call the router made to a model: the cost ledger, per tenant (migration 0004).

    Every attempt is a row, fallbacks included: `attempt` counts from 0 within a request,
    `outcome` is `ok` or why it failed (timeout, rate_limited, server_error, ...). Money is
    in micro-USD and time in microseconds, as integers, so sums are exact on every backend;
    `quality_ppm` is the feedback score (0..1) in millionths, once given.
    """

    __tablename__ = "router_calls"
    __table_args__ = (Index("ix_router_calls_tenant_created_at", "tenant", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    task: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    provider: Mapped[str] = mapped_column(String(64), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer, nullable=False)
    tokens_out: Mapped[int] = mapped_column(Integer, nullable=False)
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, nullable=False)
    latency_us: Mapped[int] = mapped_column(BigInteger, nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    quality_ppm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class RouterBudgetSpend(Base):
    """What a tenant spent in one budget period (`month:2026-11`, `day:2026-11-27`, `total`)."""

    __tablename__ = "router_budget_spend"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    period_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    spent_micro_usd: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class RouterBanditArm(Base):
    """The recommender's state for one model on a tenant's task: pulls and summed reward (millionths)."""

    __tablename__ = "router_bandit_arms"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    pulls: Mapped[int] = mapped_column(Integer, nullable=False)
    reward_sum_ppm: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class AuditRecord(Base):
    """One write or administrative action: who, for which tenant, what, on what, and how it ended.

    Append-only: the migration adds triggers that refuse UPDATE and DELETE.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    subject: Mapped[str] = mapped_column(String(256), nullable=False)
    roles: Mapped[str] = mapped_column(String(256), nullable=False)  # comma separated
    action: Mapped[str] = mapped_column(String(256), nullable=False)  # "POST /knowledge/documents"
    resource: Mapped[str] = mapped_column(String(1024), nullable=False)  # the request path
    correlation_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)  # success | denied | failed
    status: Mapped[int] = mapped_column(Integer, nullable=False)


class ResearchRun(Base):
    """A research run: the question, who asked, where it is, and its brief once done."""

    __tablename__ = "research_runs"
    __table_args__ = (UniqueConstraint("tenant", "idempotency_key", name="uq_research_runs_tenant"),
                      Index("ix_research_runs_tenant_created_at", "tenant", "created_at"),
                      Index("ix_research_runs_status", "status"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    orchestrator: Mapped[str] = mapped_column(String(16), nullable=False)  # embedded | temporal
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    current_step: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reasons: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class ResearchStep(Base):
    """One finished step of a run: its output, persisted once (a re-run after a crash keeps the first)."""

    __tablename__ = "research_steps"

    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("research_runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    step: Mapped[str] = mapped_column(String(32), primary_key=True)
    output: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    seconds: Mapped[float] = mapped_column(Float, nullable=False)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class SourceAllowlist(Base):
    """The hosts a tenant lets research fetch from (stratmaster/research/sources.py)."""

    __tablename__ = "research_source_allowlists"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    hosts: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(256), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
