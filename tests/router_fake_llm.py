"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for the router's tests.

It runs in a thread (http.server) on a free loopback port and is told, per model, what to
do with the next requests: answer, stall (sleep before answering), or fail with a status
(429 with an optional Retry-After, 500, ...). Unscripted requests are answered. Every
request it receives is recorded (model and arrival time), so tests can count retries and
check fallback order.

    with FakeLLM() as fake:
        fake.script("gpt-a", fail(500), fail(500), answer("ok"))
        ... base_url = fake.base_url ...
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Action:
    kind: str  # answer | stall | fail | garbage
    content: str = "fake answer"
    status: int = 200
    seconds: float = 0.0
    retry_after: str | None = None


def answer(content: str = "fake answer") -> Action:
    return Action("answer", content)


def stall(seconds: float, content: str = "late answer") -> Action:
    return Action("stall", content, seconds=seconds)


def fail(status: int, retry_after: str | None = None) -> Action:
    return Action("fail", status=status, retry_after=retry_after)


def garbage() -> Action:
    return Action("garbage")


def stall_mid_stream(seconds: float, content: str = "first words then a stall") -> Action:
    """Streaming: send the first word, then wait `seconds` before the rest."""
    return Action("stall_mid_stream", content, seconds=seconds)


@dataclass(frozen=True)
class Received:
    model: str
    at: float
    body: dict[str, Any]
    authorization: str | None


class FakeLLM:
    def __init__(self) -> None:
        self._scripts: dict[str, deque[Action]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.received: list[Received] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                model = str(body.get("model"))
                action = fake._next(model, body, self.headers.get("authorization"))
                if action.kind == "stall":
                    time.sleep(action.seconds)
                if action.kind == "fail":
                    headers = {"Retry-After": action.retry_after} if action.retry_after else {}
                    self._send(action.status, {"error": {"message": f"scripted {action.status}"}}, headers)
                    return
                if action.kind == "garbage":
                    self._send(200, {"not": "a completion"})
                    return
                if body.get("stream"):
                    self._stream(model, action)
                    return
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": action.content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                              "total_tokens": 1500},
                })

            def _stream(self, model: str, action: Action) -> None:
                """Server-sent events, one word a chunk, then usage and [DONE]; the body ends with the connection."""
                self.close_connection = True
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    words = action.content.split(" ")
                    for index, word in enumerate(words):
                        delta = {"content": word if index == 0 else " " + word}
                        if index == 0:
                            delta["role"] = "assistant"
                        self._event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                        if index == 0 and action.kind == "stall_mid_stream":
                            time.sleep(action.seconds)
                    self._event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                                 "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    self._event({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                                 "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                                                          "total_tokens": 1500}})
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _event(self, payload: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                self.wfile.flush()

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, model: str, *actions: Action) -> None:
        with self._lock:
            self._scripts[model].extend(actions)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.received.clear()

    def calls(self, model: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if model is None or r.model == model]

    def _next(self, model: str, body: dict[str, Any], authorization: str | None) -> Action:
        with self._lock:
            self.received.append(Received(model, time.monotonic(), body, authorization))
            queue = self._scripts.get(model)
            return queue.popleft() if queue else answer()

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fake_catalogue(base_url: str, **budgets: Any) -> Any:
    """A router catalogue over this server: primary-m and backup-m (key FAKE_LLM_KEY), and local-extractive.

    Policies (tenant `default`): default (primary, backup, local), remote (primary, backup),
    private (data stays in the cluster), cheap (prompt price cap, temperature cap 0.2).
    Budgets: $0.05 a month by default, tenant `rich` unlimited. A fake answer costs primary-m
    $0.02 and backup-m $0.002 (1,000 prompt and 500 completion tokens).
    """
    from stratmaster.router.catalogue import parse_catalogue


    return parse_catalogue({
        "providers": {
            "local": {"kind": "local", "models": [{"name": "local-extractive"}]},
            "fake": {"kind": "openai-compatible", "base_url": base_url, "timeout_s": 0.5, "max_retries": 1,
                     "backoff_s": 0.01, "max_backoff_s": 0.05, "api_key_env": "FAKE_LLM_KEY",
                     "models": [{"name": "primary-m", "input_per_1k": 0.01, "output_per_1k": 0.02,
                                 "context_window": 4096},
                                {"name": "backup-m", "input_per_1k": 0.001, "output_per_1k": 0.002}]},
        },
        "policies": {
            "default": {
                "default": {"primary": "primary-m", "fallbacks": ["backup-m", "local-extractive"]},
                "remote": {"primary": "primary-m", "fallbacks": ["backup-m"]},
                "private": {"primary": "primary-m", "fallbacks": ["local-extractive"],
                            "constraints": {"allow_external": False}},
                "cheap": {"primary": "primary-m", "fallbacks": ["backup-m"],
                          "constraints": {"max_input_per_1k": 0.005, "max_temperature": 0.2}},
            },
        },
        "budgets": {"default": {"limit_usd": 0.05, "period": "month"},
                    "tenants": {"rich": {"limit_usd": None}, **budgets}},
        "routing": {"cooldown_s": 30},
    }, "test-catalogue")
