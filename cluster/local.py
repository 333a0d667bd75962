"""Start and stop the whole platform on a local single-node Ray cluster.

Mirrors what `serve run configs/serve.yaml` does (start Serve with the config's HTTP
options, then deploy every application in it), plus what `serve run` cannot: migrations
first, a loopback-only node, a fixed metrics port, and waiting until every application
is healthy so the caller knows when the platform is usable.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cluster.serve_config import load_serve_config
from stratmaster.settings import Settings

log = logging.getLogger("stratmaster.cluster")


class PlatformStartError(RuntimeError):
    """The platform did not become healthy; the message says which application and why."""


@dataclass
class LocalPlatform:
    settings: Settings
    base_url: str
    metrics_url: str
    dashboard_url: str | None
    session_dir: Path
    started_at: float = field(default_factory=time.monotonic)
    healthy_after_s: float | None = None

    def stop(self, timeout_s: float = 30.0) -> None:
        """Shut Serve down, then Ray; Serve's part is bounded, since a dead controller hangs it."""
        import threading

        import ray
        from ray import serve

        stopping = threading.Thread(target=serve.shutdown, name="serve-shutdown", daemon=True)
        stopping.start()
        stopping.join(timeout_s)
        if stopping.is_alive():
            log.warning("Serve did not shut down within %.0f s; stopping Ray anyway", timeout_s)
        ray.shutdown()


def _pin_to_loopback() -> None:
    # Without this Ray binds the node to the machine's external address. Ray reads it
    # when imported, so entry points (the CLI, tests/conftest.py) set it first; this
    # covers callers that have not imported ray yet, and the check after start catches
    # those that had.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


# Serve runs each replica's code on an event loop of its own thread by default; on the
# replica's main loop a request skips a thread hand-off each way. Our handlers never block
# their loop (blocking work goes to threads), which is what the default protects. Handle
# routers keep their own loop (RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP): the knowledge index
# calls the embedder from worker threads, which a router on the caller's loop refuses.
# Processes started by Ray inherit this from the driver's environment.
SERVE_PROCESS_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
}


def _check_loopback() -> None:
    import ray

    address = ray.util.get_node_ip_address()
    if address != "127.0.0.1":
        ray.shutdown()
        raise PlatformStartError(
            f"Ray bound the local node to {address}, not 127.0.0.1: set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 "
            "in the environment before anything imports ray")


def start_platform(settings: Settings, *, config_path: Path | None = None, migrate: bool = True,
                   dashboard: bool = True, dashboard_port: int | None = None, temp_dir: Path | None = None,
                   timeout_s: float = 180.0) -> LocalPlatform:
    """Start Ray, deploy every Serve application and wait until all answer healthy."""
    config = load_serve_config(config_path or settings.serve_config, settings)
    if migrate:
        from stratmaster.db.migrate import upgrade

        upgrade(settings.effective_database_url)

    _pin_to_loopback()
    for name, value in SERVE_PROCESS_ENV.items():
        os.environ.setdefault(name, value)
    import ray
    from ray.serve._private import api as serve_api

    started = time.monotonic()
    context = ray.init(
        address="local", namespace="serve", include_dashboard=dashboard, dashboard_host="127.0.0.1",
        **({"dashboard_port": dashboard_port} if dashboard_port else {}),
        _metrics_export_port=settings.metrics_port, _temp_dir=str(temp_dir) if temp_dir else None,
        logging_level=logging.WARNING,
        # Every worker (so every Serve replica) binds its inter-deployment gRPC server to
        # loopback; see deployments/loopback.py.
        runtime_env={"worker_process_setup_hook": "deployments.loopback.bind_replica_grpc_to_loopback"},
    )
    _check_loopback()
    client = serve_api.serve_start(http_options=config.http_options.model_dump(),
                                   proxy_location=config.proxy_location)
    client.deploy_apps(config, _blocking=False)
    platform = LocalPlatform(
        settings=settings,
        base_url=f"http://{settings.http_host}:{settings.http_port}",
        metrics_url=f"http://127.0.0.1:{settings.metrics_port}/metrics",
        dashboard_url=f"http://{context.dashboard_url}" if dashboard and context.dashboard_url else None,
        session_dir=Path(ray._private.worker._global_node.get_session_dir_path()),
        started_at=started,
    )
    try:
        wait_until_healthy(platform, [app.name for app in config.applications], timeout_s)
    except BaseException:
        platform.stop()
        raise
    platform.healthy_after_s = round(time.monotonic() - started, 2)
    return platform


def wait_until_healthy(platform: LocalPlatform, applications: list[str], timeout_s: float) -> None:
    """Poll Serve until every application runs, then the gateway until services are healthy."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    last = "no status yet"
    while time.monotonic() < deadline:
        statuses = serve.status().applications
        failed = {n: s for n, s in statuses.items() if str(s.status).endswith("DEPLOY_FAILED")}
        if failed:
            name, status = next(iter(failed.items()))
            raise PlatformStartError(f"application {name!r} failed to deploy: {status.message}")
        running = [n for n in applications if n in statuses and str(statuses[n].status).endswith("RUNNING")]
        last = f"{len(running)}/{len(applications)} applications running"
        if len(running) == len(applications):
            try:
                answer = httpx.get(f"{platform.base_url}/health/services", timeout=10)
                if answer.status_code == 200:
                    return
                last = f"/health/services answered {answer.status_code}: {answer.text[:300]}"
            except httpx.HTTPError as exc:
                last = f"gateway not answering: {exc}"
        time.sleep(0.5)
    raise PlatformStartError(f"platform not healthy after {timeout_s:.0f} s: {last}")
