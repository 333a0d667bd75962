"""Context compression on CISI: what each mode keeps of the evidence at 25% of the tokens.

For every judged CISI query, the knowledge service's hybrid search (in process, the shipped
defaults) returns 20 chunks; each mode of `stratmaster.compression` shrinks them to 25% of
their tokens (WordPiece, the embedding model's tokenizer) with the query. Measured per mode:

- coverage: of the judged-relevant documents among the 20 chunks' documents, the share that
  keep at least one sentence;
- relevant-token share: of the tokens kept, the share from judged-relevant documents;
- compression time per query (the `compress` call, model already loaded).

Issue 6's targets: extractive coverage >= 0.90, extractive relevant-token share >= 1.3x
truncate's, p95 time < 50 ms. Results go to bench/results/compression.json.

    python -m bench.compression_bench [--ratio 0.25] [--hits 20]
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.platform_bench import git_info, machine_info  # noqa: E402
from stratmaster.evals.retrieval_eval import nearest_rank, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "cisi"
RESULTS = ROOT / "bench" / "results" / "compression.json"
MODES = ("extractive", "prune", "truncate")
TARGETS = {"extractive_coverage": 0.90, "share_over_truncate": 1.3, "p95_ms": 50.0}


def run(dataset_path: Path, ratio: float, hits: int) -> dict[str, Any]:
    from pipelines import common
    from stratmaster.compression import Chunk, compress
    from stratmaster.evals.datasets import load_beir
    from stratmaster.evals.retrieval_eval import (
        RetrievalSetting,
        build_index,
        close_index,
        open_index,
        search_request,
    )
    from stratmaster.knowledge.chunking import WordpieceCounter
    from stratmaster.knowledge.embedding import CachedEmbedder, SqliteEmbeddingCache
    from stratmaster.settings import load_settings

    dataset = load_beir(dataset_path)
    model = common.embedder("int8")
    counter = WordpieceCounter()
    cache = SqliteEmbeddingCache(load_settings().data_dir / "pipelines" / "embedding-cache.sqlite3")
    setting = RetrievalSetting()
    per_mode: dict[str, dict[str, list[float]]] = {m: {"coverage": [], "share": [], "ms": []} for m in MODES}
    with tempfile.TemporaryDirectory(prefix="compression-bench-") as directory:
        print(f"indexing {len(dataset.corpus)} documents ...", flush=True)
        build_index(dataset, Path(directory), CachedEmbedder(model, cache).embed)
        service = open_index(Path(directory), model.embed, setting)
        queries = dataset.judged_queries()
        for number, query in enumerate(queries, start=1):
            found = service.search("eval", search_request(setting, query.text, hits)).hits
            chunks = [Chunk(h.chunk_id, h.text) for h in found]
            document_of = {h.chunk_id: h.document_id for h in found}
            relevant = {d for d, grade in dataset.qrels[query.id].items() if grade > 0}
            present = {document_of[c.id] for c in chunks} & relevant
            for mode in MODES:
                started = time.perf_counter()
                result = compress(query.text, chunks, ratio=ratio, mode=mode, counter=counter,
                                  embed=None if mode == "truncate" else model.embed)
                per_mode[mode]["ms"].append((time.perf_counter() - started) * 1000)
                kept = {document_of[s.chunk_id] for s in result.sentences}
                if present:
                    per_mode[mode]["coverage"].append(len(kept & present) / len(present))
                tokens = [(document_of[c.id], c.tokens) for c in result.chunks if c.text]
                total = sum(t for _, t in tokens)
                if total:
                    per_mode[mode]["share"].append(sum(t for d, t in tokens if d in relevant) / total)
            if number % 20 == 0:
                print(f"  {number}/{len(queries)} queries", flush=True)
        close_index(service)
    summary = {mode: {"coverage": round(sum(v["coverage"]) / len(v["coverage"]), 4) if v["coverage"] else None,
                      "relevant_token_share": round(sum(v["share"]) / len(v["share"]), 4) if v["share"] else None,
                      "ms_p50": round(nearest_rank(sorted(v["ms"]), 0.5), 2),
                      "ms_p95": round(nearest_rank(sorted(v["ms"]), 0.95), 2),
                      "queries_with_relevant_in_hits": len(v["coverage"])}
               for mode, v in per_mode.items()}
    extractive, truncate = summary["extractive"], summary["truncate"]
    over = (extractive["relevant_token_share"] / truncate["relevant_token_share"]
            if truncate["relevant_token_share"] else None)
    verdicts = [
        {"measure": "extractive coverage", "value": extractive["coverage"],
         "target": f">= {TARGETS['extractive_coverage']}",
         "met": extractive["coverage"] is not None and extractive["coverage"] >= TARGETS["extractive_coverage"]},
        {"measure": "extractive relevant-token share / truncate's", "value": round(over, 3) if over else None,
         "target": f">= {TARGETS['share_over_truncate']}",
         "met": over is not None and over >= TARGETS["share_over_truncate"]},
        {"measure": "extractive p95 ms per query", "value": extractive["ms_p95"], "target": f"< {TARGETS['p95_ms']}",
         "met": extractive["ms_p95"] < TARGETS["p95_ms"]},
    ]
    return {"kind": "compression_bench", "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": git_info(), "machine": machine_info(),
            "config": {"dataset": str(dataset_path), "ratio": ratio, "hits": hits, "queries": len(queries),
                       "retrieval": "hybrid, shipped defaults, in process", "embedding": "int8 ONNX"},
            "targets": TARGETS, "modes": summary, "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.compression_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--hits", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.dataset, args.ratio, args.hits)
    write_json(args.output, result)
    print(f"{'mode':<12}{'coverage':>10}{'rel. share':>12}{'p50 ms':>9}{'p95 ms':>9}")
    for mode, m in result["modes"].items():
        print(f"{mode:<12}{m['coverage']!s:>10}{m['relevant_token_share']!s:>12}{m['ms_p50']:>9}{m['ms_p95']:>9}")
    for verdict in result["verdicts"]:
        print(f"  {'MET ' if verdict['met'] else 'MISS'}  {verdict['measure']:<46} {verdict['value']!s:<8} "
              f"target {verdict['target']}")
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
