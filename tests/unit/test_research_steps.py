"""The research steps on a small corpus with in-memory ports: a cited, graded, verified brief;
the verification step removes a planted unsupported claim and sends the run to review."""

from __future__ import annotations

from typing import Any

import pytest
from research_fakes import CORPUS
from research_fakes import CorpusPorts as FakePorts

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.evals.rag_metrics import content_terms
from stratmaster.research.runner import EmbeddedRunner
from stratmaster.research.runs import ResearchRunRepository
from stratmaster.research.steps import candidate_subquestions, grade_claim
from stratmaster.research.workflow import STEPS, RunInput, StepFailed, execute_step

QUESTION = "Should we reposition the brand as premium? Did urban customers leave after the premium price rise?"


def run_all(request: dict[str, Any], ports: FakePorts | None = None) -> dict[str, dict[str, Any]]:
    ports = ports or FakePorts()
    run, outputs = RunInput("r1", "acme", request), {}
    for name in STEPS:
        outputs[name] = execute_step(name, run, outputs, ports)
    return outputs


def test_a_question_becomes_a_cited_graded_and_verified_brief():
    ports = FakePorts()
    outputs = run_all({"question": QUESTION}, ports)
    assert ports.calls == ["plan", "synthesize"], "plan and synthesis go through the router"
    assert outputs["plan"]["subquestions"] == [
        "Should we reposition the brand as premium?", "Did urban customers leave after the premium price rise?"]
    brief, metrics = outputs["verify"]["brief"], outputs["verify"]["metrics"]
    assert brief["claims"] and all(claim["citations"] for claim in brief["claims"])
    agreed = next(c for c in brief["claims"] if "did not leave" in c["text"])
    assert {c["document_id"] for c in agreed["citations"]} == {"pricing-2025", "loyalty-survey", "panel-study"}
    assert agreed["grade"] == "high", "three independent documents agree"
    for claim in brief["claims"]:
        for citation in claim["citations"]:
            cited = CORPUS[citation["document_id"]][1][citation["start"]:citation["end"]]
            assert cited and content_terms(cited) & content_terms(claim["text"])
    assert metrics["faithfulness"] == 1.0 and brief["flagged"] == [] and outputs["verify"]["review_reasons"] == []
    assert brief["generated_by"] == "local-extractive" and brief["recommendation"] == []
    assert "writes none" in brief["notes"][0]
    assert any("pilot" in s["text"].lower() for s in brief["safer_alternative"])
    assert {s["document_id"] for s in brief["sources"]} >= {"pricing-2025", "panel-study"}
    assert all(s["link"].startswith("https://") for s in brief["sources"])
    assert "logistics" not in {c["document_id"] for claim in brief["claims"] for c in claim["citations"]}


def test_verification_removes_a_planted_unsupported_claim_and_asks_for_review():
    outputs = run_all({"question": QUESTION})
    planted = {"id": "c99", "text": "Urban customers left in large numbers after the premium price rise.",
               "citations": [{"document_id": "pricing-2025", "chunk_id": "pricing-2025#0", "start": 48, "end": 105}],
               "grade": "low", "grade_reason": "planted"}
    outputs["synthesize"]["brief"]["claims"].append(planted)
    outputs["synthesize"]["brief"]["rationale"].append({"text": "Prices fell by 30% in every region.",
                                                        "citations": [1], "evidence": [1]})
    del outputs["verify"]
    checked = execute_step("verify", RunInput("r1", "acme", {"question": QUESTION}), outputs, FakePorts())
    assert "c99" not in [c["id"] for c in checked["brief"]["claims"]]
    flagged = {f["text"]: f for f in checked["brief"]["flagged"]}
    assert flagged[planted["text"]]["kind"] == "claim"
    assert flagged["Prices fell by 30% in every region."]["reason"] == "its cited evidence does not support it"
    assert all(s["supported"] for s in checked["brief"]["rationale"]), "what stays in the brief is supported"
    reasons = checked["review_reasons"]
    assert [r.split(":")[0] for r in reasons] == ["claim removed", "sentence removed",
                                                  "gate every brief sentence supported"]


def test_grades_follow_the_documented_rule():
    chunks = {f"d{i}#0": {"text": "Urban customers did not leave after the price rise.", "score": score}
              for i, score in enumerate((0.5, 0.9, 0.4))}
    def claim(*ids):
        return {"text": "Urban customers did not leave after the price rise.",
                "citations": [{"document_id": i.split("#")[0], "chunk_id": i, "start": 0, "end": 51} for i in ids]}
    assert grade_claim(claim("d0#0", "d1#0", "d2#0"), chunks)[0] == "high"
    assert grade_claim(claim("d0#0", "d2#0"), chunks)[0] == "moderate"
    assert grade_claim(claim("d1#0"), chunks)[0] == "moderate"  # one source, strongly retrieved
    assert grade_claim(claim("d0#0"), chunks)[0] == "low"
    wrong = {**claim("d0#0"), "text": "Urban customers left after the price cut."}
    assert grade_claim(wrong, chunks)[0] == "insufficient"


