"""The knowledge service: ingestion with provenance, hybrid search, and the graph.

Ingestion writes the stores first and the document's database row last, so the row's
`content_sha256` always names fully indexed content: an identical re-send is a no-op, a
changed document replaces its chunks everywhere, and a batch that failed half-way is
simply sent again. Every store call carries the tenant; stores filter inside.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from stratmaster.knowledge.analysis import analyze
from stratmaster.knowledge.chunking import TokenCounter, chunk_text
from stratmaster.knowledge.communities import build_communities
from stratmaster.knowledge.config import KnowledgeConfig
from stratmaster.knowledge.embedding import cache_namespace
from stratmaster.knowledge.entities import extract_entities, mentions_of
from stratmaster.knowledge.fusion import FusedHit, RetrieverHit, convex_combination, reciprocal_rank_fusion
from stratmaster.knowledge.repository import DocumentRecord, DocumentRepository, StoredChunk
from stratmaster.knowledge.schemas import (
    DocumentIn,
    DocumentProblem,
    IngestOutcome,
    IngestResponse,
    Provenance,
    RetrieverScore,
    SearchHit,
    SearchRequest,
    SearchResponse,
    parse_document,
)
from stratmaster.knowledge.text import PARSER_VERSION, html_to_text, markdown_to_text, normalise_text
from stratmaster.security.pii import detect as detect_pii
from stratmaster.security.pii import redact as redact_pii
from stratmaster.settings import ConfigurationError
from stratmaster.stores.protocols import (
    Community,
    Entity,
    GraphStore,
    KeywordDocument,
    KeywordIndex,
    Mention,
    Neighbor,
    ObjectStore,
    ScoredChunk,
    StoreError,
    VectorIndex,
    VectorItem,
)

log = logging.getLogger("stratmaster.knowledge")
# The unredacted document beside a redacted one (pii.keep_original: encrypted), sealed like every object.
UNREDACTED_ORIGINAL = "pii-original.json"

Embed = Callable[[Sequence[str]], np.ndarray]

# all-MiniLM-L6-v2 reads 256 positions, two of them [CLS] and [SEP].
MODEL_WINDOW_TOKENS = 254
# A very long title must not shrink chunks to nothing; past this it is truncated instead.
MIN_CHUNK_TOKENS = 128
# Ingestion embeds documents in groups of about this many chunks, the next group while the
# current one is written, so the embedder (another process, or ONNX without the GIL) and
# the stores work at the same time.
EMBED_GROUP_CHUNKS = 32
# Groups in flight to the embedder: two keep both cores of a small machine embedding
# (single-threaded model runs) while this process writes.
EMBED_AHEAD_GROUPS = 2


class NotFound(LookupError):
    """No such document or entity for this tenant (404: ids are not confirmed across tenants)."""


@dataclass(frozen=True)
class KnowledgeStores:
    objects: ObjectStore
    keyword: KeywordIndex
    vectors: VectorIndex
    graph: GraphStore

    def all(self) -> tuple[Any, ...]:
        return (self.objects, self.keyword, self.vectors, self.graph)


@dataclass
class _Prepared:
    index: int
    document: DocumentIn
    text: str
    sha256: str
    chunks: list[StoredChunk]
    unredacted: DocumentIn | None = None  # the document as sent, when the PII policy redacted it


def document_fingerprint(document: DocumentIn) -> str:
    """sha256 over everything the client sent: identical re-sends are recognised as no-ops."""
    canonical = {"title": document.title, "content_type": document.content_type, "body": document.body,
                 "source": document.source, "metadata": document.metadata, "parser": PARSER_VERSION}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def object_key(document_id: str) -> str:
    # The client's id never becomes a path: a hash of it does.
    return f"documents/{hashlib.sha256(document_id.encode()).hexdigest()[:32]}"


def indexed_text(title: str, chunk: str) -> str:
    """What retrievers see: the title heads every chunk, so a chunk is found by its document's subject."""
    return f"{title}\n\n{chunk}"


