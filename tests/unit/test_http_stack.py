"""The shared edge stack, exercised on a plain FastAPI app without Ray.

Every service ingress is built with `create_api()`, so what holds here holds for the
gateway and all five services: bearer tokens, correlation ids, JSON errors, metrics.
"""

from __future__ import annotations

import json
import logging

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import BaseModel

from deployments.http import EdgeMetrics, create_api, require_principal
from stratmaster.identity import LocalIssuer, Principal
from stratmaster.logs import configure_logging
from stratmaster.security.rbac import Permission, Rule


class Recorder:
    def __init__(self) -> None:
        self.samples: list[tuple[float, dict]] = []

    def inc(self, value: float = 1.0, tags=None) -> None:
        self.samples.append((value, dict(tags or {})))

    observe = inc


class Payload(BaseModel):
    name: str
    count: int


@pytest.fixture
def issuer(tmp_path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "keys", audience="stratmaster")


DEMO_PERMISSIONS = {("demo", "GET", "/items/{item_id}"): Rule(Permission.DOCUMENTS_READ),
                    ("demo", "POST", "/items"): Rule(Permission.DOCUMENTS_WRITE, audited=True)}


@pytest.fixture
def metrics() -> EdgeMetrics:
    return EdgeMetrics(requests=Recorder(), duration=Recorder())


@pytest.fixture
def client(issuer, metrics) -> TestClient:
    api = create_api("demo", title="demo", description="demo", version="0", permissions=DEMO_PERMISSIONS)
    api.state.verifier = issuer.verifier()
    api.state.edge_metrics = metrics

    @api.get("/public")
    def public() -> dict:
        logging.getLogger("stratmaster.demo").info("public called")
        return {"ok": True}

    @api.get("/items/{item_id}")
    def item(item_id: int, principal: Principal = Depends(require_principal)) -> dict:
        return {"item": item_id, "tenant": principal.tenant}

    @api.post("/items")
    def create(payload: Payload, principal: Principal = Depends(require_principal)) -> dict:
        return payload.model_dump()

    @api.get("/boom")
    def boom() -> dict:
        raise RuntimeError("secret internals")

    return TestClient(api, raise_server_exceptions=False)


def auth(issuer: LocalIssuer, tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('alice', tenant, ('analyst',), 600)}"}


def test_protected_route_without_token_is_a_json_401(client):
    answer = client.get("/items/1")
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["code"] == "unauthenticated" and "bearer" in error["message"]
    assert error["correlation_id"] == answer.headers["x-request-id"]
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_token_from_another_issuer_is_rejected(client, tmp_path):
    stranger = LocalIssuer(tmp_path / "other-keys", audience="stratmaster")
    answer = client.get("/items/1", headers=auth(stranger))
    assert answer.status_code == 401


def test_verified_token_gives_the_route_its_principal(client, issuer):
    answer = client.get("/items/7", headers=auth(issuer, "globex"))
    assert answer.status_code == 200
    assert answer.json() == {"item": 7, "tenant": "globex"}


def test_correlation_id_is_echoed_or_generated(client):
    assert client.get("/public", headers={"X-Request-ID": "req-42"}).headers["x-request-id"] == "req-42"
    generated = client.get("/public").headers["x-request-id"]
    assert len(generated) == 32
    # A header that could forge log lines is replaced, not echoed.
    forged = client.get("/public", headers={"X-Request-ID": "a\tb"}).headers["x-request-id"]
    assert forged != "a\tb" and len(forged) == 32


def test_every_log_line_of_a_request_carries_its_correlation_id(client, capsys):
    configure_logging("demo")
    client.get("/public", headers={"X-Request-ID": "trace-me"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["correlation_id"] == "trace-me"]
    assert {line["message"] for line in mine} >= {"public called", "request"}
    access = next(line for line in mine if line["message"] == "request")
    assert access["route"] == "/public" and access["status"] == 200 and access["service"] == "demo"


def test_validation_errors_name_the_field(client, issuer):
    answer = client.post("/items", json={"name": "x", "count": "many"}, headers=auth(issuer))
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and "body.count" in error["message"]


def test_unknown_route_is_a_json_404(client):
    answer = client.get("/nope")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_unexpected_error_is_a_500_without_internals(client):
    answer = client.get("/boom")
    assert answer.status_code == 500
    assert "secret" not in answer.text
    assert answer.json()["error"]["correlation_id"] == answer.headers["x-request-id"]


def test_metrics_use_route_templates_and_status_classes(client, issuer, metrics):
    client.get("/items/1", headers=auth(issuer))
    client.get("/items/2", headers=auth(issuer))
    client.get("/items/3")
    client.get("/nope")
    tags = [t for _, t in metrics.requests.samples]
    assert tags.count({"service": "demo", "route": "/items/{item_id}", "method": "GET", "status_class": "2xx"}) == 2
    assert {"service": "demo", "route": "/items/{item_id}", "method": "GET", "status_class": "4xx"} in tags
    assert {"service": "demo", "route": "unmatched", "method": "GET", "status_class": "4xx"} in tags
    assert all(seconds >= 0 for seconds, _ in metrics.duration.samples)
    assert len(metrics.duration.samples) == 4


class FakeAudit:
    def __init__(self) -> None:
        self.entries = []

    def append(self, entry) -> None:
        self.entries.append(entry)


def test_an_audited_write_is_recorded_with_who_what_and_how_it_ended(client, issuer):
    audit = FakeAudit()
    client.app.state.audit = lambda: audit
    ok = client.post("/items", json={"name": "a", "count": 1}, headers=auth(issuer))
    viewer = {"Authorization": f"Bearer {issuer.issue('vic', 'acme', ('viewer',), 600)}"}
    denied = client.post("/items", json={"name": "a", "count": 1}, headers=viewer)
    client.get("/items/1", headers=auth(issuer))  # a read: not audited
    client.post("/items", json={"name": "a", "count": 1})  # no verified subject: the access log has it
    assert (ok.status_code, denied.status_code) == (200, 403)
    first, second = audit.entries
    assert (first.subject, first.tenant, first.roles, first.action, first.resource, first.outcome, first.status) == (
        "alice", "acme", ("analyst",), "POST /items", "/items", "success", 200)
    assert first.correlation_id == ok.headers["x-request-id"]
    assert (second.subject, second.outcome, second.status) == ("vic", "denied", 403)


def test_an_unmapped_endpoint_is_refused_to_every_role(issuer):
    api = create_api("demo", title="demo", description="demo", version="0", permissions={})
    api.state.verifier = issuer.verifier()

    @api.get("/new")
    def new(principal: Principal = Depends(require_principal)) -> dict:
        return {}

    admin = {"Authorization": f"Bearer {issuer.issue('root', 'acme', ('admin',), 600)}"}
    answer = TestClient(api).get("/new", headers=admin)
    assert answer.status_code == 403
    assert answer.json()["error"]["message"] == "GET /new has no permission assigned, so no role may call it"
