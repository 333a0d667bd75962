"""BM25 keyword search over pre-analysed chunks: SQLite + in-memory BM25 by default, OpenSearch
when OPENSEARCH_URL is set.

Documents and queries arrive as token lists produced by `knowledge.analysis` (lowercased,
stemmed, stop words removed); neither backend analyses them again beyond splitting on
whitespace. Both backends therefore see the same terms: a token is a maximal run of
non-whitespace characters, matched exactly (case and punctuation included). Repeated query
terms count again (see `query_terms`).

Scores are BM25 in both, higher is better, but not equal across backends: the embedded
index uses idf = ln((N - n + 0.5) / (n + 0.5)) (floored at 1e-6) and the (k1 + 1)
numerator over the tenant's own chunks (`stratmaster.stores.bm25`, pinned by
`tests/conformance/test_keyword_indexes.py`); OpenSearch keeps every tenant in one index
and filters inside the query, so its N, n and average length are collection-wide (another
tenant's chunks shift a tenant's scores, never its results), and Lucene uses
idf = ln(1 + (N - n + 0.5) / (n + 0.5)) without the numerator and stores lengths lossily.
Scores are not comparable between tenants.
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
from stratmaster.stores.bm25 import Bm25Scorer
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



# --- embedded: SQLite + in-memory BM25 -----------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    document_id TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    terms TEXT NOT NULL DEFAULT '',  -- the chunk's terms, space-separated (terms hold no whitespace)
    UNIQUE (tenant, chunk_id)
);
CREATE INDEX IF NOT EXISTS chunk_by_document ON chunk (tenant, document_id);
-- Bumped by every write of a tenant's chunks: a scorer built at another generation is stale.
CREATE TABLE IF NOT EXISTS tenant_generation (
    tenant TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
"""


