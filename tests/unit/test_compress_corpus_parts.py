"""pipelines.compress_corpus without Ray: the config, the pure parts, one batch run in process."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import compress_corpus as cc
from stratmaster.stores.objects import LocalFolderObjectStore
from stratmaster.stores.protocols import ObjectInfo

REPO = Path(__file__).resolve().parents[2]
TEXT = b"".join(f"Line {i}: evidence for the strategy brief, sorted by relevance.\n".encode() for i in range(200))


def info(key: str, size: int = 4096, codec: str = "identity", sha: str | None = None) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, sha256=sha or f"sha-{key}", content_type="text/plain",
                      modified_at=datetime.now(UTC), codec=codec, stored_size=size if codec == "identity" else 100)


@pytest.fixture
def data_dir(monkeypatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    return tmp_path / "data"


def test_the_shipped_config_loads() -> None:
    config = cc.load_config(REPO / "configs" / "pipelines" / "compress-corpus.yaml")
    assert (config.tenant, config.prefix, config.zstd_level) == ("acme", "documents/", 3)
    assert config.codec().min_bytes == config.min_bytes


@pytest.mark.parametrize("field, value", [("tenant", "../x"), ("prefix", "../"), ("zstd_level", 23),
                                          ("batch_size", 0), ("unknown", 1)])
def test_bad_configs_name_the_field(tmp_path: Path, field: str, value: object) -> None:
    raw = {"name": "n", "tenant": "acme", field: value}
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in raw.items()))
    with pytest.raises(SystemExit, match=field):
        cc.load_config(path)


def test_candidates_are_large_identity_objects_not_settled_as_they_are() -> None:
    infos = [info("a"), info("small", size=10), info("zipped", codec="zstd"), info("settled"),
             info("changed", sha="new")]
    settled = {"settled": "sha-settled", "changed": "sha-changed"}
    assert [i.key for i in cc.candidates(infos, 1024, settled)] == ["a", "changed"]


def test_settled_objects_take_the_latest_batch_and_only_settling_outcomes() -> None:
    batches = [
        {"ended_at": 2.0, "objects": [{"key": "a", "sha256": "new", "outcome": "compressed"}]},
        {"ended_at": 1.0, "objects": [{"key": "a", "sha256": "old", "outcome": "kept"},
                                      {"key": "b", "sha256": "x", "outcome": "changed"},
                                      {"key": "c", "sha256": "y", "outcome": "already"}]},
    ]
    assert cc.settled_objects(batches) == {"a": "new", "c": "y"}


def test_batches_are_ordered_bounded_and_named_by_content() -> None:
    batches = cc.make_batches([info(k) for k in "edcba"], 2)
    assert batches == [[("a", "sha-a"), ("b", "sha-b")], [("c", "sha-c"), ("d", "sha-d")], [("e", "sha-e")]]
    assert cc.batch_id(batches[0]) == cc.batch_id(list(batches[0])) != cc.batch_id(batches[1])


def test_totals_ratio_and_throughput() -> None:
    entries = [{"outcome": "compressed", "bytes_before": 3_000_000, "bytes_after": 1_000_000},
               {"outcome": "kept", "bytes_before": 1_000_000, "bytes_after": 1_000_000},
               {"outcome": "changed"}]
    summary = cc.totals(entries, seconds=2.0)
    assert summary == {"objects": 2, "compressed": 1, "kept_identity": 1, "bytes_before": 4_000_000,
                       "bytes_after": 2_000_000, "ratio": 2.0, "seconds": 2.0, "throughput_mb_s": 2.0}
    assert cc.totals([], seconds=0.0)["ratio"] is None and cc.totals([], 0.0)["throughput_mb_s"] is None


def test_corpus_state() -> None:
    state = cc.corpus_state([info("a", size=1000), info("b", size=3000, codec="zstd")])
    assert state == {"objects": 2, "zstd_objects": 1, "bytes": 4000, "stored_bytes": 1100, "ratio": 3.6364}


def test_compress_batch_in_process(data_dir: Path) -> None:
    store = LocalFolderObjectStore(data_dir / "objects")
    store.put("acme", "docs/big.txt", TEXT, content_type="text/plain", metadata={"k": "v"}, compress=False)
    store.put("acme", "docs/random.bin", os.urandom(8192), compress=False)
    store.put("acme", "docs/moved.txt", TEXT, compress=False)
    batch = [("docs/big.txt", store.stat("acme", "docs/big.txt").sha256),
             ("docs/random.bin", store.stat("acme", "docs/random.bin").sha256),
             ("docs/moved.txt", "sha-of-an-older-version"), ("docs/gone.txt", "x")]
    row = cc.compress_batch("acme", batch, level=3, min_bytes=1024, min_saving=0.1)
    outcomes = {entry["key"]: entry["outcome"] for entry in row["objects"]}
    assert outcomes == {"docs/big.txt": "compressed", "docs/random.bin": "kept", "docs/moved.txt": "changed",
                        "docs/gone.txt": "missing"}
    big = store.stat("acme", "docs/big.txt")
    assert (big.codec, big.content_type, big.metadata, big.size) == ("zstd", "text/plain", {"k": "v"}, len(TEXT))
    assert store.get("acme", "docs/big.txt") == TEXT
    assert store.stat("acme", "docs/moved.txt").codec == "identity"  # not touched
    again = cc.compress_batch("acme", batch[:1], level=3, min_bytes=1024, min_saving=0.1)
    assert again["objects"][0]["outcome"] == "already"
