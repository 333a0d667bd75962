"""The router's rows: the cost ledger, budget spend per period and the recommender's arms.

All three tables are scoped by tenant. A successful call's ledger row and its spend are
written in one transaction, so the budget and the ledger never disagree. Spend is one row
per (tenant, period) bumped with `UPDATE ... SET spent = spent + x` (inserted on first
use), which stays correct with several replicas writing at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from stratmaster.db.models import RouterBanditArm, RouterBudgetSpend, RouterCall
from stratmaster.router.bandit import ArmState

MICRO = 1_000_000


def to_micro(value: float) -> int:
    return int(round(value * MICRO))


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A ledger row as the router writes and reads it (floats in USD, ms and 0..1)."""

    id: str
    tenant: str
    task: str
    model: str
    provider: str
    attempt: int
    outcome: str
    status_code: int | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    request_id: str | None
    error: str | None
    quality: float | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "task": self.task, "model": self.model, "provider": self.provider,
                "attempt": self.attempt, "outcome": self.outcome, "status_code": self.status_code,
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "cost_usd": self.cost_usd,
                "latency_ms": self.latency_ms, "request_id": self.request_id, "error": self.error,
                "quality": self.quality, "created_at": self.created_at.isoformat()}


def new_call(tenant: str, task: str, model: str, provider: str, attempt: int, outcome: str, *,
             status_code: int | None = None, tokens_in: int = 0, tokens_out: int = 0, cost_usd: float = 0.0,
             latency_ms: float = 0.0, request_id: str | None = None, error: str | None = None,
             call_id: str | None = None) -> CallRecord:
    return CallRecord(call_id or str(uuid.uuid4()), tenant, task, model, provider, attempt, outcome, status_code,
                      tokens_in, tokens_out, cost_usd, latency_ms, request_id, error, None, datetime.now(UTC))


def _record(row: Any) -> CallRecord:
    return CallRecord(row.id, row.tenant, row.task, row.model, row.provider, row.attempt, row.outcome,
                      row.status_code, row.tokens_in, row.tokens_out, row.cost_micro_usd / MICRO,
                      row.latency_us / 1000, row.request_id, row.error,
                      None if row.quality_ppm is None else row.quality_ppm / MICRO, row.created_at)


def period_bounds(period: str, now: datetime) -> tuple[str, datetime | None, datetime | None]:
    """The spend key of the period `now` is in, and its start and end (None for `total`)."""
    now = now.astimezone(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return f"day:{start:%Y-%m-%d}", start, start + timedelta(days=1)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return f"month:{start:%Y-%m}", start, end
    return "total", None, None


class RouterRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- ledger -----------------------------------------------------------------------------
    def record(self, calls: Iterable[CallRecord], spend_key: str | None = None) -> None:
        """Ledger rows for one request's attempts; their cost added to `spend_key`'s spend."""
        calls = list(calls)
        if not calls:
            return
        rows = [{"id": c.id, "tenant": c.tenant, "task": c.task, "model": c.model, "provider": c.provider,
                 "attempt": c.attempt, "outcome": c.outcome, "status_code": c.status_code,
                 "tokens_in": c.tokens_in, "tokens_out": c.tokens_out, "cost_micro_usd": to_micro(c.cost_usd),
                 "latency_us": int(round(c.latency_ms * 1000)), "request_id": c.request_id,
                 "error": None if c.error is None else c.error[:2000], "quality_ppm": None,
                 "created_at": c.created_at} for c in calls]
        spent = sum(r["cost_micro_usd"] for r in rows)
        with self._engine.begin() as connection:
            connection.execute(RouterCall.__table__.insert(), rows)
            if spend_key is not None and spent:
                self._add_spend(connection, calls[0].tenant, spend_key, spent)

    def get(self, tenant: str, call_id: str) -> CallRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(RouterCall.__table__).where(
                RouterCall.tenant == tenant, RouterCall.id == call_id)).first()
        return None if row is None else _record(row)

    def list(self, tenant: str, limit: int = 50, offset: int = 0, task: str | None = None,
             model: str | None = None) -> tuple[list[CallRecord], int]:
        """Newest first, and how many rows match in all."""
        table = RouterCall.__table__
        where = [RouterCall.tenant == tenant]
        if task is not None:
            where.append(RouterCall.task == task)
        if model is not None:
            where.append(RouterCall.model == model)
        with self._engine.connect() as connection:
            rows = connection.execute(select(table).where(*where)
                                      .order_by(RouterCall.created_at.desc(), RouterCall.attempt.desc(), RouterCall.id)
                                      .limit(limit).offset(offset)).all()
            total = connection.scalar(select(func.count()).select_from(table).where(*where))
        return [_record(r) for r in rows], int(total or 0)

    def set_quality(self, tenant: str, call_id: str, quality: float) -> bool:
        """Store feedback on a call once; False when it already had some (or is not the tenant's)."""
        with self._engine.begin() as connection:
            done = connection.execute(update(RouterCall).where(
                RouterCall.tenant == tenant, RouterCall.id == call_id, RouterCall.quality_ppm.is_(None))
                .values(quality_ppm=to_micro(quality)))
        return done.rowcount == 1

    # --- budgets ----------------------------------------------------------------------------
    def _add_spend(self, connection: Connection, tenant: str, key: str, micro_usd: int) -> None:
        now = datetime.now(UTC)
        table = RouterBudgetSpend.__table__
        statement = (update(table).where(table.c.tenant == tenant, table.c.period_key == key)
                     .values(spent_micro_usd=table.c.spent_micro_usd + micro_usd, updated_at=now))
        if connection.execute(statement).rowcount:
            return
        try:
            with connection.begin_nested():
                connection.execute(table.insert().values(tenant=tenant, period_key=key, spent_micro_usd=micro_usd,
                                                         updated_at=now))
        except IntegrityError:  # another replica inserted it first
            connection.execute(statement)

    def spent(self, tenant: str, key: str) -> float:
        with self._engine.connect() as connection:
            value = connection.scalar(select(RouterBudgetSpend.spent_micro_usd).where(
                RouterBudgetSpend.tenant == tenant, RouterBudgetSpend.period_key == key))
        return (value or 0) / MICRO

    # --- recommender arms -------------------------------------------------------------------
    def arms(self, tenant: str, task: str) -> dict[str, ArmState]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(RouterBanditArm.model, RouterBanditArm.pulls,
                                             RouterBanditArm.reward_sum_ppm).where(
                RouterBanditArm.tenant == tenant, RouterBanditArm.task == task)).all()
        return {model: ArmState(pulls, reward_ppm / MICRO) for model, pulls, reward_ppm in rows}

    def reward_arm(self, tenant: str, task: str, model: str, reward: float) -> ArmState:
        """One more pull with this reward (0..1); the arm's new state."""
        now = datetime.now(UTC)
        table = RouterBanditArm.__table__
        where = (table.c.tenant == tenant, table.c.task == task, table.c.model == model)
        statement = update(table).where(*where).values(
            pulls=table.c.pulls + 1, reward_sum_ppm=table.c.reward_sum_ppm + to_micro(reward), updated_at=now)
        with self._engine.begin() as connection:
            if not connection.execute(statement).rowcount:
                try:
                    with connection.begin_nested():
                        connection.execute(table.insert().values(tenant=tenant, task=task, model=model, pulls=1,
                                                                 reward_sum_ppm=to_micro(reward), updated_at=now))
                except IntegrityError:
                    connection.execute(statement)
            pulls, reward_ppm = connection.execute(select(table.c.pulls, table.c.reward_sum_ppm).where(*where)).one()
        return ArmState(pulls, reward_ppm / MICRO)
