"""BM25 keyword search over pre-analysed chunks: SQLite FTS5 by default, OpenSearch when OPENSEARCH_URL is set.

Documents and queries arrive as token lists produced by `knowledge.analysis` (lowercased,
stemmed, stop words removed); neither backend analyses them again beyond splitting on
whitespace. Both backends therefore see the same terms: a token is a maximal run of
non-whitespace characters, matched exactly (case and punctuation included). Repeated query
tokens count once.

Scores are BM25 in both, higher is better, but not equal across backends: FTS5 uses
idf = ln((N - n + 0.5) / (n + 0.5)) (floored at 1e-6) and the (k1 + 1) numerator, Lucene
uses idf = ln(1 + (N - n + 0.5) / (n + 0.5)) without it and stores document lengths
lossily. `tests/conformance/test_keyword_indexes.py` pins the FTS5 formula exactly.

Both keep every tenant in one index and filter by tenant inside the query, so N, n and
the average length are collection-wide: another tenant's chunks shift a tenant's scores
(never its results). Rankings inside one tenant stay BM25-sensible; scores are not
comparable between tenants.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException, RequestError

from stratmaster.health import ComponentHealth, probed
from stratmaster.settings import Settings
from stratmaster.stores.protocols import KeywordDocument, KeywordIndex, ScoredChunk, StoreError

MAX_TENANT_LENGTH = 256


def validate_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not tenant or len(tenant) > MAX_TENANT_LENGTH or tenant != tenant.strip():
        raise ValueError(f"tenant must be a non-empty string without surrounding whitespace, got {tenant!r}")
    return tenant


def query_terms(tokens: Iterable[str]) -> list[str]:
    """The terms of a query in order, repeats kept (whitespace splits a token, as in the index).

    A repeated term counts once per occurrence, as in Lucene and rank_bm25: long questions
    repeat what they are about, and on CISI dropping repeats costs 0.07 nDCG@10
    (0.395 with them, 0.32 without).
    """
    return [term for token in tokens for term in str(token).split()]


def document_terms(tokens: Iterable[str]) -> list[str]:
    return [term for token in tokens for term in str(token).split()]


def _check_search_args(k: int, document_ids: Sequence[str] | None) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if isinstance(document_ids, str):
        raise ValueError("document_ids must be a sequence of ids, not one string")


def _check_documents(documents: Sequence[KeywordDocument]) -> None:
    for doc in documents:
        if not doc.chunk_id or not doc.document_id:
            raise ValueError(f"chunk_id and document_id must be non-empty: {doc!r}")
        if isinstance(doc.tokens, str):
            raise ValueError(f"tokens must be a sequence of tokens, not one string (chunk {doc.chunk_id!r})")



# --- embedded: SQLite FTS5 ----------------------------------------------------------------------
def _fts_term(term: str) -> str:
    """A term as FTS5 stores it: the hex of its UTF-8 bytes.

    FTS5's tokenizers split on punctuation and fold case; the analysis already decided
    what a term is, so each term is stored as one opaque [0-9a-f]+ word that no tokenizer
    can split, fold or stem, and that cannot spell FTS5 query syntax.
    """
    return term.encode("utf-8").hex()


def _fts_phrase(word: str) -> str:
    """An FTS5 string literal: double quotes, embedded quotes doubled."""
    return '"' + word.replace('"', '""') + '"'


def _tenant_marker(tenant: str) -> str:
    return "t" + _fts_term(tenant)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    document_id TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    UNIQUE (tenant, chunk_id)
);
CREATE INDEX IF NOT EXISTS chunk_by_document ON chunk (tenant, document_id);
-- rowid = chunk.id. `tenant` holds one marker word per row; `body` the hex-encoded terms.
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5(
    tenant, document_id UNINDEXED, chunk_id UNINDEXED, body,
    tokenize = 'unicode61 remove_diacritics 0'
);
"""

# bm25() weights, one per column in declaration order: the tenant marker never scores.
_BM25 = "bm25(chunk_fts, 0.0, 0.0, 0.0, 1.0)"


