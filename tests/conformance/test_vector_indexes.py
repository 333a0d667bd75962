"""One behaviour for every VectorIndex (haystack-style conformance tests).

`VectorIndexConformance` holds the tests; each implementation's subclass overrides the
`index` fixture. Qdrant's local mode runs here; the Qdrant server subclass runs only when
TEST_QDRANT_URL points at a server, in a collection of its own that it drops afterwards.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from stratmaster.settings import Settings
from stratmaster.stores.protocols import StoreError, VectorIndex, VectorItem
from stratmaster.stores.vectors import (
    COLLECTION,
    UPSERT_BATCH,
    OneCommitPerCall,
    QdrantVectorIndex,
    create_vector_index,
    point_id,
    tenant_collection,
)

ACME = "acme"
GLOBEX = "globex"
# Path separators, dots, NUL, control and non-ASCII characters, quotes, and more than a
# file name may hold: none of it may reach a collection name or a path.
WEIRD = "../" * 3 + "acme/..\\x\x00\n\t \"'*?<>|:% 🏢" * 20
DIM = 16


def unit(i: int, dim: int = DIM) -> list[float]:
    vector = [0.0] * dim
    vector[i] = 1.0
    return vector


def random_vectors(n: int, dim: int = DIM, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


class VectorIndexConformance:
    """Tests every VectorIndex must pass; subclasses provide a 16-d `index`."""

    @pytest.fixture
    def index(self) -> Iterator[VectorIndex]:
        raise NotImplementedError

    def test_is_a_vector_index(self, index: VectorIndex) -> None:
        assert isinstance(index, VectorIndex)
        assert isinstance(index.backend, str) and isinstance(index.embedded, bool)
        assert index.dimension == DIM

    def test_ping(self, index: VectorIndex) -> None:
        health = index.ping()
        assert health.healthy and health.name == "vectors" and health.backend == index.backend

    def test_empty_tenant_finds_nothing(self, index: VectorIndex) -> None:
        assert index.search(ACME, unit(0), 5) == []
        assert index.count(ACME) == 0

    # --- search ---------------------------------------------------------------------
    def test_nearest_neighbour_is_the_right_one(self, index: VectorIndex) -> None:
        vectors = random_vectors(200)
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i // 10}", v.tolist()) for i, v in enumerate(vectors)])
        noise = np.random.default_rng(1).normal(scale=0.05, size=vectors.shape)
        for i in range(0, 200, 17):
            hits = index.search(ACME, (vectors[i] + noise[i]).tolist(), 3)
            assert hits[0].chunk_id == f"c{i}" and hits[0].document_id == f"d{i // 10}"

    def test_scores_are_cosine(self, index: VectorIndex) -> None:
        index.upsert(ACME, [
            VectorItem("same", "d", [3.0] + [0.0] * (DIM - 1)),  # scale does not matter to cosine
            VectorItem("diagonal", "d", [1.0, 1.0] + [0.0] * (DIM - 2)),
            VectorItem("orthogonal", "d", unit(1)),
            VectorItem("opposite", "d", [-1.0] + [0.0] * (DIM - 1)),
        ])
        hits = index.search(ACME, unit(0), 4)
        assert [h.chunk_id for h in hits] == ["same", "diagonal", "orthogonal", "opposite"]
        scores = {h.chunk_id: h.score for h in hits}
        assert scores["same"] == pytest.approx(1.0, abs=1e-5)
        assert scores["diagonal"] == pytest.approx(1 / math.sqrt(2), abs=1e-5)
        assert scores["orthogonal"] == pytest.approx(0.0, abs=1e-5)
        assert scores["opposite"] == pytest.approx(-1.0, abs=1e-5)

    def test_results_best_first_and_at_most_k(self, index: VectorIndex) -> None:
        vectors = random_vectors(30)
        index.upsert(ACME, [VectorItem(f"c{i}", "d", v.tolist()) for i, v in enumerate(vectors)])
        hits = index.search(ACME, vectors[0].tolist(), 10)
        assert len(hits) == 10
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert len(index.search(ACME, vectors[0].tolist(), 100)) == 30
        assert index.search(ACME, vectors[0].tolist(), 0) == []

    def test_numpy_vectors_are_accepted(self, index: VectorIndex) -> None:
        index.upsert(ACME, [VectorItem("c", "d", np.asarray(unit(2), dtype=np.float32))])
        assert index.search(ACME, np.asarray(unit(2)), 1)[0].chunk_id == "c"

    def test_wrong_dimension_is_bad_input(self, index: VectorIndex) -> None:
        with pytest.raises(ValueError):
            index.upsert(ACME, [VectorItem("c", "d", [1.0] * (DIM + 1))])
        with pytest.raises(ValueError):
            index.search(ACME, [1.0] * (DIM - 1), 3)
        with pytest.raises(ValueError):
            index.upsert(ACME, [VectorItem("c", "d", [float("nan")] + [0.0] * (DIM - 1))])
        with pytest.raises(ValueError):
            index.search(ACME, [0.0] * DIM, 3)  # no direction, no cosine
        assert index.count(ACME) == 0

    # --- tenants --------------------------------------------------------------------
    def test_tenant_isolation(self, index: VectorIndex) -> None:
        vectors = random_vectors(20)
        index.upsert(ACME, [VectorItem(f"c{i}", "d1", v.tolist()) for i, v in enumerate(vectors)])
        assert index.search(GLOBEX, vectors[0].tolist(), 5) == []
        assert index.count(GLOBEX) == 0
        assert index.delete_document(GLOBEX, "d1") == 0
        assert index.count(ACME) == 20
        # The same chunk ids under another tenant are other points.
        index.upsert(GLOBEX, [VectorItem(f"c{i}", "d1", (-v).tolist()) for i, v in enumerate(vectors[:5])])
        assert index.count(ACME) == 20 and index.count(GLOBEX) == 5
        top = index.search(GLOBEX, vectors[0].tolist(), 5)
        assert {h.chunk_id for h in top} == {f"c{i}" for i in range(5)}
        assert top[-1].chunk_id == "c0" and top[-1].score == pytest.approx(-1.0, abs=1e-5)
        assert index.search(ACME, vectors[0].tolist(), 1)[0].score == pytest.approx(1.0, abs=1e-5)
        assert index.delete_document(GLOBEX, "d1") == 5
        assert index.count(ACME) == 20

    # --- writes ---------------------------------------------------------------------
    def test_upsert_replaces_by_chunk_id(self, index: VectorIndex) -> None:
        index.upsert(ACME, [VectorItem("c1", "d1", unit(0)), VectorItem("c2", "d1", unit(1))])
        index.upsert(ACME, [VectorItem("c1", "d2", unit(3))])
        assert index.count(ACME) == 2
        hit = index.search(ACME, unit(3), 1)[0]
        assert (hit.chunk_id, hit.document_id) == ("c1", "d2")
        assert hit.score == pytest.approx(1.0, abs=1e-5)
        # Nothing points along unit(0) any more: the old vector is gone, not kept beside the new.
        assert max(h.score for h in index.search(ACME, unit(0), 2)) == pytest.approx(0.0, abs=1e-5)

    def test_upsert_in_several_batches(self, index: VectorIndex) -> None:
        n = UPSERT_BATCH * 2 + 7
        vectors = random_vectors(n)
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 3}", v.tolist()) for i, v in enumerate(vectors)])
        assert index.count(ACME) == n
        assert index.search(ACME, vectors[-1].tolist(), 1)[0].chunk_id == f"c{n - 1}"

    def test_upsert_nothing(self, index: VectorIndex) -> None:
        index.upsert(ACME, [])
        assert index.count(ACME) == 0

    def test_delete_document_removes_exactly_that_document(self, index: VectorIndex) -> None:
        vectors = random_vectors(30)
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 3}", v.tolist()) for i, v in enumerate(vectors)])
        assert index.delete_document(ACME, "d1") == 10
        assert index.count(ACME) == 20
        hits = index.search(ACME, vectors[1].tolist(), 30)
        assert len(hits) == 20 and all(h.document_id in {"d0", "d2"} for h in hits)
        assert index.delete_document(ACME, "d1") == 0
        assert index.delete_document(ACME, "never-there") == 0

    def test_document_ids_restriction(self, index: VectorIndex) -> None:
        vectors = random_vectors(30)
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 3}", v.tolist()) for i, v in enumerate(vectors)])
        hits = index.search(ACME, vectors[0].tolist(), 30, document_ids=["d1", "d2"])
        assert len(hits) == 20 and {h.document_id for h in hits} == {"d1", "d2"}
        assert index.search(ACME, vectors[0].tolist(), 5, document_ids=["d0"])[0].chunk_id == "c0"
        assert index.search(ACME, vectors[0].tolist(), 5, document_ids=[]) == []
        assert index.search(ACME, vectors[0].tolist(), 5, document_ids=["unknown"]) == []
        # The restriction never widens the tenant.
        assert index.search(GLOBEX, vectors[0].tolist(), 5, document_ids=["d0"]) == []

    def test_chunk_moved_to_another_document(self, index: VectorIndex) -> None:
        index.upsert(ACME, [VectorItem("c1", "d1", unit(0)), VectorItem("c2", "d1", unit(1))])
        index.upsert(ACME, [VectorItem("c1", "d2", unit(0))])
        assert index.delete_document(ACME, "d1") == 1
        assert [h.chunk_id for h in index.search(ACME, unit(0), 5)] == ["c1"]
        assert index.delete_document(ACME, "d2") == 1
        assert index.count(ACME) == 0

    def test_weird_tenant_string(self, index: VectorIndex) -> None:
        vectors = random_vectors(10)
        index.upsert(WEIRD, [VectorItem(f"c{i}", "d1", v.tolist()) for i, v in enumerate(vectors)])
        index.upsert(ACME, [VectorItem("c0", "d1", (-vectors[0]).tolist())])
        assert (index.count(WEIRD), index.count(ACME), index.count(WEIRD[:-1])) == (10, 1, 0)
        assert index.search(WEIRD, vectors[0].tolist(), 1)[0].score == pytest.approx(1.0, abs=1e-5)
        assert index.search(WEIRD[:-1], vectors[0].tolist(), 1) == []
        assert index.delete_document(ACME, "d1") == 1
        assert index.count(WEIRD) == 10
        assert index.delete_document(WEIRD, "d1") == 10

    def test_count(self, index: VectorIndex) -> None:
        index.upsert(ACME, [VectorItem(f"c{i}", "d", unit(i % DIM)) for i in range(12)])
        index.upsert(GLOBEX, [VectorItem("c0", "d", unit(0))])
        assert (index.count(ACME), index.count(GLOBEX), index.count("initech")) == (12, 1, 0)


# --- implementations --------------------------------------------------------------------
class TestQdrantLocal(VectorIndexConformance):
    @pytest.fixture
    def index(self, tmp_path: Path) -> Iterator[VectorIndex]:
        index = QdrantVectorIndex.local(tmp_path / "qdrant", DIM)
        yield index
        index.close()

    def test_kind(self, index: QdrantVectorIndex) -> None:
        assert (index.backend, index.embedded) == ("qdrant-local", True)

    def test_no_payload_index_warning_in_local_mode(self, tmp_path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            index = QdrantVectorIndex.local(tmp_path / "q", DIM)
            index.upsert(ACME, [VectorItem("c", "d", unit(0))])
            index.search(ACME, unit(0), 1)
            index.close()

    def test_persists_across_reopen(self, tmp_path: Path) -> None:
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        index.upsert(ACME, [VectorItem("c", "d", unit(4))])
        index.close()
        reopened = QdrantVectorIndex.local(tmp_path / "q", DIM)
        try:
            assert reopened.count(ACME) == 1
            assert reopened.search(ACME, unit(4), 1)[0].chunk_id == "c"
        finally:
            reopened.close()

    def test_concurrent_calls(self, index: QdrantVectorIndex) -> None:
        # Local mode is not thread-safe by itself: the index's lock must make it so.
        vectors = random_vectors(40)
        errors: list[BaseException] = []

        def work(tenant: str) -> None:
            try:
                for i, v in enumerate(vectors):
                    index.upsert(tenant, [VectorItem(f"c{i}", f"d{i % 4}", v.tolist())])
                    index.search(tenant, v.tolist(), 3)
                    if i % 10 == 9:
                        index.delete_document(tenant, "d1")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(f"tenant-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        # c1, c5, ... (document d1) last re-added at i=37; deleted at i=39: 10 deleted, 30 remain
        assert [index.count(f"tenant-{n}") for n in range(4)] == [30] * 4

    def test_reopen_keeps_every_tenant(self, tmp_path: Path) -> None:
        vectors = random_vectors(30)
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 3}", v.tolist()) for i, v in enumerate(vectors)])
        index.upsert(WEIRD, [VectorItem("w", "dw", unit(5))])
        index.upsert(GLOBEX, [VectorItem("g", "dg", unit(6))])
        assert index.delete_document(GLOBEX, "dg") == 1  # an emptied collection stays empty after reopen
        index.close()
        reopened = QdrantVectorIndex.local(tmp_path / "q", DIM)
        try:
            assert (reopened.count(ACME), reopened.count(WEIRD), reopened.count(GLOBEX)) == (30, 1, 0)
            assert reopened.search(ACME, vectors[7].tolist(), 1)[0].chunk_id == "c7"
            assert reopened.search(WEIRD, unit(5), 1)[0].chunk_id == "w"
            assert reopened.search(GLOBEX, unit(6), 1) == []
            # Which points each document has is read back from the store.
            assert reopened.delete_document(ACME, "d1") == 10
            reopened.upsert(ACME, [VectorItem("c0", "d1", vectors[0].tolist())])  # moves c0 from d0 to d1
            assert reopened.delete_document(ACME, "d0") == 9
            assert reopened.count(ACME) == 11
        finally:
            reopened.close()

    def test_a_collection_per_tenant(self, tmp_path: Path) -> None:
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        try:
            assert index._client.get_collections().collections == []  # made on first upsert
            index.search(WEIRD, unit(0), 1)
            index.count(WEIRD)
            index.delete_document(WEIRD, "d")
            assert index._client.get_collections().collections == []  # reads create nothing
            index.upsert(WEIRD, [VectorItem("c", "d", unit(0))])
            index.upsert(ACME, [VectorItem("c", "d", unit(0))])
            names = sorted(c.name for c in index._client.get_collections().collections)
            assert names == sorted([tenant_collection(COLLECTION, WEIRD), tenant_collection(COLLECTION, ACME)])
            assert all(len(name) == len(COLLECTION) + 2 + 32 and name.isascii() for name in names)
            assert index._client.get_collection(tenant_collection(COLLECTION, WEIRD)).config.metadata == {
                "tenant": WEIRD}
            on_disk = sorted(p.name for p in (tmp_path / "q" / "collection").iterdir())
            assert on_disk == names
        finally:
            index.close()
        assert tenant_collection(COLLECTION, "a") != tenant_collection(COLLECTION, "A")

    def test_local_searches_carry_no_tenant_filter(self, index: QdrantVectorIndex) -> None:
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 2}", unit(i)) for i in range(4)])
        index._client = RecordingClient(index._client)  # type: ignore[assignment]
        index.search(ACME, unit(0), 3)
        index.search(ACME, unit(0), 3, document_ids=["d1"])
        queries = [(args[0], kwargs["query_filter"]) for name, args, kwargs in index._client.calls
                   if name == "query_points"]
        restricted = models.Filter(must=[models.FieldCondition(key="document_id",
                                                               match=models.MatchAny(any=["d1"]))])
        assert queries == [(tenant_collection(COLLECTION, ACME), None),
                           (tenant_collection(COLLECTION, ACME), restricted)]

    def test_a_shared_collection_is_split_per_tenant_on_open(self, tmp_path: Path) -> None:
        # A store as local mode wrote it before: one collection, tenant in the payload.
        vectors = random_vectors(20)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            shared = QdrantVectorIndex(QdrantClient(path=str(tmp_path / "q")), DIM, embedded=False, location="old")
            shared.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 2}", v.tolist()) for i, v in enumerate(vectors)])
            shared.upsert(WEIRD, [VectorItem("c0", "w", unit(3))])
            shared.close()
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        try:
            names = {c.name for c in index._client.get_collections().collections}
            assert names == {tenant_collection(COLLECTION, ACME), tenant_collection(COLLECTION, WEIRD)}
            assert (index.count(ACME), index.count(WEIRD)) == (20, 1)
            assert index.search(ACME, vectors[4].tolist(), 1)[0].chunk_id == "c4"
            assert index.search(WEIRD, unit(3), 1)[0].chunk_id == "c0"
            assert index.delete_document(ACME, "d1") == 10
            index.upsert(ACME, [VectorItem("c1", "d1", vectors[1].tolist())])  # same point id as before the split
            assert index.count(ACME) == 11
        finally:
            index.close()

    # --- one commit per call ----------------------------------------------------------
    def test_writes_commit_once_per_call(self, index: QdrantVectorIndex) -> None:
        index.upsert(ACME, [VectorItem("c0", "d", unit(0))])
        connection = index._client._client.collections[tenant_collection(COLLECTION, ACME)].storage.storage
        # If a qdrant-client upgrade moves its local storage, this adapter stops being installed.
        assert isinstance(connection, OneCommitPerCall)
        before = connection.total_changes
        commits = CountingCommits(connection.connection)
        connection.connection = commits  # type: ignore[assignment]
        index.upsert(ACME, [VectorItem(f"c{i}", "d", unit(i)) for i in range(1, 12)])
        assert commits.commits == 1
        assert index.delete_document(ACME, "d") == 12
        assert commits.commits == 2
        assert connection.total_changes == before + 11 + 12

    def test_batch_upsert_survives_reopen(self, tmp_path: Path) -> None:
        n = UPSERT_BATCH * 2 + 7
        vectors = random_vectors(n)
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 5}", v.tolist()) for i, v in enumerate(vectors)])
        index.upsert(ACME, [VectorItem("c0", "d9", vectors[1].tolist())])  # replaces c0, in a later commit
        index.close()
        reopened = QdrantVectorIndex.local(tmp_path / "q", DIM)
        try:
            assert reopened.count(ACME) == n
            for i in range(2, n, 37):
                assert reopened.search(ACME, vectors[i].tolist(), 1)[0].chunk_id == f"c{i}"
            assert {h.chunk_id for h in reopened.search(ACME, vectors[1].tolist(), 2)} == {"c0", "c1"}
            assert reopened.delete_document(ACME, "d9") == 1
        finally:
            reopened.close()

    def test_a_failed_commit_leaves_memory_as_the_disk(self, tmp_path: Path) -> None:
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        try:
            index.upsert(ACME, [VectorItem("kept", "d1", unit(0))])
            adapter = index._client._client.collections[tenant_collection(COLLECTION, ACME)].storage.storage
            adapter.connection = FailingCommit(adapter.connection)
            with pytest.raises(StoreError, match="disk I/O error"):
                index.upsert(ACME, [VectorItem("lost", "d1", unit(1)), VectorItem("kept", "d2", unit(2))])
            # The index reloaded from disk: neither point of the failed call is there.
            assert index.count(ACME) == 1
            hit = index.search(ACME, unit(0), 2)
            assert [(h.chunk_id, h.document_id) for h in hit] == [("kept", "d1")]
            # The same for a delete, on the reloaded client (which writes again).
            index.upsert(ACME, [VectorItem("extra", "d3", unit(3))])
            adapter = index._client._client.collections[tenant_collection(COLLECTION, ACME)].storage.storage
            adapter.connection = FailingCommit(adapter.connection)
            with pytest.raises(StoreError, match="disk I/O error"):
                index.delete_document(ACME, "d1")
            assert index.count(ACME) == 2
            assert index.search(ACME, unit(0), 1)[0].chunk_id == "kept"
            assert index.delete_document(ACME, "d1") == 1
        finally:
            index.close()
        reopened = QdrantVectorIndex.local(tmp_path / "q", DIM)
        try:
            assert reopened.count(ACME) == 1
            assert reopened.search(ACME, unit(3), 1)[0].chunk_id == "extra"
        finally:
            reopened.close()

    def test_one_owner_per_folder(self, index: QdrantVectorIndex) -> None:
        with pytest.raises(StoreError, match="already accessed"):
            QdrantVectorIndex.local(index.location, DIM)

    def test_dimension_mismatch_on_reopen(self, tmp_path: Path) -> None:
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        index.upsert(ACME, [VectorItem("c", "d", unit(0))])  # collections are made on first upsert
        index.close()
        with pytest.raises(StoreError, match="expects 32-d"):
            QdrantVectorIndex.local(tmp_path / "q", 32)
        QdrantVectorIndex.local(tmp_path / "q", DIM).close()  # the failed open released the folder

    def test_closed_index_raises_store_error(self, tmp_path: Path) -> None:
        index = QdrantVectorIndex.local(tmp_path / "q", DIM)
        index.close()
        with pytest.raises(StoreError):
            index.count(ACME)
        assert not index.ping().healthy
        index.close()  # idempotent

    def test_point_ids_are_deterministic_per_tenant(self) -> None:
        assert point_id(ACME, "c1") == point_id(ACME, "c1")
        assert point_id(ACME, "c1") != point_id(GLOBEX, "c1")
        assert point_id("a", "b\x1fc") != point_id("a\x1fb", "c")
        assert uuid.UUID(point_id(ACME, "c1")).version == 5


def test_factory_picks_local_mode_by_default(tmp_path: Path) -> None:
    index = create_vector_index(Settings(STRATMASTER_DATA_DIR=tmp_path), DIM)
    try:
        assert (index.backend, index.embedded) == ("qdrant-local", True)
        assert (tmp_path / "qdrant").is_dir()
    finally:
        index.close()


def test_factory_picks_the_server_without_connecting(tmp_path: Path) -> None:
    index = create_vector_index(Settings(STRATMASTER_DATA_DIR=tmp_path, QDRANT_URL="http://127.0.0.1:1"), DIM)
    try:
        assert (index.backend, index.embedded) == ("qdrant", False)
        health = index.ping()
        assert not health.healthy and "127.0.0.1:1" in (health.detail or "")
        with pytest.raises(StoreError):
            index.count(ACME)
    finally:
        index.close()


class RecordingClient:
    """A QdrantClient proxy that records every call (name, args, kwargs)."""

    def __init__(self, inner: QdrantClient) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return attribute(*args, **kwargs)

        return record


class CountingCommits:
    """A sqlite connection stand-in that counts commits."""

    def __init__(self, inner: sqlite3.Connection) -> None:
        self.inner = inner
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self) -> None:
        self.commits += 1
        self.inner.commit()


class FailingCommit:
    """A sqlite connection stand-in whose commit fails, as on a full or broken disk."""

    def __init__(self, inner: sqlite3.Connection) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")


def tenant_of(query_filter: models.Filter) -> str | None:
    for condition in query_filter.must or []:
        if isinstance(condition, models.FieldCondition) and condition.key == "tenant":
            return condition.match.value  # type: ignore[union-attr]
    return None


class TestServerCodePath(VectorIndexConformance):
    """The server branch (no lock, payload indexes created) over an in-memory client.

    No Qdrant server runs here; this runs the suite through the code a server would get
    and checks the requests themselves: the indexes asked for, a tenant filter on every read.
    """

    @pytest.fixture
    def index(self) -> Iterator[VectorIndex]:
        client = RecordingClient(QdrantClient(location=":memory:"))
        index = QdrantVectorIndex(client, DIM, embedded=False, location="memory")  # type: ignore[arg-type]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            yield index
        index.close()

    def test_kind(self, index: QdrantVectorIndex) -> None:
        assert (index.backend, index.embedded) == ("qdrant", False)

    def test_payload_indexes_are_created_once(self, index: QdrantVectorIndex) -> None:
        index.upsert(ACME, [VectorItem("c", "d", unit(0))])
        index.count(ACME)
        calls = [(kwargs["field_name"], kwargs["field_schema"]) for name, _, kwargs in index._client.calls
                 if name == "create_payload_index"]
        assert calls == [
            ("tenant", models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)),
            ("document_id", models.PayloadSchemaType.KEYWORD),
        ]

    def test_every_read_and_delete_is_filtered_by_tenant(self, index: QdrantVectorIndex) -> None:
        index.upsert(ACME, [VectorItem(f"c{i}", f"d{i % 2}", unit(i)) for i in range(4)])
        index.search(ACME, unit(0), 3)
        index.search(ACME, unit(0), 3, document_ids=["d1"])
        index.count(GLOBEX)
        index.delete_document(ACME, "d0")
        seen = []
        for name, _, kwargs in index._client.calls:
            if name == "query_points":
                seen.append((name, tenant_of(kwargs["query_filter"])))
            elif name == "count":
                seen.append((name, tenant_of(kwargs["count_filter"])))
            elif name == "delete":
                seen.append((name, tenant_of(kwargs["points_selector"].filter)))
        assert seen == [("query_points", ACME), ("query_points", ACME), ("count", GLOBEX), ("count", ACME),
                        ("delete", ACME)]

    def test_an_old_server_without_is_tenant_gets_a_plain_index(self) -> None:
        inner = QdrantClient(location=":memory:")
        client = RecordingClient(inner)
        real = inner.create_payload_index

        def picky(collection_name: str, field_name: str, field_schema: Any = None, **kwargs: Any) -> Any:
            if isinstance(field_schema, models.KeywordIndexParams):
                raise RuntimeError("unknown field is_tenant")
            return real(collection_name, field_name, field_schema=field_schema, **kwargs)

        inner.create_payload_index = picky  # type: ignore[method-assign]
        index = QdrantVectorIndex(client, DIM, embedded=False, location="memory")  # type: ignore[arg-type]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            assert index.count(ACME) == 0
        fields = [(kwargs["field_name"], kwargs["field_schema"]) for name, _, kwargs in client.calls
                  if name == "create_payload_index"]
        assert ("tenant", models.PayloadSchemaType.KEYWORD) in fields
        index.close()


@pytest.mark.skipif(not os.environ.get("TEST_QDRANT_URL"), reason="needs a Qdrant server (TEST_QDRANT_URL)")
class TestQdrantServer(VectorIndexConformance):
    @pytest.fixture
    def index(self) -> Iterator[VectorIndex]:
        collection = f"conformance_{uuid.uuid4().hex[:12]}"
        index = QdrantVectorIndex.server(os.environ["TEST_QDRANT_URL"], DIM, collection=collection)
        yield index
        index._client.delete_collection(collection)
        index.close()
