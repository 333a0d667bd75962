"""Router overhead per call through the platform's HTTP proxy, the model's own time excluded.

    python -m bench.router_bench [--calls 500] [--warmup 50]

(`bash scripts/bench.sh router`; part of `make bench`.) One run starts `stratmaster up
--no-dashboard` on free loopback ports with a throw-away data dir (embedded defaults, the
shipped catalogue, so the offline `local-extractive` provider answers), gets a token, then
from one client, one request at a time on a keep-alive connection:

1. `POST /router/complete` (`--calls` measured after `--warmup`): the client's wall time per
   call, and the routing block's `provider_ms` (time inside the provider's `complete`). The
   router's overhead through the gateway is wall time minus `provider_ms`: Serve's proxy,
   token check, validation, budget read, decision, ledger and spend write, serialisation.
   The block's own `router_overhead_ms` (the same inside the replica's handler, without the
   proxy and the HTTP stack) is reported too.
2. `POST /router/route` (the decision alone, no model call, no ledger write).
3. `GET /router/budget` (proxy, token check and one indexed read): the floor any
   authenticated router call pays on this machine; and the gateway's `GET /healthz` (the
   proxy hop and the HTTP stack, nothing else).
4. The same `/complete`, `/route` and `/budget` in this process, on the router's FastAPI app
   (the same middleware, token check, catalogue and a SQLite file) through httpx's ASGI
   transport: the router and the HTTP stack without Serve's proxy hop.

Target (issue 5): overhead p50 < 5 ms. The machine is shared and has two cores, so results
record the load average. Written to bench/results/router.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.platform_bench import (  # noqa: E402
    HOST,
    ROOT,
    BenchError,
    Platform,
    free_port,
    get_token,
    git_info,
    guarded_run,
    machine_info,
    platform_env,
    wait_for_services,
    write_result,
)
from stratmaster.evals.retrieval_eval import nearest_rank  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "router.json"
TARGET_P50_MS = 5.0
MESSAGES = [
    {"role": "system", "content": "Acme raised prices by 12 percent in March. The office moved to Leeds. "
                                  "Urban customers did not leave after the price rise. Rural stores saw fewer "
                                  "visits. Loyalty members renewed at 91 percent."},
    {"role": "user", "content": "Did customers leave after the price rise?"},
]


def stats(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)
    return {"n": len(ordered), **{f"p{q}": _round(nearest_rank(ordered, q / 100)) for q in (50, 95, 99)},
            "mean": _round(sum(ordered) / len(ordered) if ordered else None)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Client:
    """One keep-alive connection (stdlib: little client-side time in the measurement)."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        self.connection.request(method, path, body=data, headers=self.headers)
        answer = self.connection.getresponse()
        raw = answer.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if answer.status != 200:
            raise BenchError(f"{method} {path}: HTTP {answer.status}: {raw[:300]!r}")
        return elapsed_ms, json.loads(raw)

    def close(self) -> None:
        self.connection.close()


def measure(client: Client, calls: int, warmup: int) -> dict[str, Any]:
    """Rounds of /complete, /route, /budget and /healthz back to back, so the machine's noise
    (other people's work on a shared VM) falls on all four alike; each round also gives a
    paired difference: /complete's overhead minus that round's /budget."""
    body = {"task": "summarize", "messages": MESSAGES, "max_tokens": 64}
    series: dict[str, list[float]] = {k: [] for k in ("wall", "provider", "overhead", "in_replica", "route", "budget",
                                                     "healthz", "over_floor")}
    for index in range(warmup + calls):
        elapsed, answer = client.call("POST", "/router/complete", body)
        route = client.call("POST", "/router/route", body)[0]
        budget = client.call("GET", "/router/budget")[0]
        healthz = client.call("GET", "/healthz")[0]
        if answer["model"] != "local-extractive":
            raise BenchError(f"expected the local provider, got {answer['model']}")
        if index < warmup:
            continue
        routing = answer["routing"]
        overhead = elapsed - routing["provider_ms"]
        for key, value in (("wall", elapsed), ("provider", routing["provider_ms"]), ("overhead", overhead),
                           ("in_replica", routing["router_overhead_ms"]), ("route", route), ("budget", budget),
                           ("healthz", healthz), ("over_floor", overhead - budget)):
            series[key].append(value)
    return {
        "complete_overhead_ms": stats(series["overhead"]),
        "complete_wall_ms": stats(series["wall"]),
        "provider_ms": stats(series["provider"]),
        "router_overhead_in_replica_ms": stats(series["in_replica"]),
        "route_wall_ms": stats(series["route"]),
        "budget_wall_ms": stats(series["budget"]),
        "gateway_healthz_wall_ms": stats(series["healthz"]),
        "complete_overhead_above_budget_same_round_ms": stats(series["over_floor"]),
    }


