"""The knowledge application: HTTP ingress, the store owner, and a batched embedder.

Three deployments, each scaled on its own:
- `KnowledgeIngress` (autoscaled): HTTP, tokens, validation, idempotency keys;
- `KnowledgeIndex` (ONE replica on embedded stores): owns the stores. Qdrant's local
  mode locks its folder and the full-text index has one writer, so every ingest and
  search goes through this single owner; with server backends (QDRANT_URL,
  OPENSEARCH_URL, NEBULA_ADDRESS, MINIO_ENDPOINT, DATABASE_URL all set) it can scale.
  It embeds queries itself (one model thread per search): a query is one short forward
  pass, and a hop to another replica cost about as much CPU as the pass (~6 ms);
- `Embedder` (autoscaled): all-MiniLM-L6-v2 for documents' chunks, called by the index
  for the next group of chunks while it writes the previous one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from deployments.args import ServiceArgs
from deployments.http import APIError, require_principal
from deployments.service import ServiceIngress, service_api
from stratmaster.db.engine import create_db_engine
from stratmaster.db.idempotency import IdempotencyConflict, IdempotencyStore, check_key, request_fingerprint
from stratmaster.health import ComponentHealth
from stratmaster.identity import Principal
from stratmaster.knowledge.schemas import DocumentOut, IngestResponse, SearchRequest, SearchResponse
from stratmaster.logs import configure_logging, correlation_scope, current_correlation_id
from stratmaster.settings import get_settings

log = logging.getLogger("stratmaster.knowledge")

DESCRIPTION = "Ingests a tenant's documents with provenance and answers hybrid retrieval queries over them."
MAX_BODY_BYTES = 64 * 1024 * 1024


class KnowledgeArgs(ServiceArgs):
    embedder_threads: int = Field(1, ge=1, le=64, description="Model threads per embedding call.")
    embedding_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: ONNX Runtime, the torch model's vectors at about half the CPU per query.")
    embedding_precision: Literal["fp32", "int8"] = Field(
        "int8", description="Model variant for chunks and queries. int8 (ONNX only) embeds ~1.5x faster at "
                            "the same CISI quality; see stratmaster.knowledge.onnx_embedding.")

    @model_validator(mode="after")
    def _int8_is_onnx_only(self) -> KnowledgeArgs:
        if self.embedding_precision == "int8" and self.embedding_backend != "onnx":
            raise ValueError("embedding_precision int8 needs embedding_backend onnx")
        return self


# --- embedder -------------------------------------------------------------------------------
def load_embedder(backend: str, precision: str, threads: int) -> Any:
    settings = get_settings()
    if backend == "onnx":
        from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

        return OnnxEmbedder(settings.data_dir / "models", num_threads=threads, precision=precision)
    from stratmaster.knowledge.embedding import Embedder as Model

    return Model(num_threads=threads)


@serve.deployment
class Embedder:
    """Documents' chunks, a group per call."""

    def __init__(self, threads: int, precision: str, backend: str) -> None:
        configure_logging("knowledge-embedder", get_settings().log_level)
        self.model = load_embedder(backend, precision, threads)

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.model.embed, texts)


class RemoteEmbedder:
    """The embedder deployment seen as a local embedder (called from worker threads)."""

    def __init__(self, handle: DeploymentHandle, model_id: str, batch: int = 256) -> None:
        from stratmaster.knowledge.embedding import DIMENSION

        self.handle, self.batch = handle, batch
        self.model_id, self.dimension = model_id, DIMENSION

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        parts = [self.handle.embed_many.remote(list(texts[i:i + self.batch])).result()
                 for i in range(0, len(texts), self.batch)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), dtype=np.float32)


# --- index owner ----------------------------------------------------------------------------
def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message}}


