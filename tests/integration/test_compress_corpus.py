"""pipelines.compress_corpus on a local folder store of ~50 text objects, with real Ray tasks.

Its own short-lived local Ray (2 CPUs, no dashboard), or the running one if a test already
started Ray; the tasks get the throw-away data dir through their runtime_env either way.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import compress_corpus as cc
from stratmaster.settings import get_settings
from stratmaster.stores.objects import LocalFolderObjectStore

pytestmark = pytest.mark.cluster

CISI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cisi" / "corpus.jsonl"
TENANT = "acme"


def corpus_texts(count: int) -> list[bytes]:
    """`count` text objects: 8 CISI documents each as JSON lines, or generated prose without CISI."""
    if CISI.is_file():
        lines = CISI.read_text().splitlines()[: count * 8]
        return ["\n".join(lines[i:i + 8]).encode() for i in range(0, len(lines), 8)]
    return [b"".join(f"Object {n} line {i}: market, margin and risk evidence.\n".encode() for i in range(120))
            for n in range(count)]


@pytest.fixture
def ray_local(monkeypatch, tmp_path: Path) -> Iterator[dict]:
    import ray

    data_dir = tmp_path / "data"
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    get_settings.cache_clear()
    owned = not ray.is_initialized()
    if owned:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 _temp_dir=tempfile.mkdtemp(prefix="smcc", dir="/tmp"))  # short: Ray's socket paths
    try:
        yield {"env_vars": {"STRATMASTER_DATA_DIR": str(data_dir)}}
    finally:
        if owned:
            ray.shutdown()
        get_settings.cache_clear()


def test_compress_corpus_end_to_end(ray_local: dict, tmp_path: Path) -> None:
    store = LocalFolderObjectStore(tmp_path / "data" / "objects")
    texts = corpus_texts(48)
    for n, text in enumerate(texts):
        store.put(TENANT, f"documents/{n:03d}.jsonl", text, content_type="application/jsonl",
                  metadata={"n": str(n)}, compress=False)
    # Two written before codecs existed (no codec in the sidecar) and a small one, which stays identity.
    for n in (48, 49):
        (store.root / TENANT / "documents" / f"{n:03d}.jsonl").write_bytes(texts[n - 48])
        (store.root / ".meta" / TENANT / "documents" / f"{n:03d}.jsonl").write_text(json.dumps(
            {"size": len(texts[n - 48]), "sha256": store.stat(TENANT, f"documents/{n - 48:03d}.jsonl").sha256,
             "content_type": "application/jsonl", "modified_at": datetime.now(UTC).isoformat(), "metadata": {}}))
    store.put(TENANT, "documents/small.txt", b"a short note", compress=False)
    store.put("globex", "documents/other.txt", texts[0], compress=False)  # another tenant: never touched
    originals = {info.key: store.get(TENANT, info.key) for info in store.list(TENANT)}
    assert len(originals) == 51 and all(i.codec == "identity" for i in store.list(TENANT))

    config = cc.CompressCorpusConfig(name="it", tenant=TENANT, prefix="documents/", batch_size=8,
                                     output_dir=tmp_path / "results")
    result = cc.run(config, runtime_env=ray_local)

    assert result["kind"] == "compress_corpus"
    assert (result["listed"], result["candidates"], result["batches"]) == (51, 50, 7)
    run = result["run"]
    assert run["compressed"] == 50 and run["objects"] == 50
    assert run["ratio"] > 1 and run["bytes_after"] < run["bytes_before"]
    assert run["throughput_mb_s"] > 0
    print(f"\ncompress_corpus on {run['objects']} objects: {run['bytes_before']} -> {run['bytes_after']} bytes, "
          f"ratio {run['ratio']}, {run['throughput_mb_s']} MB/s wall ({run['seconds']} s), "
          f"{run['task_throughput_mb_s']} MB/s per busy task")
    assert result["corpus"]["zstd_objects"] == 50 and result["corpus"]["ratio"] > 1
    for key, data in originals.items():
        assert store.get(TENANT, key) == data
    assert store.stat(TENANT, "documents/007.jsonl").metadata == {"n": "7"}
    assert store.stat(TENANT, "documents/small.txt").codec == "identity"
    assert store.stat("globex", "documents/other.txt").codec == "identity"
    written = json.loads((tmp_path / "results" / "it" / "compress.json").read_text())
    assert written["run"]["ratio"] == run["ratio"]
    assert json.loads((tmp_path / "results" / "it" / "progress.json").read_text())["phase"] == "done"

    rerun = cc.run(config, runtime_env=ray_local)
    assert (rerun["candidates"], rerun["batches"], rerun["run"]["objects"]) == (0, 0, 0)
    assert rerun["all_runs"]["compressed"] == 50
    for key, data in originals.items():
        assert store.get(TENANT, key) == data
