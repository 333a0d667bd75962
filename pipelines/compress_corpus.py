"""Compress corpus: rewrite a tenant's still-uncompressed stored objects as zstd, in parallel Ray tasks.

    python -m pipelines.compress_corpus --config configs/pipelines/compress-corpus.yaml
    ray job submit --working-dir . -- python -m pipelines.compress_corpus --config configs/pipelines/<file>.yaml

The driver lists the tenant's objects under the prefix (the object store named by the
settings: a local folder, or S3 when MINIO_ENDPOINT is set) and picks those stored as
"identity" with at least `min_bytes`. They are cut into batches of `batch_size` keys, one
Ray task per batch; each task opens the object store from the settings, reads every
object, checks it is still the one listed (same SHA-256), and writes it back through
`put(compress=None)` with the config's zstd level, keeping its content type and
metadata: the store's codec rule decides, so data that does not shrink by `min_saving`
(already-compressed PDFs, images) is written back unchanged, as "identity", once.

Each finished batch is a file under `<output_dir>/<name>/batches/`: a rerun skips every
object a batch already handled with the same SHA-256 (and compressed objects are no longer
candidates), so it compresses nothing new unless objects were added or changed. The result
(`compress.json`, `"kind": "compress_corpus"`) gives this run's objects, bytes before and
after, ratio and MB/s (original bytes per second of the batch phase's wall time), the
totals over every run, and the state of the whole prefix afterwards.

Another writer changing an object between the task's read and its write would be undone
(stores have no compare-and-swap here): run it on a prefix nobody writes to meanwhile.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported

import hashlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, field_validator  # noqa: E402

from pipelines import common  # noqa: E402
from stratmaster.evals.retrieval_eval import write_json  # noqa: E402
from stratmaster.stores.objects import IDENTITY, ZSTD, ObjectCodec, validate_prefix, validate_tenant  # noqa: E402
from stratmaster.stores.protocols import ObjectInfo  # noqa: E402

KIND = "compress_corpus"
# What a batch did with an object; those that settle it (a rerun skips them while unchanged).
SETTLED = frozenset({"compressed", "kept", "already"})


class CompressCorpusConfig(BaseModel):
    """Which objects to compress, how hard, and where the result goes."""

    model_config = ConfigDict(extra="forbid")

    name: common.RunName
    tenant: str
    prefix: str = ""
    batch_size: int = Field(64, ge=1, le=10_000)
    zstd_level: int = Field(3, ge=1, le=22)
    min_bytes: int = Field(1024, ge=0)  # smaller objects stay identity: a frame's overhead eats the saving
    min_saving: float = Field(0.1, ge=0.0, lt=1.0)
    output_dir: Path = Path("bench/results/compress")

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        return validate_tenant(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return validate_prefix(value)

    def codec(self) -> ObjectCodec:
        return ObjectCodec(level=self.zstd_level, min_bytes=self.min_bytes, min_saving=self.min_saving)


def load_config(path: Path) -> CompressCorpusConfig:
    return common.load_config(path, CompressCorpusConfig)


# --- pure parts ---------------------------------------------------------------------------------
def settled_objects(batch_results: Iterable[dict[str, Any]]) -> dict[str, str]:
    """key -> SHA-256 of every object an earlier batch settled (the latest batch wins)."""
    settled: dict[str, str] = {}
    for result in sorted(batch_results, key=lambda r: r.get("ended_at", 0.0)):
        for entry in result.get("objects", []):
            if entry["outcome"] in SETTLED:
                settled[entry["key"]] = entry["sha256"]
    return settled


def candidates(infos: Iterable[ObjectInfo], min_bytes: int, settled: dict[str, str]) -> list[ObjectInfo]:
    """Objects still stored as identity, large enough, and not settled by an earlier run as they are now."""
    return [info for info in infos
            if info.codec == IDENTITY and info.size >= min_bytes and settled.get(info.key) != info.sha256]


def make_batches(infos: Sequence[ObjectInfo], batch_size: int) -> list[list[tuple[str, str]]]:
    """(key, sha256) lists of at most batch_size, in key order."""
    ordered = sorted(infos, key=lambda info: info.key)
    return [[(info.key, info.sha256) for info in ordered[i:i + batch_size]]
            for i in range(0, len(ordered), batch_size)]


def batch_id(batch: Sequence[tuple[str, str]]) -> str:
    return hashlib.sha256("\n".join(f"{key}\x00{sha}" for key, sha in batch).encode()).hexdigest()[:16]


def totals(entries: Iterable[dict[str, Any]], seconds: float | None = None) -> dict[str, Any]:
    """Objects rewritten (compressed or kept), bytes before and after, ratio, MB/s over `seconds`."""
    done = [e for e in entries if e["outcome"] in ("compressed", "kept")]
    before = sum(e["bytes_before"] for e in done)
    after = sum(e["bytes_after"] for e in done)
    summary: dict[str, Any] = {"objects": len(done),
                               "compressed": sum(e["outcome"] == "compressed" for e in done),
                               "kept_identity": sum(e["outcome"] == "kept" for e in done),
                               "bytes_before": before, "bytes_after": after,
                               "ratio": round(before / after, 4) if after else None}
    if seconds is not None:
        summary["seconds"] = round(seconds, 3)
        summary["throughput_mb_s"] = round(before / 1e6 / seconds, 3) if seconds > 0 and before else None
    return summary


def corpus_state(infos: Iterable[ObjectInfo]) -> dict[str, Any]:
    """The prefix as stored now: objects, original and stored bytes, how many are zstd."""
    infos = list(infos)
    size = sum(info.size for info in infos)
    stored = sum(info.stored_size or 0 for info in infos)
    return {"objects": len(infos), "zstd_objects": sum(info.codec == ZSTD for info in infos),
            "bytes": size, "stored_bytes": stored, "ratio": round(size / stored, 4) if stored else None}


# --- the work (a Ray task per batch) ------------------------------------------------------------
def compress_batch(tenant: str, batch: Sequence[tuple[str, str]], level: int, min_bytes: int,
                   min_saving: float) -> dict[str, Any]:
    """Read each object and write it back under the codec rule; what happened to each."""
    from stratmaster.settings import load_settings
    from stratmaster.stores.objects import create_object_store

    started = time.perf_counter()
    store = create_object_store(load_settings(), codec=ObjectCodec(level=level, min_bytes=min_bytes,
                                                                  min_saving=min_saving))
    entries = []
    try:
        for key, sha256 in batch:
            info = store.stat(tenant, key)
            entry: dict[str, Any] = {"key": key, "sha256": sha256}
            if info is None:
                entry["outcome"] = "missing"
            elif info.sha256 != sha256:
                entry["outcome"] = "changed"  # rewritten since it was listed: left to the next run
            elif info.codec != IDENTITY:
                entry["outcome"] = "already"
            else:
                data = store.get(tenant, key)
                if hashlib.sha256(data).hexdigest() != sha256:
                    entry["outcome"] = "changed"
                else:
                    written = store.put(tenant, key, data, content_type=info.content_type, metadata=info.metadata)
                    entry.update(outcome="compressed" if written.codec == ZSTD else "kept",
                                 bytes_before=len(data), bytes_after=written.stored_size)
            entries.append(entry)
    finally:
        store.close()
    elapsed = time.perf_counter() - started
    return {"batch": batch_id(batch), "objects": entries, "seconds": round(elapsed, 4), "pid": os.getpid(),
            "ended_at": time.time()}


# --- driver -------------------------------------------------------------------------------------
def run(config: CompressCorpusConfig, runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compress what is left, write `compress.json`; `runtime_env` goes to every task (tests, clusters)."""
    from tqdm import tqdm

    from stratmaster.settings import load_settings
    from stratmaster.stores.objects import create_object_store

    out = config.output_dir / config.name
    batches_dir = out / "batches"
    out.mkdir(parents=True, exist_ok=True)
    common.report_progress(out, "listing", 0, 0)
    store = create_object_store(load_settings(), codec=config.codec())
    try:
        listed = store.list(config.tenant, config.prefix)
        previous = [r for r in (common.read_json(p) for p in sorted(batches_dir.glob("*.json"))) if r]
        settled = settled_objects(previous)
        todo = candidates(listed, config.min_bytes, settled)
        batches = make_batches(todo, config.batch_size)
        result: dict[str, Any] = {
            "kind": KIND, "name": config.name, "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config.model_dump(mode="json"), "backend": store.backend, "listed": len(listed),
            "candidates": len(todo), "batches": len(batches),
            "reused": sum(1 for info in listed if info.codec == IDENTITY and info.size >= config.min_bytes
                          and settled.get(info.key) == info.sha256)}
        finished: list[dict[str, Any]] = []
        wall = 0.0
        if batches:
            import ray

            common.init_ray()
            task = ray.remote(num_cpus=1)(compress_batch)
            if runtime_env:
                task = task.options(runtime_env=runtime_env)
            common.report_progress(out, "batches", 0, len(batches))
            started = time.perf_counter()
            pending = [task.remote(config.tenant, batch, config.zstd_level, config.min_bytes, config.min_saving)
                       for batch in batches]
            with tqdm(total=len(todo), desc=f"compress {config.name}", unit="obj", file=sys.stderr) as bar:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    row = ray.get(done[0])
                    write_json(batches_dir / f"{row['batch']}.json", row)
                    finished.append(row)
                    bar.update(len(row["objects"]))
                    common.report_progress(out, "batches", len(finished), len(batches))
            wall = time.perf_counter() - started
        entries = [entry for row in finished for entry in row["objects"]]
        result["run"] = totals(entries, wall)
        task_seconds = sum(row["seconds"] for row in finished)
        result["run"]["task_seconds_sum"] = round(task_seconds, 3)
        # Per busy core, without scheduling and worker start-up: what a larger corpus approaches per CPU.
        result["run"]["task_throughput_mb_s"] = (round(result["run"]["bytes_before"] / 1e6 / task_seconds, 3)
                                                 if task_seconds > 0 and result["run"]["bytes_before"] else None)
        result["run"]["outcomes"] = {outcome: sum(e["outcome"] == outcome for e in entries)
                                     for outcome in sorted({e["outcome"] for e in entries})}
        result["all_runs"] = totals(entry for row in previous + finished for entry in row["objects"])
        result["corpus"] = corpus_state(store.list(config.tenant, config.prefix))
    finally:
        store.close()
    write_json(out / "compress.json", result)
    common.report_progress(out, "done", len(batches), len(batches))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("pipelines.compress_corpus", __doc__, "configs/pipelines/compress-corpus.yaml")
    parser.add_argument("--fresh", action="store_true",
                        help="forget finished batches first (objects already compressed stay compressed)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    config = common.with_output_dir(config, args.output_dir)
    if args.fresh:
        shutil.rmtree(config.output_dir / config.name, ignore_errors=True)
    result = run(config)
    summary = {k: result.get(k) for k in ("name", "backend", "listed", "candidates", "reused", "run", "corpus")}
    print(yaml.safe_dump(summary, sort_keys=False), end="")
    print(f"-> {config.output_dir / config.name / 'compress.json'}")
    return common.finish(args, "compress_corpus", config, result, config.output_dir / config.name)


if __name__ == "__main__":
    raise SystemExit(main())
