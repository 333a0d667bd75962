"""The router through the running platform (Serve's proxy, real tokens, the SQLite ledger),
with the shipped catalogue: offline, so `local-extractive` serves every task.

Fallbacks, retries, cooldowns and budget refusals against a fake OpenAI-compatible server
are in tests/unit/test_router_service.py and test_router_http.py (real HTTP, in process):
the platform's replicas read the shipped catalogue and cannot be pointed at a test server.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.cluster

MESSAGES = [
    {"role": "system", "content": "Acme raised prices by 12 percent in March. The office moved to Leeds. "
                                  "Urban customers did not leave after the price rise."},
    {"role": "user", "content": "Did customers leave after the price rise?"},
]


@pytest.fixture(scope="module")
def tenant_bearer(issuer) -> dict[str, str]:
    """A tenant of its own, so ledger counts are this module's alone."""
    return {"Authorization": f"Bearer {issuer.issue('it-router', 'router-it', ('analyst',), 3600)}"}


def test_complete_works_offline_with_the_local_extractive_provider(http, tenant_bearer):
    request_id = f"router-it-{uuid.uuid4().hex[:8]}"
    answer = http.post("/router/complete", json={"task": "synthesize", "messages": MESSAGES, "temperature": 0.9},
                       headers={**tenant_bearer, "X-Request-ID": request_id})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "local-extractive" and body["object"] == "chat.completion"
    content = body["choices"][0]["message"]["content"]
    assert "Urban customers did not leave" in content and "Leeds" not in content
    routing = body["routing"]
    assert routing["model"] == "local-extractive" and routing["cost_usd"] == 0 and routing["fallbacks_tried"] == []
    assert routing["policy"] == "policies.default.synthesize" and routing["temperature_capped_from"] == 0.9
    # The hosted and in-cluster models of the shipped catalogue are disabled: skipped, with the reason.
    assert {e["model"] for e in routing["excluded"]} == {"gpt-4o-mini", "llama-3.1-8b-instruct"}
    assert all("disabled" in e["reason"] for e in routing["excluded"])

    ledger = http.get("/router/ledger", headers=tenant_bearer).json()
    row = next(c for c in ledger["calls"] if c["id"] == routing["call_id"])
    assert row["request_id"] == request_id and row["outcome"] == "ok" and row["task"] == "synthesize"
    assert row["tokens_in"] == body["usage"]["prompt_tokens"] and row["model"] == "local-extractive"

    rated = http.post("/router/feedback", json={"call_id": routing["call_id"], "score": 0.8}, headers=tenant_bearer)
    assert rated.status_code == 200 and rated.json()["arm"]["pulls"] == 1
    again = http.post("/router/feedback", json={"call_id": routing["call_id"], "score": 0.8}, headers=tenant_bearer)
    assert again.status_code == 409


def test_route_models_budget_and_ledger_paging(http, tenant_bearer, bearer):
    decision = http.post("/router/route", json={"task": "plan", "messages": MESSAGES}, headers=tenant_bearer)
    assert decision.status_code == 200, decision.text
    assert decision.json()["model"] == "local-extractive" and decision.json()["fallbacks"] == []
    assert "fallback 3 of policies.default.plan" in decision.json()["why"]

    models = http.get("/router/models", headers=tenant_bearer).json()
    local = next(m for m in models["models"] if m["name"] == "local-extractive")
    assert local["available"] and not local["data_leaves_cluster"]

    budget = http.get("/router/budget", headers=tenant_bearer).json()
    assert budget["tenant"] == "router-it" and budget["period"] == "month" and not budget["exhausted"]

    for _ in range(3):
        assert http.post("/router/complete", json={"messages": MESSAGES}, headers=tenant_bearer).status_code == 200
    page = http.get("/router/ledger", params={"limit": 2, "offset": 1}, headers=tenant_bearer).json()
    assert page["total"] >= 3 and len(page["calls"]) == 2 and page["limit"] == 2
    # Another tenant (the shared `acme` token) does not see these calls.
    others = http.get("/router/ledger", headers=bearer).json()["calls"]
    assert not {c["id"] for c in others} & {c["id"] for c in page["calls"]}


def test_bad_requests_are_4xx_naming_the_field_never_500(http, tenant_bearer):
    cases = [({"messages": []}, "messages"), ({"messages": MESSAGES, "temperature": 9}, "temperature"),
             ({"messages": MESSAGES, "model": "gpt-9"}, "model"), ({"messages": MESSAGES, "stream": "maybe"}, "stream"),
             ({"messages": MESSAGES, "task": "x y"}, "task")]
    for body, field in cases:
        answer = http.post("/router/complete", json=body, headers=tenant_bearer)
        assert answer.status_code == 422 and field in answer.json()["error"]["message"], answer.text
    assert http.post("/router/complete", content=b"{not json", headers={**tenant_bearer,
                     "Content-Type": "application/json"}).status_code == 422
    assert http.post("/router/complete", json={"messages": MESSAGES}).status_code == 401
    assert http.get("/router/ledger", params={"limit": 10_000}, headers=tenant_bearer).status_code == 422


def test_the_router_reports_its_endpoints_and_catalogue_health(http, tenant_bearer):
    info = http.get("/router/info", headers=tenant_bearer).json()
    for endpoint in ("POST /router/complete", "POST /router/route", "POST /router/feedback", "GET /router/models",
                     "GET /router/ledger", "GET /router/budget"):
        assert endpoint in info["endpoints"]
    services = http.get("/health/services").json()["components"]
    assert services["router"]["status"] == "ok"


def test_stream_true_streams_server_sent_chunks_through_the_proxy(http, tenant_bearer):
    import json

    with http.stream("POST", "/router/complete", json={"task": "summarize", "messages": MESSAGES, "stream": True},
                     headers=tenant_bearer) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: "):] for line in answer.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "Urban customers did not leave" in text and chunks[-1]["model"] == "local-extractive"
    routing = chunks[-1]["routing"]
    ledger = http.get("/router/ledger", headers=tenant_bearer).json()["calls"]
    assert any(c["id"] == routing["call_id"] and c["outcome"] == "ok" for c in ledger)


def test_routing_decisions_are_counted_in_the_metrics(http, platform, tenant_bearer):
    import time

    assert http.post("/router/complete", json={"task": "judge", "messages": MESSAGES},
                     headers=tenant_bearer).status_code == 200
    wanted = ('ray_stratmaster_routing_decisions_total{', 'model="local-extractive"', 'task="judge"')
    deadline = time.monotonic() + 60
    lines: list[str] = []
    while time.monotonic() < deadline:
        try:
            text = httpx.get(platform.metrics_url, timeout=10).text
        except httpx.HTTPError:
            text = ""
        lines = [line for line in text.splitlines() if all(w in line for w in wanted)]
        if lines:
            break
        time.sleep(0.5)
    assert lines and 'outcome="ok"' in lines[0]
