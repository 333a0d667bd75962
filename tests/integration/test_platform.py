"""The running platform, through Serve's HTTP proxy, as a client sees it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from deployments.args import SERVICES

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def http(platform) -> httpx.Client:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        yield client


def eventually(check, timeout_s: float = 45.0, interval_s: float = 0.5):
    """Poll until `check()` returns something truthy: logs and metrics are flushed asynchronously."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval_s)


def test_healthz_answers_without_a_token(http):
    answer = http.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


def test_database_and_cache_health_say_they_are_embedded(http):
    database = http.get("/health/database")
    assert database.status_code == 200
    component = database.json()["components"]["database"]
    assert (component["backend"], component["embedded"], component["status"]) == ("sqlite", True, "ok")
    assert "head" in component["detail"]  # `up` migrated before starting

    cache = http.get("/health/redis").json()["components"]["cache"]
    assert (cache["backend"], cache["embedded"], cache["status"]) == ("in-process-lru", True, "ok")


def test_every_service_reports_its_own_health_through_its_handle(http):
    answer = http.get("/health/services")
    assert answer.status_code == 200, answer.text
    components = answer.json()["components"]
    assert set(components) == set(SERVICES)
    for name, component in components.items():
        assert component["status"] == "ok", (name, component)
        assert "RUNNING" in component["detail"] and "replica" in component["detail"]


@pytest.mark.parametrize("path", ["/me", "/info", *(f"/{s}/info" for s in SERVICES)])
def test_protected_endpoints_answer_401_json_without_a_token(http, path):
    answer = http.get(path)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthenticated"
    bad = http.get(path, headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_serves_its_own_prefix(http, bearer, service):
    answer = http.get(f"/{service}/info", headers=bearer)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["service"] == service
    assert body["caller"] == {"subject": "it-analyst", "tenant": "acme", "roles": ["analyst"]}
    assert f"GET /{service}/info" in body["endpoints"]
    assert body["backends"]["database"] == {"backend": "sqlite", "embedded": True}


def test_me_records_the_tenant_from_the_token(http, issuer):
    token = issuer.issue("bob", "globex", ("viewer",), 600)
    first = http.get("/me", headers={"Authorization": f"Bearer {token}"}).json()
    second = http.get("/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert first["tenant"] == "globex" and first["roles"] == ["viewer"]
    assert second["tenant_record"]["request_count"] == first["tenant_record"]["request_count"] + 1
    assert second["tenant_record"]["first_seen_at"] == first["tenant_record"]["first_seen_at"]


def test_unknown_route_and_bad_method_are_json_errors(http, bearer):
    assert http.get("/knowledge/nope", headers=bearer).json()["error"]["code"] == "not_found"
    answer = http.post("/healthz")
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "method_not_allowed"


def test_openapi_documents_every_service_under_its_prefix(http):
    document = http.get("/openapi.json").json()
    for service in SERVICES:
        assert f"/{service}/info" in document["paths"]
    assert "/health/services" in document["paths"]
    # Protected operations declare the bearer scheme; health checks need no token.
    assert document["paths"]["/knowledge/info"]["get"]["security"] == [{"HTTPBearer": []}]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in document["paths"]["/health/services"]["get"]
    assert "swagger" in http.get("/docs").text.lower()
    assert http.get("/knowledge/openapi.json").json()["paths"].keys() >= {"/info"}


def _log_lines(session_dir: Path, correlation_id: str) -> list[dict]:
    found = []
    for path in (session_dir / "logs").glob("worker-*.err"):
        for line in path.read_text(errors="replace").splitlines():
            if correlation_id in line and line.lstrip().startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return found


def test_correlation_id_is_echoed_and_logged_by_every_service_it_reaches(http, platform):
    correlation_id = f"it-{uuid.uuid4().hex[:12]}"
    answer = http.get("/health/services", headers={"X-Request-ID": correlation_id})
    assert answer.headers["x-request-id"] == correlation_id

    def services_that_logged() -> set[str]:
        lines = _log_lines(platform.session_dir, correlation_id)
        return {line["service"] for line in lines if line.get("correlation_id") == correlation_id}

    seen = eventually(lambda: (s := services_that_logged()) >= {"gateway", *SERVICES} and s)
    assert seen >= {"gateway", *SERVICES}, f"services that logged {correlation_id}: {services_that_logged()}"


def test_generated_correlation_id_is_returned(http):
    first = http.get("/healthz").headers["x-request-id"]
    second = http.get("/healthz").headers["x-request-id"]
    assert first and second and first != second


def _metrics(platform) -> str:
    try:
        return httpx.get(platform.metrics_url, timeout=10).text
    except httpx.HTTPError:
        return ""


def test_metrics_are_exported_in_one_scrape(http, platform, bearer):
    for _ in range(3):
        http.get("/knowledge/info", headers=bearer)
    http.get("/openapi.json")
    http.get("/openapi.json")  # second read of the merged document hits the cache
    http.get("/health/database")
    wanted = (
        'ray_stratmaster_http_requests_total{',
        'ray_stratmaster_http_request_duration_seconds_bucket{',
        'ray_stratmaster_cache_hits_total{',
        'ray_stratmaster_cache_misses_total{',
        'ray_stratmaster_db_pool_connections_in_use{',
    )

    def knowledge_lines(text: str) -> list[str]:
        return [line for line in text.splitlines()
                if line.startswith("ray_stratmaster_http_requests_total{") and 'route="/knowledge/info"' in line
                and 'status_class="2xx"' in line and 'service="knowledge"' in line]

    def complete(text: str) -> bool:
        # Each replica exports on its own schedule: wait for the knowledge replica's count too.
        return all(w in text for w in wanted) and sum(float(line.rsplit(" ", 1)[1])
                                                      for line in knowledge_lines(text)) >= 3

    text = eventually(lambda: (t := _metrics(platform)) and complete(t) and t, timeout_s=60)
    assert text, (f"missing from {platform.metrics_url}: {[w for w in wanted if w not in _metrics(platform)]}, "
                  f"knowledge 2xx lines: {knowledge_lines(_metrics(platform))}")


def _loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_every_server_of_the_local_platform_listens_on_loopback_only(platform, http):
    import os

    import psutil

    http.get("/healthz")
    ours = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)} | {os.getpid()}
    exposed = [
        (c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ours and not _loopback(c.laddr.ip)
    ]
    assert exposed == [], exposed
