"""One behaviour for every GraphStore (haystack-style conformance tests).

`GraphStoreConformance` holds the tests; each implementation's subclass overrides the
`store` fixture. The embedded SQLite graph runs here; NebulaGraph cannot, and its nGQL is
checked with a fake session in tests/unit/test_nebula_adapter.py.

The hand-made graph used throughout (tenant "acme"):

    d1/c1: alpha beta gamma      d2/c3: alpha delta
    d1/c2: alpha beta            d2/c4: beta gamma

    co-occurrence: alpha-beta 2 (c1, c2), beta-gamma 2 (c1, c4), alpha-gamma 1, alpha-delta 1
    mentions:      alpha 3 in 2 documents, beta 3/2, gamma 2/2, delta 1/1
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratmaster.settings import Settings
from stratmaster.stores.graph import NebulaGraphStore, SqliteGraphStore, create_graph_store
from stratmaster.stores.protocols import Community, Entity, GraphStore, Mention, ScoredChunk, StoreError

ACME = "acme"
GLOBEX = "globex"

NAMES = {"alpha": ("Alpha Corp", "proper"), "beta": ("Beta Bank", "proper"),
         "gamma": ("gamma pricing", "concept"), "delta": ("Delta", "proper")}


def mentions(chunks: dict[str, list[str]]) -> list[Mention]:
    return [Mention(chunk_id=chunk_id, entity_id=entity_id, name=NAMES[entity_id][0], kind=NAMES[entity_id][1])
            for chunk_id, entity_ids in chunks.items() for entity_id in entity_ids]


D1 = mentions({"c1": ["alpha", "beta", "gamma"], "c2": ["alpha", "beta"]})
D2 = mentions({"c3": ["alpha", "delta"], "c4": ["beta", "gamma"]})


def load(store: GraphStore, tenant: str = ACME) -> None:
    store.replace_document(tenant, "d1", D1)
    store.replace_document(tenant, "d2", D2)


def ids(entities: list[Entity]) -> list[str]:
    return [e.entity_id for e in entities]


class GraphStoreConformance:
    """Tests every GraphStore must pass; subclasses provide the `store` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[GraphStore]:
        raise NotImplementedError

    def test_is_a_graph_store(self, store: GraphStore) -> None:
        assert isinstance(store, GraphStore)
        assert isinstance(store.backend, str) and isinstance(store.embedded, bool)

    def test_ping(self, store: GraphStore) -> None:
        health = store.ping()
        assert health.healthy and health.name == "graph" and health.backend == store.backend

    def test_empty(self, store: GraphStore) -> None:
        assert store.find_entities(ACME, None, 10) == []
        assert store.edges(ACME) == []
        assert store.get_entity(ACME, "alpha") is None
        assert store.neighbors(ACME, "alpha", 10) == []
        assert store.communities(ACME) == []

    # --- co-occurrence --------------------------------------------------------------
    def test_co_occurrence_weights(self, store: GraphStore) -> None:
        load(store)
        assert store.edges(ACME) == [
            ("alpha", "beta", 2.0), ("alpha", "delta", 1.0), ("alpha", "gamma", 1.0), ("beta", "gamma", 2.0),
        ]

    def test_entity_counts(self, store: GraphStore) -> None:
        load(store)
        assert store.get_entity(ACME, "alpha") == Entity("alpha", "Alpha Corp", "proper", 3, 2)
        assert store.get_entity(ACME, "gamma") == Entity("gamma", "gamma pricing", "concept", 2, 2)
        assert store.get_entity(ACME, "delta") == Entity("delta", "Delta", "proper", 1, 1)
        assert store.get_entity(ACME, "nobody") is None

    def test_neighbors_heaviest_first(self, store: GraphStore) -> None:
        load(store)
        alpha = store.neighbors(ACME, "alpha", 10)
        # beta 2; gamma and delta 1 each, gamma first as the more mentioned
        assert [(n.entity.entity_id, n.weight) for n in alpha] == [("beta", 2.0), ("gamma", 1.0), ("delta", 1.0)]
        assert alpha[0].entity == Entity("beta", "Beta Bank", "proper", 3, 2)
        beta = store.neighbors(ACME, "beta", 10)
        assert [(n.entity.entity_id, n.weight) for n in beta] == [("alpha", 2.0), ("gamma", 2.0)]
        assert [n.entity.entity_id for n in store.neighbors(ACME, "alpha", 1)] == ["beta"]
        assert store.neighbors(ACME, "alpha", 0) == []
        assert store.neighbors(ACME, "nobody", 5) == []

    def test_repeated_mentions_in_a_chunk_count_once(self, store: GraphStore) -> None:
        store.replace_document(ACME, "d1", D1 + D1[:2])
        assert store.edges(ACME) == [("alpha", "beta", 2.0), ("alpha", "gamma", 1.0), ("beta", "gamma", 1.0)]
        assert store.get_entity(ACME, "alpha").mention_count == 2

    # --- find_entities --------------------------------------------------------------
    def test_find_entities_most_mentioned_first(self, store: GraphStore) -> None:
        load(store)
        # alpha and beta tie on mentions and documents: by name
        assert ids(store.find_entities(ACME, None, 10)) == ["alpha", "beta", "gamma", "delta"]
        assert ids(store.find_entities(ACME, None, 2)) == ["alpha", "beta"]
        assert store.find_entities(ACME, None, 0) == []

    def test_find_entities_by_substring(self, store: GraphStore) -> None:
        load(store)
        assert ids(store.find_entities(ACME, "BANK", 10)) == ["beta"]  # case-insensitive
        assert ids(store.find_entities(ACME, "a c", 10)) == ["alpha"]  # "Alph[a C]orp"
        assert ids(store.find_entities(ACME, "ta", 10)) == ["beta", "delta"]
        assert ids(store.find_entities(ACME, "", 10)) == ["alpha", "beta", "gamma", "delta"]
        assert store.find_entities(ACME, "zzz", 10) == []
        assert store.find_entities(ACME, "%", 10) == [] and store.find_entities(ACME, "_", 10) == []

    # --- chunks ---------------------------------------------------------------------
    def test_entities_of_chunks(self, store: GraphStore) -> None:
        load(store)
        assert store.entities_of_chunks(ACME, ["c1", "c4", "missing"]) == {
            "c1": ["alpha", "beta", "gamma"], "c4": ["beta", "gamma"], "missing": [],
        }
        assert store.entities_of_chunks(ACME, []) == {}

    def test_chunks_of_entities_scored_by_how_many_they_mention(self, store: GraphStore) -> None:
        load(store)
        assert store.chunks_of_entities(ACME, ["alpha", "beta"], 10) == [
            ScoredChunk("c1", "d1", 2.0), ScoredChunk("c2", "d1", 2.0),
            ScoredChunk("c3", "d2", 1.0), ScoredChunk("c4", "d2", 1.0),
        ]
        assert store.chunks_of_entities(ACME, ["alpha", "beta", "gamma"], 2) == [
            ScoredChunk("c1", "d1", 3.0), ScoredChunk("c2", "d1", 2.0),
        ]
        assert store.chunks_of_entities(ACME, ["delta", "delta"], 10) == [ScoredChunk("c3", "d2", 1.0)]
        assert store.chunks_of_entities(ACME, [], 10) == []
        assert store.chunks_of_entities(ACME, ["nobody"], 10) == []

    # --- writes ---------------------------------------------------------------------
    def test_replace_document_is_idempotent(self, store: GraphStore) -> None:
        load(store)
        before = (store.edges(ACME), store.find_entities(ACME, None, 10))
        load(store)
        assert (store.edges(ACME), store.find_entities(ACME, None, 10)) == before

    def test_replace_document_replaces(self, store: GraphStore) -> None:
        load(store)
        store.replace_document(ACME, "d2", mentions({"c5": ["gamma", "delta"]}))
        assert store.edges(ACME) == [
            ("alpha", "beta", 2.0), ("alpha", "gamma", 1.0), ("beta", "gamma", 1.0), ("delta", "gamma", 1.0),
        ]
        assert store.entities_of_chunks(ACME, ["c3", "c4", "c5"]) == {"c3": [], "c4": [], "c5": ["delta", "gamma"]}
        assert store.get_entity(ACME, "delta") == Entity("delta", "Delta", "proper", 1, 1)

    def test_delete_document_removes_orphan_entities(self, store: GraphStore) -> None:
        load(store)
        store.delete_document(ACME, "d2")
        assert store.get_entity(ACME, "delta") is None
        assert ids(store.find_entities(ACME, None, 10)) == ["alpha", "beta", "gamma"]
        assert store.edges(ACME) == [("alpha", "beta", 2.0), ("alpha", "gamma", 1.0), ("beta", "gamma", 1.0)]
        assert store.get_entity(ACME, "alpha") == Entity("alpha", "Alpha Corp", "proper", 2, 1)
        store.delete_document(ACME, "d1")
        assert store.find_entities(ACME, None, 10) == [] and store.edges(ACME) == []
        store.delete_document(ACME, "d1")  # deleting nothing is fine

    def test_replace_with_no_mentions_is_a_delete(self, store: GraphStore) -> None:
        load(store)
        store.replace_document(ACME, "d2", [])
        assert store.get_entity(ACME, "delta") is None

    def test_first_name_wins_until_the_entity_is_gone(self, store: GraphStore) -> None:
        store.replace_document(ACME, "d1", [Mention("c1", "acme-inc", "Acme Inc", "proper")])
        store.replace_document(ACME, "d2", [Mention("c2", "acme-inc", "ACME inc.", "concept")])
        assert store.get_entity(ACME, "acme-inc").name == "Acme Inc"
        store.delete_document(ACME, "d1")
        store.delete_document(ACME, "d2")
        store.replace_document(ACME, "d2", [Mention("c2", "acme-inc", "ACME inc.", "concept")])
        assert (store.get_entity(ACME, "acme-inc").name, store.get_entity(ACME, "acme-inc").kind) == (
            "ACME inc.", "concept")

    def test_bad_mentions_are_bad_input(self, store: GraphStore) -> None:
        with pytest.raises(ValueError):
            store.replace_document(ACME, "d1", [Mention("c1", "", "x", "proper")])
        with pytest.raises(ValueError):
            store.replace_document("", "d1", D1)

    # --- tenants --------------------------------------------------------------------
    def test_tenant_isolation(self, store: GraphStore) -> None:
        load(store, ACME)
        assert store.find_entities(GLOBEX, None, 10) == []
        assert store.edges(GLOBEX) == [] and store.neighbors(GLOBEX, "alpha", 10) == []
        assert store.get_entity(GLOBEX, "alpha") is None
        assert store.entities_of_chunks(GLOBEX, ["c1"]) == {"c1": []}
        assert store.chunks_of_entities(GLOBEX, ["alpha"], 10) == []
        # The same documents, chunks and entities under another tenant are separate.
        store.replace_document(GLOBEX, "d1", D1)
        assert store.get_entity(GLOBEX, "alpha").mention_count == 2
        assert store.get_entity(ACME, "alpha").mention_count == 3
        store.delete_document(GLOBEX, "d1")
        assert store.find_entities(GLOBEX, None, 10) == []
        assert store.edges(ACME)[0] == ("alpha", "beta", 2.0) and len(store.find_entities(ACME, None, 10)) == 4
        store.delete_document(GLOBEX, "d2")  # a document of another tenant's name: nothing happens
        assert store.get_entity(ACME, "delta") is not None

    # --- communities ----------------------------------------------------------------
    def test_communities_round_trip(self, store: GraphStore) -> None:
        communities = [
            Community(0, ("alpha", "beta", "gamma"), 'Alpha Corp and "Beta Bank".\nSecond line.', 3, ("beta", "alpha")),
            Community(1, ("delta", "epsilon"), "", 2, ()),
        ]
        store.replace_communities(ACME, communities)
        assert store.communities(ACME) == communities
        assert store.communities(GLOBEX) == []
        store.replace_communities(ACME, communities[1:])
        assert store.communities(ACME) == communities[1:]
        store.replace_communities(GLOBEX, communities[:1])
        assert store.communities(ACME) == communities[1:]
        store.replace_communities(ACME, [])
        assert store.communities(ACME) == [] and store.communities(GLOBEX) == communities[:1]


