"""Closed-loop HTTP load generator: N clients, each sending one request at a time.

    python -m bench.loadgen --url http://127.0.0.1:18280/knowledge/info --token T \
        --clients 16 --warmup 3 --duration 20

Runs in its own process so its CPU shows up separately from the platform's, and is
written for a 2-core machine: one event loop (uvloop when installed), one keep-alive
connection per client and a minimal HTTP/1.1 exchange over asyncio streams, because a
full client library spends more CPU per request than the Serve proxy we measure.
Prints one JSON object on stdout: counts, requests/s, latency percentiles of successful
requests in ms and errors by status (or exception name).

Only loopback URLs are accepted. A run is bounded in time (warm-up + duration, then at
most one request timeout for the last requests) and in count (`--max-requests`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Sequence
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def http_request(url: str, token: str, method: str = "GET", body: bytes | None = None) -> bytes:
    """A prepared HTTP/1.1 request with a bearer token (and a JSON body when given)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (f"{method} {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port or 80}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: application/json\r\nUser-Agent: stratmaster-bench\r\n")
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; `send(request)` returns (status, body bytes)."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        return await asyncio.wait_for(self._exchange(request), self.timeout_s)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:  # body delimited by close
            body = await self.reader.read()
            self.close()
            return status, body
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # trailer end (no trailers expected)
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


async def run_load(url: str, token: str, clients: int, warmup_s: float, duration_s: float,
                   timeout_s: float, max_requests: int) -> dict[str, object]:
    """`GET url` from closed-loop clients; see `closed_loop`."""
    result = await closed_loop(url, [http_request(url, token)], clients, warmup_s, duration_s, timeout_s,
                               max_requests)
    return {"url": url, **result}


async def closed_loop(url: str, requests: Sequence[bytes], clients: int, warmup_s: float, duration_s: float,
                      timeout_s: float, max_requests: int) -> dict[str, object]:
    """Closed-loop clients sending the prepared requests, cycled in order across all clients.

    Counts only requests sent after the warm-up and answered within the window.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    next_request = itertools.count()

    # perf_counter, not loop.time(): uvloop's clock is cached per loop iteration in whole ms.
    now = time.perf_counter
    started = now()
    measure_from = started + warmup_s
    stop_at = measure_from + duration_s
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    issued = 0
    warmup_requests = 0
    late_requests = 0  # completed after the window closed: not counted

    async def client() -> None:
        nonlocal issued, warmup_requests, late_requests
        connection = HttpConnection(host, port, timeout_s)
        try:
            while now() < stop_at and issued < max_requests:
                issued += 1
                request = requests[next(next_request) % len(requests)]
                sent = now()
                try:
                    status, _ = await connection.send(request)
                    outcome = None if status == 200 else str(status)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ValueError, IndexError) as exc:
                    outcome = type(exc).__name__
                    connection.close()
                done = now()
                if done > stop_at:
                    late_requests += 1
                elif sent < measure_from:
                    warmup_requests += 1
                elif outcome is None:
                    latencies.append(done - sent)
                else:
                    errors[outcome] += 1
                if outcome is not None and outcome.endswith(("Error", "Exception")):
                    await asyncio.sleep(0.05)  # do not spin on a refused connection
        finally:
            connection.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(client() for _ in range(clients)))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    # The measured window: shorter than --duration only when --max-requests stopped it.
    window_s = max(min(now(), stop_at) - measure_from, 1e-9)
    latencies.sort()
    ok = len(latencies)
    failed = sum(errors.values())
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    return {
        "clients": clients,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "requests": ok + failed,
        "ok": ok,
        "errors": failed,
        "errors_by_status": dict(sorted(errors.items())),
        "measured_s": round(window_s, 3),
        "requests_per_s": round((ok + failed) / window_s, 1),
        "ok_per_s": round(ok / window_s, 1),
        "latency_ms": {
            "p50": ms(percentile(latencies, 0.50)), "p95": ms(percentile(latencies, 0.95)),
            "p99": ms(percentile(latencies, 0.99)), "max": ms(latencies[-1] if latencies else None),
            "mean": ms(sum(latencies) / ok if ok else None),
        },
        "not_counted": {"warmup": warmup_requests, "after_window": late_requests},
        "hit_max_requests": issued >= max_requests,
        "loadgen_cpu_s": round((cpu_after.ru_utime - cpu_before.ru_utime)
                               + (cpu_after.ru_stime - cpu_before.ru_stime), 2),
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        parser.error(f"only http:// loopback URLs are allowed, got {args.url!r}")
    if not (1 <= args.clients <= 256 and 0 < args.duration <= 600 and 0 <= args.warmup <= 60):
        parser.error("clients 1..256, duration 0..600 s, warm-up 0..60 s")
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run_load(args.url, args.token, args.clients, args.warmup, args.duration,
                             args.timeout, args.max_requests))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
