"""Context compression on CISI: what each mode keeps of the evidence at 25% of the tokens.

For every judged CISI query, the knowledge service's hybrid search (in process, the shipped
defaults) returns 20 chunks, in rank order; each variant of `stratmaster.compression` shrinks
them to 25% of their tokens (WordPiece, the embedding model's tokenizer) with the query. The
judgments are used here only, to measure; the compressor sees the query and the chunks.
Measured per variant:

- coverage: of the judged-relevant documents among the 20 chunks' documents, the share that
  keep at least one sentence;
- relevant-token share: of the tokens kept, the share from judged-relevant documents;
- fill: tokens kept / budget (a compressor that kept less would look better on share);
- compression time per query (the `compress` call, model already loaded), wall and CPU,
  over `--runs` passes; the machine's two cores are shared, so the spread across passes
  and the load average are recorded with it.

Variants: truncate (the baseline), extractive and prune on the default lexical path (BM25,
chunk rank, floor; what the API does unless asked for `semantic`), and `extractive+semantic`
(the same plus the int8 ONNX embedder's cosine for the 8 lexically best sentences).

Every number is given for all queries, for the tuning subset (even query ids: the
`Tuning` defaults were chosen on these) and for the held-out subset (odd ids). Also recorded:
a floor-share sweep (the coverage / share trade-off) and reference points that bound the
relevant-token share any compressor ranking chunks no better than the retriever can reach.

Issue 6's targets: extractive coverage >= 0.90, extractive relevant-token share >= 1.3x
truncate's, p95 time < 50 ms. Results go to bench/results/compression.json.

    python -m bench.compression_bench [--ratio 0.25] [--hits 20] [--runs 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.platform_bench import git_info, machine_info  # noqa: E402
from stratmaster.evals.retrieval_eval import nearest_rank, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "cisi"
RESULTS = ROOT / "bench" / "results" / "compression.json"
VARIANTS = ("truncate", "extractive", "prune", "extractive+semantic")
SUBSETS = ("all", "tuning (even ids)", "held-out (odd ids)")
TARGETS = {"extractive_coverage": 0.90, "share_over_truncate": 1.3, "p95_ms": 50.0}
FLOOR_SWEEP = (0.0, 0.25, 0.5, 0.75, 0.9)


@dataclasses.dataclass
class Case:
    query_id: str
    query: str
    chunks: list[Any]  # stratmaster.compression.Chunk, in rank order
    document_of: dict[str, str]
    relevant: set[str]


def subset_of(query_id: str) -> str:
    return SUBSETS[1] if int(query_id) % 2 == 0 else SUBSETS[2]


def measure(cases: list[Case], compress_case: Callable[[Case], Any]) -> dict[str, dict[str, Any]]:
    """Quality per subset for one variant (one pass; the result is deterministic)."""
    rows: dict[str, dict[str, list[float]]] = {s: {"coverage": [], "share": [], "fill": []} for s in SUBSETS}
    for case in cases:
        result = compress_case(case)
        kept = {case.document_of[s.chunk_id] for s in result.sentences}
        present = set(case.document_of.values()) & case.relevant
        total = sum(c.tokens for c in result.chunks)
        for subset in (SUBSETS[0], subset_of(case.query_id)):
            if present:
                rows[subset]["coverage"].append(len(kept & present) / len(present))
            if total:
                relevant_tokens = sum(c.tokens for c in result.chunks if case.document_of[c.id] in case.relevant)
                rows[subset]["share"].append(relevant_tokens / total)
            rows[subset]["fill"].append(result.tokens_after / result.budget if result.budget else 1.0)
    return {subset: {"coverage": _mean(v["coverage"]), "relevant_token_share": _mean(v["share"]),
                     "fill": _mean(v["fill"]), "queries": len(v["fill"]),
                     "queries_with_relevant_in_hits": len(v["coverage"])}
            for subset, v in rows.items()}


def timings(cases: list[Case], compress_case: Callable[[Case], Any], runs: int) -> dict[str, Any]:
    """p50 / p95 ms per query in each of `runs` passes over all queries, and their spread.

    Wall time is what the target is about; the process's CPU time per query is recorded
    beside it because, on two cores shared with other work, it shows what waiting for a
    core added."""
    passes = []
    for _ in range(runs):
        load_before = os.getloadavg()[0]
        wall, cpu = [], []
        for case in cases:
            started, started_cpu = time.perf_counter(), time.process_time()
            compress_case(case)
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        wall.sort()
        cpu.sort()
        passes.append({"p50": round(nearest_rank(wall, 0.5), 2), "p95": round(nearest_rank(wall, 0.95), 2),
                       "max": round(wall[-1], 2), "cpu_p50": round(nearest_rank(cpu, 0.5), 2),
                       "cpu_p95": round(nearest_rank(cpu, 0.95), 2),
                       "load_average_1m": round((load_before + os.getloadavg()[0]) / 2, 2)})
    p95s = [p["p95"] for p in passes]
    return {"passes": passes, "p50_median": round(statistics.median(p["p50"] for p in passes), 2),
            "p95_median": round(statistics.median(p95s), 2), "p95_min": min(p95s), "p95_max": max(p95s),
            "cpu_p95_median": round(statistics.median(p["cpu_p95"] for p in passes), 2)}


def chunk_rankers(cases: list[Case], embed: Callable[[list[str]], Any]) -> dict[str, list[float | None]]:
    """Mean precision@1/3/5 (judged-relevant chunks) of the retriever's order and of re-rankings a
    compressor could compute from the query and the chunks: the query's BM25 against the 20
    chunks, the embedding cosine of query and chunk, and each summed with a linear rank prior."""
    import numpy as np

    from stratmaster.compression.extractive import _term_matrix, bm25
    from stratmaster.knowledge.analysis import analyze_many

    found: dict[str, list[list[float]]] = {}
    for case in cases:
        relevant = np.array([case.document_of[c.id] in case.relevant for c in case.chunks], dtype=float)
        matrix, vocabulary = _term_matrix(analyze_many([c.text for c in case.chunks]))
        lexical = bm25(analyze_many([case.query])[0], matrix, vocabulary)
        vectors = np.asarray(embed([case.query] + [c.text for c in case.chunks]), dtype=float)
        cosine = vectors[1:] @ vectors[0]
        cosine = (cosine - cosine.min()) / max(float(cosine.max() - cosine.min()), 1e-12)
        prior = 1 - np.arange(len(relevant)) / len(relevant)
        for name, scores in {"retriever order": prior, "bm25 over the chunks": lexical, "cosine": cosine,
                             "order + bm25": prior + lexical, "order + cosine": prior + cosine}.items():
            order = np.argsort(-scores, kind="stable")
            found.setdefault(name, []).append([float(relevant[order[:k]].mean()) for k in (1, 3, 5)])
    return {name: [_mean([row[i] for row in rows]) for i in range(3)] for name, rows in found.items()}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def load_cases(dataset_path: Path, hits: int) -> tuple[list[Case], Any]:
    from pipelines import common
    from stratmaster.compression import Chunk
    from stratmaster.evals.datasets import load_beir
    from stratmaster.evals.retrieval_eval import RetrievalSetting, build_index, close_index, open_index, search_request
    from stratmaster.knowledge.embedding import CachedEmbedder, SqliteEmbeddingCache
    from stratmaster.settings import load_settings

    dataset = load_beir(dataset_path)
    model = common.embedder("int8")
    cache = SqliteEmbeddingCache(load_settings().data_dir / "pipelines" / "embedding-cache.sqlite3")
    setting = RetrievalSetting()
    cases = []
    with tempfile.TemporaryDirectory(prefix="compression-bench-") as directory:
        print(f"indexing {len(dataset.corpus)} documents ...", flush=True)
        build_index(dataset, Path(directory), CachedEmbedder(model, cache).embed)
        service = open_index(Path(directory), model.embed, setting)
        for query in dataset.judged_queries():
            found = service.search("eval", search_request(setting, query.text, hits)).hits
            cases.append(Case(query.id, query.text, [Chunk(h.chunk_id, h.text) for h in found],
                              {h.chunk_id: h.document_id for h in found},
                              {d for d, grade in dataset.qrels[query.id].items() if grade > 0}))
        close_index(service)
    return cases, model


def run(dataset_path: Path, ratio: float, hits: int, runs: int) -> dict[str, Any]:
    from stratmaster.compression import Tuning, compress
    from stratmaster.knowledge.chunking import WordpieceCounter

    cases, model = load_cases(dataset_path, hits)
    counter = WordpieceCounter()

    def variant(name: str, tuning: Tuning | None = None) -> Callable[[Case], Any]:
        mode = name.split("+")[0]
        embed = model.embed if name.endswith("+semantic") else None
        return lambda case: compress(case.query, case.chunks, ratio=ratio, mode=mode, counter=counter,
                                     embed=embed, tuning=tuning)

    modes: dict[str, Any] = {}
    for name in VARIANTS:
        print(f"{name} ...", flush=True)
        modes[name] = {"quality": measure(cases, variant(name)),
                       "ms": timings(cases, variant(name), runs if name != "extractive+semantic" else 1)}
    sweep = [{"floor_share": share, **{subset: {k: row[k] for k in ("coverage", "relevant_token_share")}
                                       for subset, row in measure(cases, variant(
                                           "extractive", Tuning(floor_share=share))).items()}}
             for share in FLOOR_SWEEP]
    references = {
        "share_keeping_only_the_rank_1_chunk": _mean([
            1.0 if case.document_of[case.chunks[0].id] in case.relevant else 0.0 for case in cases]),
        "share_of_all_20_chunks_tokens": _mean([
            sum(counter.count(c.text) for c in case.chunks if case.document_of[c.id] in case.relevant)
            / sum(counter.count(c.text) for c in case.chunks) for case in cases]),
        "chunk_rankers_precision_at_1_3_5": chunk_rankers(cases, model.embed),
        "note": ("Relevant-token share depends only on which chunks' tokens are kept, so it is bounded by how "
                 "well the chunks' relevance can be told apart: keeping only the rank-1 chunk would give "
                 "share_keeping_only_the_rank_1_chunk (= 1.2x truncate's), and no cheap re-ranking of the 20 "
                 "chunks ranked clearly better than the retriever's order (chunk_rankers_precision_at_1_3_5). "
                 "1.3x truncate's share is out of reach for a compressor that ranks chunks no better; the "
                 "floor that gives coverage spends tokens down the ranking (see floor_share_sweep)."),
    }

    def quality(name: str, subset: str, key: str) -> float | None:
        return modes[name]["quality"][subset][key]

    verdicts = []
    for subset in SUBSETS:
        coverage = quality("extractive", subset, "coverage")
        over = quality("extractive", subset, "relevant_token_share") / quality("truncate", subset,
                                                                               "relevant_token_share")
        verdicts += [
            {"measure": f"extractive coverage [{subset}]", "value": coverage,
             "target": f">= {TARGETS['extractive_coverage']}", "met": coverage >= TARGETS["extractive_coverage"]},
            {"measure": f"extractive share / truncate's [{subset}]", "value": round(over, 3),
             "target": f">= {TARGETS['share_over_truncate']}", "met": over >= TARGETS["share_over_truncate"]},
        ]
    p95 = modes["extractive"]["ms"]["p95_median"]
    verdicts.append({"measure": f"extractive p95 ms per query (median of {runs} passes)", "value": p95,
                     "target": f"< {TARGETS['p95_ms']}", "met": p95 < TARGETS["p95_ms"]})
    return {"kind": "compression_bench", "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": git_info(), "machine": machine_info(),
            "config": {"dataset": str(dataset_path), "ratio": ratio, "hits": hits, "queries": len(cases),
                       "runs": runs, "retrieval": "hybrid, shipped defaults, in process",
                       "embedding": "int8 ONNX (extractive+semantic only)", "tuning": dataclasses.asdict(Tuning()),
                       "tuned_on": "even query ids; odd ids held out"},
            "targets": TARGETS, "modes": modes, "floor_share_sweep": sweep, "references": references,
            "verdicts": verdicts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.compression_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--hits", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="timing passes over all queries")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.dataset, args.ratio, args.hits, args.runs)
    write_json(args.output, result)
    truncate_share = {s: result["modes"]["truncate"]["quality"][s]["relevant_token_share"] for s in SUBSETS}
    print(f"{'variant':<21}{'subset':<20}{'coverage':>9}{'share':>8}{'x trunc':>8}{'fill':>7}"
          f"{'p50 ms':>8}{'p95 ms (min-max)':>20}{'cpu p95':>9}")
    for name, m in result["modes"].items():
        for subset in SUBSETS:
            q = m["quality"][subset]
            timing = (f"{m['ms']['p50_median']:>8}{m['ms']['p95_median']:>8} ({m['ms']['p95_min']}-"
                      f"{m['ms']['p95_max']}){m['ms']['cpu_p95_median']:>9}") if subset == SUBSETS[0] else ""
            print(f"{name:<21}{subset:<20}{q['coverage']!s:>9}{q['relevant_token_share']!s:>8}"
                  f"{q['relevant_token_share'] / truncate_share[subset]:>8.3f}{q['fill']!s:>7}{timing}")
    for verdict in result["verdicts"]:
        print(f"  {'MET ' if verdict['met'] else 'MISS'}  {verdict['measure']:<58} {verdict['value']!s:<8} "
              f"target {verdict['target']}")
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