# --- implementations --------------------------------------------------------------------
class TestSqliteGraphStore(GraphStoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[GraphStore]:
        store = SqliteGraphStore(tmp_path / "graph.db")
        yield store
        store.close()

    def test_kind(self, store: SqliteGraphStore) -> None:
        assert (store.backend, store.embedded) == ("embedded-graph", True)

    def test_persists_across_reopen(self, tmp_path: Path) -> None:
        store = SqliteGraphStore(tmp_path / "g.db")
        load(store)
        store.close()
        reopened = SqliteGraphStore(tmp_path / "g.db")
        try:
            assert len(reopened.edges(ACME)) == 4
        finally:
            reopened.close()

    def test_wal_mode(self, store: SqliteGraphStore) -> None:
        assert store._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_concurrent_writers_and_readers(self, store: SqliteGraphStore) -> None:
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for round_ in range(10):
                    store.replace_document(ACME, f"doc{n}", mentions({f"c{n}-{round_}": ["alpha", "beta"]}))
                    store.find_entities(ACME, None, 5)
                    store.neighbors(ACME, "alpha", 5)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert store.edges(ACME) == [("alpha", "beta", 4.0)]  # each document ends with one chunk

    def test_two_stores_on_one_file(self, tmp_path: Path) -> None:
        first, second = SqliteGraphStore(tmp_path / "g.db"), SqliteGraphStore(tmp_path / "g.db")
        try:
            load(first)
            assert len(second.edges(ACME)) == 4
        finally:
            first.close()
            second.close()

    def test_closed_store_raises_store_error(self, tmp_path: Path) -> None:
        store = SqliteGraphStore(tmp_path / "g.db")
        store.close()
        with pytest.raises(StoreError):
            store.find_entities(ACME, None, 5)
        assert not store.ping().healthy
        store.close()

    def test_memory_is_refused(self) -> None:
        with pytest.raises(ValueError):
            SqliteGraphStore(":memory:")


def test_factory_picks_sqlite_by_default(tmp_path: Path) -> None:
    store = create_graph_store(Settings(STRATMASTER_DATA_DIR=tmp_path))
    try:
        assert isinstance(store, SqliteGraphStore) and store.path == tmp_path.resolve() / "graph.db"
    finally:
        store.close()


def test_factory_picks_nebula_without_connecting(tmp_path: Path) -> None:
    store = create_graph_store(Settings(STRATMASTER_DATA_DIR=tmp_path, NEBULA_ADDRESS="graphd-1:9669,graphd-2:9669"))
    assert isinstance(store, NebulaGraphStore)
    assert (store.backend, store.embedded) == ("nebulagraph", False)
    assert store.addresses == [("graphd-1", 9669), ("graphd-2", 9669)]
    store.close()
