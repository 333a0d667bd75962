"""KnowledgeService on embedded stores with a stand-in embedder: ingestion's bookkeeping
(groups, concurrency, failures), without a cluster or the model."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.knowledge.chunking import WordpieceCounter
from stratmaster.knowledge.config import PiiConfig, load_knowledge_config
from stratmaster.knowledge.repository import DocumentRepository
from stratmaster.knowledge.schemas import SearchRequest
from stratmaster.knowledge.service import EMBED_GROUP_CHUNKS, KnowledgeService, KnowledgeStores
from stratmaster.settings import ConfigurationError, load_settings
from stratmaster.stores.graph import create_graph_store
from stratmaster.stores.keyword import create_keyword_index
from stratmaster.stores.objects import create_object_store
from stratmaster.stores.vectors import create_vector_index

TENANT = "acme"


def hashed_vectors(texts: Sequence[str]) -> np.ndarray:
    """Deterministic unit vectors per text: enough to exercise storage, not meaning."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
        rows.append(vector / np.linalg.norm(vector))
    return np.stack(rows)


@pytest.fixture
def service(tmp_path: Path) -> KnowledgeService:
    settings = load_settings(STRATMASTER_DATA_DIR=str(tmp_path))
    upgrade(settings.effective_database_url)
    stores = KnowledgeStores(create_object_store(settings), create_keyword_index(settings),
                             create_vector_index(settings, 384), create_graph_store(settings))
    return KnowledgeService(DocumentRepository(create_db_engine(settings.effective_database_url)), stores,
                            WordpieceCounter(), hashed_vectors, load_knowledge_config())


def town(number: int) -> str:
    """A word of its own per document (the analyzer drops bare numbers)."""
    return "".join("bcdfghjklm"[int(digit)] for digit in str(number)) + "ville"


def documents(count: int, version: str = "original") -> list[dict[str, str]]:
    return [{"id": f"doc-{i}", "title": f"Report {i}",
             "text": f"Premium pricing study ({version}). Customers in {town(i)} stayed loyal."}
            for i in range(count)]


def test_more_documents_than_one_group_are_all_written(service):
    batch = documents(EMBED_GROUP_CHUNKS * 3 + 5)
    result = service.ingest(TENANT, batch)
    assert result.counts == {"created": len(batch)}
    assert service.counts(TENANT) == {"documents": len(batch), "chunks": len(batch)}
    hits = service.search(TENANT, SearchRequest(query=f"loyal in {town(7)}", mode="keyword", k=3)).hits
    assert hits[0].document_id == "doc-7"


def test_concurrent_batches_of_the_same_documents_write_each_once(service):
    batch = documents(80)
    results = []

    def send() -> None:
        results.append(service.ingest(TENANT, batch))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = Counter(r.status for result in results for r in result.results)
    assert statuses == {"created": 80, "unchanged": 160}
    assert service.counts(TENANT) == {"documents": 80, "chunks": 80}
    assert service.stores.keyword.count(TENANT) == 80 and service.stores.vectors.count(TENANT) == 80


def test_a_changed_document_in_a_later_batch_replaces_its_chunks(service):
    service.ingest(TENANT, documents(3))
    result = service.ingest(TENANT, documents(3, version="revised")[:1])
    assert [r.status for r in result.results] == ["updated"]
    assert service.stores.keyword.count(TENANT) == 3
    [hit] = service.search(TENANT, SearchRequest(query="revised", mode="keyword", k=5)).hits
    assert hit.document_id == "doc-0"


def test_an_embedding_failure_fails_its_documents_and_stores_nothing(service):
    def broken(texts: Sequence[str]) -> np.ndarray:
        raise ConnectionError("embedder replica is gone")

    service.embed = broken
    result = service.ingest(TENANT, documents(2))
    assert {(r.status, r.http_status, r.error["code"]) for r in result.results} == {
        ("failed", 503, "embedder_unavailable")}
    assert "embedder replica is gone" in result.results[0].error["message"]
    assert service.counts(TENANT) == {"documents": 0, "chunks": 0}
    assert service.stores.keyword.count(TENANT) == 0


# --- PII policy at ingestion ------------------------------------------------------------------
PII_DOC = {"id": "crm-1", "title": "Call notes for ana@example.com",
           "text": "Ana (ana@example.com, +44 20 7946 0958) prefers the premium tier. Card 4111 1111 1111 1111."}


