"""Retrieval quality of the knowledge service, in process: what the benchmark and sweep pipelines run.

The same `KnowledgeService` as the platform, on embedded stores in a directory of its own
(SQLite database, Qdrant local mode, the SQLite keyword index, the SQLite graph), so a
configuration scored here ranks exactly as the deployed service would rank with it. What
the pipelines add is only distribution: an index is built once per chunking and shipped
to workers as a snapshot (`snapshot_index` / `restore_index`), and each worker scores its
queries or configurations against its own copy.

A configuration (`RetrievalSetting`) is what varies between runs: mode, fusion method and
weight, candidates per retriever, graph expansion, and the chunk size the index was built
with. Rankings become document runs the way the HTTP benchmark makes them (a document at
its best chunk's score, `document_run`), scored with `stratmaster.evals.ir_metrics`.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stratmaster.evals.datasets import BeirDataset
from stratmaster.evals.ir_metrics import DEFAULT_MEASURES, evaluate_rankings, trec_ranking

Embed = Callable[[Sequence[str]], np.ndarray]
TENANT = "eval"
# Stores a search needs; the object store (originals) is left out of snapshots. SQLite files
# travel with their -wal and -shm files: in WAL mode the latest commits may live only there.
_SNAPSHOT_PARTS = ("stratmaster.db", "stratmaster.db-wal", "stratmaster.db-shm", "keyword", "qdrant",
                   "graph.db", "graph.db-wal", "graph.db-shm")


class RetrievalSetting(BaseModel):
    """One configuration to score. `chunk_tokens` needs its own index; the rest is per query."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["keyword", "dense", "hybrid"] = "hybrid"
    fusion_method: Literal["convex", "rrf"] | None = None
    keyword_weight: float | None = Field(None, ge=0.0, le=1.0)
    rrf_k: float | None = Field(None, gt=0)
    candidates: int | None = Field(None, ge=10, le=1000)
    expand_graph: bool | None = None
    chunk_tokens: int | None = Field(None, ge=16, le=512)

    def label(self) -> str:
        parts = [self.mode]
        for name in ("fusion_method", "keyword_weight", "rrf_k", "candidates", "expand_graph", "chunk_tokens"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        return " ".join(parts)

    def key(self) -> str:
        """A stable id for result files: the same setting always maps to the same file."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IndexStats:
    documents: int
    chunks: int
    seconds: float


def _service(directory: Path, embed: Embed, chunk_tokens: int | None, candidates: int | None = None,
             embed_query: Embed | None = None) -> Any:
    from stratmaster.db.engine import create_db_engine
    from stratmaster.db.migrate import upgrade
    from stratmaster.knowledge.chunking import WordpieceCounter
    from stratmaster.knowledge.config import load_knowledge_config
    from stratmaster.knowledge.repository import DocumentRepository
    from stratmaster.knowledge.service import KnowledgeService, KnowledgeStores
    from stratmaster.settings import load_settings
    from stratmaster.stores.graph import create_graph_store
    from stratmaster.stores.keyword import create_keyword_index
    from stratmaster.stores.objects import create_object_store
    from stratmaster.stores.vectors import create_vector_index

    # Embedded stores whatever the environment says: an evaluation must not write to servers.
    blank = {name: "" for name in ("DATABASE_URL", "QDRANT_URL", "OPENSEARCH_URL", "NEBULA_ADDRESS",
                                   "MINIO_ENDPOINT", "REDIS_URL")}
    settings = load_settings(STRATMASTER_DATA_DIR=str(directory), **blank)
    upgrade(settings.effective_database_url)
    config = load_knowledge_config()
    if chunk_tokens is not None:
        config = config.model_copy(update={"chunking": config.chunking.model_copy(update={"max_tokens": chunk_tokens})})
    if candidates is not None:
        config = config.model_copy(update={"retrieval": config.retrieval.model_copy(update={"candidates": candidates})})
    stores = KnowledgeStores(create_object_store(settings), create_keyword_index(settings),
                             create_vector_index(settings, 384), create_graph_store(settings))
    return KnowledgeService(DocumentRepository(create_db_engine(settings.effective_database_url)), stores,
                            WordpieceCounter(), embed, config, embed_query=embed_query)


def build_index(dataset: BeirDataset, directory: Path, embed: Embed, chunk_tokens: int | None = None,
                batch_size: int = 100) -> IndexStats:
    """Ingest the dataset's corpus into embedded stores under `directory`."""
    started = time.perf_counter()
    service = _service(directory, embed, chunk_tokens)
    documents = [{"id": d.id, "title": d.title.strip() or d.id, "text": d.text} for d in dataset.corpus.values()]
    for first in range(0, len(documents), batch_size):
        result = service.ingest(TENANT, documents[first:first + batch_size])
        failed = [r for r in result.results if r.status in ("failed", "rejected")]
        if failed:
            raise RuntimeError(f"indexing failed for {len(failed)} documents, first: {failed[0].model_dump()}")
    counts = service.counts(TENANT)
    close_index(service)
    return IndexStats(counts["documents"], counts["chunks"], round(time.perf_counter() - started, 2))


def close_index(service: Any) -> None:
    """Close the index's stores (local Qdrant and the SQLite files hold their folders open)."""
    for store in service.stores.all():
        store.close()


def snapshot_index(directory: Path) -> bytes:
    """The index's stores as one tar (no originals): what workers restore from."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for part in _SNAPSHOT_PARTS:
            path = directory / part
            if path.exists():
                tar.add(path, arcname=part)
    return buffer.getvalue()


def restore_index(snapshot: bytes, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r") as tar:
        tar.extractall(directory, filter="data")


def open_index(directory: Path, embed: Embed, setting: RetrievalSetting, embed_query: Embed | None = None) -> Any:
    return _service(directory, embed, setting.chunk_tokens, setting.candidates, embed_query)


def search_request(setting: RetrievalSetting, query: str, k: int) -> Any:
    from stratmaster.knowledge.schemas import SearchRequest

    fusion = {name: value for name, value in (("method", setting.fusion_method),
                                               ("keyword_weight", setting.keyword_weight),
                                               ("rrf_k", setting.rrf_k)) if value is not None}
    return SearchRequest(query=query[:4000], k=k, mode=setting.mode, expand_graph=setting.expand_graph,
                         fusion=fusion or None)


def document_run(hits: Sequence[Any]) -> dict[str, float]:
    """Documents in the order their chunks came, each at its first (best) chunk's score."""
    run: dict[str, float] = {}
    for hit in hits:
        run.setdefault(hit.document_id, float(hit.score))
    return run


def run_queries(service: Any, setting: RetrievalSetting, queries: Sequence[tuple[str, str]],
                k: int = 100) -> dict[str, Any]:
    """Rankings and per-query latency for (query id, text) pairs."""
    rankings: dict[str, list[str]] = {}
    latency_ms: dict[str, float] = {}
    for query_id, text in queries:
        started = time.perf_counter()
        response = service.search(TENANT, search_request(setting, text, k))
        latency_ms[query_id] = round((time.perf_counter() - started) * 1000, 3)
        rankings[query_id] = trec_ranking(document_run(response.hits))
    return {"rankings": rankings, "latency_ms": latency_ms}


def score(dataset: BeirDataset, rankings: dict[str, list[str]], latency_ms: dict[str, float],
          measures: Sequence[str] = DEFAULT_MEASURES) -> dict[str, Any]:
    """Aggregate and per-query measures, plus latency percentiles of the in-process search."""
    evaluated = evaluate_rankings(dataset.qrels, rankings, list(measures))
    latencies = sorted(latency_ms.values())

    def percentile(q: float) -> float | None:
        value = nearest_rank(latencies, q)
        return None if value is None else round(value, 3)

    return {"measures": {name: round(value, 6) for name, value in evaluated["aggregate"].items()},
            "per_query": evaluated["per_query"],
            "latency_ms": {"p50": percentile(0.5), "p95": percentile(0.95),
                           "mean": round(float(np.mean(latencies)), 3) if latencies else None},
            "queries": len(rankings)}


def nearest_rank(sorted_values: Sequence[float], q: float) -> float | None:
    """The value at rank floor(q * n) of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def write_json(path: Path, data: Any) -> None:
    """Atomically: a result file either holds a whole result or does not exist (resumable runs rely on it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    temporary.replace(path)
