"""Research runs as Temporal workflows (`TEMPORAL_ADDRESS` set): one workflow per run, one activity per step.

`ResearchWorkflow` runs `STEPS` in order, each as the activity `run_research_step` with its
own retry policy (exponential backoff; a `StepFailed(retryable=False)` is not retried), a
start-to-close timeout and a heartbeat timeout. The activity heartbeats while the step
runs in a thread, so a worker that dies mid-step (kill -9, a lost Ray node) is noticed
after one heartbeat timeout and the step is retried on another worker, instead of after
the whole start-to-close timeout.

Where the state lives. The database is the record (`ResearchRunRepository`): the activity
reads the earlier steps' outputs from `step_outputs`, skips a step whose output is already
there (a crashed worker finished it but never reported it), saves each new output with
`save_step` (the first output wins) and moves `status`/`current_step` with `set_state`, so
`GET /research/runs/{id}` shows progress whichever orchestrator runs the steps. The workflow
history holds only small step summaries (name, reused or not, seconds), never the step
outputs: those can be larger than Temporal's 2 MB payload limit. The workflow code does no
I/O; everything goes through activities, so replay on a new worker is deterministic.

Cancellation, two ways, both ending with the run `cancelled`:
  * the durable flag: `ResearchRunRepository.request_cancel` sets `cancel_requested` (what
    `POST /research/runs/{id}/cancel` does for both orchestrators). `run_research_step`
    checks it before each step, so the run stops between steps; a step that is running
    finishes (and its output is kept).
  * `cancel_run(client, run_id)`: a Temporal cancellation request, which also interrupts
    the step in flight (delivered to the activity on its next heartbeat). The workflow
    then records `cancelled` through the `mark_research_run` activity and ends cancelled.
  Call both from the API: the flag first (it is the record, and it reaches a workflow
  whose worker is down right now), then `cancel_run`.
Once every step has finished, a late cancel does not undo the run: it ends complete or
needs_review.

Changing the workflow: a worker replays the history of every run in flight, so the order
of activities a run schedules must not change under it (adding, removing or reordering
`STEPS`, or another activity between them): drain the task queue first, or branch on
`workflow.patched(...)`.

Starting: `start_run(client, run_input)` uses the workflow id `research-{run_id}` with
`ALLOW_DUPLICATE_FAILED_ONLY` and the conflict policy `FAIL`: a second start of a run whose
workflow is running or completed is refused by Temporal (and reported as `started=False`
with the existing handle). A workflow completes for every run outcome the steps decide
(complete, needs_review, failed, cancelled between steps); only one that was terminated,
timed out, cancelled through Temporal or failed at the Temporal level may be started
again, and the new one reuses the finished steps (or stops at once when the run is over).
`start_unfinished(client, repository)` does this for every unfinished Temporal run: call it
when the research service starts, so a run created just before a crash is not left queued.

Changing a step's code does not affect replay. Step outputs should stay readable by the
steps after them, since a run in flight mixes outputs of the old and the new code.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.exceptions import TimeoutError as TemporalTimeout

with workflow.unsafe.imports_passed_through():
    from stratmaster.research.workflow import STEPS, Ports, RunInput, StepFailed, StepFunction, execute_step, outcome

TASK_QUEUE = "stratmaster-research"
NAMESPACE = "default"
ORCHESTRATOR = "temporal"  # the `orchestrator` column of runs this module drives


def workflow_id(run_id: str) -> str:
    return f"research-{run_id}"


@dataclass(frozen=True, slots=True)
class StepPolicy:
    """Timeouts and retries of every step activity; travels in the workflow input, so a run
    keeps the policy it started with. The defaults suit real steps (model calls, fetches);
    tests pass short ones."""

    start_to_close_s: float = 600.0  # one attempt of one step, at most
    heartbeat_s: float = 30.0  # a worker silent this long is presumed dead; the attempt is retried
    initial_interval_s: float = 2.0  # first retry after this, then doubling ...
    backoff: float = 2.0
    maximum_interval_s: float = 60.0  # ... up to this
    maximum_attempts: int = 5  # then the run fails with the last error
    bookkeeping_timeout_s: float = 30.0  # the finish/mark activities (database writes only)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> StepPolicy:
        return cls(**dict(data or {}))

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(initial_interval=timedelta(seconds=self.initial_interval_s),
                           backoff_coefficient=self.backoff,
                           maximum_interval=timedelta(seconds=self.maximum_interval_s),
                           maximum_attempts=self.maximum_attempts,
                           non_retryable_error_types=[NON_RETRYABLE])


ResultFunction = Callable[[Mapping[str, dict[str, Any]]], dict[str, Any]]
NON_RETRYABLE = "StepFailedPermanently"  # ApplicationError type of StepFailed(retryable=False)
RETRYABLE = "StepFailed"


# --- activities (run by workers; they do the I/O) ----------------------------------------

class ResearchActivities:
    """The activities of `ResearchWorkflow`, bound to one database and one set of ports.

    `registry` maps step names to step functions (tests pass fakes); None runs the real steps
    registered by `stratmaster.research.steps`. `result` turns the outputs into the run's
    `result`; None uses the embedded runner's `final_result`, so both orchestrators store the
    same thing. Steps are blocking functions: they run in a
    thread pool of `threads` (give the worker as many concurrent activities), while the
    activity heartbeats from the worker's event loop.
    """

    def __init__(self, repository: Any, ports: Ports, registry: Mapping[str, StepFunction] | None = None,
                 *, result: ResultFunction | None = None, threads: int = 8) -> None:
        self._repository = repository  # ResearchRunRepository
        self._ports = ports
        self._registry = registry
        self._result = result
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="research-step")
        self.threads = threads

    def all(self) -> list[Callable[..., Any]]:
        return [self.run_research_step, self.finish_research_run, self.mark_research_run]

    def close(self) -> None:
        """Release the thread pool (a step still running in it is not waited for)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    @activity.defn(name="run_research_step")
    async def run_research_step(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run one step unless the run is over, cancelled, or the step was done already.

        Returns {"step", "state": "done" | "cancelled" | <terminal status>, "reused", "seconds"}.
        """
        info = activity.info()
        return await _with_heartbeats(self._threads, info.heartbeat_timeout, self._run_step, dict(task["run"]),
                                      str(task["step"]), info.attempt)

    def _run_step(self, run_data: dict[str, Any], name: str, attempt: int) -> dict[str, Any]:
        run = RunInput.from_dict(run_data)
        record = self._repository.get_any(run.run_id)
        if record is None:
            raise ApplicationError(f"research run {run.run_id} does not exist", type=NON_RETRYABLE,
                                   non_retryable=True)
        if record.finished:  # cancelled while queued, or finished by an earlier execution
            return {"step": name, "state": record.status, "reused": False, "seconds": 0.0}
        if record.cancel_requested:  # current_step: the step it stopped before, as the embedded runner says
            self._repository.set_state(run.run_id, "cancelled", name)
            return {"step": name, "state": "cancelled", "reused": False, "seconds": 0.0}
        outputs = self._repository.step_outputs(run.run_id)
        if name in outputs:  # finished before a crash: never run twice
            return {"step": name, "state": "done", "reused": True, "seconds": 0.0}
        self._repository.set_state(run.run_id, "running", name)
        started = time.perf_counter()
        try:
            output = execute_step(name, run, outputs, self._ports, self._registry)
        except Exception as exc:  # StepFailed says whether to retry; anything else is retried
            retryable = exc.retryable if isinstance(exc, StepFailed) else True
            detail = str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"
            raise ApplicationError(f"step {name} failed after {attempt} attempt(s): {detail}",
                                   type=RETRYABLE if retryable else NON_RETRYABLE, non_retryable=not retryable) from exc
        seconds = time.perf_counter() - started
        self._repository.save_step(run.run_id, name, output, attempts=attempt, seconds=seconds)
        return {"step": name, "state": "done", "reused": False, "seconds": round(seconds, 4)}

    @activity.defn(name="finish_research_run")
    async def finish_research_run(self, run_id: str) -> dict[str, Any]:
        """Every step done: complete or needs_review (workflow.outcome), with the result."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._finish, run_id)

    def _finish(self, run_id: str) -> dict[str, Any]:
        outputs = self._repository.step_outputs(run_id)
        status, reasons = outcome(outputs)
        if self._result is None:
            from stratmaster.research.runner import final_result

            self._result = final_result
        try:
            result = self._result(outputs)
        except Exception as exc:  # a step's output lacks what the result needs: retrying will not help
            raise ApplicationError(f"the run's result could not be assembled: {type(exc).__name__}: {exc}",
                                   type=NON_RETRYABLE, non_retryable=True) from exc
        self._repository.set_state(run_id, status, None, result=result, reasons=reasons)
        record = self._repository.get_any(run_id)
        final = record.status if record is not None else status
        return {"status": final, "reasons": reasons}

    @activity.defn(name="mark_research_run")
    async def mark_research_run(self, change: dict[str, Any]) -> dict[str, Any]:
        """Record a terminal state decided by the workflow: failed (with the error) or cancelled."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._mark, change)

    def _mark(self, change: dict[str, Any]) -> dict[str, Any]:
        run_id, status = str(change["run_id"]), str(change["status"])
        self._repository.set_state(run_id, status, change.get("step"), error=change.get("error"))
        record = self._repository.get_any(run_id)
        return {"status": record.status if record is not None else status, "error": change.get("error")}


async def _with_heartbeats(threads: Executor, heartbeat_timeout: timedelta | None,
                           function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run a blocking step in a thread, heartbeating meanwhile (a third of the heartbeat timeout)."""
    work = asyncio.get_running_loop().run_in_executor(threads, function, *args)
    interval = max(0.1, heartbeat_timeout.total_seconds() / 3) if heartbeat_timeout else None
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=interval)
            if done:
                return work.result()
            activity.heartbeat()
    except asyncio.CancelledError:
        work.cancel()  # the thread runs on; the run is cancelled and a late save_step is harmless
        raise