class SqliteFtsKeywordIndex:
    """BM25 (k1 = 1.2, b = 0.75) with SQLite FTS5 in one file; the embedded default.

    Tenant filtering happens in the MATCH expression: every row's `tenant` column holds the
    tenant's marker word and the query is `tenant : "<marker>" AND (body : ("t1" OR ...))`,
    so FTS5 intersects posting lists and never produces another tenant's rows. An optional
    document restriction is a SQL condition in the same statement. A plain table maps
    (tenant, chunk_id) to the FTS rowid, so upserts and deletes never scan the FTS table.

    Scores are FTS5's bm25() negated (FTS5 returns lower-is-better negatives). The length
    of a row includes its tenant marker: |D| = terms + 1, avgdl likewise (the parity test
    spells this out).

    One writer: the file may be read by other processes, but SQLite allows a single writer
    at a time and this class serialises its own threads' writes with a lock; give the index
    one owner (the knowledge service's single-replica index deployment), not a writer per
    replica. WAL lets readers (one connection per thread) run during a write.
    """

    backend = "embedded-fulltext"
    embedded = True

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        try:
            with self._write_lock:
                writer = self._writer()
                writer.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"keyword index {self.path}: cannot open: {exc}") from exc

    # connections
    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"keyword index {self.path} is closed")
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _writer(self) -> sqlite3.Connection:
        """The one write connection; call with the write lock held."""
        writer = getattr(self, "_writer_conn", None)
        if writer is None:
            writer = self._writer_conn = self._connect()
        return writer

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _error(self, operation: str, exc: Exception) -> StoreError:
        return StoreError(f"keyword index {self.path}: {operation} failed: {exc}")

    # KeywordIndex
    def upsert(self, tenant: str, documents: Sequence[KeywordDocument]) -> None:
        validate_tenant(tenant)
        _check_documents(documents)
        if not documents:
            return
        marker = _tenant_marker(tenant)
        try:
            with self._write_lock:
                conn = self._writer()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for doc in documents:
                        self._delete_chunk(conn, tenant, doc.chunk_id)
                        row_id = conn.execute(
                            "INSERT INTO chunk (tenant, document_id, chunk_id) VALUES (?, ?, ?)",
                            (tenant, doc.document_id, doc.chunk_id),
                        ).lastrowid
                        body = " ".join(_fts_term(term) for term in document_terms(doc.tokens))
                        conn.execute(
                            "INSERT INTO chunk_fts (rowid, tenant, document_id, chunk_id, body) VALUES (?, ?, ?, ?, ?)",
                            (row_id, marker, doc.document_id, doc.chunk_id, body),
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._error(f"upsert of {len(documents)} chunks for tenant {tenant!r}", exc) from exc

    @staticmethod
    def _delete_chunk(conn: sqlite3.Connection, tenant: str, chunk_id: str) -> None:
        row = conn.execute("SELECT id FROM chunk WHERE tenant = ? AND chunk_id = ?", (tenant, chunk_id)).fetchone()
        if row is not None:
            conn.execute("DELETE FROM chunk_fts WHERE rowid = ?", row)
            conn.execute("DELETE FROM chunk WHERE id = ?", row)

    def delete_document(self, tenant: str, document_id: str) -> int:
        validate_tenant(tenant)
        try:
            with self._write_lock:
                conn = self._writer()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    ids = [row[0] for row in conn.execute(
                        "SELECT id FROM chunk WHERE tenant = ? AND document_id = ?", (tenant, document_id))]
                    for row_id in ids:
                        conn.execute("DELETE FROM chunk_fts WHERE rowid = ?", (row_id,))
                        conn.execute("DELETE FROM chunk WHERE id = ?", (row_id,))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._error(f"deleting document {document_id!r} of tenant {tenant!r}", exc) from exc
        return len(ids)

    def match_expression(self, tenant: str, query_tokens: Sequence[str]) -> str | None:
        """The FTS5 MATCH string for a query, or None when it has no terms."""
        terms = query_terms(query_tokens)
        if not terms:
            return None
        body = " OR ".join(_fts_phrase(_fts_term(term)) for term in terms)
        return f"tenant : {_fts_phrase(_tenant_marker(validate_tenant(tenant)))} AND (body : ({body}))"

    def search(self, tenant: str, query_tokens: Sequence[str], k: int,
               document_ids: Sequence[str] | None = None) -> list[ScoredChunk]:
        validate_tenant(tenant)
        _check_search_args(k, document_ids)
        expression = self.match_expression(tenant, query_tokens)
        if expression is None or (document_ids is not None and not document_ids):
            return []
        sql = f"SELECT chunk_id, document_id, {_BM25} AS score FROM chunk_fts WHERE chunk_fts MATCH ?"
        params: list[Any] = [expression]
        if document_ids is not None:
            sql += " AND document_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(list(document_ids)))
        sql += " ORDER BY score, chunk_id LIMIT ?"
        params.append(k)
        try:
            rows = self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(f"search for tenant {tenant!r}", exc) from exc
        return [ScoredChunk(chunk_id=chunk_id, document_id=document_id, score=-score)
                for chunk_id, document_id, score in rows]

    def count(self, tenant: str) -> int:
        validate_tenant(tenant)
        try:
            return self._reader().execute("SELECT count(*) FROM chunk WHERE tenant = ?", (tenant,)).fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(f"count for tenant {tenant!r}", exc) from exc

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            self._reader().execute("SELECT count(*) FROM chunk_fts WHERE rowid = 0").fetchone()
        except (sqlite3.Error, StoreError) as exc:
            return probed("keyword", self.backend, self.embedded, started, f"{self.path}: {exc}")
        return probed("keyword", self.backend, self.embedded, started)

    def close(self) -> None:
        with self._write_lock, self._connections_lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            self._writer_conn = None
        self._local = threading.local()


# --- server: OpenSearch ---------------------------------------------------------------------------
# `whitespace` is a built-in analyzer (split on whitespace, nothing else); BM25 (k1 = 1.2,
# b = 0.75) is the default similarity, named here so a changed cluster default shows up.
INDEX_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "tenant": {"type": "keyword"},
        "document_id": {"type": "keyword"},
        "chunk_id": {"type": "keyword"},
        "tokens": {"type": "text", "analyzer": "whitespace", "similarity": "BM25"},
    },
}


