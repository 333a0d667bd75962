"""Vector index over Qdrant: the embedded local mode and a Qdrant server, one adapter.

`QdrantVectorIndex` wraps `qdrant_client.QdrantClient` whichever way it was built:

* `QdrantVectorIndex.local(path, dimension)` runs Qdrant's local mode (`QdrantClient(path=...)`),
  the embedded default under `data_dir/qdrant`. Local mode is exact brute-force search in
  numpy, fine up to tens of thousands of points. It takes an exclusive lock on its folder,
  so one process owns it (the knowledge service gives it a single owner deployment), and
  it is not thread-safe, so every call here holds a lock.
* `QdrantVectorIndex.server(url, dimension, api_key=None)` talks to a Qdrant server over
  HTTP; any number of replicas may share it.

Every point carries the payload `tenant`, `document_id`, `chunk_id`. The point id is a
UUIDv5 of (tenant, chunk_id), so re-upserting a chunk replaces it and two tenants never
collide. Cosine distance, one unnamed vector.

Layout, which differs between the modes on purpose:

* Server: one collection (`stratmaster_chunks`) for every tenant. `tenant` has a keyword
  payload index with `is_tenant=True` and `document_id` a keyword index; every read and
  delete carries a `must` filter on tenant (and on document_id when restricted). This is
  Qdrant's recommended multitenancy: the server answers the filter from its index and
  keeps each tenant's points together on disk, and thousands of collections would cost
  it far more than one.
* Local mode: one collection per tenant, `stratmaster_chunks__<first 32 hex digits of
  sha256(tenant)>` (safe whatever the tenant string), created on the tenant's first
  upsert; reads and deletes on a tenant without one return nothing. Local mode has no
  payload indexes (it ignores them and warns): it evaluates a filter in Python, point by
  point, over the whole collection, so a tenant filter made every search pay ~7 µs per
  point of *every* tenant (50 ms with 1,700 + 6,000 points) against 1-2 ms for the numpy
  search itself. With a collection of its own a search needs no tenant filter, and
  isolation still happens inside the store, by collection. A `document_id` restriction
  stays a filter. A store written with the shared layout (before this split) is split
  per tenant when opened.

Local-mode writes commit once per call. qdrant-client's local persistence
(`CollectionPersistence`, sqlite) commits — and syncs to disk — once per point, ~2 ms
each, whatever the batch size. `OneCommitPerCall` stands in for that sqlite connection
so that the points of one `upsert` or `delete_document` call are written in a single
transaction; if the transaction fails it is rolled back and the client is reloaded from
disk before the lock is released, so no later call sees a point the disk does not hold.

Known differences between the two modes, by design of Qdrant itself:
* local mode is exact; a server uses HNSW, so its neighbours are approximate (exact for
  small collections, below the indexing threshold);
* `delete_document` counts then deletes. In local mode the index keeps each document's
  point ids (`_DocumentPoints`: a filter there would be evaluated on every point of the
  tenant, twice) and deletes by id under one lock, so the count is exact; on a server
  a concurrent upsert into the same document between the two calls makes the count
  stale (the delete itself is still complete).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from qdrant_client import QdrantClient, models

from stratmaster.health import ComponentHealth, probed
from stratmaster.settings import Settings
from stratmaster.stores.protocols import ScoredChunk, StoreError, VectorIndex, VectorItem

logger = logging.getLogger(__name__)

COLLECTION = "stratmaster_chunks"
UPSERT_BATCH = 256
# Fixed namespace for point ids: changing it would orphan every stored point.
POINT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://stratmaster/vectors/point-id")
# Separates the base collection name from a tenant's hash in local mode.
TENANT_SEPARATOR = "__"


def point_id(tenant: str, chunk_id: str) -> str:
    """The Qdrant point id of a tenant's chunk: deterministic, so upserts replace."""
    # A JSON pair, not a joined string: no choice of ids makes two pairs collide.
    return str(uuid.uuid5(POINT_ID_NAMESPACE, json.dumps([tenant, chunk_id])))


def tenant_collection(base: str, tenant: str) -> str:
    """The local-mode collection of a tenant: a hash, so any tenant string makes a safe name.

    128 bits of SHA-256: two tenants sharing a collection is as likely as a UUID collision.
    """
    return f"{base}{TENANT_SEPARATOR}{hashlib.sha256(tenant.encode()).hexdigest()[:32]}"


def _document_condition(document_ids: Sequence[str]) -> models.FieldCondition:
    return models.FieldCondition(key="document_id", match=models.MatchAny(any=list(document_ids)))


