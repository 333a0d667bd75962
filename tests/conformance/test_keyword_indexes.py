"""One behaviour for every KeywordIndex (haystack-style conformance tests), plus BM25 parity.

`KeywordIndexConformance` holds the tests; each implementation's subclass overrides the
`index` fixture. SQLite FTS5 always runs. OpenSearch runs when TEST_OPENSEARCH_URL points
at a server (scripts/servers.sh does not start one, so it is skipped even under
STRATMASTER_REQUIRE_SERVERS=1); its request bodies are checked here without a server
through opensearch-py's real client over a fake connection.

`test_fts5_scores_match_the_okapi_bm25_reference` states exactly what FTS5's bm25()
computes, in twenty lines of Python.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.connection import Connection

from stratmaster.settings import Settings
from stratmaster.stores.keyword import OpenSearchKeywordIndex, SqliteKeywordIndex, create_keyword_index
from stratmaster.stores.protocols import KeywordDocument, KeywordIndex, ScoredChunk, StoreError

ACME = "acme"
GLOBEX = "globex"


def doc(chunk_id: str, document_id: str, *tokens: str) -> KeywordDocument:
    return KeywordDocument(chunk_id=chunk_id, document_id=document_id, tokens=list(tokens))


def fillers(count: int, tenant_tag: str = "") -> list[KeywordDocument]:
    """Chunks sharing no term with the tests' queries: they keep every query term rare (FTS5's
    idf is floored at ~0 for terms in half the rows or more)."""
    return [doc(f"filler-{i}", "filler", f"noise{tenant_tag}{i}", f"static{i}", f"hum{i}") for i in range(count)]


def ids(results: Sequence[ScoredChunk]) -> list[str]:
    return [r.chunk_id for r in results]


# Tokens that mean something in FTS5 query syntax (or in Lucene's query_string syntax).
SYNTAX_TOKENS = [
    '"', '""', "'", "*", "pre*", ":", "body:x", "tenant", "tenant:acme", "AND", "OR", "NOT", "NEAR(", "NEAR",
    "(", ")", "-", "-x", "^", "^start", "+", "{body}", "\\", 'a"b', 'col:"x"', "%", "_", "t61636d65",
]


class KeywordIndexConformance:
    """Tests every KeywordIndex must pass; subclasses provide the `index` fixture."""

    @pytest.fixture
    def index(self) -> Iterator[KeywordIndex]:
        raise NotImplementedError

    def test_is_a_keyword_index(self, index: KeywordIndex) -> None:
        assert isinstance(index, KeywordIndex)
        assert isinstance(index.backend, str) and isinstance(index.embedded, bool)

    def test_ping(self, index: KeywordIndex) -> None:
        health = index.ping()
        assert health.healthy and health.name == "keyword" and health.backend == index.backend

    def test_empty_index(self, index: KeywordIndex) -> None:
        assert index.search(ACME, ["anything"], k=5) == []
        assert index.count(ACME) == 0

    def test_upsert_search_count(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("c1", "d1", "market", "entry", "strategy"), doc("c2", "d2", "pricing"),
                            *fillers(6)])
        assert index.count(ACME) == 8
        [hit] = index.search(ACME, ["strategy"], k=5)
        assert (hit.chunk_id, hit.document_id) == ("c1", "d1")
        assert hit.score > 0

    def test_empty_query_returns_nothing(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("c1", "d1", "market")])
        assert index.search(ACME, [], k=5) == []
        assert index.search(ACME, ["", " ", "\t"], k=5) == []

    def test_query_of_unknown_terms_returns_nothing(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("c1", "d1", "market")])
        assert index.search(ACME, ["absent", "missing"], k=5) == []

    def test_k_must_be_positive(self, index: KeywordIndex) -> None:
        with pytest.raises(ValueError):
            index.search(ACME, ["x"], k=0)

    # --- BM25 ranking -------------------------------------------------------------------------
    def test_repeated_term_ranks_above_single_mention(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [
            doc("once", "d1", "strategy", "y1", "y2", "y3", "y4"),
            doc("many", "d2", "strategy", "strategy", "strategy", "x1", "x2"),
            *fillers(10),
        ])
        results = index.search(ACME, ["strategy"], k=10)
        assert ids(results) == ["many", "once"]
        assert results[0].score > results[1].score > 0

    def test_rarer_terms_weigh_more(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [
            doc("rare", "d1", "zeppelin", "a1", "a2"),
            doc("common", "d2", "market", "b1", "b2"),
            *[doc(f"market-{i}", "d3", "market", f"c{i}", f"e{i}") for i in range(4)],
            *fillers(10),
        ])
        results = index.search(ACME, ["market", "zeppelin"], k=3)
        assert results[0].chunk_id == "rare"
        assert results[0].score > results[1].score

    def test_scores_are_positive_and_best_first(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [
            doc("a", "d", "alpha", "beta", "gamma"), doc("b", "d", "alpha", "alpha", "beta"),
            doc("c", "d", "beta", "delta", "delta"), doc("e", "d", "alpha", "x", "y", "z", "w"),
            *fillers(12),
        ])
        results = index.search(ACME, ["alpha", "beta"], k=10)
        assert set(ids(results)) == {"a", "b", "c", "e"}
        scores = [r.score for r in results]
        assert all(s > 0 for s in scores)
        assert scores == sorted(scores, reverse=True)

    def test_k_limits_to_the_best(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc(f"c{i}", "d", *(["term"] * (i + 1)), "pad", "pad") for i in range(5)] + fillers(10))
        everything = index.search(ACME, ["term"], k=10)
        assert len(everything) == 5
        assert index.search(ACME, ["term"], k=2) == everything[:2]

    def test_a_repeated_query_term_weighs_more(self, index: KeywordIndex) -> None:
        # As in Lucene: a question that repeats a term is more about it.
        index.upsert(ACME, [doc("a", "d", "alpha", "y"), doc("b", "d", "beta", "x"), *fillers(8)])
        once = {r.chunk_id: r.score for r in index.search(ACME, ["alpha", "beta"], k=5)}
        thrice = {r.chunk_id: r.score for r in index.search(ACME, ["alpha", "beta", "alpha", "alpha"], k=5)}
        assert thrice["a"] == pytest.approx(3 * once["a"])
        assert thrice["b"] == pytest.approx(once["b"])

    # --- exact terms ----------------------------------------------------------------------------
    def test_terms_match_exactly(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("upper", "d", "Apple"), doc("lower", "d", "apple"), doc("umlaut", "d", "über"),
                            doc("plain", "d", "uber"), doc("cjk", "d", "東京"), doc("dash", "d", "e-mail"),
                            doc("email", "d", "email"), *fillers(10)])
        assert ids(index.search(ACME, ["apple"], k=5)) == ["lower"]
        assert ids(index.search(ACME, ["Apple"], k=5)) == ["upper"]
        assert ids(index.search(ACME, ["über"], k=5)) == ["umlaut"]
        assert ids(index.search(ACME, ["東京"], k=5)) == ["cjk"]
        assert ids(index.search(ACME, ["e-mail"], k=5)) == ["dash"]
        assert ids(index.search(ACME, ["mail"], k=5)) == []

    def test_whitespace_splits_tokens(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("ny", "d", "new york", "city"), *fillers(6)])
        assert ids(index.search(ACME, ["york"], k=5)) == ["ny"]
        assert ids(index.search(ACME, ["new york"], k=5)) == ["ny"]

    def test_query_syntax_characters_are_searched_literally(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc(f"syntax-{i}", "d", token, "pad") for i, token in enumerate(SYNTAX_TOKENS)]
                     + [doc("and-lower", "d", "and", "pad"), doc("plain-x", "d", "x", "y", "pad")] + fillers(40))
        for i, token in enumerate(SYNTAX_TOKENS):
            assert ids(index.search(ACME, [token], k=5)) == [f"syntax-{i}"], token
        # "x OR y" is the terms x, OR and y (the chunk holding the word OR matches); never the operator.
        assert set(ids(index.search(ACME, ["x OR y"], k=10))) == {"plain-x", f"syntax-{SYNTAX_TOKENS.index('OR')}"}
        # All at once: no error, and every chunk that holds one of them comes back.
        results = index.search(ACME, SYNTAX_TOKENS, k=100)
        assert {f"syntax-{i}" for i in range(len(SYNTAX_TOKENS))} <= set(ids(results))
        assert "and-lower" not in ids(results)

    # --- writes -----------------------------------------------------------------------------------
    def test_upsert_replaces_by_chunk_id(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("c1", "d1", "apple", "pie"), *fillers(6)])
        index.upsert(ACME, [doc("c1", "d2", "banana", "bread")])
        assert index.count(ACME) == 7
        assert index.search(ACME, ["apple"], k=5) == []
        [hit] = index.search(ACME, ["banana"], k=5)
        assert (hit.chunk_id, hit.document_id) == ("c1", "d2")

    def test_upsert_of_nothing_is_a_no_op(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [])
        assert index.count(ACME) == 0

    def test_delete_document_removes_only_that_document(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("a1", "doc-a", "merger", "plan"), doc("a2", "doc-a", "merger", "risk"),
                            doc("b1", "doc-b", "merger", "timeline"), *fillers(8)])
        assert index.delete_document(ACME, "doc-a") == 2
        assert ids(index.search(ACME, ["merger"], k=5)) == ["b1"]
        assert index.count(ACME) == 9
        assert index.delete_document(ACME, "doc-a") == 0
        assert index.delete_document(ACME, "never-indexed") == 0

    def test_document_ids_restriction(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("a1", "doc-a", "growth"), doc("b1", "doc-b", "growth", "growth"),
                            doc("c1", "doc-c", "growth", "x"), *fillers(10)])
        assert ids(index.search(ACME, ["growth"], k=5, document_ids=["doc-a", "doc-c"])) == ["a1", "c1"]
        assert ids(index.search(ACME, ["growth"], k=5, document_ids=("doc-b",))) == ["b1"]
        assert index.search(ACME, ["growth"], k=5, document_ids=[]) == []
        assert index.search(ACME, ["growth"], k=5, document_ids=["doc-zzz"]) == []
        assert len(index.search(ACME, ["growth"], k=5, document_ids=None)) == 3

    # --- tenants ------------------------------------------------------------------------------------
    def test_tenant_isolation(self, index: KeywordIndex) -> None:
        words = ("acquisition", "target", "synergy")
        index.upsert(ACME, [doc("c1", "acme-doc", *words), doc("c2", "acme-doc", "acme", "only"), *fillers(6)])
        index.upsert(GLOBEX, [doc("c1", "globex-doc", *words), *fillers(3, "g")])
        assert index.count(ACME) == 8 and index.count(GLOBEX) == 4
        assert [(r.chunk_id, r.document_id) for r in index.search(ACME, list(words), k=10)] == [("c1", "acme-doc")]
        assert [(r.chunk_id, r.document_id) for r in index.search(GLOBEX, list(words), k=10)] == [
            ("c1", "globex-doc")]
        assert index.search(GLOBEX, ["acme", "only"], k=10) == []
        assert index.search(GLOBEX, ["acquisition"], k=10, document_ids=["acme-doc"]) == []
        assert index.search("initech", list(words), k=10) == []

    def test_same_chunk_and_document_ids_in_two_tenants_stay_apart(self, index: KeywordIndex) -> None:
        index.upsert(ACME, [doc("c1", "d1", "original"), *fillers(4)])
        index.upsert(GLOBEX, [doc("c1", "d1", "replacement")])  # must not replace acme's c1
        assert ids(index.search(ACME, ["original"], k=5)) == ["c1"]
        assert index.search(ACME, ["replacement"], k=5) == []
        assert index.delete_document(GLOBEX, "d1") == 1  # must not delete acme's d1
        assert ids(index.search(ACME, ["original"], k=5)) == ["c1"]
        assert index.count(ACME) == 5 and index.count(GLOBEX) == 0

    def test_tenant_names_are_data_not_syntax(self, index: KeywordIndex) -> None:
        odd = 'ac"me OR *'
        index.upsert(odd, [doc("c1", "d1", "secret")])
        index.upsert(ACME, [doc("c2", "d2", "secret"), *fillers(4)])
        assert ids(index.search(odd, ["secret"], k=5)) == ["c1"]
        assert ids(index.search(ACME, ["secret"], k=5)) == ["c2"]
        assert index.search("ac", ["secret"], k=5) == []


# --- embedded: SQLite + in-memory BM25 -------------------------------------------------------------
def bm25_reference(rows: dict[str, list[str]], row: str, query: Sequence[str], k1: float = 1.2,
                   b: float = 0.75) -> float:
    """Okapi BM25 over one tenant's rows, as stratmaster.stores.bm25 documents it.

    - N, n(q) and avgdl cover the tenant's rows only;
    - idf(q) = ln((N - n(q) + 0.5) / (n(q) + 0.5)), and 1e-6 when that is <= 0 (terms in
      half the rows or more);
    - |D| is the row's number of terms; each query term occurrence adds its term again.
    """
    n_rows = len(rows)
    avgdl = sum(len(tokens) for tokens in rows.values()) / n_rows
    tokens = rows[row]
    score = 0.0
    for term in query:
        n = sum(term in other for other in rows.values())
        idf = math.log((n_rows - n + 0.5) / (n + 0.5))
        idf = idf if idf > 0 else 1e-6
        f = tokens.count(term)
        score += idf * (f * (k1 + 1)) / (f + k1 * (1 - b + b * len(tokens) / avgdl))
    return score


class TestSqliteKeywordIndex(KeywordIndexConformance):
    @pytest.fixture
    def index(self, tmp_path: Path) -> Iterator[SqliteKeywordIndex]:
        index = SqliteKeywordIndex(tmp_path / "keyword" / "chunks.sqlite3")
        yield index
        index.close()

    def test_scores_match_the_okapi_bm25_reference_over_the_tenants_own_chunks(
            self, index: SqliteKeywordIndex) -> None:
        acme = [
            doc("a1", "d1", "market", "entry", "strategy", "market", "asia"),
            doc("a2", "d1", "pricing", "strategy"),
            doc("a3", "d2", "market", "share", "growth", "growth", "growth", "europe", "asia", "risk"),
            doc("a4", "d2", "supply", "chain", "risk"),
            doc("a5", "d3", "strategy", "strategy", "strategy", "strategy"),
            doc("a6", "d3", "board", "approval", "timeline"),
            doc("a7", "d4", "market"),
            doc("a8", "d4", "acquisition", "target", "market", "risk", "asia"),
        ]
        index.upsert(ACME, acme)
        rows = {d.chunk_id: list(d.tokens) for d in acme}
        queries = (["strategy"], ["market", "risk"], ["growth", "asia", "strategy"], ["market", "market"],
                   ["asia"], ["timeline", "absent"])

        def check() -> None:
            for query in queries:
                results = index.search(ACME, query, k=20)
                expected = sorted(((bm25_reference(rows, cid, query), cid) for cid, tokens in rows.items()
                                   if set(tokens) & set(query)), key=lambda pair: (-pair[0], pair[1]))
                assert ids(results) == [cid for _, cid in expected], query
                for result, (score, _) in zip(results, expected, strict=True):
                    assert result.score == pytest.approx(score, rel=1e-9, abs=1e-9), (query, result)

        check()
        # Another tenant's chunks, however many and whatever they say, move none of these scores.
        index.upsert(GLOBEX, [doc(f"o{i}", "x", "market", "asia", f"w{i}") for i in range(50)])
        check()

    def test_a_write_by_another_process_is_seen(self, tmp_path: Path) -> None:
        path = tmp_path / "k.sqlite3"
        first, second = SqliteKeywordIndex(path), SqliteKeywordIndex(path)
        try:
            first.upsert(ACME, [doc("c1", "d1", "alpha"), *fillers(4)])
            assert ids(first.search(ACME, ["alpha"], k=5)) == ["c1"]  # first's scorer is built
            second.upsert(ACME, [doc("c2", "d2", "alpha", "alpha")])
            second.delete_document(ACME, "d1")
            assert ids(first.search(ACME, ["alpha"], k=5)) == ["c2"]
        finally:
            first.close()
            second.close()

    def test_a_file_written_with_fts5_is_migrated(self, tmp_path: Path) -> None:
        path = tmp_path / "k.sqlite3"
        legacy = sqlite3.connect(path)
        legacy.executescript("""
            CREATE TABLE chunk (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, document_id TEXT NOT NULL,
                                chunk_id TEXT NOT NULL, UNIQUE (tenant, chunk_id));
            CREATE VIRTUAL TABLE chunk_fts USING fts5(tenant, document_id UNINDEXED, chunk_id UNINDEXED, body);
        """)
        for row_id, (chunk_id, terms) in enumerate([("c1", ["früh", "market"]), ("c2", ["market"])], start=1):
            legacy.execute("INSERT INTO chunk VALUES (?, ?, ?, ?)", (row_id, ACME, "d1", chunk_id))
            legacy.execute("INSERT INTO chunk_fts (rowid, tenant, document_id, chunk_id, body) VALUES (?, ?, ?, ?, ?)",
                           (row_id, "t" + ACME.encode().hex(), "d1", chunk_id,
                            " ".join(t.encode().hex() for t in terms)))
        legacy.commit()
        legacy.close()
        index = SqliteKeywordIndex(path)
        try:
            assert ids(index.search(ACME, ["früh"], k=5)) == ["c1"]
            assert index.count(ACME) == 2
        finally:
            index.close()

    def test_persists_across_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "k.sqlite3"
        first = SqliteKeywordIndex(path)
        first.upsert(ACME, [doc("c1", "d1", "durable"), *fillers(4)])
        first.close()
        second = SqliteKeywordIndex(path)
        try:
            assert ids(second.search(ACME, ["durable"], k=5)) == ["c1"]
            assert second.count(ACME) == 5
        finally:
            second.close()

    def test_wal_mode(self, index: SqliteKeywordIndex) -> None:
        assert index._reader().execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_threads_write_and_read_concurrently(self, index: SqliteKeywordIndex) -> None:
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(25):
                    index.upsert(ACME, [doc(f"w{worker}-{i}", f"doc-{worker}", "shared", f"own{worker}")])
                    index.search(ACME, ["shared"], k=5)
                if worker % 2:
                    index.delete_document(ACME, f"doc-{worker}")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert index.count(ACME) == 3 * 25

    def test_upsert_is_atomic(self, index: SqliteKeywordIndex) -> None:
        index.upsert(ACME, [doc("c1", "d1", "before")])
        with pytest.raises(ValueError):
            index.upsert(ACME, [doc("c1", "d1", "after"), doc("", "d1", "broken")])
        assert ids(index.search(ACME, ["before"], k=5)) == ["c1"]

    def test_closed_index_raises_store_error(self, tmp_path: Path) -> None:
        index = SqliteKeywordIndex(tmp_path / "k.sqlite3")
        index.close()
        with pytest.raises(StoreError, match="closed"):
            index.search(ACME, ["x"], k=1)
        assert not index.ping().healthy


# --- server: OpenSearch, live (only with TEST_OPENSEARCH_URL) ---------------------------------------
class TestOpenSearchKeywordIndex(KeywordIndexConformance):
    @pytest.fixture
    def index(self) -> Iterator[OpenSearchKeywordIndex]:
        url = os.environ.get("TEST_OPENSEARCH_URL")
        if not url:
            pytest.skip("TEST_OPENSEARCH_URL is unset (scripts/servers.sh starts no OpenSearch)")
        index = OpenSearchKeywordIndex(url, index=f"stratmaster-test-{uuid.uuid4().hex[:12]}", refresh=True)
        yield index
        index.drop_index()
        index.close()


# --- server: OpenSearch, request bodies over a fake connection ----------------------------------------
@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    body: Any


class FakeOpenSearchServer:
    """Answers the handful of endpoints the adapter uses and records every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.index_exists = False
        self.hits: list[dict[str, Any]] = []
        self.bulk_errors: list[dict[str, Any]] = []
        self.deleted = 0

    def handle(self, method: str, path: str, params: dict[str, Any], body: Any) -> tuple[int, Any]:
        self.requests.append(Request(method, path, params, body))
        if method == "HEAD":
            return (200 if self.index_exists else 404), None
        if method == "PUT" and path.count("/") == 1:
            self.index_exists = True
            return 200, {"acknowledged": True, "index": path.strip("/")}
        if path == "/_bulk":
            items = [{"index": {"_id": action["index"]["_id"], "status": 201}} for action in body[::2]]
            for position, error in enumerate(self.bulk_errors):
                items[position]["index"].update(status=400, error=error)
            return 200, {"took": 1, "errors": bool(self.bulk_errors), "items": items}
        if path.endswith("/_search"):
            return 200, {"hits": {"hits": self.hits}}
        if path.endswith("/_delete_by_query"):
            return 200, {"deleted": self.deleted, "failures": []}
        if path.endswith("/_count"):
            return 200, {"count": 3}
        if path == "/_cluster/health":
            return 200, {"status": "green"}
        return 404, {"error": {"type": "not_found"}}

    def of(self, method: str, suffix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]


