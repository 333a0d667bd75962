"""Workers for the research workflows: a Ray actor on the cluster, or a plain process.

A worker polls the task queue `stratmaster-research` of the Temporal server at
`TEMPORAL_ADDRESS`, replays `ResearchWorkflow`s and runs their step activities against the
database (`DATABASE_URL`, else the SQLite file in `STRATMASTER_DATA_DIR`) and the ports to
the other services. Any number may run at once, anywhere that reaches Temporal and the
database: Temporal hands each activity attempt to one of them, and a step a dead worker
was running is retried elsewhere after its heartbeat timeout.

On the Ray cluster (what tests/integration/test_research_temporal.py does in the platform)::

    make_ports = "deployments.research:default_ports"  # the services' Serve handles
    handles = start_worker_actors(2, settings.temporal_address, settings.effective_database_url,
                                  make_ports=make_ports, name_prefix=WORKER_ACTOR_PREFIX)
    ray.get([h.ready.remote() for h in handles])

Named workers are detached and restarted by Ray if their process dies, and starting them
again returns the running ones, so the research service may call this from every replica
on start-up.

`ResearchWorkerActor` runs the temporalio `Worker` in its own thread with its own event loop,
so the actor's methods (`ready`, `check_health`, `stats`, `stop`) answer while it works.
It asks for 0.1 CPU by default: it mostly waits on the network and the database.

As a process (outside Ray)::

    python -m stratmaster.research.temporal_worker [--address host:port] [--database-url URL]
        [--ports module:callable] [--registry module:mapping] [--task-queue Q]

prints one JSON line `{"event": "worker_ready", ...}` once it polls, and shuts down on
SIGTERM/SIGINT (finishing the activities in flight for up to `--graceful-shutdown-s`).

`make_ports() -> Ports` builds the ports the steps use (one instance per worker, in the
worker's process; it travels to an actor by pickle); the default is
`deployments.research:default_ports`, imported when the worker starts.
`registry` maps step names to step functions; None runs the real steps, and `result` turns
their outputs into the run's result (default: the embedded runner's `final_result`). Tests
inject all three; each may be given as a `module:attribute` string, resolved in the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from stratmaster.research.temporal_runner import (
    NAMESPACE,
    TASK_QUEUE,
    ResearchActivities,
    ResearchWorkflow,
    ResultFunction,
)
from stratmaster.research.workflow import Ports, StepFunction

log = logging.getLogger("stratmaster.research.temporal_worker")

DEFAULT_PORTS = "deployments.research:default_ports"  # the platform's ports (Serve handle search, Router)
RAY_NAMESPACE = "stratmaster"  # where named worker actors live (Serve replicas run in "serve")
WORKER_ACTOR_PREFIX = "research-temporal-worker"

PortsFactory = Callable[[], Ports]


def load_object(path: str) -> Any:
    """`package.module:attribute` -> the attribute."""
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise ValueError(f"expected module:attribute, got {path!r}")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load {path!r}: {exc}") from exc


def _resolve(value: Any) -> Any:
    return load_object(value) if isinstance(value, str) else value


def build_worker(client: Any, activities: ResearchActivities, *, task_queue: str = TASK_QUEUE,
                 max_concurrent_activities: int = 8, sticky_timeout_s: float = 10.0,
                 graceful_shutdown_s: float = 0.0, identity: str | None = None) -> Any:
    """A temporalio Worker for the research workflow and its activities (not yet running)."""
    from temporalio.worker import Worker

    options: dict[str, Any] = {}
    if identity:
        options["identity"] = identity
    return Worker(client, task_queue=task_queue, workflows=[ResearchWorkflow], activities=activities.all(),
                  max_concurrent_activities=min(max_concurrent_activities, activities.threads),
                  sticky_queue_schedule_to_start_timeout=timedelta(seconds=sticky_timeout_s),
                  graceful_shutdown_timeout=timedelta(seconds=graceful_shutdown_s), **options)


def make_activities(database_url: str, make_ports: PortsFactory | str | None = None,
                    registry: Mapping[str, StepFunction] | str | None = None, *,
                    result: ResultFunction | str | None = None, threads: int = 8) -> ResearchActivities:
    from stratmaster.db.engine import create_db_engine
    from stratmaster.research.runs import ResearchRunRepository

    factory = _resolve(make_ports if make_ports is not None else DEFAULT_PORTS)
    return ResearchActivities(ResearchRunRepository(create_db_engine(database_url)), factory(), _resolve(registry),
                              result=_resolve(result), threads=threads)


async def connect_with_retry(address: str, namespace: str = NAMESPACE, *, timeout_s: float | None = None,
                             stop: asyncio.Event | None = None) -> Any:
    """Connect to Temporal, retrying with backoff (1 s doubling to 30 s) for up to `timeout_s`
    (None: until `stop` is set): a worker may start before the Temporal server does."""
    from temporalio.client import Client

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = 1.0
    while True:
        try:
            return await Client.connect(address, namespace=namespace)
        except Exception as exc:  # noqa: BLE001 - RuntimeError/RPCError while the server is not there
            if (deadline is not None and time.monotonic() + delay > deadline) or (stop is not None and stop.is_set()):
                raise
            log.warning("temporal not reachable, retrying", extra={"address": address, "error": str(exc),
                                                                    "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def serve(address: str, database_url: str, *, make_ports: PortsFactory | str | None = None,
                registry: Mapping[str, StepFunction] | str | None = None, namespace: str = NAMESPACE,
                task_queue: str = TASK_QUEUE, stop: asyncio.Event | None = None,
                on_ready: Callable[[], None] | None = None, connect_timeout_s: float | None = None,
                result: ResultFunction | str | None = None, **worker_options: Any) -> None:
    """Run a worker until `stop` is set (forever when None)."""
    activities = make_activities(database_url, make_ports, registry, result=result,
                                 threads=int(worker_options.get("max_concurrent_activities", 8)))
    try:
        client = await connect_with_retry(address, namespace, timeout_s=connect_timeout_s, stop=stop)
        worker = build_worker(client, activities, task_queue=task_queue, **worker_options)
        async with worker:
            log.info("research worker polling", extra={"address": address, "task_queue": task_queue})
            if on_ready is not None:
                on_ready()
            await (stop.wait() if stop is not None else asyncio.Event().wait())
        log.info("research worker stopped", extra={"task_queue": task_queue})
    finally:
        activities.close()


class ResearchWorkerActor:
    """A research worker in a Ray actor (`ray.remote(ResearchWorkerActor)`, or start_worker_actors).

    The worker runs in a daemon thread with its own event loop; construction returns at once,
    `ready()` waits until it polls (or raises what stopped it).
    """

    def __init__(self, address: str, database_url: str, make_ports: PortsFactory | str | None = None,
                 registry: Mapping[str, StepFunction] | str | None = None, *, namespace: str = NAMESPACE,
                 task_queue: str = TASK_QUEUE, **worker_options: Any) -> None:
        from stratmaster.logs import configure_logging

        configure_logging("research-worker")
        self._address = address
        self._task_queue = task_queue
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

        def main() -> None:
            async def run() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                await serve(address, database_url, make_ports=make_ports, registry=registry, namespace=namespace,
                            task_queue=task_queue, stop=self._stop, on_ready=self._ready.set, **worker_options)
            try:
                asyncio.run(run())
            except BaseException as exc:  # noqa: BLE001 - reported by ready()/check_health()
                self._error = exc
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=main, name="research-temporal-worker", daemon=True)
        self._thread.start()

    def ready(self, timeout_s: float = 60.0) -> dict[str, Any]:
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the research worker did not reach Temporal at {self._address} in {timeout_s} s")
        self.check_health()
        return self.stats()

    def check_health(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the research worker stopped: {self._error!r}") from self._error
        if self._ready.is_set() and not self._thread.is_alive():
            raise RuntimeError("the research worker stopped")

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "address": self._address, "task_queue": self._task_queue,
                "running": self._thread.is_alive() and self._error is None}

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)


def start_worker_actors(count: int, address: str, database_url: str, *,
                        make_ports: PortsFactory | str | None = None,
                        registry: Mapping[str, StepFunction] | str | None = None, num_cpus: float = 0.1,
                        name_prefix: str | None = None, ray_namespace: str = RAY_NAMESPACE,
                        actor_options: Mapping[str, Any] | None = None, **worker_options: Any) -> list[Any]:
    """Start `count` ResearchWorkerActor on the connected Ray cluster; returns their handles.

    With `name_prefix` the actors are named `{prefix}-{i}` in `ray_namespace`, detached (they
    outlive the process that started them) and restarted by Ray when their process dies; a
    second call (another replica, a restarted service) gets the running ones instead of
    starting more. Without it they are anonymous and belong to the caller. `actor_options`
    adds or overrides Ray actor options (runtime_env, max_restarts, ...).
    """
    import ray

    options: dict[str, Any] = {"num_cpus": num_cpus}
    actor = ray.remote(ResearchWorkerActor)
    handles = []
    for index in range(count):
        if name_prefix:
            options.update(name=f"{name_prefix}-{index}", namespace=ray_namespace, get_if_exists=True,
                           lifetime="detached", max_restarts=-1)
        handles.append(actor.options(**{**options, **dict(actor_options or {})}).remote(
            address, database_url, make_ports, registry, **worker_options))
    return handles


def main(argv: list[str] | None = None) -> int:
    from stratmaster.logs import configure_logging
    from stratmaster.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m stratmaster.research.temporal_worker",
                                     description="Run a research workflow worker (Temporal) outside Ray.")
    parser.add_argument("--address", help="Temporal frontend host:port (default: TEMPORAL_ADDRESS)")
    parser.add_argument("--database-url", help="default: DATABASE_URL, else the SQLite file in STRATMASTER_DATA_DIR")
    parser.add_argument("--ports", default=DEFAULT_PORTS, help="module:callable returning the steps' ports")
    parser.add_argument("--registry", help="module:mapping of step name -> function (default: the real steps)")
    parser.add_argument("--result", help="module:callable turning the step outputs into the run's result "
                        "(default: stratmaster.research.runner:final_result)")
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--task-queue", default=TASK_QUEUE)
    parser.add_argument("--max-concurrent-activities", type=int, default=8)
    parser.add_argument("--sticky-timeout-s", type=float, default=10.0,
                        help="how long a workflow task waits for this worker before any worker may take it")
    parser.add_argument("--graceful-shutdown-s", type=float, default=10.0)
    parser.add_argument("--connect-timeout-s", type=float, default=60.0,
                        help="keep trying to reach Temporal this long before giving up")
    args = parser.parse_args(argv)

    settings = get_settings() if not (args.address and args.database_url) else None
    address = args.address or (settings.temporal_address if settings else None)
    if not address:
        parser.error("no Temporal address: pass --address or set TEMPORAL_ADDRESS")
    database_url = args.database_url or settings.effective_database_url  # type: ignore[union-attr]
    configure_logging("research-worker", settings.log_level if settings else "INFO")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def ready() -> None:
            print(json.dumps({"event": "worker_ready", "pid": os.getpid(), "address": address,
                              "task_queue": args.task_queue}), flush=True)

        await serve(address, database_url, make_ports=args.ports, registry=args.registry, result=args.result,
                    namespace=args.namespace,
                    task_queue=args.task_queue, stop=stop, on_ready=ready,
                    max_concurrent_activities=args.max_concurrent_activities,
                    sticky_timeout_s=args.sticky_timeout_s, graceful_shutdown_s=args.graceful_shutdown_s,
                    connect_timeout_s=args.connect_timeout_s)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
