"""Vector index over Qdrant: the embedded local mode and a Qdrant server, one adapter.

`QdrantVectorIndex` wraps `qdrant_client.QdrantClient` whichever way it was built:

* `QdrantVectorIndex.local(path, dimension)` runs Qdrant's local mode (`QdrantClient(path=...)`),
  the embedded default under `data_dir/qdrant`. Local mode is exact brute-force search in
  numpy, fine up to tens of thousands of points. It takes an exclusive lock on its folder,
  so one process owns it (the knowledge service gives it a single owner deployment), and
  it is not thread-safe, so every call here holds a lock.
* `QdrantVectorIndex.server(url, dimension, api_key=None)` talks to a Qdrant server over
  HTTP; any number of replicas may share it.

Layout: one collection (`stratmaster_chunks`, cosine distance) for every tenant; each point
carries the payload `tenant`, `document_id`, `chunk_id`. The point id is a UUIDv5 of
(tenant, chunk_id), so re-upserting a chunk replaces it and two tenants never collide.
`tenant` has a keyword payload index with `is_tenant=True` (Qdrant's multitenancy
layout: points are grouped per tenant on disk) and `document_id` a keyword index. Local
mode ignores payload indexes (and warns), so they are only created on a server.

Every search carries a `must` filter on tenant (and on document_id when restricted)
inside the query: a tenant never sees, nor pays for, another tenant's points.

Known differences between the two modes, by design of Qdrant itself:
* local mode is exact; a server uses HNSW, so its neighbours are approximate (exact for
  small collections, below the indexing threshold);
* `delete_document` counts then deletes: in local mode both happen under one lock, so
  the count is exact; on a server a concurrent upsert into the same document between
  the two calls makes the count stale (the delete itself is still complete).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from qdrant_client import QdrantClient, models

from stratmaster.health import ComponentHealth
from stratmaster.settings import Settings
from stratmaster.stores.protocols import ScoredChunk, StoreError, VectorIndex, VectorItem

logger = logging.getLogger(__name__)

COLLECTION = "stratmaster_chunks"
UPSERT_BATCH = 256
# Fixed namespace for point ids: changing it would orphan every stored point.
POINT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://stratmaster/vectors/point-id")


def point_id(tenant: str, chunk_id: str) -> str:
    """The Qdrant point id of a tenant's chunk: deterministic, so upserts replace."""
    # A JSON pair, not a joined string: no choice of ids makes two pairs collide.
    return str(uuid.uuid5(POINT_ID_NAMESPACE, json.dumps([tenant, chunk_id])))


def _tenant_filter(tenant: str, document_ids: Sequence[str] | None = None) -> models.Filter:
    must: list[models.Condition] = [models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant))]
    if document_ids is not None:
        must.append(models.FieldCondition(key="document_id", match=models.MatchAny(any=list(document_ids))))
    return models.Filter(must=must)


def _check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("tenant must be a non-empty string")


