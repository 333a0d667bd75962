"""POST /evals/score: one RAG case in the JSONL case format, scored by the evals service."""

from __future__ import annotations

import pytest

from deployments.evals import SCORE_EXAMPLE

pytestmark = pytest.mark.cluster


def test_a_supported_cited_answer_scores_full_marks(http, bearer):
    answer = http.post("/evals/score", json=SCORE_EXAMPLE, headers=bearer)
    assert answer.status_code == 200, answer.text
    scored = answer.json()
    assert scored["faithfulness"] == 1.0
    assert scored["citation_precision"] == 1.0 and scored["context_recall"] == 1.0
    assert 0.3 < scored["answer_relevancy"] <= 1.0
    assert scored["sentences"][0]["supported_by"] == ["c1"]


def test_a_changed_number_is_not_supported(http, bearer):
    case = {**SCORE_EXAMPLE, "answer": "Urban churn fell to 8% after the premium launch [c1]."}
    scored = http.post("/evals/score", params={"relevancy": "false"}, json=case, headers=bearer).json()
    assert scored["faithfulness"] == 0.0 and scored["answer_relevancy"] is None
    assert scored["sentences"][0]["missing_numbers"] == ["8"]


def test_a_malformed_case_is_a_422_naming_the_field(http, bearer):
    case = {key: value for key, value in SCORE_EXAMPLE.items() if key != "question"}
    answer = http.post("/evals/score", json=case, headers=bearer)
    assert answer.status_code == 422
    assert "question" in answer.json()["error"]["message"]
    cites_unknown = {**SCORE_EXAMPLE, "answer": "Churn fell [c9]."}
    answer = http.post("/evals/score", json=cites_unknown, headers=bearer)
    assert answer.status_code == 422 and "c9" in answer.json()["error"]["message"]


def test_scoring_needs_a_token(http):
    assert http.post("/evals/score", json=SCORE_EXAMPLE).status_code == 401


def test_a_scored_router_answer_rewards_the_model_that_wrote_it(http, bearer):
    messages = [{"role": "system", "content": SCORE_EXAMPLE["contexts"][0]["text"]},
                {"role": "user", "content": SCORE_EXAMPLE["question"]}]
    completion = http.post("/router/complete", json={"task": "synthesize", "messages": messages}, headers=bearer)
    assert completion.status_code == 200, completion.text
    call_id = completion.json()["routing"]["call_id"]
    answer = completion.json()["choices"][0]["message"]["content"]
    case = {**SCORE_EXAMPLE, "answer": f"{answer} [c1]"}
    scored = http.post("/evals/score", params={"router_call_id": call_id, "relevancy": "false"}, json=case,
                       headers=bearer)
    assert scored.status_code == 200, scored.text
    feedback = scored.json()["router_feedback"]
    assert feedback["call_id"] == call_id and feedback["task"] == "synthesize" and feedback["arm"]["pulls"] >= 1
    again = http.post("/evals/score", params={"router_call_id": call_id, "relevancy": "false"}, json=case,
                      headers=bearer)
    assert again.status_code == 409 and "already has feedback" in again.json()["error"]["message"]
    unknown = http.post("/evals/score", params={"router_call_id": "nope", "relevancy": "false"}, json=case,
                        headers=bearer)
    assert unknown.status_code == 404