def service_with(tmp_path: Path, pii: dict, keys: str | None = None) -> KnowledgeService:
    import base64

    overrides = {"STRATMASTER_DATA_DIR": str(tmp_path)}
    if keys:
        overrides["STRATMASTER_ENCRYPTION_KEYS"] = f"k1={base64.b64encode(b'k' * 32).decode()}"
    settings = load_settings(**overrides)
    upgrade(settings.effective_database_url)
    stores = KnowledgeStores(create_object_store(settings), create_keyword_index(settings),
                             create_vector_index(settings, 384), create_graph_store(settings))
    config = load_knowledge_config().model_copy(update={"pii": PiiConfig.model_validate(pii)})
    return KnowledgeService(DocumentRepository(create_db_engine(settings.effective_database_url)), stores,
                            WordpieceCounter(), hashed_vectors, config)


def test_reject_refuses_the_document_naming_kinds_not_values(tmp_path):
    service = service_with(tmp_path, {"default": "allow", "tenants": {"acme": "reject"}})
    result = service.ingest("acme", [PII_DOC, documents(1)[0]])
    refused, stored = result.results
    assert (refused.status, refused.http_status, refused.error["code"]) == ("rejected", 422, "pii_rejected")
    assert "card_number x1, email x2, phone x1" in refused.error["message"]
    assert "ana@example.com" not in refused.error["message"] and stored.status == "created"
    assert service.ingest("globex", [PII_DOC]).results[0].status == "created", "other tenants: the default"


def test_redact_indexes_and_stores_only_the_redacted_text(tmp_path):
    service = service_with(tmp_path, {"default": "redact"})
    assert service.ingest("acme", [PII_DOC]).results[0].status == "created"
    record, chunks = service.get_document("acme", "crm-1")
    text = " ".join(c.text for c in chunks)
    assert "[EMAIL]" in text and "[PHONE]" in text and "[CARD_NUMBER]" in text
    assert "ana@example.com" not in text and "4111" not in text
    objects = service.stores.objects
    for info in objects.list("acme"):
        assert b"ana@example.com" not in objects.get("acme", info.key), info.key
    assert not any(i.key.endswith("pii-original.json") for i in objects.list("acme")), "keep_original: none"
    assert service.ingest("acme", [PII_DOC]).results[0].status == "unchanged", "a re-send is still a no-op"
    hits = service.search("acme", SearchRequest(query="premium tier", mode="keyword"))
    assert hits.hits and "ana@example.com" not in hits.hits[0].text


def test_redact_can_keep_the_original_only_encrypted(tmp_path):
    with pytest.raises(ConfigurationError, match="STRATMASTER_ENCRYPTION_KEYS"):
        service_with(tmp_path / "plain", {"default": "redact", "keep_original": "encrypted"})
    service = service_with(tmp_path / "sealed", {"default": "redact", "keep_original": "encrypted"}, keys="yes")
    service.ingest("acme", [PII_DOC])
    objects = service.stores.objects
    (kept,) = [i for i in objects.list("acme") if i.key.endswith("pii-original.json")]
    assert kept.key_id == "k1"
    assert json.loads(objects.get("acme", kept.key))["text"] == PII_DOC["text"]
    raw = (tmp_path / "sealed" / "objects" / "acme" / kept.key).read_bytes()
    assert b"ana@example.com" not in raw
    service.delete("acme", "crm-1")
    assert objects.list("acme") == []


def test_embeddings_are_cached_per_tenant_so_timing_reveals_nothing_across_tenants(tmp_path):
    from stratmaster.knowledge.embedding import CachedEmbedder, SqliteEmbeddingCache

    class Counting:
        model_id, dimension = "hashed", 384

        def __init__(self) -> None:
            self.texts = 0

        def embed(self, texts, batch_size=64):
            self.texts += len(texts)
            return hashed_vectors(texts)

    model = Counting()
    cached = CachedEmbedder(model, SqliteEmbeddingCache(tmp_path / "cache.sqlite"))
    settings = load_settings(STRATMASTER_DATA_DIR=str(tmp_path))
    upgrade(settings.effective_database_url)
    stores = KnowledgeStores(create_object_store(settings), create_keyword_index(settings),
                             create_vector_index(settings, 384), create_graph_store(settings))
    service = KnowledgeService(DocumentRepository(create_db_engine(settings.effective_database_url)), stores,
                               WordpieceCounter(), cached.embed, load_knowledge_config())
    service.ingest("acme", documents(3))
    first = model.texts
    service.ingest("globex", documents(3))
    assert model.texts == 2 * first, "another tenant's identical texts are embedded afresh, not served from cache"
    service.ingest("acme", documents(3, version="changed"))
    service.ingest("acme", documents(3, version="original") + documents(1, version="other"))
    assert cached.hits > 0, "a tenant's own repeats still hit the cache"