class QdrantVectorIndex:
    """A `VectorIndex` over one Qdrant collection shared by every tenant (see module doc)."""

    def __init__(self, client: QdrantClient, dimension: int, *, embedded: bool, location: str,
                 collection: str = COLLECTION) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.dimension = dimension
        self.embedded = embedded
        self.backend = "qdrant-local" if embedded else "qdrant"
        self.collection = collection
        self.location = location
        self._client = client
        # Local mode is a plain in-process object: serialise every call. The HTTP client
        # is safe to share between threads.
        self._lock: threading.RLock | None = threading.RLock() if embedded else None
        self._ready = False
        self._ready_lock = threading.Lock()

    # --- construction ---------------------------------------------------------------
    @classmethod
    def local(cls, path: str | Path, dimension: int, collection: str = COLLECTION) -> QdrantVectorIndex:
        """Qdrant local mode in `path` (created if missing); raises StoreError if another process owns it."""
        folder = Path(path).expanduser().resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Threads other than the creator may call (Serve runs requests on a pool);
            # the index's own lock keeps those calls one at a time.
            client = QdrantClient(path=str(folder), force_disable_check_same_thread=True)
        except (RuntimeError, OSError) as exc:  # the folder lock is held by another process
            raise StoreError(f"qdrant local storage at {folder} unavailable: {exc}") from exc
        index = cls(client, dimension, embedded=True, location=str(folder), collection=collection)
        try:
            index._ensure_collection()
        except BaseException:
            index.close()  # release the folder lock: a wrong dimension must not block the next try
            raise
        return index

    @classmethod
    def server(cls, url: str, dimension: int, api_key: str | None = None, timeout_s: int = 10,
               collection: str = COLLECTION) -> QdrantVectorIndex:
        """A Qdrant server at `url`; the collection is created on first use, not here."""
        parts = urlsplit(url)
        # Never the full URL in messages: it may carry credentials.
        location = f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 6333)}"
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s,
                              # The version check is a request at construction; a server that is
                              # down must not stop start-up (ping reports it instead).
                              check_compatibility=False)
        return cls(client, dimension, embedded=False, location=location, collection=collection)

    # --- internals ------------------------------------------------------------------
    def _serialised(self) -> threading.RLock | nullcontext[None]:
        return self._lock if self._lock is not None else nullcontext()

    @contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        """Serialise in local mode and turn any client failure into StoreError."""
        with self._serialised():
            try:
                yield
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - every client failure is a store failure
                raise StoreError(f"{self.backend} at {self.location} failed {operation}: "
                                 f"{type(exc).__name__}: {exc}") from exc

    def _ensure_collection(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self._call("create collection"):
                if not self._client.collection_exists(self.collection):
                    try:
                        self._client.create_collection(
                            self.collection,
                            vectors_config=models.VectorParams(size=self.dimension, distance=models.Distance.COSINE),
                        )
                    except Exception:
                        # Another replica created it between our check and our create.
                        if not self._client.collection_exists(self.collection):
                            raise
                self._check_existing_collection()
                if not self.embedded:
                    self._create_payload_indexes()
            self._ready = True

    def _check_existing_collection(self) -> None:
        params = self._client.get_collection(self.collection).config.params.vectors
        if isinstance(params, dict):  # named vectors: not a layout this adapter wrote
            raise StoreError(f"collection {self.collection!r} at {self.location} uses named vectors; "
                             "expected a single unnamed cosine vector")
        if params is None or params.size != self.dimension or params.distance != models.Distance.COSINE:
            raise StoreError(
                f"collection {self.collection!r} at {self.location} holds "
                f"{getattr(params, 'size', None)}-d {getattr(params, 'distance', None)} vectors; "
                f"this index expects {self.dimension}-d cosine (re-embed into a new collection)"
            )

    def _create_payload_indexes(self) -> None:
        # Creating an index that exists is accepted by the server (it is a no-op update).
        try:
            self._client.create_payload_index(
                self.collection, field_name="tenant",
                field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                wait=True,
            )
        except Exception as exc:  # noqa: BLE001 - servers before 1.11 reject is_tenant
            logger.warning("qdrant rejected a tenant-optimised index on 'tenant' (%s); using a plain keyword index",
                           exc)
            self._client.create_payload_index(self.collection, field_name="tenant",
                                              field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
        self._client.create_payload_index(self.collection, field_name="document_id",
                                          field_schema=models.PayloadSchemaType.KEYWORD, wait=True)

    def _vector(self, vector: Sequence[float]) -> list[float]:
        array = np.asarray(vector, dtype=np.float64)
        if array.ndim != 1 or array.shape[0] != self.dimension:
            raise ValueError(f"vector has shape {array.shape}, this index holds {self.dimension}-d vectors")
        if not np.isfinite(array).all():
            raise ValueError("vector contains NaN or infinity")
        if not array.any():
            raise ValueError("the zero vector has no cosine similarity")
        return array.tolist()

    # --- VectorIndex ----------------------------------------------------------------
    def upsert(self, tenant: str, items: Sequence[VectorItem]) -> None:
        """Insert or replace chunks by (tenant, chunk_id), `UPSERT_BATCH` points per request."""
        _check_tenant(tenant)
        points = [
            models.PointStruct(
                id=point_id(tenant, item.chunk_id),
                vector=self._vector(item.vector),
                payload={"tenant": tenant, "document_id": item.document_id, "chunk_id": item.chunk_id},
            )
            for item in items
        ]
        if not points:
            return
        self._ensure_collection()
        for start in range(0, len(points), UPSERT_BATCH):
            with self._call("upsert"):
                self._client.upsert(self.collection, points=points[start:start + UPSERT_BATCH], wait=True)

    def delete_document(self, tenant: str, document_id: str) -> int:
        """Remove every point of the document; returns how many there were."""
        _check_tenant(tenant)
        self._ensure_collection()
        selector = models.Filter(must=[
            models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
            models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id)),
        ])
        with self._call("delete document"):
            removed = self._client.count(self.collection, count_filter=selector, exact=True).count
            if removed:
                self._client.delete(self.collection, points_selector=models.FilterSelector(filter=selector),
                                    wait=True)
        return removed

    def search(self, tenant: str, vector: Sequence[float], k: int,
               document_ids: Sequence[str] | None = None) -> list[ScoredChunk]:
        """Cosine similarity (1.0 = same direction), best first, within the tenant."""
        _check_tenant(tenant)
        query = self._vector(vector)
        if k < 1 or (document_ids is not None and not document_ids):
            return []
        self._ensure_collection()
        with self._call("query points"):
            response = self._client.query_points(
                self.collection, query=query, query_filter=_tenant_filter(tenant, document_ids),
                limit=k, with_payload=["chunk_id", "document_id"], with_vectors=False,
            )
        return [self._scored(point) for point in response.points]

    @staticmethod
    def _scored(point: Any) -> ScoredChunk:
        payload = point.payload or {}
        return ScoredChunk(chunk_id=payload["chunk_id"], document_id=payload["document_id"], score=float(point.score))

    def count(self, tenant: str) -> int:
        _check_tenant(tenant)
        self._ensure_collection()
        with self._call("count"):
            return self._client.count(self.collection, count_filter=_tenant_filter(tenant), exact=True).count

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            self._ensure_collection()
            with self._call("ping"):
                self._client.get_collection(self.collection)
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            return ComponentHealth(name="vectors", status="down", backend=self.backend, embedded=self.embedded,
                                   latency_ms=(time.perf_counter() - started) * 1000, detail=str(exc))
        return ComponentHealth(name="vectors", status="ok", backend=self.backend, embedded=self.embedded,
                               latency_ms=(time.perf_counter() - started) * 1000)

    def close(self) -> None:
        """Release the client (in local mode: the folder lock). Idempotent."""
        with self._serialised():
            try:
                self._client.close()
            except Exception as exc:  # noqa: BLE001 - closing twice or after a failure is harmless
                logger.debug("closing qdrant client at %s: %s", self.location, exc)


def create_vector_index(settings: Settings, dimension: int) -> VectorIndex:
    """A Qdrant server when QDRANT_URL is set, else local mode under `data_dir/qdrant`."""
    if settings.qdrant_url:
        # Settings has no QDRANT_API_KEY yet: a server that needs one must be reached via
        # QdrantVectorIndex.server(..., api_key=...) until it does.
        return QdrantVectorIndex.server(settings.qdrant_url, dimension)
    return QdrantVectorIndex.local(settings.data_dir / "qdrant", dimension)