class OpenSearchKeywordIndex:
    """BM25 over a shared OpenSearch index; tenants are a `term` filter inside every query.

    Document ids are a hash of (tenant, chunk_id), so an upsert replaces a chunk and two
    tenants' chunk ids never collide. Writes use `refresh` (default "wait_for": the call
    returns once the change is searchable, so a search right after an upsert sees it);
    delete-by-query refreshes on completion. One shard by default, so BM25 statistics are
    those of the whole index rather than of whichever shard a chunk landed on.
    """

    backend = "opensearch"
    embedded = False

    def __init__(self, url: str, index: str = "stratmaster-chunks", *, client: Any | None = None,
                 refresh: bool | str = "wait_for", number_of_shards: int = 1, number_of_replicas: int = 0,
                 timeout_s: float = 10.0, bulk_batch_size: int = 500) -> None:
        self.url = url.rstrip("/")
        self.index = index
        self.refresh = refresh
        self.bulk_batch_size = bulk_batch_size
        self._index_body = {
            "settings": {"index": {"number_of_shards": number_of_shards,
                                   "number_of_replicas": number_of_replicas}},
            "mappings": INDEX_MAPPINGS,
        }
        self._client = client if client is not None else OpenSearch(
            hosts=[self.url], timeout=timeout_s, max_retries=1, retry_on_timeout=False)
        self._index_ready = False
        self._index_lock = threading.Lock()

    @property
    def location(self) -> str:
        # No credentials in messages: drop any user:password@ part of the URL.
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}/{self.index}"

    def _error(self, operation: str, exc: Exception) -> StoreError:
        return StoreError(f"keyword index {self.location}: {operation} failed: {type(exc).__name__}: {exc}")

    def _ensure_index(self) -> None:
        if self._index_ready:
            return
        with self._index_lock:
            if self._index_ready:
                return
            try:
                if not self._client.indices.exists(index=self.index):
                    try:
                        self._client.indices.create(index=self.index, body=self._index_body)
                    except RequestError as exc:
                        if exc.error != "resource_already_exists_exception":
                            raise
            except OpenSearchException as exc:
                raise self._error("creating the index", exc) from exc
            self._index_ready = True

    @staticmethod
    def document_id(tenant: str, chunk_id: str) -> str:
        return hashlib.sha256(json.dumps([tenant, chunk_id]).encode()).hexdigest()

    def upsert(self, tenant: str, documents: Sequence[KeywordDocument]) -> None:
        validate_tenant(tenant)
        _check_documents(documents)
        if not documents:
            return
        self._ensure_index()
        for start in range(0, len(documents), self.bulk_batch_size):
            actions: list[dict[str, Any]] = []
            for doc in documents[start:start + self.bulk_batch_size]:
                actions.append({"index": {"_index": self.index, "_id": self.document_id(tenant, doc.chunk_id)}})
                actions.append({"tenant": tenant, "document_id": doc.document_id, "chunk_id": doc.chunk_id,
                                "tokens": " ".join(document_terms(doc.tokens))})
            try:
                response = self._client.bulk(body=actions, refresh=self.refresh)
            except OpenSearchException as exc:
                raise self._error(f"bulk upsert for tenant {tenant!r}", exc) from exc
            if response.get("errors"):
                failures = [item for entry in response.get("items", []) for item in entry.values()
                            if item.get("error")]
                first = failures[0]["error"] if failures else "unknown error"
                raise StoreError(f"keyword index {self.location}: {len(failures)} of {len(actions) // 2} "
                                 f"chunks failed to index for tenant {tenant!r}; first: {first}")

    def delete_document(self, tenant: str, document_id: str) -> int:
        validate_tenant(tenant)
        self._ensure_index()
        body = {"query": {"bool": {"filter": [{"term": {"tenant": tenant}},
                                              {"term": {"document_id": document_id}}]}}}
        try:
            response = self._client.delete_by_query(index=self.index, body=body, refresh=bool(self.refresh),
                                                    conflicts="proceed")
        except OpenSearchException as exc:
            raise self._error(f"deleting document {document_id!r} of tenant {tenant!r}", exc) from exc
        if response.get("failures"):
            raise StoreError(f"keyword index {self.location}: deleting document {document_id!r} of tenant "
                             f"{tenant!r} partly failed: {response['failures'][0]}")
        return int(response.get("deleted", 0))

    def search_body(self, tenant: str, query_tokens: Sequence[str], k: int,
                    document_ids: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The search request for a query, or None when it has no terms."""
        terms = query_terms(query_tokens)
        if not terms:
            return None
        filters: list[dict[str, Any]] = [{"term": {"tenant": validate_tenant(tenant)}}]
        if document_ids is not None:
            filters.append({"terms": {"document_id": list(document_ids)}})
        return {
            "size": k,
            "_source": ["chunk_id", "document_id"],
            "track_total_hits": False,
            "track_scores": True,
            "query": {"bool": {
                "filter": filters,
                # A `match` query never parses query syntax; the whitespace analyzer splits
                # the joined terms back into exactly these terms, OR-ed together.
                "should": [{"match": {"tokens": {"query": " ".join(terms), "operator": "or"}}}],
                # With a filter present a bool query needs no should clause by default:
                # require one, or every chunk of the tenant matches with score 0.
                "minimum_should_match": 1,
            }},
            "sort": [{"_score": {"order": "desc"}}, {"chunk_id": {"order": "asc"}}],
        }

    def search(self, tenant: str, query_tokens: Sequence[str], k: int,
               document_ids: Sequence[str] | None = None) -> list[ScoredChunk]:
        validate_tenant(tenant)
        _check_search_args(k, document_ids)
        body = self.search_body(tenant, query_tokens, k, document_ids)
        if body is None or (document_ids is not None and not document_ids):
            return []
        self._ensure_index()
        try:
            response = self._client.search(index=self.index, body=body)
        except OpenSearchException as exc:
            raise self._error(f"search for tenant {tenant!r}", exc) from exc
        return [ScoredChunk(chunk_id=hit["_source"]["chunk_id"], document_id=hit["_source"]["document_id"],
                            score=float(hit["_score"]))
                for hit in response["hits"]["hits"]]

    def count(self, tenant: str) -> int:
        validate_tenant(tenant)
        self._ensure_index()
        try:
            response = self._client.count(index=self.index,
                                          body={"query": {"bool": {"filter": [{"term": {"tenant": tenant}}]}}})
        except OpenSearchException as exc:
            raise self._error(f"count for tenant {tenant!r}", exc) from exc
        return int(response["count"])

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            health = self._client.cluster.health()
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            return probed("keyword", self.backend, self.embedded, started,
                          f"{self.location}: {type(exc).__name__}: {exc}")
        if health.get("status") == "red":
            return probed("keyword", self.backend, self.embedded, started, f"{self.location}: cluster status red")
        return probed("keyword", self.backend, self.embedded, started)

    def close(self) -> None:
        self._client.close()

    def drop_index(self) -> None:
        """Delete the whole index (tests and teardown of throw-away indexes)."""
        try:
            self._client.indices.delete(index=self.index, ignore_unavailable=True)
        except OpenSearchException as exc:
            raise self._error("deleting the index", exc) from exc
        self._index_ready = False


def create_keyword_index(settings: Settings) -> KeywordIndex:
    """OpenSearch when OPENSEARCH_URL is set, else an FTS5 file under the data dir."""
    if settings.opensearch_url:
        return OpenSearchKeywordIndex(settings.opensearch_url)
    return SqliteFtsKeywordIndex(settings.data_dir / "keyword" / "chunks.sqlite3")


__all__ = ["OpenSearchKeywordIndex", "SqliteFtsKeywordIndex", "create_keyword_index", "query_terms"]
