"""Limits: a token bucket per tenant (in process and shared through a real Redis), 429 with
Retry-After at the edge, and 413 for bodies over MAX_REQUEST_BYTES, declared or streamed."""

from __future__ import annotations

import uuid

import pytest
from fastapi import Depends, Request
from fastapi.testclient import TestClient
from serverenv import server_url

from deployments.http import create_api, require_principal
from stratmaster.identity import LocalIssuer, Principal
from stratmaster.security.limits import InProcessRateLimiter, RedisRateLimiter, retry_after_header
from stratmaster.security.rbac import Permission, Rule


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate():
    clock = Clock()
    limiter = InProcessRateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("acme") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("acme") == pytest.approx(0.5)  # one token takes 1/2 s at 2 per second
    assert limiter.acquire("globex") == 0.0, "tenants have their own buckets"
    clock.now += 0.5
    assert limiter.acquire("acme") == 0.0
    assert limiter.acquire("acme") > 0
    clock.now += 60
    assert [limiter.acquire("acme") for _ in range(4)][-1] > 0, "refills only up to the burst"


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert [retry_after_header(w) for w in (0.01, 1.0, 1.2, 7.9)] == ["1", "1", "2", "8"]


@pytest.mark.redis
def test_redis_buckets_are_shared_by_every_replica():
    namespace = f"stratmaster-test:{uuid.uuid4().hex}:"
    url = server_url("TEST_REDIS_URL")
    one, two = (RedisRateLimiter(url, rate=0.5, burst=4, namespace=namespace) for _ in range(2))
    granted = [limiter.acquire("acme") == 0.0 for limiter in (one, two, one, two, one, two)]
    assert granted == [True, True, True, True, False, False], "four tokens in all, not four per replica"
    assert 0 < two.acquire("acme") <= 2.0
    assert one.acquire("globex") == 0.0


def test_an_unreachable_redis_lets_requests_through():
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", rate=1.0, burst=1, timeout_s=0.2)
    assert limiter.acquire("acme") == 0.0


@pytest.fixture
def app(tmp_path):
    issuer = LocalIssuer(tmp_path / "keys", audience="stratmaster")
    api = create_api("demo", title="d", description="d", version="0",
                     permissions={("demo", "POST", "/echo"): Rule(Permission.DOCUMENTS_WRITE)})
    api.state.verifier = issuer.verifier()
    api.state.max_request_bytes = 2048

    @api.post("/echo")
    async def echo(request: Request, principal: Principal = Depends(require_principal)) -> dict:
        return {"bytes": len(await request.body())}

    headers = {"Authorization": f"Bearer {issuer.issue('ana', 'acme', ('analyst',), 600)}"}
    return api, headers


def test_a_tenant_over_its_rate_gets_429_with_retry_after(app):
    api, headers = app
    clock = Clock()
    api.state.rate_limiter = InProcessRateLimiter(rate=0.25, burst=2, clock=clock)
    with TestClient(api) as client:
        assert [client.post("/echo", content=b"x", headers=headers).status_code for _ in range(2)] == [200, 200]
        refused = client.post("/echo", content=b"x", headers=headers)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "4"
        error = refused.json()["error"]
        assert error["code"] == "too_many_requests" and "acme" in error["message"]
        clock.now += 4
        assert client.post("/echo", content=b"x", headers=headers).status_code == 200


def test_bodies_over_the_limit_get_413_whether_declared_or_streamed(app):
    api, headers = app
    with TestClient(api) as client:
        assert client.post("/echo", content=b"x" * 2048, headers=headers).json() == {"bytes": 2048}
        declared = client.post("/echo", content=b"x" * 2049, headers=headers)
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"
        assert "MAX_REQUEST_BYTES" in declared.json()["error"]["message"]

        def chunks():
            for _ in range(5):
                yield b"x" * 1000

        streamed = client.post("/echo", content=chunks(), headers=headers)  # chunked: no Content-Length
        assert streamed.status_code == 413