class KnowledgeService:
    """`embed` embeds documents' chunks (it may be cached, or another replica's model);
    `embed_query` embeds queries with the same model variant, in this process (default: `embed`)."""

    def __init__(self, repository: DocumentRepository, stores: KnowledgeStores, counter: TokenCounter,
                 embed: Embed, config: KnowledgeConfig, embed_query: Embed | None = None) -> None:
        self.repository, self.stores, self.counter, self.embed, self.config = (
            repository, stores, counter, embed, config)
        self.embed_query = embed_query or embed
        if config.pii.keep_original == "encrypted" and getattr(stores.objects, "keyring", None) is None:
            raise ConfigurationError("configs/knowledge.yaml pii.keep_original: encrypted needs "
                                     "STRATMASTER_ENCRYPTION_KEYS: unredacted originals are never kept in plaintext")
        self._communities_fresh: set[str] = set()
        self._write_lock = threading.Lock()

    # --- ingestion ----------------------------------------------------------------------
    def ingest(self, tenant: str, raw_documents: Sequence[Any]) -> IngestResponse:
        token = cache_namespace.set(tenant)  # embeddings cached per tenant (see embedding.cache_namespace)
        try:
            return self._ingest(tenant, raw_documents)
        finally:
            cache_namespace.reset(token)

    def _ingest(self, tenant: str, raw_documents: Sequence[Any]) -> IngestResponse:
        limit = self.config.limits.max_batch_documents
        if len(raw_documents) > limit:
            raise DocumentProblem(413, "batch_too_large", f"a batch holds at most {limit} documents, "
                                                          f"got {len(raw_documents)}")
        outcomes: dict[int, IngestOutcome] = {}
        prepared: list[_Prepared] = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_documents):
            raw_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
            try:
                document = parse_document(raw, index)
                if document.id in seen:
                    raise DocumentProblem(409, "duplicate_id", f"id {document.id!r} appears twice in this batch")
                seen.add(document.id)
                prepared.append(self._prepare(index, document, tenant))
            except DocumentProblem as problem:
                outcomes[index] = IngestOutcome(index=index, id=raw_id, status="rejected", http_status=problem.status,
                                                error={"code": problem.code, "message": problem.message})
        # A first look without the lock: identical re-sends stop here. Writers may run
        # meanwhile, so each group looks again under the lock before it writes.
        changed: list[_Prepared] = []
        current = self.repository.documents(tenant, [item.document.id for item in prepared])
        for item in prepared:
            existing = current.get(item.document.id)
            if existing is not None and existing.content_sha256 == item.sha256:
                outcomes[item.index] = self._unchanged(item, existing)
            else:
                changed.append(item)
        # Embedding runs outside the lock, so concurrent batches embed while one writes.
        for group, vectors in self._embedded(changed):
            if isinstance(vectors, Exception):
                for item in group:
                    outcomes[item.index] = IngestOutcome(
                        index=item.index, id=item.document.id, status="failed", http_status=503,
                        error={"code": "embedder_unavailable",
                               "message": f"document {item.document.id!r} was not stored: embedding failed "
                                          f"({type(vectors).__name__}: {vectors}); send it again"})
            else:
                with self._write_lock:
                    outcomes.update(self._write_group(tenant, group, vectors))
        results = [outcomes[i] for i in sorted(outcomes)]
        return IngestResponse(results=results, counts=dict(Counter(r.status for r in results)))

    def _embedded(self, changed: list[_Prepared]) -> Iterator[tuple[list[_Prepared], np.ndarray | Exception]]:
        """Yield (group, its chunks' vectors or the embedding error), embedding groups ahead."""
        groups: list[list[_Prepared]] = [[]]
        for item in changed:
            if groups[-1] and sum(len(i.chunks) for i in groups[-1]) + len(item.chunks) > EMBED_GROUP_CHUNKS:
                groups.append([])
            groups[-1].append(item)
        groups = [g for g in groups if g]

        def submit(pool: ThreadPoolExecutor, group: list[_Prepared]) -> Future:
            texts = [indexed_text(i.document.title, c.text) for i in group for c in i.chunks]
            return pool.submit(contextvars.copy_context().run, self._embed_all, texts)  # keeps the correlation id

        with ThreadPoolExecutor(max_workers=EMBED_AHEAD_GROUPS, thread_name_prefix="embed-ahead") as pool:
            pending = deque(submit(pool, group) for group in groups[:EMBED_AHEAD_GROUPS])
            for number, group in enumerate(groups):
                try:
                    vectors: np.ndarray | Exception = pending.popleft().result()
                except Exception as exc:  # noqa: BLE001 - reported per document, the batch goes on
                    log.exception("embedding failed", extra={"documents": [i.document.id for i in group]})
                    vectors = exc
                if number + EMBED_AHEAD_GROUPS < len(groups):
                    pending.append(submit(pool, groups[number + EMBED_AHEAD_GROUPS]))
                yield group, vectors

    def _embed_all(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.stores.vectors.dimension), dtype=np.float32)
        return np.asarray(self.embed(texts), dtype=np.float32)

    def _apply_pii_policy(self, tenant: str, document: DocumentIn) -> DocumentIn:
        """The document to index: as sent, redacted, or refused (422 naming the kinds, never the values)."""
        mode = self.config.pii.mode_for(tenant)
        if mode == "allow":
            return document
        title_findings, body_findings = detect_pii(document.title), detect_pii(document.body)
        if not title_findings and not body_findings:
            return document
        kinds = Counter(str(f.kind) for f in (*title_findings, *body_findings))
        found = ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items()))
        if mode == "reject":
            raise DocumentProblem(422, "pii_rejected", f"document {document.id!r} contains personal data ({found}); "
                                                       f"this tenant's policy rejects such documents")
        log.info("pii redacted", extra={"tenant": tenant, "findings": dict(kinds)})
        return document.model_copy(update={"title": redact_pii(document.title, title_findings),
                                           document.content_type: redact_pii(document.body, body_findings)})

    def _prepare(self, index: int, document: DocumentIn, tenant: str) -> _Prepared:
        sent, fingerprint = document, document_fingerprint(document)  # re-sending it is still a no-op
        document = self._apply_pii_policy(tenant, document)
        body = document.body
        limit = self.config.limits.max_document_chars
        if len(body) > limit:
            raise DocumentProblem(413, "document_too_large",
                                  f"document {document.id!r} has {len(body)} characters; the limit is {limit}")
        if document.content_type == "html":
            text = html_to_text(body)
        elif document.content_type == "markdown":
            text = markdown_to_text(body)
        else:
            text = body
        text = normalise_text(text)
        if not text:
            raise DocumentProblem(422, "empty_document", f"document {document.id!r} has no text after parsing")
        pieces = chunk_text(text, self.counter, max_tokens=self._chunk_budget(document.title),
                            overlap_tokens=self.config.chunking.overlap_tokens)
        chunks = [
            StoredChunk(f"{document.id}#{p.ordinal}-{hashlib.sha256(p.text.encode()).hexdigest()[:8]}",
                        document.id, p.ordinal, p.text, p.start, p.end, p.token_count)
            for p in pieces
        ]
        return _Prepared(index, document, text, fingerprint, chunks, None if document is sent else sent)

    def _chunk_budget(self, title: str) -> int:
        """Tokens per chunk so that title + chunk still fits the model's window untruncated."""
        room = MODEL_WINDOW_TOKENS - self.counter.count(f"{title}\n\n")
        return max(MIN_CHUNK_TOKENS, min(self.config.chunking.max_tokens, room))

    def _write_group(self, tenant: str, group: list[_Prepared], vectors: np.ndarray) -> dict[int, IngestOutcome]:
        """Write a group of documents (under the write lock): objects and graph per document,
        one call per store for all the group's chunks, rows last.

        Rows are read again first: a concurrent batch may have written the same content since
        the first look (then: unchanged). A store failure fails the group's documents, each
        saying so; what a failed group left in the stores is replaced when it is sent again.
        """
        now = datetime.now(UTC)
        current = self.repository.documents(tenant, [item.document.id for item in group])
        outcomes: dict[int, IngestOutcome] = {}
        offsets = np.cumsum([0] + [len(item.chunks) for item in group])
        writing: list[tuple[_Prepared, DocumentRecord | None]] = []
        kept_vectors = []
        for number, item in enumerate(group):
            existing = current.get(item.document.id)
            if existing is not None and existing.content_sha256 == item.sha256:  # a concurrent batch wrote it
                outcomes[item.index] = self._unchanged(item, existing)
            else:
                writing.append((item, existing))
                kept_vectors.append(vectors[offsets[number]:offsets[number + 1]])
        if not writing:
            return outcomes
        vectors = np.concatenate(kept_vectors)
        try:
            for item, _ in writing:
                document, key = item.document, object_key(item.document.id)
                original = json.dumps(document.model_dump(), ensure_ascii=False).encode()
                self.stores.objects.put(tenant, f"{key}/original.json", original, "application/json",
                                        {"document-id-sha256": key.rsplit("/", 1)[1], "content-sha256": item.sha256})
                self.stores.objects.put(tenant, f"{key}/normalised.txt", item.text.encode(),
                                        "text/plain; charset=utf-8", {"parser-version": PARSER_VERSION})
                if item.unredacted is not None and self.config.pii.keep_original == "encrypted":
                    self.stores.objects.put(tenant, f"{key}/{UNREDACTED_ORIGINAL}", json.dumps(
                        item.unredacted.model_dump(), ensure_ascii=False).encode(), "application/json")
                else:  # an earlier version of the document may have left one
                    self.stores.objects.delete(tenant, f"{key}/{UNREDACTED_ORIGINAL}")
                # Also for new documents: chunks of an earlier, failed attempt may be there.
                self.stores.keyword.delete_document(tenant, document.id)
                self.stores.vectors.delete_document(tenant, document.id)
            self.stores.keyword.upsert(tenant, [
                KeywordDocument(c.chunk_id, i.document.id, analyze(indexed_text(i.document.title, c.text)))
                for i, _ in writing for c in i.chunks])
            chunks = [(i, c) for i, _ in writing for c in i.chunks]
            self.stores.vectors.upsert(tenant, [VectorItem(c.chunk_id, i.document.id, v.tolist())
                                                for (i, c), v in zip(chunks, vectors, strict=True)])
            for item, _ in writing:
                self.stores.graph.replace_document(tenant, item.document.id, self._mentions(item.chunks))
            self.repository.save_many(tenant, [
                (DocumentRecord(item.document.id, item.document.title, item.document.source,
                                item.document.content_type, item.document.metadata, item.sha256, PARSER_VERSION,
                                object_key(item.document.id), len(item.text), len(item.chunks),
                                existing.ingested_at if existing else now, now), item.chunks)
                for item, existing in writing])
        except (StoreError, OSError) as exc:
            log.exception("ingest failed", extra={"document_ids": [i.document.id for i, _ in writing]})
            return outcomes | {item.index: IngestOutcome(
                index=item.index, id=item.document.id, status="failed", http_status=503,
                error={"code": "store_unavailable",
                       "message": f"document {item.document.id!r} was not stored: {exc}; send it again"})
                for item, _ in writing}
        self._communities_fresh.discard(tenant)
        return outcomes | {item.index: IngestOutcome(index=item.index, id=item.document.id,
                                                     status="updated" if existing else "created",
                                                     http_status=200 if existing else 201, chunks=len(item.chunks),
                                                     content_sha256=item.sha256)
                           for item, existing in writing}

    @staticmethod
    def _unchanged(item: _Prepared, existing: DocumentRecord) -> IngestOutcome:
        return IngestOutcome(index=item.index, id=item.document.id, status="unchanged", http_status=200,
                             chunks=existing.chunk_count, content_sha256=item.sha256)

    @staticmethod
    def _mentions(chunks: Sequence[StoredChunk]) -> list[Mention]:
        return [mention for chunk in chunks for mention in mentions_of(chunk.chunk_id, extract_entities(chunk.text))]

    def delete(self, tenant: str, document_id: str) -> None:
        with self._write_lock:
            if self.repository.get(tenant, document_id) is None:
                raise NotFound(f"no document {document_id!r}")
            key = object_key(document_id)
            self.stores.keyword.delete_document(tenant, document_id)
            self.stores.vectors.delete_document(tenant, document_id)
            self.stores.graph.delete_document(tenant, document_id)
            for suffix in ("original.json", "normalised.txt", UNREDACTED_ORIGINAL):
                self.stores.objects.delete(tenant, f"{key}/{suffix}")
            self.repository.delete(tenant, document_id)
            self._communities_fresh.discard(tenant)

    def get_document(self, tenant: str, document_id: str) -> tuple[DocumentRecord, list[StoredChunk]]:
        record = self.repository.get(tenant, document_id)
        if record is None:
            raise NotFound(f"no document {document_id!r}")
        return record, self.repository.chunks_of(tenant, document_id)

    # --- search -------------------------------------------------------------------------
    def search(self, tenant: str, request: SearchRequest) -> SearchResponse:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        document_ids = self._resolve_filters(tenant, request)
        retrieval = self.config.retrieval
        depth = max(request.k, retrieval.candidates)
        lists: dict[str, list[ScoredChunk]] = {}
        if document_ids == []:
            return SearchResponse(query=request.query, mode=request.mode, fusion=None, hits=[], timings_ms={})
        if request.mode in ("keyword", "hybrid"):
            step = time.perf_counter()
            lists["keyword"] = self.stores.keyword.search(tenant, analyze(request.query), depth, document_ids)
            timings["keyword"] = (time.perf_counter() - step) * 1000
        if request.mode in ("dense", "hybrid"):
            step = time.perf_counter()
            query_vector = np.asarray(self.embed_query([request.query]), dtype=np.float32)[0]
            timings["embed"] = (time.perf_counter() - step) * 1000
            step = time.perf_counter()
            lists["dense"] = self.stores.vectors.search(tenant, query_vector.tolist(), depth, document_ids)
            timings["dense"] = (time.perf_counter() - step) * 1000

        fusion = self._fusion_settings(request)
        fused = self._fuse(lists, fusion) if request.mode == "hybrid" else self._single(lists)
        expand = request.expand_graph if request.expand_graph is not None else retrieval.graph_expansion.enabled
        if expand and fused:
            step = time.perf_counter()
            lists["graph"] = self._graph_candidates(tenant, fused, document_ids)
            fused = self._fuse(lists, fusion)  # lists now holds "graph" and at least one more
            timings["graph"] = (time.perf_counter() - step) * 1000
        hits = self._hydrate(tenant, fused[:request.k])
        timings["total"] = (time.perf_counter() - started) * 1000
        return SearchResponse(query=request.query, mode=request.mode,
                              fusion=fusion if request.mode == "hybrid" else None, hits=hits,
                              timings_ms={k: round(v, 3) for k, v in timings.items()})

    def _resolve_filters(self, tenant: str, request: SearchRequest) -> list[str] | None:
        filters = request.filters
        if filters is None:
            return None
        ids: list[str] | None = list(filters.document_ids) if filters.document_ids is not None else None
        if filters.metadata:
            matching = self.repository.document_ids_matching(tenant, filters.metadata)
            ids = matching if ids is None else [i for i in ids if i in set(matching)]
        return ids

    def _fusion_settings(self, request: SearchRequest) -> dict[str, Any]:
        configured = self.config.retrieval.fusion
        override = request.fusion
        return {
            "method": (override and override.method) or configured.method,
            "keyword_weight": override.keyword_weight if override and override.keyword_weight is not None
            else configured.keyword_weight,
            "rrf_k": (override and override.rrf_k) or configured.rrf_k,
        }

    def _fuse(self, lists: dict[str, list[ScoredChunk]], fusion: dict[str, Any]) -> list[FusedHit]:
        graph_weight = self.config.retrieval.graph_expansion.weight
        if fusion["method"] == "rrf":
            return reciprocal_rank_fusion(lists, k=fusion["rrf_k"], weights={"graph": graph_weight})
        weights = {"keyword": fusion["keyword_weight"], "dense": 1.0 - fusion["keyword_weight"], "graph": graph_weight}
        return convex_combination(lists, weights)

    @staticmethod
    def _single(lists: dict[str, list[ScoredChunk]]) -> list[FusedHit]:
        (name, ranked), = lists.items()
        return [FusedHit(h.chunk_id, h.document_id, h.score, {name: RetrieverHit(rank, h.score)})
                for rank, h in enumerate(ranked, start=1)]

    def _graph_candidates(self, tenant: str, fused: list[FusedHit],
                          document_ids: list[str] | None) -> list[ScoredChunk]:
        settings = self.config.retrieval.graph_expansion
        seeds = [h.chunk_id for h in fused[:settings.seed_hits]]
        per_chunk = self.stores.graph.entities_of_chunks(tenant, seeds)
        counts = Counter(e for entities in per_chunk.values() for e in entities)
        top = [entity for entity, _ in counts.most_common(settings.max_entities)]
        if not top:
            return []
        candidates = self.stores.graph.chunks_of_entities(tenant, top, settings.max_chunks)
        allowed = set(document_ids) if document_ids is not None else None
        return [c for c in candidates if allowed is None or c.document_id in allowed]

    def _hydrate(self, tenant: str, fused: list[FusedHit]) -> list[SearchHit]:
        chunks = self.repository.chunks(tenant, [h.chunk_id for h in fused])
        documents = self.repository.documents(tenant, [h.document_id for h in fused])
        hits = []
        for hit in fused:
            chunk, document = chunks.get(hit.chunk_id), documents.get(hit.document_id)
            if chunk is None or document is None:  # indexed but its row not yet committed: not citable yet
                continue
            hits.append(SearchHit(
                document_id=hit.document_id, chunk_id=hit.chunk_id, text=chunk.text, start=chunk.start,
                end=chunk.end, score=hit.score,
                retrievers={name: RetrieverScore(rank=r.rank, score=r.score) for name, r in hit.retrievers.items()},
                provenance=Provenance(title=document.title, source=document.source,
                                      content_sha256=document.content_sha256,
                                      parser_version=document.parser_version, ingested_at=document.ingested_at,
                                      metadata=document.metadata)))
        return hits

    # --- graph --------------------------------------------------------------------------
    def entities(self, tenant: str, query: str | None, limit: int) -> list[Entity]:
        return self.stores.graph.find_entities(tenant, query, limit)

    def neighbors(self, tenant: str, entity_id: str, limit: int) -> tuple[Entity, list[Neighbor]]:
        entity = self.stores.graph.get_entity(tenant, entity_id)
        if entity is None:
            raise NotFound(f"no entity {entity_id!r}")
        return entity, self.stores.graph.neighbors(tenant, entity_id, limit)

    def communities(self, tenant: str) -> list[Community]:
        """Communities of the co-occurrence graph, recomputed after the graph changed."""
        if tenant in self._communities_fresh:
            return self.stores.graph.communities(tenant)
        with self._write_lock:
            communities = self._compute_communities(tenant)
            self.stores.graph.replace_communities(tenant, communities)
            self._communities_fresh.add(tenant)
        return communities

    def _compute_communities(self, tenant: str) -> list[Community]:
        graph = self.stores.graph
        edges = graph.edges(tenant)
        members = {entity for a, b, _ in edges for entity in (a, b)}
        names = {e.entity_id: e.name for e in graph.find_entities(tenant, None, len(members) + 1)}

        def texts_for(entity_ids: Sequence[str]) -> list[str]:
            chunk_ids = [c.chunk_id for c in graph.chunks_of_entities(tenant, list(entity_ids), 20)]
            found = self.repository.chunks(tenant, chunk_ids)
            return [found[c].text for c in chunk_ids if c in found]

        return build_communities(edges, names, texts_for)

    def counts(self, tenant: str) -> dict[str, int]:
        return self.repository.counts(tenant)
