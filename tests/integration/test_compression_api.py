"""POST /compression/compress: chunks shrunk to a budget, every kept sentence traceable to its chunk."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cluster

CHUNKS = [
    {"id": "pricing", "text": "The premium tier raised prices by 12% in March. Urban customers did not leave. "
                              "Rural stores saw fewer visits after the change."},
    {"id": "logistics", "text": "Freight costs rose after the port closed. The warehouse moved to Leeds. "
                                "Delivery times grew by two days."},
    {"id": "loyalty", "text": "Loyalty members renewed at 91%. Members who left cited price, not service. "
                              "The scheme added a partner airline."},
]


@pytest.mark.parametrize("mode", ["extractive", "prune", "truncate"])
def test_the_budget_holds_and_kept_sentences_point_back_to_their_chunks(http, bearer, mode):
    body = {"query": "did customers leave after the price rise?", "chunks": CHUNKS, "ratio": 0.4, "mode": mode}
    answer = http.post("/compression/compress", json=body, headers=bearer)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["tokens_after"] <= result["budget"] < result["tokens_before"]
    texts = {c["id"]: c["text"] for c in CHUNKS}
    for kept in result["sentences"]:
        assert texts[kept["chunk_id"]][kept["start"]:kept["end"]] == kept["original"]
    if mode == "extractive":
        assert any(k["chunk_id"] == "pricing" and "did not leave" in k["text"] for k in result["sentences"])


def test_a_budget_no_sentence_fits_is_a_422_naming_the_smallest(http, bearer):
    answer = http.post("/compression/compress", json={"chunks": CHUNKS, "target_tokens": 2}, headers=bearer)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "budget_too_small" and error["details"]["smallest"] > 2


def test_malformed_requests_name_the_problem(http, bearer):
    both = http.post("/compression/compress", json={"chunks": CHUNKS, "ratio": 0.5, "target_tokens": 10},
                     headers=bearer)
    assert both.status_code == 422 and "exactly one" in both.text
    twice = http.post("/compression/compress", json={"chunks": [CHUNKS[0], CHUNKS[0]], "ratio": 0.5}, headers=bearer)
    assert twice.status_code == 422 and "unique" in twice.text
    assert http.post("/compression/compress", json={"chunks": CHUNKS, "ratio": 0.5}).status_code == 401


def test_the_default_path_is_lexical_and_names_its_tokenizer(http, bearer):
    body = {"query": "did customers leave after the price rise?", "chunks": CHUNKS, "ratio": 0.5}
    result = http.post("/compression/compress", json=body, headers=bearer).json()
    assert result["tokenizer"] == "sentence-transformers/all-MiniLM-L6-v2"
    semantic = http.post("/compression/compress", json={**body, "semantic": True}, headers=bearer)
    assert semantic.status_code == 200, semantic.text
    assert semantic.json()["tokens_after"] <= semantic.json()["budget"]


def test_a_target_model_counts_with_its_tokenizer_or_is_refused(http, bearer):
    body = {"query": "price rise", "chunks": CHUNKS, "ratio": 0.5}
    named = http.post("/compression/compress", json={**body, "model": "all-MiniLM-L6-v2"}, headers=bearer)
    assert named.status_code == 200 and named.json()["tokenizer"] == "all-MiniLM-L6-v2"
    unknown = http.post("/compression/compress", json={**body, "model": "openai-community/gpt2"}, headers=bearer)
    assert unknown.status_code == 422
    error = unknown.json()["error"]
    assert error["code"] == "tokenizer_unavailable" and error["details"]["model"] == "openai-community/gpt2"
