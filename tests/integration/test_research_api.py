"""Research runs through the running platform: idempotent start, the embedded runner to a
verified brief over the tenant's documents, Markdown export, cancel, tenant scoping."""

from __future__ import annotations

import time
import uuid

import pytest
from research_fakes import PLATFORM_DOCUMENTS

pytestmark = pytest.mark.cluster

QUESTION = "Did urban customers leave after the premium price rise?"


@pytest.fixture(scope="module")
def auth(issuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('strategist', 'research-it', ('analyst',), 3600)}"}


@pytest.fixture(scope="module")
def corpus(http, auth) -> None:
    answer = http.post("/knowledge/documents", json={"documents": PLATFORM_DOCUMENTS}, headers=auth)
    assert answer.status_code == 200, answer.text


def wait(http, run_id: str, auth: dict, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = http.get(f"/research/runs/{run_id}", headers=auth).json()
        if run["status"] in ("complete", "needs_review", "failed", "cancelled"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {run['status']}: {run}")


def test_a_question_becomes_a_verified_cited_brief(http, auth, corpus):
    key = f"brief-{uuid.uuid4().hex[:8]}"
    started = http.post("/research/runs", json={"question": QUESTION}, headers={**auth, "Idempotency-Key": key})
    assert started.status_code == 202, started.text
    again = http.post("/research/runs", json={"question": QUESTION}, headers={**auth, "Idempotency-Key": key})
    assert again.status_code == 202 and again.json()["id"] == started.json()["id"]
    assert again.headers["idempotency-replayed"] == "true"
    conflict = http.post("/research/runs", json={"question": "Something else entirely?"},
                         headers={**auth, "Idempotency-Key": key})
    assert conflict.status_code == 409

    run = wait(http, started.json()["id"], auth)
    assert run["status"] == "complete", run
    assert run["progress"] == {"done": 7, "total": 7, "steps": ["plan", "gather", "extract", "grade", "compress",
                                                                 "synthesize", "verify"]}
    brief = run["result"]["brief"]
    assert brief["claims"] and all(c["citations"] for c in brief["claims"])
    cited = {c["document_id"] for claim in brief["claims"] for c in claim["citations"]}
    assert {"pricing", "survey"} <= cited and "freight" not in cited
    assert brief["generated_by"] == "local-extractive" and run["result"]["metrics"]["faithfulness"] == 1.0

    markdown = http.get(f"/research/runs/{run['id']}/brief", params={"format": "markdown"}, headers=auth)
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert f"# Decision brief: {QUESTION}" in markdown.text
    assert "[Premium pricing review](https://intranet.example/pricing)" in markdown.text
    as_json = http.get(f"/research/runs/{run['id']}/brief", headers=auth).json()
    assert as_json["brief"] == brief and as_json["status"] == "complete"
    assert http.post(f"/research/runs/{run['id']}/cancel", headers=auth).status_code == 409
    listed = http.get("/research/runs", headers=auth).json()
    assert run["id"] in [r["id"] for r in listed["runs"]]


def test_bad_requests_and_other_tenants(http, auth, issuer):
    assert http.post("/research/runs", json={"question": ""}, headers=auth).status_code == 422
    assert http.post("/research/runs", json={"question": QUESTION, "depth": 9}, headers=auth).status_code == 422
    assert http.post("/research/runs", json={"question": QUESTION, "colour": "blue"}, headers=auth).status_code == 422
    run = http.post("/research/runs", json={"question": QUESTION}, headers=auth).json()
    other = {"Authorization": f"Bearer {issuer.issue('spy', 'research-other', ('admin',), 3600)}"}
    for method, path in (("GET", f"/research/runs/{run['id']}"), ("GET", f"/research/runs/{run['id']}/brief"),
                         ("POST", f"/research/runs/{run['id']}/cancel")):
        assert http.request(method, path, headers=other).status_code == 404
    assert run["id"] not in [r["id"] for r in http.get("/research/runs", headers=other).json()["runs"]]
    viewer = {"Authorization": f"Bearer {issuer.issue('v', 'research-it', ('viewer',), 3600)}"}
    assert http.post("/research/runs", json={"question": QUESTION}, headers=viewer).status_code == 403
    wait(http, run["id"], auth)


def test_allowed_pages_are_fetched_ingested_and_found(http, auth, issuer):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            pages = {"/memo": b"<html><head><title>Tariff memo</title></head><body><p>The zyxquartz tariff cut "
                              b"freight costs by a third.</p></body></html>",
                     "/levy": b"<html><head><title>Levy note</title></head><body><p>The qorvane levy doubled "
                              b"import prices in the second quarter. Importers passed the qorvane levy on to "
                              b"shoppers.</p></body></html>",
                     "/robots.txt": b"User-agent: *\nDisallow: /private\n"}
            body, status = (pages[self.path], 200) if self.path in pages else (b"", 404)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if self.path == "/robots.txt" else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{server.server_address[1]}"
    admin = {"Authorization": f"Bearer {issuer.issue('boss', 'research-it', ('admin',), 3600)}"}
    try:
        assert http.post("/research/sources", json={"urls": [f"{site}/memo"]}, headers=auth).status_code == 422
        assert http.put("/research/sources/allowlist", json={"hosts": ["127.0.0.1"]}, headers=auth).status_code == 403
        assert http.put("/research/sources/allowlist", json={"hosts": ["not a host!"]},
                        headers=admin).status_code == 422
        assert http.put("/research/sources/allowlist", json={"hosts": ["127.0.0.1"]},
                        headers=admin).json()["hosts"] == ["127.0.0.1"]
        answer = http.post("/research/sources", json={"urls": [f"{site}/memo", f"{site}/private/x"]}, headers=auth)
        assert answer.status_code == 207, answer.text
        fetched, refused = answer.json()["results"]
        assert fetched["status"] == "ingested" and fetched["provenance"]["title"] == "Tariff memo"
        assert (refused["status"], refused["code"]) == ("refused", "robots")
        document = http.get(f"/knowledge/documents/{fetched['document_id']}", headers=auth).json()
        assert document["source"] == f"{site}/memo" and document["metadata"]["sha256"] == \
            fetched["provenance"]["sha256"]
        hits = http.post("/knowledge/search", json={"query": "zyxquartz tariff", "mode": "keyword"},
                         headers=auth).json()["hits"]
        assert hits and hits[0]["document_id"] == fetched["document_id"]

        # a run can fetch its own pages first; refusals are listed, not fatal
        run = http.post("/research/runs", headers=auth, json={
            "question": "What did the qorvane levy do to import prices?",
            "options": {"sources": [f"{site}/levy", "https://not-allowed.example/page"]}}).json()
        done = wait(http, run["id"], auth)
        assert done["status"] == "complete", done
        cited = {c["document_id"] for claim in done["result"]["brief"]["claims"] for c in claim["citations"]}
        sources = {s["title"]: s for s in done["result"]["brief"]["sources"]}
        assert "Levy note" in sources and sources["Levy note"]["link"] == f"{site}/levy"
        assert sources["Levy note"]["document_id"] in cited
    finally:
        server.shutdown()