@serve.deployment
class KnowledgeIndex:
    """Single owner of the knowledge stores; answers envelopes ({"result"} or {"error"})."""

    def __init__(self, embedder: DeploymentHandle, precision: str, backend: str) -> None:
        from stratmaster.knowledge.chunking import WordpieceCounter
        from stratmaster.knowledge.config import load_knowledge_config
        from stratmaster.knowledge.embedding import CachedEmbedder, SqliteEmbeddingCache
        from stratmaster.knowledge.onnx_embedding import MODEL_IDS
        from stratmaster.knowledge.repository import DocumentRepository
        from stratmaster.knowledge.service import KnowledgeService, KnowledgeStores
        from stratmaster.stores.graph import create_graph_store
        from stratmaster.stores.keyword import create_keyword_index
        from stratmaster.stores.objects import create_object_store
        from stratmaster.stores.vectors import create_vector_index

        settings = get_settings()
        configure_logging("knowledge-index", settings.log_level)
        self.settings = settings
        engine = create_db_engine(settings.effective_database_url)
        self.stores = KnowledgeStores(create_object_store(settings), create_keyword_index(settings),
                                      create_vector_index(settings, 384), create_graph_store(settings))
        remote = RemoteEmbedder(embedder, MODEL_IDS[precision])
        self.embedder = CachedEmbedder(remote, SqliteEmbeddingCache(settings.data_dir / "embedding-cache.sqlite"))
        # One thread: concurrent searches already run side by side, each on a core.
        self.query_model = load_embedder(backend, precision, threads=1)
        self.service = KnowledgeService(DocumentRepository(engine), self.stores, WordpieceCounter(),
                                        self.embedder.embed, load_knowledge_config(),
                                        embed_query=self.query_model.embed)
        # A handle learns its deployment's replicas on first use, which took ~6 s in a
        # replica: learn them now, in the background, not during the first ingest.
        threading.Thread(target=self._warm_embedder_handle, args=(remote,), daemon=True).start()
        log.info("knowledge index ready", extra={"backends": {k: v["backend"] for k, v in settings.backends().items()}})

    @staticmethod
    def _warm_embedder_handle(remote: RemoteEmbedder) -> None:
        try:
            remote.handle.embed_many.remote([]).result()
        except Exception:  # noqa: BLE001 - the first ingest will report it properly
            log.warning("embedder not reachable yet", exc_info=True)

    async def _call(self, correlation_id: str | None, function, *args) -> dict[str, Any]:
        from stratmaster.knowledge.schemas import DocumentProblem
        from stratmaster.knowledge.service import NotFound
        from stratmaster.stores.protocols import StoreError

        with correlation_scope(correlation_id):
            try:
                return {"result": await asyncio.to_thread(function, *args)}
            except NotFound as exc:
                return _error(404, "not_found", str(exc))
            except DocumentProblem as exc:
                return _error(exc.status, exc.code, exc.message)
            except StoreError as exc:
                log.exception("store unavailable")
                return _error(503, "store_unavailable", str(exc))

    async def ingest(self, tenant: str, documents: list[Any], correlation_id: str | None = None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            return self.service.ingest(tenant, documents).model_dump(mode="json")
        return await self._call(correlation_id, run)

    async def search(self, tenant: str, request: dict[str, Any], correlation_id: str | None = None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            return self.service.search(tenant, SearchRequest.model_validate(request)).model_dump(mode="json")
        return await self._call(correlation_id, run)

    async def get_document(self, tenant: str, document_id: str, correlation_id: str | None = None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            record, chunks = self.service.get_document(tenant, document_id)
            return {"document": _as_dict(record), "chunks": [_as_dict(c) for c in chunks]}
        return await self._call(correlation_id, run)

    async def delete_document(self, tenant: str, document_id: str,
                              correlation_id: str | None = None) -> dict[str, Any]:
        return await self._call(correlation_id, self.service.delete, tenant, document_id)

    async def entities(self, tenant: str, query: str | None, limit: int,
                       correlation_id: str | None = None) -> dict[str, Any]:
        return await self._call(correlation_id, lambda: [_as_dict(e) for e in
                                                          self.service.entities(tenant, query, limit)])

    async def neighbors(self, tenant: str, entity_id: str, limit: int,
                        correlation_id: str | None = None) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            entity, neighbors = self.service.neighbors(tenant, entity_id, limit)
            return {"entity": _as_dict(entity),
                    "neighbors": [{"entity": _as_dict(n.entity), "weight": n.weight} for n in neighbors]}
        return await self._call(correlation_id, run)

    async def communities(self, tenant: str, correlation_id: str | None = None) -> dict[str, Any]:
        return await self._call(correlation_id, lambda: [_as_dict(c) for c in self.service.communities(tenant)])

    async def stats(self, tenant: str, correlation_id: str | None = None) -> dict[str, Any]:
        return await self._call(correlation_id, self.service.counts, tenant)

    async def health(self, correlation_id: str | None = None) -> list[dict[str, Any]]:
        with correlation_scope(correlation_id):
            checks = await asyncio.to_thread(lambda: [store.ping() for store in self.stores.all()])
            return [check.model_dump() for check in checks]


def _as_dict(record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(record)
    return {k: (v.isoformat() if hasattr(v, "isoformat") else list(v) if isinstance(v, tuple) else v)
            for k, v in data.items()}


# --- HTTP ingress ---------------------------------------------------------------------------
class IngestRequest(BaseModel):
    documents: list[Any] = Field(min_length=1, description="Documents; each is validated on its own.")


def _unwrap(envelope: dict[str, Any]) -> Any:
    if "error" in envelope:
        error = envelope["error"]
        raise APIError(error["status"], error["code"], error["message"])
    return envelope["result"]


def _ingress(request: Request) -> KnowledgeIngress:
    return request.app.state.ingress


def knowledge_api(service: str, description: str) -> FastAPI:
    api = service_api(service, description)

    @api.post("/documents", response_model=IngestResponse, tags=["documents"],
              summary="Ingest a batch of documents; each gets its own outcome",
              responses={207: {"description": "Some documents were rejected; see each result"},
                         422: {"description": "Every document was rejected"}})
    async def ingest(request: Request, body: IngestRequest, principal: Principal = Depends(require_principal),
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> JSONResponse:
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise APIError(413, "payload_too_large", f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        ingress = _ingress(request)
        fingerprint = request_fingerprint(body.documents)
        if idempotency_key is not None:
            try:
                stored = await asyncio.to_thread(ingress.idempotency.lookup, principal.tenant,
                                                 check_key(idempotency_key), "knowledge.ingest", fingerprint)
            except ValueError as exc:
                raise APIError(400, "bad_request", str(exc)) from None
            except IdempotencyConflict as exc:
                raise APIError(409, "idempotency_conflict", str(exc)) from None
            if stored is not None:
                return JSONResponse(stored.body, status_code=stored.status_code,
                                    headers={"Idempotency-Replayed": "true"})
        result = _unwrap(await ingress.index.ingest.remote(principal.tenant, body.documents, current_correlation_id()))
        statuses = {r["http_status"] for r in result["results"]}
        ok = {r["status"] for r in result["results"]} & {"created", "updated", "unchanged"}
        status = (200 if statuses <= {200, 201} else 207) if ok else max(statuses)
        if idempotency_key is not None and status < 500:
            await asyncio.to_thread(ingress.idempotency.save, principal.tenant, idempotency_key, "knowledge.ingest",
                                    fingerprint, status, result)
        return JSONResponse(result, status_code=status)

    @api.get("/documents/{document_id:path}", response_model=DocumentOut, tags=["documents"],
             summary="A document's provenance and chunks")
    async def get_document(document_id: str, request: Request,
                           principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        found = _unwrap(await _ingress(request).index.get_document.remote(principal.tenant, document_id,
                                                                          current_correlation_id()))
        return {**found["document"], "chunks": found["chunks"]}

    @api.delete("/documents/{document_id:path}", status_code=204, tags=["documents"],
                summary="Remove a document from every store")
    async def delete_document(document_id: str, request: Request,
                              principal: Principal = Depends(require_principal)) -> Response:
        _unwrap(await _ingress(request).index.delete_document.remote(principal.tenant, document_id,
                                                                     current_correlation_id()))
        return Response(status_code=204)

    @api.post("/search", response_model=SearchResponse, tags=["search"],
              summary="Keyword, dense or hybrid search over the tenant's chunks")
    async def search(body: SearchRequest, request: Request,
                     principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        return _unwrap(await _ingress(request).index.search.remote(principal.tenant, body.model_dump(),
                                                                   current_correlation_id()))

    @api.get("/graph/entities", tags=["graph"], summary="Entities whose name contains q, most mentioned first")
    async def entities(request: Request, q: str | None = Query(None, max_length=200),
                       limit: int = Query(50, ge=1, le=500),
                       principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        found = _unwrap(await _ingress(request).index.entities.remote(principal.tenant, q, limit,
                                                                      current_correlation_id()))
        return {"entities": found}

    @api.get("/graph/entities/{entity_id}/neighbors", tags=["graph"],
             summary="Entities co-mentioned with this one, heaviest first")
    async def neighbors(entity_id: str, request: Request, limit: int = Query(25, ge=1, le=500),
                        principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        return _unwrap(await _ingress(request).index.neighbors.remote(principal.tenant, entity_id, limit,
                                                                      current_correlation_id()))

    @api.get("/graph/communities", tags=["graph"], summary="Communities of co-mentioned entities, with summaries")
    async def communities(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        found = _unwrap(await _ingress(request).index.communities.remote(principal.tenant, current_correlation_id()))
        return {"communities": found}

    @api.get("/stats", tags=["documents"], summary="How many documents and chunks the tenant has")
    async def stats(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        return _unwrap(await _ingress(request).index.stats.remote(principal.tenant, current_correlation_id()))

    return api


@serve.deployment
@serve.ingress()
class KnowledgeIngress(ServiceIngress):
    service = "knowledge"
    description = DESCRIPTION

    def __init__(self, args: KnowledgeArgs, index: DeploymentHandle) -> None:
        super().__init__(args)
        self.index = index
        self.idempotency = IdempotencyStore(create_db_engine(self.runtime.settings.effective_database_url))

    def build_api(self) -> FastAPI:
        return knowledge_api(self.service, self.description)

    async def dependency_checks(self) -> list[ComponentHealth]:
        try:
            checks = await asyncio.wait_for(self.index.health.remote(current_correlation_id()),
                                            timeout=self.args.handle_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the index being unreachable is itself the finding
            return [ComponentHealth(name="knowledge-index", status="down", backend="ray-serve", embedded=False,
                                    detail=f"{type(exc).__name__}: {exc}"[:300])]
        return [ComponentHealth.model_validate(c) for c in checks]


def build_app(args: KnowledgeArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    args = KnowledgeArgs.model_validate(args)
    embedder = Embedder.bind(args.embedder_threads, args.embedding_precision, args.embedding_backend)
    return KnowledgeIngress.bind(args, KnowledgeIndex.bind(embedder, args.embedding_precision, args.embedding_backend))
