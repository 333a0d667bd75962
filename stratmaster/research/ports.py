"""How research steps reach the other services: four functions behind the `Ports` protocol.

On the platform (deployments/research.py `service_ports`) each is a Serve handle call: search
to the knowledge index (it owns the embedded stores), completions to the router service (its
policies, budgets, cooldowns and ledger), compression to the compression service, and source
fetching through the research service's own allowlist and fetcher. `LocalPorts.for_settings`
builds the same ports in one process instead - a `Router` on the router's catalogue and the
platform database, the compression library - for benchmarks and tests that run steps
without a cluster.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from stratmaster.research.workflow import StepFailed

SearchFunction = Callable[[str, dict[str, Any]], dict[str, Any]]  # (tenant, SearchRequest dict) -> SearchResponse
CompleteFunction = Callable[[str, str, list[dict[str, str]]], dict[str, Any]]  # -> chat.completion + routing
CompressFunction = Callable[[str, str, list[dict[str, str]], int], dict[str, Any]]  # -> CompressionResult dict
FetchFunction = Callable[[str, list[str]], list[dict[str, Any]]]  # (tenant, urls) -> a result per URL


def hit_view(hit: dict[str, Any]) -> dict[str, Any]:
    provenance = hit.get("provenance") or {}
    return {"chunk_id": hit["chunk_id"], "document_id": hit["document_id"], "text": hit["text"],
            "score": float(hit["score"]), "title": provenance.get("title"), "source": provenance.get("source"),
            "chunk_start": hit.get("start", 0)}


def unwrap(envelope: dict[str, Any], what: str) -> Any:
    """A service's {"result"} or {"error": {status, code, message}}; 5xx errors are worth a retry."""
    if "error" in envelope:
        error = envelope["error"]
        raise StepFailed(f"{what}: {error['message']}", retryable=int(error.get("status", 500)) >= 500)
    return envelope["result"]


class _LoopThread:
    """One event loop in a thread of its own, for the router's async clients from sync steps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="research-ports", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class LocalPorts:
    def __init__(self, search: SearchFunction, complete: CompleteFunction | None = None,
                 compress: CompressFunction | None = None, fetch_sources: FetchFunction | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self._search, self._complete, self._compress, self._fetch = search, complete, compress, fetch_sources
        self._on_close = on_close

    @classmethod
    def for_settings(cls, settings: Any, search: SearchFunction, catalogue_path: Any = None,
                     embed: Any = None, fetch_sources: FetchFunction | None = None,
                     timeout_s: float = 60.0) -> LocalPorts:
        """In one process: a Router on the platform's database and the router's catalogue
        (configs/router/models.yaml), and the compression library with the WordPiece counter."""
        from dataclasses import asdict
        from pathlib import Path

        from stratmaster.compression import BudgetTooSmall, Chunk, compress
        from stratmaster.db.engine import create_db_engine
        from stratmaster.knowledge.chunking import WordpieceCounter
        from stratmaster.router.catalogue import load_catalogue
        from stratmaster.router.repository import RouterRepository
        from stratmaster.router.schemas import completion_body
        from stratmaster.router.service import Router, RoutingError, build_providers

        root = Path(__file__).resolve().parents[2]
        catalogue = load_catalogue(Path(catalogue_path) if catalogue_path else root / "configs" / "router" /
                                   "models.yaml")
        router = Router(catalogue, RouterRepository(create_db_engine(settings.effective_database_url)),
                        build_providers(catalogue), recommender_enabled=settings.enable_model_recommender_v2)
        loop, counter = _LoopThread(), WordpieceCounter()

        def complete_in_process(tenant: str, task: str, messages: list[dict[str, str]]) -> dict[str, Any]:
            try:
                return completion_body(loop.run(router.complete(tenant, task, messages), timeout_s))
            except RoutingError as exc:  # an exhausted budget stays exhausted within a run: no retry
                raise StepFailed(f"router: {exc}", retryable=exc.status >= 500) from exc

        def compress_in_process(tenant: str, query: str, chunks: list[dict[str, str]], target: int) -> dict:
            try:
                return asdict(compress(query, [Chunk(c["id"], c["text"]) for c in chunks], target, None,
                                       "extractive", counter, embed))
            except BudgetTooSmall as exc:
                raise StepFailed(f"compression: {exc}", retryable=False) from exc

        return cls(search, complete_in_process, compress_in_process, fetch_sources, on_close=loop.close)

    def _call(self, what: str, function: Callable[..., Any] | None, *args: Any) -> Any:
        if function is None:
            raise StepFailed(f"{what} is not available to this worker", retryable=False)
        try:
            return function(*args)
        except StepFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - a service down or restarting: worth a retry
            raise StepFailed(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    def search(self, tenant: str, query: str, *, k: int, filters: dict[str, Any] | None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"query": query[:4000], "k": k, "mode": "hybrid"}
        if filters:
            request["filters"] = filters
        return [hit_view(hit) for hit in self._call("search", self._search, tenant, request)["hits"]]

    def complete(self, tenant: str, task: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        return self._call("routing a completion", self._complete, tenant, task, messages)

    def compress(self, tenant: str, query: str, chunks: list[dict[str, str]], target_tokens: int) -> dict[str, Any]:
        return self._call("compression", self._compress, tenant, query, chunks, target_tokens)

    def fetch_sources(self, tenant: str, urls: list[str]) -> list[dict[str, Any]]:
        return self._call("fetching sources", self._fetch, tenant, urls)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
