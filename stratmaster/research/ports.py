"""How research steps reach the other services.

`LocalPorts` calls the services' own domain objects in this process: the knowledge
service's search, the router (its catalogue, policies, budgets and cost ledger in the
platform database) and the compression method. The research service runs its steps with
it, the knowledge index reached through its Serve handle (`search` given as a function),
since the index owns the embedded stores. Router calls go through a `Router` built from the
same catalogue and database as the router service's, so policy, budget and ledger are the
router's; its cooldowns are this process's own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from stratmaster.research.workflow import StepFailed

SearchFunction = Callable[[str, dict[str, Any]], dict[str, Any]]  # (tenant, SearchRequest dict) -> SearchResponse
FetchFunction = Callable[[str, list[str]], list[dict[str, Any]]]  # (tenant, urls) -> a result per URL


def hit_view(hit: dict[str, Any]) -> dict[str, Any]:
    provenance = hit.get("provenance") or {}
    return {"chunk_id": hit["chunk_id"], "document_id": hit["document_id"], "text": hit["text"],
            "score": float(hit["score"]), "title": provenance.get("title"), "source": provenance.get("source"),
            "chunk_start": hit.get("start", 0)}


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
    def __init__(self, search: SearchFunction, router: Any, counter: Any, embed: Any = None,
                 timeout_s: float = 60.0, fetch_sources: FetchFunction | None = None) -> None:
        self._search, self._router, self._counter, self._embed = search, router, counter, embed
        self._fetch = fetch_sources
        self._timeout = timeout_s
        self._loop = _LoopThread()

    @classmethod
    def for_settings(cls, settings: Any, search: SearchFunction, catalogue_path: Any = None,
                     embed: Any = None, fetch_sources: FetchFunction | None = None) -> LocalPorts:
        """Ports on the platform's database and the router's catalogue (configs/router/models.yaml)."""
        from pathlib import Path

        from stratmaster.db.engine import create_db_engine
        from stratmaster.knowledge.chunking import WordpieceCounter
        from stratmaster.router.catalogue import load_catalogue
        from stratmaster.router.repository import RouterRepository
        from stratmaster.router.service import Router, build_providers

        root = Path(__file__).resolve().parents[2]
        catalogue = load_catalogue(Path(catalogue_path) if catalogue_path else root / "configs" / "router" /
                                   "models.yaml")
        router = Router(catalogue, RouterRepository(create_db_engine(settings.effective_database_url)),
                        build_providers(catalogue), recommender_enabled=settings.enable_model_recommender_v2)
        return cls(search, router, WordpieceCounter(), embed, fetch_sources=fetch_sources)

    def search(self, tenant: str, query: str, *, k: int, filters: dict[str, Any] | None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"query": query[:4000], "k": k, "mode": "hybrid"}
        if filters:
            request["filters"] = filters
        try:
            answer = self._search(tenant, request)
        except StepFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the index down or restarting: worth a retry
            raise StepFailed(f"search failed: {type(exc).__name__}: {exc}") from exc
        return [hit_view(hit) for hit in answer["hits"]]

    def fetch_sources(self, tenant: str, urls: list[str]) -> list[dict[str, Any]]:
        if self._fetch is None:
            raise StepFailed("fetching sources is not available to this worker", retryable=False)
        try:
            return self._fetch(tenant, urls)
        except StepFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the index down or restarting: worth a retry
            raise StepFailed(f"fetching sources failed: {type(exc).__name__}: {exc}") from exc

    def complete(self, tenant: str, task: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        from stratmaster.router.schemas import completion_body
        from stratmaster.router.service import RoutingError

        try:
            done = self._loop.run(self._router.complete(tenant, task, messages), self._timeout)
        except RoutingError as exc:
            # An exhausted budget stays exhausted within a run: not worth a retry.
            raise StepFailed(f"router: {exc}", retryable=getattr(exc, "status", 503) >= 500) from exc
        return completion_body(done)

    def compress(self, tenant: str, query: str, chunks: list[dict[str, str]], target_tokens: int) -> dict[str, Any]:
        from dataclasses import asdict

        from stratmaster.compression import BudgetTooSmall, Chunk, compress

        try:
            result = compress(query, [Chunk(c["id"], c["text"]) for c in chunks], target_tokens, None,
                              "extractive", self._counter, self._embed)
        except BudgetTooSmall as exc:
            raise StepFailed(f"compression: {exc}", retryable=False) from exc
        return asdict(result)

    def close(self) -> None:
        self._loop.close()
