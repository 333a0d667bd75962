"""The knowledge service through Serve's HTTP proxy: ingestion, search, graph, isolation."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.cluster

PREMIUM = {
    "id": "memo/premium-pricing",
    "title": "Premium pricing memo",
    "text": (
        "Acme Coffee raised prices by 12 percent in 2025 after repositioning as a premium brand.\n\n"
        "Customer surveys by Northwind Research showed loyalty held among urban buyers, while "
        "discount shoppers moved to private labels. Premium pricing worked where the brand story was strong."
    ),
    "source": "https://example.com/memo",
    "metadata": {"region": "emea", "year": 2025},
}
LOGISTICS = {
    "id": "report-logistics",
    "title": "Logistics report",
    "html": "<html><head><title>x</title><style>p{}</style></head><body><h1>Warehouse automation</h1>"
            "<p>Globex Logistics cut fulfilment costs with warehouse robots in Rotterdam.</p>"
            "<script>track()</script><p>Robots reduced picking errors by half.</p></body></html>",
    "metadata": {"region": "emea", "year": 2024},
}
LOYALTY = {
    "id": "notes-loyalty",
    "title": "Loyalty programme notes",
    "markdown": "# Loyalty\n\n* Members of the **Acme Rewards** programme spend more.\n"
                "* [Northwind Research](https://example.com) tracked 4,000 members.\n",
    "metadata": {"region": "amer", "year": 2025},
}


@pytest.fixture(scope="module")
def tenant_token(issuer):
    def make(tenant: str, role: str = "analyst") -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.issue(f'{tenant}-user', tenant, (role,), 3600)}"}
    return make


@pytest.fixture(scope="module")
def tenant(tenant_token) -> tuple[str, dict[str, str]]:
    name = f"kn{uuid.uuid4().hex[:8]}"
    return name, tenant_token(name)


@pytest.fixture(scope="module")
def ingested(http, tenant):
    _, auth = tenant
    answer = http.post("/knowledge/documents", json={"documents": [PREMIUM, LOGISTICS, LOYALTY]}, headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


def search(http, auth, query: str, **options) -> httpx.Response:
    return http.post("/knowledge/search", json={"query": query, **options}, headers=auth)


def test_a_batch_of_text_html_and_markdown_is_ingested(ingested):
    assert [r["status"] for r in ingested["results"]] == ["created"] * 3
    assert all(r["chunks"] >= 1 and len(r["content_sha256"]) == 64 for r in ingested["results"])
    assert ingested["counts"] == {"created": 3}


def test_document_keeps_provenance_and_citable_chunks(http, tenant, ingested):
    _, auth = tenant
    document = http.get("/knowledge/documents/report-logistics", headers=auth).json()
    assert document["content_type"] == "html" and document["parser_version"]
    text = " ".join(c["text"] for c in document["chunks"])
    assert "Globex Logistics" in text and "track()" not in text and "p{}" not in text
    premium = http.get("/knowledge/documents/memo/premium-pricing", headers=auth).json()
    assert premium["source"] == PREMIUM["source"] and premium["metadata"] == PREMIUM["metadata"]
    assert all(c["end"] > c["start"] for c in premium["chunks"])


@pytest.mark.parametrize("mode", ["keyword", "dense", "hybrid"])
def test_every_mode_finds_the_document_that_answers(http, tenant, ingested, mode):
    _, auth = tenant
    answer = search(http, auth, "warehouse robots fulfilment costs", mode=mode, k=3)
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]
    assert hits[0]["document_id"] == "report-logistics"
    assert hits[0]["provenance"]["title"] == "Logistics report"
    expected = {"keyword", "dense"} if mode == "hybrid" else {mode}
    assert expected <= set(hits[0]["retrievers"])


def test_filters_restrict_results_inside_the_search(http, tenant, ingested):
    _, auth = tenant
    by_id = search(http, auth, "Acme", filters={"document_ids": ["notes-loyalty"]}).json()["hits"]
    assert {h["document_id"] for h in by_id} == {"notes-loyalty"}
    by_metadata = search(http, auth, "Acme premium loyalty", filters={"metadata": {"region": "amer"}}).json()["hits"]
    assert {h["document_id"] for h in by_metadata} == {"notes-loyalty"}


def test_resending_identical_documents_is_a_no_op(http, tenant, ingested):
    _, auth = tenant
    again = http.post("/knowledge/documents", json={"documents": [PREMIUM]}, headers=auth).json()
    assert again["results"][0]["status"] == "unchanged"
    assert again["results"][0]["content_sha256"] == ingested["results"][0]["content_sha256"]


def test_a_changed_document_replaces_its_chunks_everywhere(http, tenant_token):
    auth = tenant_token(f"rep{uuid.uuid4().hex[:8]}")
    first = {"id": "d1", "title": "Plan", "text": "The zeppelin fleet expands into Patagonia next spring."}
    assert http.post("/knowledge/documents", json={"documents": [first]}, headers=auth).status_code == 200
    assert search(http, auth, "zeppelin Patagonia", mode="keyword").json()["hits"]
    changed = {**first, "text": "The submarine fleet expands into Iceland next spring."}
    answer = http.post("/knowledge/documents", json={"documents": [changed]}, headers=auth).json()
    assert answer["results"][0]["status"] == "updated"
    assert search(http, auth, "zeppelin Patagonia", mode="keyword").json()["hits"] == []
    hits = search(http, auth, "submarine Iceland", mode="keyword").json()["hits"]
    assert [h["document_id"] for h in hits] == ["d1"]
    chunks = http.get("/knowledge/documents/d1", headers=auth).json()["chunks"]
    assert "submarine" in chunks[0]["text"] and len(chunks) == 1
    dense = search(http, auth, "zeppelin airships over South America", mode="dense").json()["hits"]
    assert all("zeppelin" not in h["text"] for h in dense)


def test_delete_removes_a_document_everywhere(http, tenant_token):
    auth = tenant_token(f"del{uuid.uuid4().hex[:8]}")
    doc = {"id": "gone", "title": "Temporary", "text": "Quokka habitats on Rottnest Island shrink each year."}
    http.post("/knowledge/documents", json={"documents": [doc]}, headers=auth)
    assert http.delete("/knowledge/documents/gone", headers=auth).status_code == 204
    assert http.get("/knowledge/documents/gone", headers=auth).status_code == 404
    for mode in ("keyword", "dense", "hybrid"):
        assert search(http, auth, "quokka Rottnest", mode=mode).json()["hits"] == []
    assert http.get("/knowledge/graph/entities", params={"q": "rottnest"}, headers=auth).json()["entities"] == []
    assert http.delete("/knowledge/documents/gone", headers=auth).status_code == 404


def test_a_bad_document_is_rejected_without_losing_the_rest_of_the_batch(http, tenant_token):
    auth = tenant_token(f"bad{uuid.uuid4().hex[:8]}")
    batch = [
        {"id": "ok-1", "title": "Fine", "text": "A perfectly good document about tariffs."},
        {"id": "no-title", "text": "Missing its title."},
        {"id": "two-bodies", "title": "Both", "text": "x", "html": "<p>y</p>"},
        {"id": "huge", "title": "Too big", "text": "word " * 250_001},
        "not an object",
        {"id": "ok-1", "title": "Duplicate", "text": "Same id twice in one batch."},
    ]
    answer = http.post("/knowledge/documents", json={"documents": batch}, headers=auth)
    assert answer.status_code == 207
    results = {(r["index"]): r for r in answer.json()["results"]}
    assert results[0]["status"] == "created"
    assert results[1]["http_status"] == 422 and "title" in results[1]["error"]["message"]
    assert results[2]["http_status"] == 422
    assert "exactly one of text, html or markdown" in results[2]["error"]["message"]
    assert results[3]["http_status"] == 413 and "'huge'" in results[3]["error"]["message"]
    assert results[4]["http_status"] == 422 and "documents[4]" in results[4]["error"]["message"]
    assert results[5]["http_status"] == 409 and "twice" in results[5]["error"]["message"]
    assert http.get("/knowledge/documents/ok-1", headers=auth).status_code == 200


def test_a_batch_where_every_document_is_bad_is_a_422(http, tenant_token):
    auth = tenant_token("allbad")
    answer = http.post("/knowledge/documents", json={"documents": [{"id": "x"}]}, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["results"][0]["status"] == "rejected"
    assert http.post("/knowledge/documents", json={"documents": []}, headers=auth).status_code == 422
    assert http.post("/knowledge/documents", content=b"{not json", headers={
        **auth, "Content-Type": "application/json"}).status_code == 422


@pytest.mark.parametrize("body", [
    {"query": "", "k": 5}, {"query": "   "}, {"query": "x", "k": 0}, {"query": "x", "k": 1000},
    {"query": "x", "mode": "psychic"}, {"query": "x", "unknown": 1},
    {"query": "x", "fusion": {"keyword_weight": 2}},
])
def test_bad_search_requests_are_422_naming_the_field(http, tenant, body):
    _, auth = tenant
    answer = http.post("/knowledge/search", json=body, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"


def test_an_idempotency_key_makes_a_retried_batch_safe(http, tenant_token):
    auth = tenant_token(f"idem{uuid.uuid4().hex[:8]}")
    key = {"Idempotency-Key": f"batch-{uuid.uuid4().hex}"}
    batch = {"documents": [{"id": "i1", "title": "Once", "text": "Only ingested once, however often it is sent."}]}
    first = http.post("/knowledge/documents", json=batch, headers={**auth, **key})
    second = http.post("/knowledge/documents", json=batch, headers={**auth, **key})
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json() and second.json()["results"][0]["status"] == "created"
    assert second.headers.get("idempotency-replayed") == "true"
    other = {"documents": [{"id": "i2", "title": "Other", "text": "A different batch under the same key."}]}
    conflict = http.post("/knowledge/documents", json=other, headers={**auth, **key})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"


def test_the_knowledge_graph_links_entities_of_the_tenant(http, tenant, ingested):
    _, auth = tenant
    entities = http.get("/knowledge/graph/entities", params={"q": "northwind"}, headers=auth).json()["entities"]
    assert entities, "Northwind Research should be an entity"
    northwind = entities[0]
    assert northwind["document_count"] >= 2
    neighbors = http.get(f"/knowledge/graph/entities/{northwind['entity_id']}/neighbors", headers=auth).json()
    assert neighbors["entity"]["entity_id"] == northwind["entity_id"]
    assert neighbors["neighbors"] and all(n["weight"] >= 1 for n in neighbors["neighbors"])
    communities = http.get("/knowledge/graph/communities", headers=auth).json()["communities"]
    assert communities and all(c["summary"] for c in communities)


def test_a_second_tenant_sees_nothing_of_the_first(http, tenant, ingested, tenant_token):
    _, auth_a = tenant
    auth_b = tenant_token(f"other{uuid.uuid4().hex[:8]}")
    for mode in ("keyword", "dense", "hybrid"):
        assert search(http, auth_b, "warehouse robots Acme premium pricing", mode=mode).json()["hits"] == []
    assert search(http, auth_b, "Acme", filters={"document_ids": ["report-logistics"]}).json()["hits"] == []
    # Another tenant's ids are not confirmed: 404, exactly as for ids that never existed.
    assert http.get("/knowledge/documents/report-logistics", headers=auth_b).status_code == 404
    assert http.delete("/knowledge/documents/report-logistics", headers=auth_b).status_code == 404
    assert http.get("/knowledge/graph/entities", headers=auth_b).json()["entities"] == []
    entity = http.get("/knowledge/graph/entities", params={"q": "northwind"}, headers=auth_a).json()["entities"][0]
    assert http.get(f"/knowledge/graph/entities/{entity['entity_id']}/neighbors", headers=auth_b).status_code == 404
    assert http.get("/knowledge/graph/communities", headers=auth_b).json()["communities"] == []
    assert http.get("/knowledge/stats", headers=auth_b).json() == {"documents": 0, "chunks": 0}
    # ... and the first tenant still has everything.
    assert http.get("/knowledge/documents/report-logistics", headers=auth_a).status_code == 200


def test_knowledge_health_includes_its_stores(http):
    components = http.get("/health/services").json()["components"]
    assert components["knowledge"]["status"] == "ok"
