"""Budgets as properties (hypothesis): for any sequence of call costs and any limit, one
client's calls are served while the spend is under the limit and refused from then on; the
overshoot is under one call's cost; the spend always equals the ledger's sum."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.router.catalogue import ModelEntry, parse_catalogue
from stratmaster.router.providers import ChatCall, ProviderResult
from stratmaster.router.repository import RouterRepository
from stratmaster.router.service import BudgetExhausted, Router

CATALOGUE = parse_catalogue({
    "providers": {"priced": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
                             # $1 per 1k prompt tokens: a call of n tokens costs n / 1000 USD.
                             "models": [{"name": "priced-m", "input_per_1k": 1.0, "context_window": 1_000_000}]}},
    "policies": {"default": {"default": {"primary": "priced-m"}}},
    "budgets": {"default": {"limit_usd": 1.0, "period": "total"}},
}, "budget-properties")


class ScriptedCost:
    """A provider whose next answers cost what the test says (prompt tokens = cost x 1000)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []

    async def complete(self, call: ChatCall, model: ModelEntry) -> ProviderResult:
        return ProviderResult("ok", model.name, self.tokens.pop(0), 0, "stop", 0.1)

    async def aclose(self) -> None:
        pass


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> RouterRepository:
    url = f"sqlite:///{tmp_path_factory.mktemp('budget') / 'router.db'}"
    upgrade(url)
    return RouterRepository(create_db_engine(url))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(costs_milli=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=12),
       limit_milli=st.integers(min_value=0, max_value=2000))
def test_calls_are_served_until_the_limit_and_refused_after(repository, costs_milli, limit_milli):
    tenant = f"t{uuid.uuid4().hex[:12]}"
    limit = limit_milli / 1000
    raw = CATALOGUE.model_dump()
    raw["budgets"]["tenants"] = {tenant: {"limit_usd": limit, "period": "total"}}
    provider = ScriptedCost()
    router = Router(parse_catalogue(raw, "budget-properties"), repository, {"priced": provider})
    messages = [{"role": "user", "content": "q?"}]
    spent_milli, served, refused_at = 0, [], None
    for index, cost in enumerate(costs_milli):
        provider.tokens = [cost]
        try:
            asyncio.run(router.complete(tenant, "default", messages))
        except BudgetExhausted:
            assert spent_milli >= limit_milli  # refused only once the limit is reached
            refused_at = index
            break
        assert spent_milli < limit_milli  # served only while under it
        spent_milli += cost
        served.append(cost)
    status = router.budget(tenant)
    rows, count = repository.list(tenant, limit=100)
    assert count == len(served) and (refused_at is None or refused_at == len(served))
    assert status.spent_usd == pytest.approx(sum(r.cost_usd for r in rows), abs=1e-9)
    assert status.spent_usd == pytest.approx(spent_milli / 1000, abs=1e-9)
    assert status.exhausted == (spent_milli >= limit_milli)
    if spent_milli > limit_milli:  # the overshoot is under the last served call's cost
        assert spent_milli - limit_milli < served[-1]
