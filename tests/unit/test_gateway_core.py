"""The gateway's health fan-out and merged docs, with fake service handles instead of Ray."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from deployments.args import SERVICES, GatewayArgs
from deployments.gateway_core import Gateway
from stratmaster.cache import create_cache
from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.health import ComponentHealth, HealthReport
from stratmaster.settings import load_settings


def healthy(service: str) -> dict:
    return HealthReport.of(ComponentHealth(name=service, status="ok", backend="ray-serve", embedded=False,
                                           detail="replica r1 up 3 s")).model_dump()


class FakeHandle:
    """Answers like a service's DeploymentHandle: `.health.remote(cid)` is awaitable."""

    def __init__(self, service: str, behaviour: str = "ok") -> None:
        self.service, self.behaviour = service, behaviour
        self.correlation_ids: list[str | None] = []
        self.health = SimpleNamespace(remote=self._health)
        self.openapi_schema = SimpleNamespace(remote=self._openapi)

    async def _health(self, correlation_id):
        self.correlation_ids.append(correlation_id)
        if self.behaviour == "raise":
            raise RuntimeError("replica died")
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        if self.behaviour == "store-down":
            report = HealthReport.of(
                ComponentHealth(name=self.service, status="ok", backend="ray-serve", embedded=False),
                ComponentHealth(name="vectors", status="down", backend="qdrant", embedded=False))
            return report.model_dump()
        return healthy(self.service)

    async def _openapi(self, correlation_id):
        if self.behaviour != "ok":
            raise RuntimeError("unavailable")
        return {"paths": {"/info": {"get": {"summary": self.service}}}, "components": {"schemas": {}}}


@pytest.fixture
def make_gateway(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = load_settings()
    upgrade(settings.effective_database_url)

    def make(behaviours: dict[str, str] | None = None) -> tuple[Gateway, dict[str, FakeHandle]]:
        handles = {s: FakeHandle(s, (behaviours or {}).get(s, "ok")) for s in SERVICES}
        gateway = Gateway(GatewayArgs(service_check_timeout_s=0.3), settings,
                          create_db_engine(settings.effective_database_url), create_cache(settings),
                          handle_for=handles.__getitem__,
                          application_statuses=lambda: dict.fromkeys(SERVICES, "RUNNING"),
                          own_openapi=lambda: {"openapi": "3.1.0", "paths": {"/healthz": {}}})
        return gateway, handles

    return make


def test_all_services_answering_is_ok(make_gateway):
    gateway, _ = make_gateway()
    report = asyncio.run(gateway.services_health())
    assert report.status == "ok"
    assert report.components["knowledge"].detail == "application RUNNING; replica r1 up 3 s"


@pytest.mark.parametrize(("behaviour", "expected"), [
    ("raise", "RuntimeError: replica died"),
    ("hang", "no answer within 0.3 s"),
    ("store-down", "down: vectors"),
])
def test_one_service_failing_makes_the_report_down_and_says_why(make_gateway, behaviour, expected):
    gateway, _ = make_gateway({"research": behaviour})
    report = asyncio.run(gateway.services_health())
    assert report.status == "down"
    assert report.components["research"].status == "down"
    assert expected in report.components["research"].detail
    assert all(report.components[s].status == "ok" for s in SERVICES if s != "research")


def test_the_correlation_id_is_passed_to_every_service(make_gateway):
    from stratmaster.logs import correlation_scope

    gateway, handles = make_gateway()

    async def check():
        with correlation_scope("cid-123"):
            return await gateway.services_health()

    asyncio.run(check())
    assert all(h.correlation_ids == ["cid-123"] for h in handles.values())


def test_database_health_reports_sqlite_at_head(make_gateway):
    gateway, _ = make_gateway()
    health = gateway.database_health()
    assert (health.status, health.backend, health.embedded) == ("ok", "sqlite", True)


def test_merged_openapi_prefixes_service_paths_and_is_cached_only_when_complete(make_gateway):
    gateway, handles = make_gateway({"evals": "raise"})
    document = asyncio.run(gateway.merged_openapi())
    assert set(document["paths"]) == {"/healthz", *(f"/{s}/info" for s in SERVICES if s != "evals")}
    assert gateway.cache.stats() == {"hits": 0, "misses": 1}
    asyncio.run(gateway.merged_openapi())
    assert gateway.cache.stats()["hits"] == 0  # an incomplete document was not cached

    handles["evals"].behaviour = "ok"
    asyncio.run(gateway.merged_openapi())
    complete = asyncio.run(gateway.merged_openapi())
    assert "/evals/info" in complete["paths"]
    assert gateway.cache.stats()["hits"] == 1
