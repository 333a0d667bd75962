"""Fake research steps and ports for orchestration tests (Temporal and the embedded runner).

Each fake step appends `{"run", "step", "event": "start" | "end", "pid"}` to a JSON-lines
log, so a test counts executions across processes (a killed worker's starts included).
What a step does is read from the run's request, so it is the same in every worker
process, without environment variables:

    request["fake"] = {
        "log": "/tmp/.../steps.jsonl",                           # required: where executions are logged
        "sleep": {"grade": {"seconds": 60, "attempts": 1}},      # sleep in the first N executions of a step
        "fail": {"extract": {"times": 2, "retryable": True}},    # raise StepFailed in the first N executions
        "wait_for": {"gather": "/tmp/.../go"},                   # block until the file exists (up to 60 s)
        "review_reasons": ["..."],                               # what the verify step reports
    }

Importable as `research_fakes` (tests/ is on sys.path in pytest, PYTHONPATH=tests elsewhere):
a worker process takes `--registry research_fakes:REGISTRY --ports research_fakes:make_ports
--result research_fakes:final_result`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stratmaster.research.workflow import STEPS, RunInput, StepFailed, StepFunction


class FakePorts:
    """Ports that answer without any service."""

    def search(self, tenant: str, query: str, *, k: int, filters: dict[str, Any] | None) -> list[dict[str, Any]]:
        return [{"chunk_id": "c1", "document_id": "d1", "title": "Doc", "text": query, "score": 1.0, "source": ""}]

    def complete(self, tenant: str, task: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}], "routing": {"task": task}}

    def compress(self, tenant: str, query: str, chunks: list[dict[str, str]], target_tokens: int) -> dict[str, Any]:
        return {"chunks": chunks, "target_tokens": target_tokens}


def make_ports() -> FakePorts:
    return FakePorts()


def executions(log: Path, run_id: str | None = None, event: str = "start") -> list[str]:
    """The steps executed (started or ended), in order, from a fake log."""
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e["step"] for e in entries if e["event"] == event and (run_id is None or e["run"] == run_id)]


def _log(log: Path, run: RunInput, step: str, event: str) -> None:
    line = json.dumps({"run": run.run_id, "step": step, "event": event, "pid": os.getpid()}) + "\n"
    with open(log, "a") as handle:  # one short append: atomic enough across processes
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _fake_step(name: str) -> StepFunction:
    def run_step(run: RunInput, outputs: Mapping[str, dict[str, Any]], ports: Any) -> dict[str, Any]:
        fake = run.request.get("fake", {})
        log = Path(fake["log"])
        before = executions(log, run.run_id).count(name)  # earlier executions of this step
        _log(log, run, name, "start")
        sleep = fake.get("sleep", {}).get(name)
        if sleep and before < int(sleep.get("attempts", 1)):
            time.sleep(float(sleep["seconds"]))
        gate = fake.get("wait_for", {}).get(name)
        if gate:
            deadline = time.monotonic() + 60
            while not Path(gate).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        fail = fake.get("fail", {}).get(name)
        if fail and before < int(fail.get("times", 1)):
            _log(log, run, name, "failed")
            raise StepFailed(f"fake {name} failure {before + 1}", retryable=bool(fail.get("retryable", True)))
        output: dict[str, Any] = {"step": name, "saw": sorted(outputs)}
        if name == "gather":
            output["hits"] = ports.search(run.tenant, run.request.get("question", ""), k=3, filters=None)
        if name == "synthesize":
            output["brief"] = {"question": run.request.get("question", ""), "recommendation": "do it"}
        if name == "verify":
            output["brief"] = {**outputs["synthesize"]["brief"], "verified": True}
            output["review_reasons"] = list(fake.get("review_reasons", []))
        _log(log, run, name, "end")
        return output

    run_step.__name__ = f"fake_{name}"
    return run_step


REGISTRY: dict[str, StepFunction] = {name: _fake_step(name) for name in STEPS}


def final_result(outputs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's result from the fake outputs: the verified brief."""
    return {"brief": outputs["verify"]["brief"]}


# --- ports for the real steps: keyword search over a small corpus, the local provider's extraction ---

CORPUS = {
    "pricing-2025": ("Premium pricing review", "The premium tier raised prices by 12% in March. Urban customers "
                     "did not leave after the premium price rise. Rural stores saw fewer visits after the change."),
    "loyalty-survey": ("Loyalty survey", "Loyalty members renewed at 91% after the premium price rise. Urban "
                       "customers did not leave after the premium price rise, the survey found."),
    "panel-study": ("Consumer panel", "Panel data show urban customers did not leave after the premium price "
                    "rise. A pilot in two regions is a safer alternative to repositioning the whole brand as premium."),
    "logistics": ("Logistics memo", "Freight costs rose after the port closed. The warehouse moved to Leeds."),
}


class CorpusPorts:
    """What the real steps need, in memory: keyword search over CORPUS, the local provider's
    extractive answer for the router's tasks, compression that keeps everything."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def search(self, tenant: str, query: str, *, k: int, filters: Any) -> list[dict[str, Any]]:
        from stratmaster.evals.rag_metrics import content_terms

        wanted = content_terms(query)
        scored = []
        for doc_id, (title, text) in CORPUS.items():
            overlap = len(content_terms(text) & wanted)
            if overlap:
                scored.append({"chunk_id": f"{doc_id}#0", "document_id": doc_id, "text": text, "title": title,
                               "source": f"https://intranet.example/{doc_id}", "score": min(1.0, overlap / 5),
                               "chunk_start": 0})
        return sorted(scored, key=lambda h: (-h["score"], h["document_id"]))[:k]

    def complete(self, tenant: str, task: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        from stratmaster.router.providers import extract_answer

        self.calls.append(task)
        return {"model": "local-extractive", "choices": [{"message": {"content": extract_answer(messages, 400)}}],
                "routing": {"call_id": f"call-{len(self.calls)}", "model": "local"}}

    def compress(self, tenant: str, query: str, chunks: list[dict[str, str]], target_tokens: int) -> dict[str, Any]:
        return {"chunks": chunks, "tokens_before": 100, "tokens_after": 100}


def corpus_ports() -> CorpusPorts:
    return CorpusPorts()


# Documents the platform tests ingest before asking the research service about them.
PLATFORM_DOCUMENTS = [
    {"id": "pricing", "title": "Premium pricing review", "source": "https://intranet.example/pricing",
     "text": "The premium tier raised prices by 12% in March. Urban customers did not leave after the premium "
             "price rise. Rural stores saw fewer visits after the change."},
    {"id": "survey", "title": "Loyalty survey", "text": "Loyalty members renewed at 91% after the premium price "
     "rise. Urban customers did not leave after the premium price rise, the survey found."},
    {"id": "freight", "title": "Logistics memo", "text": "Freight costs rose after the port closed. The warehouse "
     "moved to Leeds."},
]
