"""Security through the running platform: roles at the edge, the audit trail of writes, and a
walk over every resource endpoint as tenant B holding tenant A's ids and words."""

from __future__ import annotations

import uuid

import pytest

from stratmaster.db.engine import create_db_engine
from stratmaster.evals.runs import EvalRunRepository

pytestmark = pytest.mark.cluster

WORD = f"zanzibarite{uuid.uuid4().hex[:6]}"  # a word only tenant A's document holds


@pytest.fixture(scope="module")
def tokens(issuer):
    def make(tenant: str, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.issue(f'{tenant}-{role}', tenant, (role,), 3600)}"}
    return make


def test_roles_are_enforced_at_the_edge_with_json_errors(http, tokens):
    assert http.post("/knowledge/search", json={"query": "x"}).status_code == 401
    denied = http.post("/knowledge/documents", json={"documents": []}, headers=tokens("sec-a", "viewer"))
    assert denied.status_code == 403
    assert denied.json()["error"]["message"] == (
        "POST /knowledge/documents needs the documents:write permission; your roles (viewer) do not grant it")
    assert http.get("/security/audit-logs", headers=tokens("sec-a", "analyst")).status_code == 403
    mine = http.get("/security/permissions", headers=tokens("sec-a", "viewer")).json()
    assert "search" in mine["permissions"] and "documents:write" not in mine["permissions"]
    assert "POST /knowledge/search" in mine["endpoints"]


def test_every_write_leaves_an_audit_record_the_tenants_admin_can_read(http, tokens):
    analyst, viewer, admin = (tokens("sec-audit", role) for role in ("analyst", "viewer", "admin"))
    document = {"documents": [{"id": "memo-1", "title": "Memo", "text": "Premium pricing held in the north."}]}
    created = http.post("/knowledge/documents", json=document, headers=analyst)
    refused = http.post("/knowledge/documents", json=document, headers=viewer)
    deleted = http.delete("/knowledge/documents/memo-1", headers=analyst)
    assert (created.status_code, refused.status_code, deleted.status_code) == (200, 403, 204)

    records = http.get("/security/audit-logs", params={"action": "/knowledge/documents"}, headers=admin).json()
    by_request = {r["correlation_id"]: r for r in records["records"]}
    for answer, subject, outcome in ((created, "sec-audit-analyst", "success"),
                                     (refused, "sec-audit-viewer", "denied"),
                                     (deleted, "sec-audit-analyst", "success")):
        record = by_request[answer.headers["x-request-id"]]
        assert (record["subject"], record["tenant"], record["outcome"]) == (subject, "sec-audit", outcome)
    assert by_request[deleted.headers["x-request-id"]]["resource"] == "/knowledge/documents/memo-1"
    assert by_request[deleted.headers["x-request-id"]]["action"] == "DELETE /knowledge/documents/{document_id:path}"
    denied_only = http.get("/security/audit-logs", params={"outcome": "denied"}, headers=admin).json()
    assert {r["outcome"] for r in denied_only["records"]} == {"denied"}
    # reading the audit log is itself an administrative action on the record
    again = http.get("/security/audit-logs", params={"action": "GET /security/audit-logs"}, headers=admin).json()
    assert again["total"] >= 2


def test_tenant_b_holding_tenant_a_ids_and_words_learns_nothing(http, tokens, platform):
    a, b = tokens("sec-a", "admin"), tokens("sec-b", "admin")
    text = f"The {WORD} programme at Northgate Holdings cut churn by half. Northgate Holdings renewed it."
    assert http.post("/knowledge/documents", headers=a, json={
        "documents": [{"id": "a-secret", "title": "Northgate Holdings plan", "text": text}]}).status_code == 200
    call = http.post("/router/complete", headers=a, json={"messages": [
        {"role": "system", "content": text}, {"role": "user", "content": "What cut churn?"}]}).json()
    runs = EvalRunRepository(create_db_engine(platform.settings.effective_database_url))
    run = runs.record("sec-a", "eval_sweep", "a-sweep", {}, {"kind": "eval_sweep"}, [])
    entity = http.get("/knowledge/graph/entities", params={"q": "northgate"}, headers=a).json()["entities"][0]

    # ids of A's resources: 404, never 403, so B cannot even confirm they exist
    for path in ("/knowledge/documents/a-secret", f"/knowledge/graph/entities/{entity['entity_id']}/neighbors",
                 f"/evals/runs/{run.id}"):
        assert http.get(path, headers=b).status_code == 404, path
    assert http.delete("/knowledge/documents/a-secret", headers=b).status_code == 404
    # content: searches, listings and counts show none of A's
    for mode in ("keyword", "dense", "hybrid"):
        hits = http.post("/knowledge/search", json={"query": WORD, "mode": mode}, headers=b).json()["hits"]
        assert all(WORD not in hit["text"] for hit in hits), mode
    assert http.get("/knowledge/graph/entities", params={"q": "northgate"}, headers=b).json()["entities"] == []
    assert http.get("/knowledge/graph/communities", headers=b).json()["communities"] == []
    assert http.get("/knowledge/stats", headers=b).json() == {"documents": 0, "chunks": 0}
    assert run.id not in [r["id"] for r in http.get("/evals/runs", headers=b).json()["runs"]]
    ledger = http.get("/router/ledger", headers=b).json()
    assert call["routing"]["call_id"] not in [c["id"] for c in ledger["calls"]]
    assert http.get("/router/budget", headers=b).json()["tenant"] == "sec-b"
    audit = http.get("/security/audit-logs", headers=b).json()
    assert all(r["tenant"] == "sec-b" for r in audit["records"])
    assert http.get("/me", headers=b).json()["tenant"] == "sec-b"
    # and A still sees all of it
    assert http.get("/knowledge/documents/a-secret", headers=a).status_code == 200
    assert http.get(f"/evals/runs/{run.id}", headers=a).status_code == 200