def _tenant_filter(tenant: str, document_ids: Sequence[str] | None = None) -> models.Filter:
    must: list[models.Condition] = [models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant))]
    if document_ids is not None:
        must.append(_document_condition(document_ids))
    return models.Filter(must=must)


def _check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not tenant:
        raise ValueError("tenant must be a non-empty string")


class OneCommitPerCall:
    """Stands in for the sqlite connection of one local-mode collection: one commit per call.

    qdrant-client's `CollectionPersistence` writes each point as `with connection: INSERT`
    (or `DELETE`), so every point is its own transaction. Installed as that object's
    `storage` attribute, this proxy is transparent — except inside `transaction()`, where
    leaving `with connection:` no longer commits: the block's writes share one transaction,
    committed at the end, or rolled back together if anything in the block fails.

    A failed transaction leaves memory ahead of the disk (local mode applies each point in
    memory right after writing it); `rolled_back_writes` says how many writes were undone,
    so the owner can reload the collection from disk.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._writes: int | None = None  # None outside a transaction
        self.rolled_back_writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)

    def __enter__(self) -> Any:
        if self._writes is None:
            return self.connection.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if self._writes is None:
            return self.connection.__exit__(exc_type, exc, tb)
        self._writes += 1  # a failed write counts too: it is rolled back with the others
        return None  # an error propagates out of `transaction()`, which rolls everything back

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._writes is not None:
            raise RuntimeError("transactions do not nest")
        self.rolled_back_writes = 0
        # Explicit, so that it holds whatever the connection's isolation_level.
        self.connection.execute("BEGIN")
        self._writes = 0
        try:
            yield
            self.connection.commit()
        except BaseException:
            self.rolled_back_writes = self._writes
            self.connection.rollback()
            raise
        finally:
            self._writes = None


class _DocumentPoints:
    """Local mode: the points of each document in one collection, so a delete needs no filter
    scan, and each point's (chunk id, document id), so a search needs no payloads (building
    200 payloads cost more than scoring every vector: 4 of 7 ms per CISI search).

    Mirrors the collection, which only this index writes (local mode has one owner, and
    every call holds the lock); built from the collection on first use, updated after each
    successful write, and dropped (to be rebuilt) after a failed one.
    """

    def __init__(self) -> None:
        self._points: dict[str, set[str]] = {}
        self._document: dict[str, str] = {}
        self._chunk: dict[str, str] = {}

    def add(self, point: str, document_id: str, chunk_id: str) -> None:
        self._chunk[point] = chunk_id
        previous = self._document.get(point)
        if previous == document_id:
            return
        if previous is not None:  # a chunk re-upserted under another document moves
            self._points[previous].discard(point)
            if not self._points[previous]:
                del self._points[previous]
        self._document[point] = document_id
        self._points.setdefault(document_id, set()).add(point)

    def points_of(self, document_id: str) -> list[str]:
        return sorted(self._points.get(document_id, ()))

    def remove_document(self, document_id: str) -> None:
        for point in self._points.pop(document_id, ()):
            del self._document[point]
            del self._chunk[point]

    def chunk_of(self, point: str) -> tuple[str, str] | None:
        """(chunk id, document id) of a point, None if this map does not know it."""
        chunk = self._chunk.get(point)
        return None if chunk is None else (chunk, self._document[point])


def _local_connection_holder(client: QdrantClient, collection: str) -> Any | None:
    """The `CollectionPersistence` of a local-mode collection, or None if this client lays it out otherwise."""
    local = getattr(client, "_client", None)
    holder = getattr(getattr(local, "collections", {}).get(collection), "storage", None)
    return holder if isinstance(getattr(holder, "storage", None), (sqlite3.Connection, OneCommitPerCall)) else None


class QdrantVectorIndex:
    """A `VectorIndex` over Qdrant: one shared collection on a server, one per tenant in local mode."""

    def __init__(self, client: QdrantClient, dimension: int, *, embedded: bool, location: str,
                 collection: str = COLLECTION, reopen: Callable[[], QdrantClient] | None = None) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.dimension = dimension
        self.embedded = embedded
        self.backend = "qdrant-local" if embedded else "qdrant"
        self.collection = collection
        self.location = location
        self._client = client
        # Local mode: how to load the store from disk again after a failed write.
        self._reopen = reopen
        self._unbatched_warned = False
        # Local mode: collection -> its documents' points (see _DocumentPoints).
        self._document_points: dict[str, _DocumentPoints] = {}
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

        def open_client() -> QdrantClient:
            # Threads other than the creator may call (Serve runs requests on a pool);
            # the index's own lock keeps those calls one at a time.
            return QdrantClient(path=str(folder), force_disable_check_same_thread=True)

        try:
            folder.mkdir(parents=True, exist_ok=True)
            client = open_client()
        except (RuntimeError, OSError) as exc:  # the folder lock is held by another process
            raise StoreError(f"qdrant local storage at {folder} unavailable: {exc}") from exc
        index = cls(client, dimension, embedded=True, location=str(folder), collection=collection,
                    reopen=open_client)
        try:
            index._open_local_layout()
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
        """Server mode: create the shared collection and its payload indexes once."""
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
                self._check_existing_collection(self.collection)
                if not self.embedded:
                    self._create_payload_indexes()
            self._ready = True

    def _check_existing_collection(self, name: str) -> None:
        params = self._client.get_collection(name).config.params.vectors
        if isinstance(params, dict):  # named vectors: not a layout this adapter wrote
            raise StoreError(f"collection {name!r} at {self.location} uses named vectors; "
                             "expected a single unnamed cosine vector")
        if params is None or params.size != self.dimension or params.distance != models.Distance.COSINE:
            raise StoreError(
                f"collection {name!r} at {self.location} holds "
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

    # --- local mode: one collection per tenant --------------------------------------
    def _open_local_layout(self) -> None:
        """Check every collection of this index on disk; split a shared-layout collection per tenant."""
        prefix = self.collection + TENANT_SEPARATOR
        with self._call("open"):
            names = {c.name for c in self._client.get_collections().collections}
            for name in sorted(names):
                if name == self.collection or name.startswith(prefix):
                    self._check_existing_collection(name)
            if self.collection in names:
                self._split_shared_collection()

    def _split_shared_collection(self) -> None:
        """Move the points of a store written with one shared collection into per-tenant ones.

        Copies first and drops the shared collection last: interrupted, it starts again
        at the next open, and the copies it already made are overwritten by the same points.
        """
        total = self._client.count(self.collection, exact=True).count
        records = self._client.scroll(self.collection, limit=max(total, 1), with_payload=True,
                                      with_vectors=True)[0] if total else []
        by_tenant: dict[str, list[models.PointStruct]] = {}
        for record in records:
            tenant = (record.payload or {}).get("tenant")
            if not isinstance(tenant, str) or not tenant:
                raise StoreError(f"collection {self.collection!r} at {self.location} holds point {record.id} "
                                 "without a tenant; left as it is, not split per tenant")
            by_tenant.setdefault(tenant, []).append(
                models.PointStruct(id=record.id, vector=record.vector, payload=record.payload))  # type: ignore[arg-type]
        for tenant, points in by_tenant.items():
            self._upsert_local(tenant, points)
        self._client.delete_collection(self.collection)
        logger.info("split qdrant collection %r at %s into %d per-tenant collections (%d points)",
                    self.collection, self.location, len(by_tenant), len(records))

    def _local_collection(self, tenant: str, *, create: bool) -> str | None:
        """The tenant's collection; None when it has none and `create` is false. Call under the lock."""
        name = tenant_collection(self.collection, tenant)
        if self._client.collection_exists(name):
            return name
        if not create:
            return None
        self._client.create_collection(
            name, vectors_config=models.VectorParams(size=self.dimension, distance=models.Distance.COSINE),
            metadata={"tenant": tenant},  # which tenant a hashed name belongs to, for whoever looks
        )
        self._document_points[name] = _DocumentPoints()
        return name

    def _documents_in(self, collection: str) -> _DocumentPoints:
        """The document -> points map of a local collection, read from it the first time. Call under the lock."""
        documents = self._document_points.get(collection)
        if documents is None:
            documents = _DocumentPoints()
            total = self._client.count(collection, exact=True).count
            if total:
                records, _ = self._client.scroll(collection, limit=total, with_payload=["document_id", "chunk_id"],
                                                 with_vectors=False)
                for record in records:
                    payload = record.payload or {}
                    documents.add(str(record.id), payload["document_id"], payload["chunk_id"])
            self._document_points[collection] = documents
        return documents

    @contextmanager
    def _one_commit(self, collection: str) -> Iterator[None]:
        """Local mode: the block's writes to `collection` reach disk in one transaction (see module doc)."""
        holder = _local_connection_holder(self._client, collection)
        if holder is None:
            if not self._unbatched_warned:
                self._unbatched_warned = True
                logger.warning("qdrant-client's local storage is not laid out as expected; "
                               "writes commit once per point (slow but correct)")
            yield
            return
        if not isinstance(holder.storage, OneCommitPerCall):
            holder.storage = OneCommitPerCall(holder.storage)
        connection: OneCommitPerCall = holder.storage
        try:
            with connection.transaction():
                yield
        except BaseException:
            if connection.rolled_back_writes:
                self._reload_local()
            raise

    def _reload_local(self) -> None:
        """Load the store from disk again, so memory matches what a failed transaction left stored."""
        logger.warning("a write to qdrant local storage at %s failed and was rolled back; reloading it",
                       self.location)
        self._document_points.clear()
        try:
            self._client.close()
        except Exception as exc:  # noqa: BLE001 - reopening is what matters
            logger.debug("closing qdrant client at %s: %s", self.location, exc)
        if self._reopen is not None:  # else the index stays closed: every call fails with StoreError
            self._client = self._reopen()

    def _upsert_local(self, tenant: str, points: list[models.PointStruct]) -> None:
        with self._call("upsert"):
            name = self._local_collection(tenant, create=True)
            assert name is not None
            try:
                with self._one_commit(name):
                    self._client.upsert(name, points=points, wait=True)
            except BaseException:
                self._document_points.pop(name, None)  # what the store holds now is unknown: re-read it
                raise
            documents = self._document_points.get(name)  # not read yet: it will be, with these points
            if documents is not None:
                for point in points:
                    documents.add(str(point.id), point.payload["document_id"], point.payload["chunk_id"])  # type: ignore[index]

    # --- VectorIndex ----------------------------------------------------------------
    def upsert(self, tenant: str, items: Sequence[VectorItem]) -> None:
        """Insert or replace chunks by (tenant, chunk_id).

        On a server, `UPSERT_BATCH` points per request; in local mode one call, one commit.
        """
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
        if self.embedded:
            self._upsert_local(tenant, points)
            return
        self._ensure_collection()
        for start in range(0, len(points), UPSERT_BATCH):
            with self._call("upsert"):
                self._client.upsert(self.collection, points=points[start:start + UPSERT_BATCH], wait=True)

    def delete_document(self, tenant: str, document_id: str) -> int:
        """Remove every point of the document; returns how many there were."""
        _check_tenant(tenant)
        if self.embedded:
            return self._delete_document_local(tenant, document_id)
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

    def _delete_document_local(self, tenant: str, document_id: str) -> int:
        """By point ids from `_DocumentPoints`: a filter would be evaluated on every point, twice."""
        with self._call("delete document"):
            name = self._local_collection(tenant, create=False)
            if name is None:
                return 0
            documents = self._documents_in(name)
            points = documents.points_of(document_id)
            if not points:
                return 0
            try:
                with self._one_commit(name):
                    self._client.delete(name, points_selector=models.PointIdsList(points=points), wait=True)  # type: ignore[arg-type]
            except BaseException:
                self._document_points.pop(name, None)
                raise
            documents.remove_document(document_id)
            return len(points)

    def search(self, tenant: str, vector: Sequence[float], k: int,
               document_ids: Sequence[str] | None = None) -> list[ScoredChunk]:
        """Cosine similarity (1.0 = same direction), best first, within the tenant."""
        _check_tenant(tenant)
        query = self._vector(vector)
        if k < 1 or (document_ids is not None and not document_ids):
            return []
        if self.embedded:
            with self._call("query points"):
                name = self._local_collection(tenant, create=False)
                if name is None:
                    return []
                # The collection is the tenant's own: only a document restriction needs a filter.
                query_filter = None if document_ids is None else models.Filter(must=[_document_condition(document_ids)])
                response = self._client.query_points(name, query=query, query_filter=query_filter, limit=k,
                                                     with_payload=False, with_vectors=False)
                documents = self._documents_in(name)
                found = [documents.chunk_of(str(point.id)) for point in response.points]
                if any(pair is None for pair in found):  # the map lost track: rebuild it from payloads
                    self._document_points.pop(name, None)
                    documents = self._documents_in(name)
                    found = [documents.chunk_of(str(point.id)) for point in response.points]
            return [ScoredChunk(chunk_id=pair[0], document_id=pair[1], score=float(point.score))
                    for point, pair in zip(response.points, found, strict=True) if pair is not None]
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
        if self.embedded:
            with self._call("count"):
                name = self._local_collection(tenant, create=False)
                return 0 if name is None else self._client.count(name, exact=True).count
        self._ensure_collection()
        with self._call("count"):
            return self._client.count(self.collection, count_filter=_tenant_filter(tenant), exact=True).count

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            if self.embedded:
                with self._call("ping"):
                    self._client.get_collections()
            else:
                self._ensure_collection()
                with self._call("ping"):
                    self._client.get_collection(self.collection)
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            return probed("vectors", self.backend, self.embedded, started, str(exc))
        return probed("vectors", self.backend, self.embedded, started)

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