def measure_in_process(calls: int, warmup: int) -> dict[str, Any]:
    """The router's app in this process: everything but Serve's proxy and the replica hop."""
    import asyncio
    from types import SimpleNamespace

    import httpx

    from deployments.router import router_api
    from stratmaster.db.engine import create_db_engine
    from stratmaster.db.migrate import upgrade
    from stratmaster.identity import LocalIssuer
    from stratmaster.router.catalogue import load_catalogue
    from stratmaster.router.repository import RouterRepository
    from stratmaster.router.service import Router, build_providers

    folder = Path(tempfile.mkdtemp(prefix="router-bench-inproc-"))
    url = f"sqlite:///{folder / 'router.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    catalogue = load_catalogue(ROOT / "configs" / "router" / "models.yaml")
    router = Router(catalogue, RouterRepository(engine), build_providers(catalogue, {}))
    issuer = LocalIssuer(folder / "keys", "stratmaster")
    api = router_api("router", "bench")
    api.state.verifier = issuer.verifier()
    api.state.ingress = SimpleNamespace(router=router)
    headers = {"Authorization": f"Bearer {issuer.issue('bench', 'acme', ('analyst',), 3600)}"}
    body = {"task": "summarize", "messages": MESSAGES, "max_tokens": 64}

    async def timed(client: httpx.AsyncClient, method: str, path: str) -> list[float]:
        times = []
        for index in range(warmup + calls):
            started = time.perf_counter()
            answer = await client.request(method, path, headers=headers, json=body if method == "POST" else None)
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise BenchError(f"in process {method} {path}: HTTP {answer.status_code}: {answer.text[:300]}")
            if index >= warmup:
                times.append(elapsed)
        return times

    async def all_three() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://router.local") as client:
            return {"complete_wall_ms": stats(await timed(client, "POST", "/complete")),
                    "route_wall_ms": stats(await timed(client, "POST", "/route")),
                    "budget_wall_ms": stats(await timed(client, "GET", "/budget"))}

    try:
        return asyncio.run(all_three())
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    http_port, metrics_port = free_port(), free_port()
    while metrics_port == http_port:
        metrics_port = free_port()
    base = f"http://{HOST}:{http_port}"
    work = Path(tempfile.mkdtemp(prefix="stratmaster-router-bench-"))
    env = platform_env(argparse.Namespace(inherit_backends=False), work / "data", http_port, metrics_port)
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine_info(),
        "config": {"calls": args.calls, "warmup": args.warmup, "clients": 1, "task": "summarize",
                   "provider": "local-extractive (shipped catalogue)", "backends": "embedded defaults (SQLite)"},
        "target": {"complete_overhead_p50_ms": TARGET_P50_MS},
        "noise": {"loadavg_at_start": [round(v, 2) for v in os.getloadavg()]},
    }
    platform_ = Platform(env, work / "stratmaster-up.log")
    failed = True
    try:
        print(f"starting stratmaster up on {base} ...", flush=True)
        platform_.start()
        wait_for_services(platform_, base, args.startup_timeout)
        token = get_token(env)
        client = Client(http_port, token)
        try:
            print(f"measuring {args.calls} calls per endpoint after {args.warmup} warm-up rounds ...", flush=True)
            result["results"] = measure(client, args.calls, args.warmup)
        finally:
            client.close()
        result["noise"]["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
        print("measuring the same in process (no proxy) ...", flush=True)
        result["results"]["in_process"] = measure_in_process(args.calls, args.warmup)
        p50 = result["results"]["complete_overhead_ms"]["p50"]
        result["target"]["met"] = p50 is not None and p50 < TARGET_P50_MS
        failed = False
    finally:
        print("stopping the platform ...", flush=True)
        platform_.stop()
        if failed:
            print(f"platform log kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def summary(result: dict[str, Any]) -> str:
    r = result["results"]

    def line(name: str, key: str) -> str:
        s = r[key]
        return f"{name:<44} p50 {s['p50']:7.2f}  p95 {s['p95']:7.2f}  p99 {s['p99']:7.2f} ms"

    return "\n".join([
        line("router overhead per /complete (wall - model)", "complete_overhead_ms"),
        line("  /complete wall time", "complete_wall_ms"),
        line("  model time (local-extractive)", "provider_ms"),
        line("  router work inside the replica", "router_overhead_in_replica_ms"),
        line("/route (decision only)", "route_wall_ms"),
        line("/budget (proxy + token + one read)", "budget_wall_ms"),
        line("gateway /healthz (proxy hop + HTTP stack)", "gateway_healthz_wall_ms"),
        line("/complete overhead minus /budget, same round", "complete_overhead_above_budget_same_round_ms"),
        *(f"in process, no proxy: {name:<30} p50 {r['in_process'][key]['p50']:7.2f}  "
          f"p95 {r['in_process'][key]['p95']:7.2f} ms"
          for name, key in (("/complete", "complete_wall_ms"), ("/route", "route_wall_ms"),
                            ("/budget", "budget_wall_ms"))),
        f"target p50 < {TARGET_P50_MS} ms: {'met' if result['target']['met'] else 'NOT met'}; "
        f"load average {result['noise']['loadavg_at_start']} -> {result['noise']['loadavg_at_end']}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.router_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="measured calls per endpoint (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="uncounted rounds first (default 50)")
    parser.add_argument("--quick", action="store_true", help="100 calls, 20 warm-up rounds")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.warmup = 100, 20
    if not (1 <= args.calls <= 100_000 and 0 <= args.warmup <= 10_000):
        parser.error("calls 1..100000, warmup 0..10000")
    result = guarded_run(lambda: run(args))
    if isinstance(result, int):
        return result
    write_result(result, args.output)
    print(summary(result))
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
