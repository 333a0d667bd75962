"""The embedded orchestrator: research runs on threads of this process, their state in the database.

It runs the same step definitions as Temporal does. Each finished step's output is saved
before the next starts, so a run interrupted by a crash or a restart resumes at the first
step without a saved output when `resume_unfinished()` runs (the research service calls it
at start). A step is tried up to `max_attempts` times with exponential backoff while it
fails with a retryable StepFailed (or an unexpected error); a non-retryable one fails the
run. Cancellation is checked between steps.

Embedded runs belong to one process: two processes resuming the same run would both run
its steps (outputs stay consistent - the first saved wins - but the router would be called
twice). The research service therefore runs one replica when TEMPORAL_ADDRESS is unset
(configs/serve.yaml); Temporal lifts that limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from stratmaster.logs import correlation_scope
from stratmaster.research.runs import ResearchRunRepository
from stratmaster.research.workflow import STEPS, Ports, RunInput, StepFailed, StepFunction, execute_step, outcome

log = logging.getLogger("stratmaster.research")


def final_result(outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    verified = outputs["verify"]
    return {"brief": verified["brief"], "metrics": verified["metrics"],
            "plan": {"subquestions": outputs["plan"]["subquestions"], "model": outputs["plan"]["model"]},
            "evidence": {"hits": len(outputs["gather"]["hits"]), "claims_considered": outputs["extract"]["considered"],
                         "tokens_before": outputs["compress"]["tokens_before"],
                         "tokens_after": outputs["compress"]["tokens_after"]}}


class EmbeddedRunner:
    def __init__(self, runs: ResearchRunRepository, ports: Ports, *, workers: int = 2, max_attempts: int = 3,
                 backoff_s: float = 0.5, registry: dict[str, StepFunction] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.runs, self.ports = runs, ports
        self.max_attempts, self.backoff_s, self.registry, self._sleep = max_attempts, backoff_s, registry, sleep
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="research-run")
        self._active: dict[str, Future] = {}
        self._lock = threading.Lock()

    def submit(self, run_id: str) -> Future:
        """Run (or resume) a run in the background; a run already in flight here is not started twice."""
        with self._lock:
            running = self._active.get(run_id)
            if running is not None and not running.done():
                return running
            future = self._pool.submit(self.run, run_id)
            self._active[run_id] = future
            return future

    def resume_unfinished(self) -> list[str]:
        ids = self.runs.unfinished("embedded")
        for run_id in ids:
            self.submit(run_id)
        if ids:
            log.info("resuming research runs", extra={"runs": len(ids)})
        return ids

    def run(self, run_id: str) -> str:
        """Run every step not yet saved; the run's final state."""
        record = self.runs.get_any(run_id)
        if record is None:
            raise KeyError(run_id)
        if record.finished:
            return record.status
        with correlation_scope(f"research-{run_id}"):
            try:
                return self._run(RunInput(record.id, record.tenant, record.request))
            except Exception as exc:  # noqa: BLE001 - a bug must still end the run, with its reason
                log.exception("research run crashed", extra={"run": run_id})
                self.runs.set_state(run_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
                return "failed"

    def _run(self, run: RunInput) -> str:
        outputs = self.runs.step_outputs(run.run_id)
        for name in STEPS:
            if name in outputs:
                continue
            if self.runs.cancel_requested(run.run_id):
                self.runs.set_state(run.run_id, "cancelled", name)
                return "cancelled"
            self.runs.set_state(run.run_id, "running", name)
            started = time.perf_counter()
            for attempt in range(1, self.max_attempts + 1):
                try:
                    output = execute_step(name, run, outputs, self.ports, self.registry)
                    break
                except Exception as exc:  # noqa: BLE001 - StepFailed says whether to retry; others are retried
                    retryable = exc.retryable if isinstance(exc, StepFailed) else True
                    log.warning("research step failed", extra={"run": run.run_id, "step": name, "attempt": attempt,
                                                               "error": str(exc)[:300], "retryable": retryable})
                    if not retryable or attempt == self.max_attempts:
                        self.runs.set_state(run.run_id, "failed", name,
                                            error=f"step {name} failed after {attempt} attempt(s): {exc}")
                        return "failed"
                    self._sleep(self.backoff_s * 2 ** (attempt - 1))
            outputs[name] = self.runs.save_step(run.run_id, name, output, attempt, time.perf_counter() - started)
        status, reasons = outcome(outputs)
        self.runs.set_state(run.run_id, status, None, result=final_result(outputs), reasons=reasons)
        log.info("research run finished", extra={"run": run.run_id, "status": status})
        return status

    def close(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