def _migrate_from_fts5(conn: sqlite3.Connection) -> None:
    """Files written before scoring moved to memory held the terms, hex-encoded, in an FTS5 table."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(chunk)")}
    if "terms" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE chunk ADD COLUMN terms TEXT NOT NULL DEFAULT ''")
        legacy = conn.execute("SELECT name FROM sqlite_master WHERE name = 'chunk_fts'").fetchone()
        if legacy is not None:
            rows = conn.execute("SELECT rowid, body FROM chunk_fts").fetchall()
            conn.executemany("UPDATE chunk SET terms = ? WHERE id = ?",
                             [(" ".join(bytes.fromhex(t).decode() for t in body.split()), rowid)
                              for rowid, body in rows])
            conn.execute("DROP TABLE chunk_fts")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteKeywordIndex:
    """BM25 (k1 = 1.2, b = 0.75) over chunks kept in one SQLite file; the embedded default.

    The file holds each chunk's terms; searching uses a `Bm25Scorer` per tenant, built from
    the tenant's rows on its first search and updated by this object's own writes. Every
    write also bumps the tenant's generation in the file, so a scorer that another process's
    write made stale is noticed (one indexed read per search) and rebuilt. Tenant filtering
    is structural: a tenant's scorer only ever holds that tenant's rows, read with
    `WHERE tenant = ?`, and its statistics (N, n, avgdl) are the tenant's own.

    One writer: SQLite allows a single writer at a time and this class serialises its own
    threads' writes; give the index one owner (the knowledge service's single-replica index
    deployment). Memory: ~0.6 KB per chunk of ~100 distinct terms, plus the postings.
    """

    backend = "embedded-fulltext"
    embedded = True

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._write_lock = threading.Lock()
        self._scorer_lock = threading.Lock()  # after _write_lock when both are taken
        self._scorers: dict[str, tuple[int, Bm25Scorer]] = {}
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        try:
            with self._write_lock:
                writer = self._writer()
                writer.executescript(_SCHEMA)
                _migrate_from_fts5(writer)
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

    @staticmethod
    def _bump(conn: sqlite3.Connection, tenant: str) -> int:
        return conn.execute(
            "INSERT INTO tenant_generation (tenant, generation) VALUES (?, 1) "
            "ON CONFLICT (tenant) DO UPDATE SET generation = generation + 1 RETURNING generation",
            (tenant,)).fetchone()[0]

    def _write(self, tenant: str, change, apply) -> Any:  # noqa: ANN001 - two callables, see callers
        """Run `change(conn)` in one transaction, then `apply(scorer)` to a current scorer.

        A change returning 0 (nothing deleted) is rolled back: no generation bump, no commit.
        """
        with self._write_lock, self._scorer_lock:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = change(conn)
                if result == 0:
                    conn.execute("ROLLBACK")
                    return result
                generation = self._bump(conn, tenant)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            cached = self._scorers.get(tenant)
            if cached is not None:
                if cached[0] == generation - 1:  # nobody else wrote in between: follow along
                    apply(cached[1])
                    self._scorers[tenant] = (generation, cached[1])
                else:
                    del self._scorers[tenant]
            return result

    # KeywordIndex
    def upsert(self, tenant: str, documents: Sequence[KeywordDocument]) -> None:
        validate_tenant(tenant)
        _check_documents(documents)
        if not documents:
            return
        rows = [(doc.chunk_id, doc.document_id, document_terms(doc.tokens)) for doc in documents]

        def change(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO chunk (tenant, document_id, chunk_id, terms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, chunk_id) DO UPDATE SET document_id = excluded.document_id, "
                "terms = excluded.terms",
                [(tenant, document_id, chunk_id, " ".join(terms)) for chunk_id, document_id, terms in rows])

        def apply(scorer: Bm25Scorer) -> None:
            for chunk_id, document_id, terms in rows:
                scorer.add(chunk_id, document_id, terms)

        try:
            self._write(tenant, change, apply)
        except sqlite3.Error as exc:
            raise self._error(f"upsert of {len(documents)} chunks for tenant {tenant!r}", exc) from exc

    def delete_document(self, tenant: str, document_id: str) -> int:
        validate_tenant(tenant)

        def change(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM chunk WHERE tenant = ? AND document_id = ?",
                                (tenant, document_id)).rowcount

        try:
            return self._write(tenant, change, lambda scorer: scorer.remove_document(document_id))
        except sqlite3.Error as exc:
            raise self._error(f"deleting document {document_id!r} of tenant {tenant!r}", exc) from exc

    def _scorer(self, tenant: str) -> Bm25Scorer:
        """The tenant's current scorer; call with the scorer lock held."""
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for the generation and the rows
        try:
            row = conn.execute("SELECT generation FROM tenant_generation WHERE tenant = ?", (tenant,)).fetchone()
            generation = row[0] if row else 0
            cached = self._scorers.get(tenant)
            if cached is not None and cached[0] == generation:
                return cached[1]
            scorer = Bm25Scorer()
            for chunk_id, document_id, terms in conn.execute(
                    "SELECT chunk_id, document_id, terms FROM chunk WHERE tenant = ? ORDER BY id", (tenant,)):
                scorer.add(chunk_id, document_id, terms.split())
        finally:
            conn.execute("COMMIT")
        self._scorers[tenant] = (generation, scorer)
        return scorer

    def search(self, tenant: str, query_tokens: Sequence[str], k: int,
               document_ids: Sequence[str] | None = None) -> list[ScoredChunk]:
        validate_tenant(tenant)
        _check_search_args(k, document_ids)
        terms = query_terms(query_tokens)
        if not terms or (document_ids is not None and not document_ids):
            return []
        try:
            with self._scorer_lock:
                hits = self._scorer(tenant).search(terms, k, document_ids)
        except sqlite3.Error as exc:
            raise self._error(f"search for tenant {tenant!r}", exc) from exc
        return [ScoredChunk(chunk_id=h.chunk_id, document_id=h.document_id, score=h.score) for h in hits]

    def count(self, tenant: str) -> int:
        validate_tenant(tenant)
        try:
            return self._reader().execute("SELECT count(*) FROM chunk WHERE tenant = ?", (tenant,)).fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(f"count for tenant {tenant!r}", exc) from exc

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            self._reader().execute("SELECT count(*) FROM chunk WHERE id = 0").fetchone()
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
            self._scorers.clear()
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
    """OpenSearch when OPENSEARCH_URL is set, else a SQLite file under the data dir."""
    if settings.opensearch_url:
        return OpenSearchKeywordIndex(settings.opensearch_url)
    return SqliteKeywordIndex(settings.data_dir / "keyword" / "chunks.sqlite3")


__all__ = ["OpenSearchKeywordIndex", "SqliteKeywordIndex", "create_keyword_index", "query_terms"]
