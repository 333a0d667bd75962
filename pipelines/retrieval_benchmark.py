"""Retrieval benchmark: every configured setting over a BEIR dataset, queries sharded across Ray tasks.

    python -m pipelines.retrieval_benchmark --config configs/benchmarks/cisi.yaml
    ray job submit --working-dir . -- python -m pipelines.retrieval_benchmark --config configs/benchmarks/cisi.yaml

The corpus is indexed once per chunk size (a task; the snapshot is kept on disk and put
in the object store once); the judged queries are split into `shards`, and each shard task
restores the index and runs its queries through the knowledge service's own search for
every setting. Finished shards are files, so a rerun computes only what is missing. The
result (`benchmark.json`) holds each setting's aggregate measures and in-process latency;
`per_query.json` each query's measures.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported

import hashlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from pydantic import Field  # noqa: E402

from pipelines import common  # noqa: E402
from stratmaster.evals.retrieval_eval import RetrievalSetting, write_json  # noqa: E402


class BenchmarkConfig(common.PipelineConfig):
    shards: int = Field(4, ge=1, le=256)
    settings: dict[str, RetrievalSetting] = Field(min_length=1)
    output_dir: Path = Path("bench/results/benchmarks")


def run_shard(snapshot: bytes, settings_json: dict[str, str], queries: Sequence[tuple[str, str]], k: int,
              precision: str) -> dict[str, Any]:
    """Every setting over this shard's queries: rankings and latencies per setting."""
    from stratmaster.evals.retrieval_eval import close_index, open_index, restore_index, run_queries

    started = time.perf_counter()
    model = common.embedder(precision)
    ran: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="benchmark-shard-") as directory:
        restore_index(snapshot, Path(directory))
        for name, setting_json in settings_json.items():
            setting = RetrievalSetting.model_validate_json(setting_json)
            service = open_index(Path(directory), model.embed, setting)
            ran[name] = run_queries(service, setting, queries, k)
            close_index(service)
    return {"settings": ran, "seconds": round(time.perf_counter() - started, 3)}


def run(config: BenchmarkConfig) -> dict[str, Any]:
    import ray
    from tqdm import tqdm

    from stratmaster.evals.datasets import load_beir
    from stratmaster.evals.retrieval_eval import score

    chunk_sizes = {s.chunk_tokens for s in config.settings.values()}
    if len(chunk_sizes) > 1:
        raise SystemExit("a benchmark's settings share one index: give them the same chunk_tokens "
                         "(compare chunk sizes with pipelines.eval_sweep)")
    [chunk] = chunk_sizes
    out, work = config.output_dir / config.name, common.work_dir("retrieval_benchmark", config.name)
    dataset = load_beir(config.dataset, config.split)
    key = common.dataset_key(config.dataset, config.split)
    queries = [(q.id, q.text) for q in dataset.judged_queries()]
    shards = [queries[n::config.shards] for n in range(config.shards) if queries[n::config.shards]]
    settings_json = {name: s.model_dump_json() for name, s in config.settings.items()}
    # A shard's file is valid for exactly these settings and this dataset.
    fingerprint = hashlib.sha256(f"{sorted(settings_json.items())}\x00{key}\x00{config.k}".encode()).hexdigest()[:12]
    shard_path = [out / "shards" / f"{n}-of-{len(shards)}-{fingerprint}.json" for n in range(len(shards))]
    todo = [n for n in range(len(shards)) if not shard_path[n].exists()]
    result: dict[str, Any] = {"kind": "retrieval_benchmark", "name": config.name,
                              "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                              "config": config.model_dump(mode="json"), "queries": len(queries),
                              "shards": len(shards), "reused_shards": len(shards) - len(todo)}
    started = time.perf_counter()
    if todo:
        common.report_progress(out, "indexing", len(shards) - len(todo), len(shards))
        common.init_ray()
        cache_file = str((work / "embedding-cache.sqlite3").resolve())
        data, built = common.snapshot(work / f"index-{chunk or 'default'}-{config.embedding_precision}-{key}.tar",
                                      str(config.dataset), config.split, chunk, config.embedding_precision,
                                      cache_file, remote=True)
        if built:
            result["index"] = built
        snapshot_ref = ray.put(data)
        task = ray.remote(num_cpus=1)(run_shard)
        pending = {task.remote(snapshot_ref, settings_json, shards[n], config.k, config.embedding_precision): n
                   for n in todo}
        with tqdm(total=len(todo), desc=f"benchmark {config.name}", unit="shard", file=sys.stderr) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                n = pending.pop(done[0])
                write_json(shard_path[n], ray.get(done[0]))
                bar.update(1)
                common.report_progress(out, "shards", len(shards) - len(pending), len(shards))
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    parts = [common.read_json(path) for path in shard_path]
    per_query: dict[str, Any] = {}
    result["results"] = {}
    for name in config.settings:
        rankings = {q: r for part in parts for q, r in part["settings"][name]["rankings"].items()}
        latency = {q: t for part in parts for q, t in part["settings"][name]["latency_ms"].items()}
        scored = score(dataset, rankings, latency, config.measures)
        per_query[name] = scored.pop("per_query")
        result["results"][name] = {"setting": config.settings[name].model_dump(exclude_none=True), **scored}
    write_json(out / "benchmark.json", result)
    write_json(out / "per_query.json", per_query)
    common.report_progress(out, "done", len(shards), len(shards))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("pipelines.retrieval_benchmark", __doc__, "configs/benchmarks/cisi.yaml")
    parser.add_argument("--fresh", action="store_true", help="forget finished shards and the index snapshot first")
    args = parser.parse_args(argv)
    config = common.load_config(args.config, BenchmarkConfig)
    config = common.with_output_dir(config, args.output_dir)
    if args.fresh:
        shutil.rmtree(config.output_dir / config.name, ignore_errors=True)
        shutil.rmtree(common.work_dir("retrieval_benchmark", config.name), ignore_errors=True)
    result = run(config)
    width = max(map(len, result["results"]))
    print(f"{config.name}: {result['queries']} queries in {result['shards']} shards "
          f"({result['reused_shards']} reused), {result['wall_seconds']} s")
    for name, scored in result["results"].items():
        measures = "  ".join(f"{m} {v:.4f}" for m, v in scored["measures"].items())
        print(f"  {name:<{width}}  {measures}  p50 {scored['latency_ms']['p50']} ms")
    print(f"-> {config.output_dir / config.name / 'benchmark.json'}")
    return common.finish(args, "retrieval_benchmark", config, result, config.output_dir / config.name)


if __name__ == "__main__":
    raise SystemExit(main())