def _decode(body: Any) -> Any:
    if body is None:
        return None
    text = body.decode() if isinstance(body, bytes) else body
    lines = [line for line in text.split("\n") if line]
    return json.loads(text) if len(lines) == 1 else [json.loads(line) for line in lines]


def fake_client(server: FakeOpenSearchServer) -> OpenSearch:
    class FakeConnection(Connection):
        def perform_request(self, method: str, url: str, params: Any = None, body: Any = None,
                            timeout: Any = None, ignore: Any = (), headers: Any = None) -> Any:
            params = {k: v.decode() if isinstance(v, bytes) else v for k, v in (params or {}).items()}
            status, payload = server.handle(method, url.split("?")[0], params, _decode(body))
            raw = "" if payload is None else json.dumps(payload)
            if not 200 <= status < 300 and status not in ignore:
                self._raise_error(status, raw, "application/json")
            return status, {"content-type": "application/json"}, raw

    return OpenSearch(hosts=["http://opensearch.test:9200"], connection_class=FakeConnection)


class TestOpenSearchRequests:
    @pytest.fixture
    def server(self) -> FakeOpenSearchServer:
        return FakeOpenSearchServer()

    @pytest.fixture
    def index(self, server: FakeOpenSearchServer) -> OpenSearchKeywordIndex:
        return OpenSearchKeywordIndex("http://opensearch.test:9200", client=fake_client(server))

    def test_creates_the_index_with_whitespace_analysis_once(self, index: OpenSearchKeywordIndex,
                                                             server: FakeOpenSearchServer) -> None:
        index.count(ACME)
        index.count(ACME)
        [create] = server.of("PUT", "/stratmaster-chunks")
        mapping = create.body["mappings"]
        assert mapping["dynamic"] == "strict"
        assert mapping["properties"]["tokens"] == {"type": "text", "analyzer": "whitespace", "similarity": "BM25"}
        for field in ("tenant", "document_id", "chunk_id"):
            assert mapping["properties"][field] == {"type": "keyword"}
        assert create.body["settings"]["index"]["number_of_shards"] == 1
        assert len(server.of("HEAD", "/stratmaster-chunks")) == 1

    def test_upsert_is_one_bulk_of_index_actions(self, index: OpenSearchKeywordIndex,
                                                 server: FakeOpenSearchServer) -> None:
        index.upsert(ACME, [doc("c1", "d1", "market", "new york"), doc("c2", "d1", 'a"b')])
        [bulk] = server.of("POST", "/_bulk")
        assert bulk.params["refresh"] == "wait_for"
        actions, sources = bulk.body[::2], bulk.body[1::2]
        assert actions == [{"index": {"_index": "stratmaster-chunks", "_id": index.document_id(ACME, "c1")}},
                           {"index": {"_index": "stratmaster-chunks", "_id": index.document_id(ACME, "c2")}}]
        assert sources == [{"tenant": ACME, "document_id": "d1", "chunk_id": "c1", "tokens": "market new york"},
                           {"tenant": ACME, "document_id": "d1", "chunk_id": "c2", "tokens": 'a"b'}]
        assert index.document_id(ACME, "c1") != index.document_id(GLOBEX, "c1")

    def test_upsert_is_batched(self, server: FakeOpenSearchServer) -> None:
        index = OpenSearchKeywordIndex("http://opensearch.test:9200", client=fake_client(server), bulk_batch_size=2)
        index.upsert(ACME, [doc(f"c{i}", "d", "x") for i in range(5)])
        assert [len(r.body) // 2 for r in server.of("POST", "/_bulk")] == [2, 2, 1]

    def test_bulk_item_errors_raise_store_error(self, index: OpenSearchKeywordIndex,
                                                server: FakeOpenSearchServer) -> None:
        server.bulk_errors = [{"type": "mapper_parsing_exception", "reason": "boom"}]
        with pytest.raises(StoreError, match="1 of 2 chunks failed.*mapper_parsing_exception"):
            index.upsert(ACME, [doc("c1", "d", "x"), doc("c2", "d", "y")])

    def test_search_filters_by_tenant_inside_the_query(self, index: OpenSearchKeywordIndex,
                                                       server: FakeOpenSearchServer) -> None:
        server.hits = [{"_id": "h1", "_score": 2.5, "_source": {"chunk_id": "c1", "document_id": "d1"}},
                       {"_id": "h2", "_score": 1.0, "_source": {"chunk_id": "c2", "document_id": "d2"}}]
        results = index.search(ACME, ["market", "NEAR(", "market", 'a"b'], k=7)
        assert results == [ScoredChunk("c1", "d1", 2.5), ScoredChunk("c2", "d2", 1.0)]
        [search] = server.of("POST", "/stratmaster-chunks/_search")
        assert search.body["size"] == 7
        query = search.body["query"]["bool"]
        assert query["filter"] == [{"term": {"tenant": ACME}}]
        assert query["should"] == [{"match": {"tokens": {"query": 'market NEAR( market a"b', "operator": "or"}}}]
        assert query["minimum_should_match"] == 1
        assert "query_string" not in json.dumps(search.body)
        assert search.body["sort"][0] == {"_score": {"order": "desc"}}

    def test_search_restricts_documents_in_the_filter(self, index: OpenSearchKeywordIndex,
                                                      server: FakeOpenSearchServer) -> None:
        index.search(ACME, ["x"], k=3, document_ids=("d1", "d2"))
        [search] = server.of("POST", "/_search")
        assert search.body["query"]["bool"]["filter"] == [{"term": {"tenant": ACME}},
                                                          {"terms": {"document_id": ["d1", "d2"]}}]

    def test_nothing_to_search_sends_no_request(self, index: OpenSearchKeywordIndex,
                                                server: FakeOpenSearchServer) -> None:
        assert index.search(ACME, [], k=3) == []
        assert index.search(ACME, [" "], k=3) == []
        assert index.search(ACME, ["x"], k=3, document_ids=[]) == []
        assert server.of("POST", "/_search") == []

    def test_delete_document_is_a_tenant_scoped_delete_by_query(self, index: OpenSearchKeywordIndex,
                                                                server: FakeOpenSearchServer) -> None:
        server.deleted = 4
        assert index.delete_document(ACME, "d1") == 4
        [delete] = server.of("POST", "/stratmaster-chunks/_delete_by_query")
        assert delete.body == {"query": {"bool": {"filter": [{"term": {"tenant": ACME}},
                                                             {"term": {"document_id": "d1"}}]}}}
        assert delete.params["refresh"] == "true" and delete.params["conflicts"] == "proceed"

    def test_count_is_tenant_scoped(self, index: OpenSearchKeywordIndex, server: FakeOpenSearchServer) -> None:
        assert index.count(ACME) == 3
        [count] = server.of("POST", "/stratmaster-chunks/_count")
        assert count.body == {"query": {"bool": {"filter": [{"term": {"tenant": ACME}}]}}}

    def test_ping(self, index: OpenSearchKeywordIndex) -> None:
        health = index.ping()
        assert health.healthy and health.name == "keyword" and health.backend == "opensearch"

    def test_unreachable_server_raises_store_error(self) -> None:
        index = OpenSearchKeywordIndex("http://user:secret@127.0.0.1:1", timeout_s=1)
        with pytest.raises(StoreError, match=r"http://127\.0\.0\.1:1/stratmaster-chunks") as excinfo:
            index.search(ACME, ["x"], k=1)
        assert "secret" not in str(excinfo.value)
        assert not index.ping().healthy


@pytest.mark.parametrize(("env", "expected"), [
    ({"OPENSEARCH_URL": ""}, SqliteKeywordIndex),
    ({"OPENSEARCH_URL": "http://opensearch:9200"}, OpenSearchKeywordIndex),
])
def test_create_keyword_index_picks_the_backend(tmp_path: Path, env: dict[str, str],
                                                expected: Callable[..., KeywordIndex]) -> None:
    index = create_keyword_index(Settings(STRATMASTER_DATA_DIR=str(tmp_path), **env))
    try:
        assert isinstance(index, expected)
    finally:
        index.close()