# --- the workflow (deterministic: no I/O, only activities) ---------------------------------

@workflow.defn(name="ResearchWorkflow")
class ResearchWorkflow:
    def __init__(self) -> None:
        self._step: str | None = None
        self._done: list[str] = []

    @workflow.query(name="progress")
    def progress(self) -> dict[str, Any]:
        return {"current_step": self._step, "done": list(self._done), "total": len(STEPS)}

    @workflow.run
    async def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` is RunInput.as_dict(), optionally with "policy" (StepPolicy fields)."""
        run = RunInput.from_dict(payload)
        policy = StepPolicy.from_dict(payload.get("policy"))
        bookkeeping = timedelta(seconds=policy.bookkeeping_timeout_s)
        try:
            for name in STEPS:
                self._step = name
                summary = await workflow.execute_activity(
                    "run_research_step", {"run": run.as_dict(), "step": name},
                    start_to_close_timeout=timedelta(seconds=policy.start_to_close_s),
                    heartbeat_timeout=timedelta(seconds=policy.heartbeat_s),
                    retry_policy=policy.retry_policy(), result_type=dict)
                if summary["state"] != "done":  # cancelled between steps, or already over
                    self._step = None
                    return {"run_id": run.run_id, "status": summary["state"], "steps": list(self._done)}
                self._done.append(name)
            self._step = None
            final = await workflow.execute_activity(
                "finish_research_run", run.run_id, start_to_close_timeout=bookkeeping,
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)), result_type=dict)
            return {"run_id": run.run_id, "steps": list(self._done), **final}
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                await self._mark(run.run_id, "cancelled", self._step, None, bookkeeping)
                raise
            error = _message(exc)
            if self._step and not error.startswith(f"step {self._step} "):  # a timeout: name the step
                error = f"step {self._step} failed: {error}"
            await self._mark(run.run_id, "failed", self._step, error, bookkeeping)
            return {"run_id": run.run_id, "status": "failed", "error": error, "steps": list(self._done)}
        except asyncio.CancelledError:  # cancel_run: the workflow itself was cancelled
            await self._mark(run.run_id, "cancelled", self._step, None, bookkeeping)
            raise

    async def _mark(self, run_id: str, status: str, step: str | None, error: str | None,
                    timeout: timedelta) -> None:
        await workflow.execute_activity(
            "mark_research_run", {"run_id": run_id, "status": status, "step": step, "error": error},
            start_to_close_timeout=timeout, retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            result_type=dict)


def _message(error: ActivityError) -> str:
    """The activity's own error message (ours name the step and the attempts), not Temporal's wrapper;
    for a timeout, which kind ("activity Heartbeat timeout")."""
    cause = error.cause
    if cause is None:
        return error.message or str(error)
    if isinstance(cause, TemporalTimeout):
        kind = cause.type.name if cause.type is not None else ""
        return f"TimeoutError: {cause.message or kind}"
    return getattr(cause, "message", None) or str(cause)


# --- client side -------------------------------------------------------------------------------

async def connect(settings: Any, *, namespace: str = NAMESPACE) -> Any:
    """A Temporal client for `settings.temporal_address` (TEMPORAL_ADDRESS)."""
    from temporalio.client import Client

    if not settings.temporal_address:
        raise ValueError("TEMPORAL_ADDRESS is not set: runs use the embedded runner")
    return await Client.connect(settings.temporal_address, namespace=namespace)


async def start_run(client: Any, run_input: RunInput, *, policy: StepPolicy | None = None,
                    task_queue: str = TASK_QUEUE) -> tuple[Any, bool]:
    """Start the run's workflow: (its handle, whether this call started it).

    A run that is running or finished already is not started again (Temporal refuses the
    workflow id); the existing workflow's handle comes back with False.
    """
    from temporalio.exceptions import WorkflowAlreadyStartedError

    payload = {**run_input.as_dict(), "policy": asdict(policy or StepPolicy())}
    try:
        handle = await client.start_workflow(
            ResearchWorkflow.run, payload, id=workflow_id(run_input.run_id), task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
        return handle, True
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(workflow_id(run_input.run_id)), False


async def start_unfinished(client: Any, repository: Any, *, policy: StepPolicy | None = None,
                           task_queue: str = TASK_QUEUE) -> dict[str, list[str]]:
    """Start the workflow of every unfinished Temporal run that has none (call on service start-up).

    Covers a run created in the database whose start never reached Temporal (the service
    died in between); runs whose workflow exists are left to it. {"started": [...], "running": [...]}.
    """
    report: dict[str, list[str]] = {"started": [], "running": []}
    for run_id in repository.unfinished(ORCHESTRATOR):
        record = repository.get_any(run_id)
        if record is None or record.finished:
            continue
        _, started = await start_run(client, RunInput(record.id, record.tenant, record.request), policy=policy,
                                     task_queue=task_queue)
        report["started" if started else "running"].append(run_id)
    return report


async def cancel_run(client: Any, run_id: str) -> bool:
    """Ask Temporal to cancel the run's workflow (interrupting the step in flight).
    False when there is no such workflow or it has finished. Set the database flag first
    (ResearchRunRepository.request_cancel): see the module docstring."""
    from temporalio.service import RPCError

    try:
        await client.get_workflow_handle(workflow_id(run_id)).cancel()
        return True
    except RPCError:
        return False


# --- for synchronous callers (the research service's handlers) ---------------------------------

class _Bridge:
    """One event loop in a thread of its own and one Temporal client on it, per address, for
    callers without an event loop of their own (or inside one they must not block)."""

    _lock = threading.Lock()
    _bridges: dict[tuple[str, str], _Bridge] = {}

    def __init__(self, address: str, namespace: str) -> None:
        self.address, self.namespace = address, namespace
        self.loop = asyncio.new_event_loop()
        self._client: Any = None
        threading.Thread(target=self.loop.run_forever, name="research-temporal-client", daemon=True).start()

    @classmethod
    def get(cls, address: str, namespace: str = NAMESPACE) -> _Bridge:
        with cls._lock:
            bridge = cls._bridges.get((address, namespace))
            if bridge is None:
                bridge = cls._bridges[(address, namespace)] = cls(address, namespace)
            return bridge

    def call(self, use: Callable[[Any], Any], timeout_s: float) -> Any:
        async def run() -> Any:
            if self._client is None:
                from temporalio.client import Client

                self._client = await Client.connect(self.address, namespace=self.namespace)
            return await use(self._client)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout_s)


_repositories: dict[str, Any] = {}


def _repository_for(settings: Any) -> Any:
    from stratmaster.db.engine import create_db_engine
    from stratmaster.research.runs import ResearchRunRepository

    url = settings.effective_database_url
    with _Bridge._lock:
        if url not in _repositories:
            _repositories[url] = ResearchRunRepository(create_db_engine(url))
        return _repositories[url]


def _address(settings: Any) -> str:
    if not settings.temporal_address:
        raise ValueError("TEMPORAL_ADDRESS is not set: runs use the embedded runner")
    return str(settings.temporal_address)


def start_run_sync(settings: Any, run_id: str, *, repository: Any = None, policy: StepPolicy | None = None,
                   task_queue: str = TASK_QUEUE, timeout_s: float = 30.0) -> bool:
    """start_run for the run with this id (read from the database); True when this call started it."""
    record = (repository or _repository_for(settings)).get_any(run_id)
    if record is None:
        raise KeyError(run_id)
    run = RunInput(record.id, record.tenant, record.request)

    async def start(client: Any) -> bool:
        return (await start_run(client, run, policy=policy, task_queue=task_queue))[1]

    return bool(_Bridge.get(_address(settings)).call(start, timeout_s))


def cancel_run_sync(settings: Any, run_id: str, *, timeout_s: float = 30.0) -> bool:
    """cancel_run from synchronous code. The caller sets the database flag first (request_cancel)."""
    return bool(_Bridge.get(_address(settings)).call(lambda client: cancel_run(client, run_id), timeout_s))


def start_unfinished_sync(settings: Any, *, repository: Any = None, policy: StepPolicy | None = None,
                          task_queue: str = TASK_QUEUE, timeout_s: float = 60.0) -> dict[str, list[str]]:
    """start_unfinished from synchronous code (the research service's start-up)."""
    runs = repository or _repository_for(settings)
    return _Bridge.get(_address(settings)).call(
        lambda client: start_unfinished(client, runs, policy=policy, task_queue=task_queue), timeout_s)