def test_heuristic_subquestions_are_the_questions_sentences_and_clauses():
    assert candidate_subquestions("Pricing; loyalty and churn trends. What do rivals charge today", 5) == [
        "loyalty and churn trends?", "What do rivals charge today?"]
    assert candidate_subquestions("Should brand X go premium?", 3) == ["Should brand X go premium?"]


def test_a_question_nothing_answers_ends_in_review_not_in_a_made_up_brief(tmp_path):
    outputs = run_all({"question": "What is the boiling point of xenon at altitude?"})
    assert outputs["verify"]["brief"]["claims"] == []
    assert any("at least one supported claim" in r for r in outputs["verify"]["review_reasons"])


@pytest.fixture
def runs(tmp_path) -> ResearchRunRepository:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    return ResearchRunRepository(create_db_engine(url))


class Flaky(FakePorts):
    def __init__(self, failures: int, retryable: bool = True) -> None:
        super().__init__()
        self.failures, self.retryable = failures, retryable

    def search(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if self.failures:
            self.failures -= 1
            raise StepFailed("index restarting", retryable=self.retryable)
        return super().search(*args, **kwargs)


def test_the_embedded_runner_retries_resumes_and_saves_each_step_once(runs):
    run, _ = runs.create("acme", {"question": QUESTION}, "embedded")
    runner = EmbeddedRunner(runs, Flaky(failures=2), sleep=lambda s: None)
    assert runner.run(run.id) == "complete"
    done = runs.get("acme", run.id)
    assert done.result["brief"]["claims"] and done.progress()["done"] == len(STEPS)
    assert runs.step_timings(run.id)["gather"]["attempts"] == 3

    failing, _ = runs.create("acme", {"question": QUESTION}, "embedded")
    assert EmbeddedRunner(runs, Flaky(failures=1, retryable=False), sleep=lambda s: None).run(failing.id) == "failed"
    record = runs.get("acme", failing.id)
    assert record.current_step == "gather" and "index restarting" in record.error

    resumed, _ = runs.create("acme", {"question": QUESTION}, "embedded")
    runs.save_step(resumed.id, "plan", {"subquestions": ["Did urban customers leave?"], "model": "earlier",
                                        "call_id": None, "heuristic_candidates": []})
    ports = FakePorts()
    restarted = EmbeddedRunner(runs, ports)  # a platform starting again
    assert restarted.resume_unfinished() == [resumed.id]
    assert restarted.submit(resumed.id).result(timeout=30) == "complete", "the run in flight, not a second one"
    assert ports.calls == ["synthesize"], "the saved plan was not run again"
    assert runs.get("acme", resumed.id).result["plan"]["model"] == "earlier"


def test_cancel_between_steps(runs):
    run, _ = runs.create("acme", {"question": QUESTION}, "embedded")
    runs.set_state(run.id, "running", "plan")
    runs.request_cancel("acme", run.id)
    assert EmbeddedRunner(runs, FakePorts()).run(run.id) == "cancelled"
    assert runs.step_outputs(run.id) == {}


def test_a_runs_own_sources_are_fetched_before_searching_and_refusals_do_not_stop_it():
    class WithSources(FakePorts):
        def fetch_sources(self, tenant: str, urls: list[str]) -> list[dict[str, Any]]:
            self.calls.append("fetch")
            return [{"url": url, "status": "refused", "code": "not_allowed", "reason": "not on the allowlist"}
                    for url in urls]

    ports = WithSources()
    outputs = run_all({"question": QUESTION, "options": {"sources": ["https://elsewhere.example/x"]}}, ports)
    assert ports.calls[:2] == ["plan", "fetch"]
    assert outputs["gather"]["sources"][0]["code"] == "not_allowed"
    assert outputs["verify"]["brief"]["claims"], "the run went on with the tenant's own documents"


def test_ports_without_a_fetcher_refuse_sources_plainly():
    from stratmaster.research.ports import LocalPorts

    ports = LocalPorts(lambda tenant, request: {"hits": []})
    try:
        with pytest.raises(StepFailed, match="not available") as refused:
            ports.fetch_sources("acme", ["https://example.org"])
        assert not refused.value.retryable
    finally:
        ports.close()
