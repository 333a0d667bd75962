"""The router's HTTP API in process (the app Serve runs, without Serve), against a fake
OpenAI-compatible server on 127.0.0.1: fallbacks show in the routing block, an exhausted
budget is a 402, bad input a 4xx naming the field, never a 500."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from router_fake_llm import FakeLLM, answer, fail, stall_mid_stream
from router_fake_llm import fake_catalogue as catalogue_for

from deployments.router import RouterArgs, router_api
from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.identity import LocalIssuer
from stratmaster.router.repository import RouterRepository
from stratmaster.router.service import Router, build_providers

BODY = {"task": "default", "messages": [{"role": "system", "content": "Prices rose. Customers stayed."},
                                         {"role": "user", "content": "Did customers stay?"}]}


@pytest.fixture(scope="module")
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def issuer(tmp_path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "keys", audience="stratmaster")


def auth(issuer: LocalIssuer, tenant: str = "acme", role: str = "analyst") -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('alice', tenant, (role,), 600)}"}


@pytest.fixture
def client(tmp_path, fake, issuer):
    fake.reset()
    url = f"sqlite:///{tmp_path / 'router.db'}"
    upgrade(url)
    catalogue = catalogue_for(fake.base_url)
    router = Router(catalogue, RouterRepository(create_db_engine(url)),
                    build_providers(catalogue, {"FAKE_LLM_KEY": "k"}))
    api = router_api("router", "test")
    api.state.verifier = issuer.verifier()
    api.state.ingress = SimpleNamespace(router=router)
    with TestClient(api, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_completion_is_openai_shaped_with_a_routing_block(client, issuer, fake):
    fake.script("primary-m", fail(500), fail(500))
    answer = client.post("/complete", json=BODY, headers=auth(issuer, "rich"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"] == {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    routing = body["routing"]
    assert routing["model"] == "backup-m" and routing["fallbacks_tried"][0]["model"] == "primary-m"
    assert routing["cost_usd"] == pytest.approx(0.002) and routing["why"].startswith("primary of")
    ledger = client.get("/ledger", headers=auth(issuer, "rich")).json()
    assert ledger["total"] == 2 and {c["outcome"] for c in ledger["calls"]} == {"ok", "server_error"}
    assert client.get("/ledger", headers=auth(issuer, "globex")).json()["total"] == 0


def test_an_exhausted_budget_is_a_402_with_a_clear_message(client, issuer):
    for _ in range(3):
        assert client.post("/complete", json=BODY, headers=auth(issuer)).status_code == 200
    budget = client.get("/budget", headers=auth(issuer)).json()
    assert budget["exhausted"] and budget["limit_usd"] == 0.05 and budget["spent_usd"] == pytest.approx(0.06)
    for path in ("/complete", "/route"):
        refused = client.post(path, json=BODY, headers=auth(issuer))
        assert refused.status_code == 402, refused.text
        error = refused.json()["error"]
        assert error["code"] == "budget_exhausted" and "budget exhausted: tenant 'acme'" in error["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": []}, "body.messages"),
    ({"messages": [{"role": "user"}]}, "body.messages.0.content"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "body.messages.0.role"),
    ({**BODY, "task": "Not A Task"}, "body.task"),
    ({**BODY, "temperature": 5}, "body.temperature"),
    ({**BODY, "max_tokens": 0}, "body.max_tokens"),
    ({**BODY, "stream": "sometimes"}, "body.stream"),
    ({**BODY, "surprise": 1}, "body.surprise"),
    ({"messages": [{"role": "system", "content": "no question"}]}, "body.messages"),
    ({"messages": [{"role": "user", "content": "x" * 300_000}] * 7}, "body.messages"),
])
def test_bad_input_is_a_422_naming_the_field(client, issuer, body, field):
    answer = client.post("/complete", json=body, headers=auth(issuer))
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["message"]


def test_routing_problems_are_4xx_naming_the_cause(client, issuer):
    unknown = client.post("/complete", json={**BODY, "model": "gpt-9"}, headers=auth(issuer, "rich"))
    assert unknown.status_code == 422 and "model: 'gpt-9'" in unknown.text
    blocked = client.post("/route", json={**BODY, "task": "private", "model": "primary-m"}, headers=auth(issuer))
    assert blocked.status_code == 422 and blocked.json()["error"]["code"] == "no_eligible_model"
    assert client.post("/feedback", json={"score": 1, "call_id": "nope"}, headers=auth(issuer)).status_code == 404
    assert client.post("/feedback", json={"score": 2, "call_id": "x"}, headers=auth(issuer)).status_code == 422
    eval_by_analyst = client.post("/feedback", json={"score": 1, "task": "plan", "model": "backup-m",
                                                     "source": "eval"}, headers=auth(issuer))
    assert eval_by_analyst.status_code == 403
    by_service = client.post("/feedback", json={"score": 1, "task": "plan", "model": "backup-m", "source": "eval"},
                             headers=auth(issuer, role="service"))
    assert by_service.status_code == 200 and by_service.json()["arm"]["pulls"] == 1
    assert client.get("/ledger?limit=0", headers=auth(issuer)).status_code == 422
    assert client.post("/complete", json=BODY).status_code == 401


def test_route_and_models_describe_without_calling(client, issuer, fake):
    decision = client.post("/route", json={**BODY, "task": "cheap", "temperature": 1.0}, headers=auth(issuer)).json()
    assert decision["model"] == "backup-m" and decision["temperature"] == 0.2 and fake.calls() == []
    assert decision["excluded"][0]["model"] == "primary-m" and decision["budget"]["limit_usd"] == 0.05
    models = client.get("/models", headers=auth(issuer)).json()
    assert {m["name"] for m in models["models"]} == {"local-extractive", "primary-m", "backup-m"}
    assert models["recommender_v2"] is False and "default" in models["policies"]


def test_builder_args_default_to_the_shipped_catalogue():
    assert RouterArgs().catalogue == "configs/router/models.yaml"
    with pytest.raises(ValueError):
        RouterArgs.model_validate({"catalog": "typo.yaml"})


def events(text: str) -> list[object]:
    import json

    data = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


def test_stream_true_answers_server_sent_chunks_ending_with_routing_and_done(client, issuer, fake):
    fake.script("primary-m", fail(503), fail(503))
    fake.script("backup-m", answer("Customers stayed after the rise."))
    answer_ = client.post("/complete", json={**BODY, "stream": True}, headers=auth(issuer, "rich"))
    assert answer_.status_code == 200 and answer_.headers["content-type"].startswith("text/event-stream")
    chunks = events(answer_.text)
    assert chunks[-1] == "[DONE]"
    body, last = chunks[:-2], chunks[-2]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in body) == "Customers stayed after the rise."
    assert body[0]["choices"][0]["delta"]["role"] == "assistant" and len({c["id"] for c in chunks[:-1]}) == 1
    assert last["routing"]["model"] == "backup-m" and last["routing"]["fallbacks_tried"][0]["model"] == "primary-m"
    assert last["usage"]["completion_tokens"] == 500 and last["choices"][0]["finish_reason"] == "stop"
    ledger = client.get("/ledger", headers=auth(issuer, "rich")).json()
    assert {(c["model"], c["outcome"]) for c in ledger["calls"]} == {("primary-m", "server_error"), ("backup-m", "ok")}
    assert last["id"] == f"chatcmpl-{last['routing']['call_id']}"


def test_a_stream_cut_short_says_so_in_its_last_chunk(client, issuer, fake):
    fake.script("primary-m", stall_mid_stream(2.0, "Customers stayed after the rise."))
    chunks = events(client.post("/complete", json={**BODY, "stream": True}, headers=auth(issuer, "rich")).text)
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "error" and last["error"]["outcome"] == "timeout"
    assert chunks[0]["choices"][0]["delta"]["content"] == "Customers"
    ledger = client.get("/ledger", headers=auth(issuer, "rich")).json()["calls"]
    assert [(c["model"], c["outcome"]) for c in ledger] == [("primary-m", "timeout")]


def test_a_streamed_request_over_budget_is_still_a_json_402(client, issuer):
    for _ in range(3):
        client.post("/complete", json=BODY, headers=auth(issuer))
    refused = client.post("/complete", json={**BODY, "stream": True}, headers=auth(issuer))
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exhausted"


def test_a_database_that_does_not_answer_is_a_503_not_a_500(tmp_path, fake, issuer):
    catalogue = catalogue_for(fake.base_url)
    unmigrated = RouterRepository(create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    api = router_api("router", "test")
    api.state.verifier = issuer.verifier()
    api.state.ingress = SimpleNamespace(router=Router(catalogue, unmigrated, build_providers(catalogue, {})))
    with TestClient(api, raise_server_exceptions=False) as test_client:
        answer = test_client.post("/complete", json=BODY, headers=auth(issuer))
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "ledger_unavailable"
