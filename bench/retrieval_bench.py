"""Retrieval benchmark: search quality on CISI, ingest throughput and search latency of the knowledge service.

    python -m bench.retrieval_bench [--dataset DIR] [--duration 15] [--clients 1,16] [--quick]

(`bash scripts/bench.sh retrieval` runs it; `make bench` runs it after the platform bench.) One run:

1. `stratmaster up` on free loopback ports with a fresh temporary data dir (bench.platform_bench's
   `Platform`), a token from `stratmaster token`.
2. Ingest: the BEIR collection (CISI by default: 1,460 abstracts) through
   `POST /knowledge/documents`, `--batch-size` documents a request (title + text), one request
   at a time. Measured: wall time of all batches, documents/s and chunks/s (the chunks the
   service reports for accepted documents / that wall time).
3. Quality: every judged query through `POST /knowledge/search` with k=100 in each
   configuration of `CONFIGURATIONS` (keyword, dense, hybrid convex at several keyword weights,
   hybrid RRF, and hybrid with the server's default fusion with and without graph expansion).
   Chunk hits become a document ranking in the order returned, each document at its first
   (best) chunk; nDCG@10, MAP@100, Recall@100 and MRR@10 come from `stratmaster.evals`.
   k counts chunks, so a ranking can hold fewer than 100 documents.
4. Latency: `POST /knowledge/search` with the server's defaults (mode hybrid, k `--latency-k`),
   the judged queries cycled, by N closed-loop clients (each one request at a time,
   keep-alive; bench.loadgen's connection) for `--duration` s after an uncounted `--warmup`,
   for each N in `--clients`.
5. Stop the platform, write bench/results/retrieval.json, retrieval_per_query.json and the
   nDCG@10 chart retrieval.png, and print a summary with the targets met or missed.

The load runs in this process (one event loop, uvloop when installed): on a 2-core machine
it shares the CPU with the platform, as any client on the same machine would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import closed_loop, http_request, percentile
from bench.platform_bench import (
    HOST,
    ROOT,
    BenchError,
    Platform,
    cpu_seconds,
    foreign_ray_processes,
    free_port,
    get_token,
    git_info,
    guarded_run,
    machine_info,
    platform_env,
    process_tree,
    replica_processes,
    short_name,
    wait_for_services,
    write_result,
)
from stratmaster.evals.datasets import BeirDataset, DatasetFormatError, load_beir
from stratmaster.evals.ir_metrics import evaluate_rankings, trec_ranking

RESULTS_DIR = ROOT / "bench" / "results"
# The shared material sits beside the repository (../shared).
DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cisi"
MEASURES = ("nDCG@10", "MAP@100", "Recall@100", "MRR@10")
SEARCH_K = 100


@dataclass(frozen=True)
class Configuration:
    name: str
    request: dict[str, Any]  # merged into {"query", "k"}
    kind: str  # keyword | dense | hybrid: for the targets and the chart's colours


CONFIGURATIONS = (
    Configuration("keyword", {"mode": "keyword"}, "keyword"),
    Configuration("dense", {"mode": "dense"}, "dense"),
    *(Configuration(f"hybrid convex kw={w}", {"mode": "hybrid", "fusion": {"method": "convex", "keyword_weight": w}},
                    "hybrid") for w in (0.3, 0.4, 0.5)),
    Configuration("hybrid rrf k=60", {"mode": "hybrid", "fusion": {"method": "rrf", "rrf_k": 60}}, "hybrid"),
    # The server's fusion (configs/knowledge.yaml); graph expansion set explicitly both ways.
    Configuration("hybrid default", {"mode": "hybrid", "expand_graph": False}, "hybrid"),
    Configuration("hybrid default + graph", {"mode": "hybrid", "expand_graph": True}, "hybrid"),
)
DEFAULT_HYBRID = "hybrid default"

# What the knowledge service should reach (nDCG@10 on CISI; latency in ms; chunks/s).
TARGETS = {"keyword_ndcg10": 0.38, "dense_ndcg10": 0.41, "hybrid_ndcg10": 0.46,
           "p95_ms_1_client": 100.0, "p95_ms_16_clients": 500.0, "ingest_chunks_per_s": 100.0}


# --- ingest ---------------------------------------------------------------------------------
def ingest(open_client: Any, dataset: BeirDataset, batch_size: int, streams: int = 1,
           text_suffix: str = "") -> dict[str, Any]:
    """Send the corpus in batches; with `streams` > 1, that many clients send batches side by side.

    `text_suffix` makes every text new to the platform's embedding cache (keyed by text).
    """
    documents = [{"id": d.id, "title": d.title.strip() or d.id, "text": d.text + text_suffix}
                 for d in dataset.corpus.values()]
    statuses: Counter[str] = Counter()
    http_statuses: Counter[int] = Counter()
    problems: list[dict[str, Any]] = []
    batch_seconds: list[float] = []
    firsts = iter(range(0, len(documents), batch_size))
    lock = threading.Lock()
    failures: list[BaseException] = []
    totals = {"chunks": 0, "done": 0}
    started = time.perf_counter()

    def send_batches() -> None:
        with open_client() as client:
            while not failures:
                with lock:
                    first = next(firsts, None)
                if first is None:
                    return
                batch = documents[first:first + batch_size]
                sent = time.perf_counter()
                answer = client.post("/knowledge/documents", json={"documents": batch})
                with lock:
                    batch_seconds.append(time.perf_counter() - sent)
                    http_statuses[answer.status_code] += 1
                    if answer.status_code not in (200, 207):
                        raise BenchError(f"ingest of documents {first}..{first + len(batch) - 1} answered "
                                         f"{answer.status_code}: {answer.text[:500]}")
                    for outcome in answer.json()["results"]:
                        statuses[outcome["status"]] += 1
                        if outcome["status"] in ("created", "updated", "unchanged"):
                            totals["chunks"] += outcome.get("chunks") or 0
                        elif len(problems) < 20:
                            problems.append({"id": outcome.get("id"), "status": outcome["status"],
                                             "error": outcome.get("error")})
                    totals["done"] += len(batch)
                    print(f"  ingested {totals['done']}/{len(documents)} documents, {totals['chunks']} chunks, "
                          f"{time.perf_counter() - started:.1f} s", flush=True)

    def guarded() -> None:
        try:
            send_batches()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failures.append(exc)

    workers = [threading.Thread(target=guarded, name=f"ingest-{n}") for n in range(streams)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    chunks = totals["chunks"]
    wall = time.perf_counter() - started
    accepted = sum(statuses[s] for s in ("created", "updated", "unchanged"))
    batch_seconds.sort()
    return {
        "documents": len(documents),
        "accepted": accepted,
        "statuses": dict(statuses),
        "http_statuses": {str(k): v for k, v in sorted(http_statuses.items())},
        "problems": problems,
        "chunks": chunks,
        "chunks_per_document": round(chunks / accepted, 2) if accepted else None,
        "batch_size": batch_size,
        "streams": streams,
        "text_suffix": text_suffix,
        "batches": len(batch_seconds),
        "wall_s": round(wall, 2),
        "documents_per_s": round(accepted / wall, 1),
        "chunks_per_s": round(chunks / wall, 1),
        "batch_s": {"p50": round(percentile(batch_seconds, 0.5), 2), "max": round(batch_seconds[-1], 2)},
    }


# --- quality --------------------------------------------------------------------------------
def document_ranking(hits: list[dict[str, Any]]) -> tuple[list[str], dict[str, float]]:
    """Documents in the order their chunks were returned, each at its first (best) chunk's score."""
    order: list[str] = []
    scores: dict[str, float] = {}
    for hit in hits:
        if hit["document_id"] not in scores:
            scores[hit["document_id"]] = float(hit["score"])
            order.append(hit["document_id"])
    return order, scores


def run_configuration(client: httpx.Client, dataset: BeirDataset, configuration: Configuration,
                      k: int) -> dict[str, Any]:
    rankings: dict[str, list[str]] = {}
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    server_timings: dict[str, list[float]] = {}
    hits_returned: list[int] = []
    reordered = 0  # queries whose returned order is not the order a score sort (with trec_eval ties) gives
    fusion_reported: Any = None
    first_error: str | None = None
    for query in dataset.judged_queries():
        body = {"query": query.text, "k": k, **configuration.request}
        sent = time.perf_counter()
        try:
            answer = client.post("/knowledge/search", json=body)
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            first_error = first_error or f"query {query.id}: {type(exc).__name__}: {exc}"
            continue
        latencies.append(time.perf_counter() - sent)
        if answer.status_code != 200:
            errors[str(answer.status_code)] += 1
            first_error = first_error or f"query {query.id} answered {answer.status_code}: {answer.text[:300]}"
            continue
        found = answer.json()
        fusion_reported = found.get("fusion") if fusion_reported is None else fusion_reported
        for name, value in (found.get("timings_ms") or {}).items():
            server_timings.setdefault(name, []).append(float(value))
        hits_returned.append(len(found["hits"]))
        order, scores = document_ranking(found["hits"])
        rankings[query.id] = order
        reordered += trec_ranking(scores) != order
    # A query that failed has no ranking: it scores 0 (missing_as_zero), and is counted in errors.
    evaluation = evaluate_rankings(dataset.qrels, rankings, MEASURES)
    latencies.sort()
    return {
        "request": configuration.request,
        "kind": configuration.kind,
        "fusion_reported": fusion_reported,
        "queries": evaluation["queries"],
        "answered": len(rankings),
        "errors": dict(errors),
        "first_error": first_error,
        **{label: round(value, 4) for label, value in evaluation["aggregate"].items()},
        "mean_hits": round(sum(hits_returned) / len(hits_returned), 1) if hits_returned else 0,
        "mean_documents": round(sum(map(len, rankings.values())) / len(rankings), 1) if rankings else 0,
        "queries_reordered_by_score_sort": reordered,
        "client_latency_ms": {"p50": _ms(percentile(latencies, 0.5)), "p95": _ms(percentile(latencies, 0.95))},
        "server_timings_ms_mean": {name: round(sum(v) / len(v), 2) for name, v in sorted(server_timings.items())},
        "_per_query": evaluation["per_query"],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# --- latency --------------------------------------------------------------------------------
def search_requests(base: str, token: str, queries: list[str], k: int) -> list[bytes]:
    return [http_request(f"{base}/knowledge/search", token, "POST",
                         json.dumps({"query": text, "mode": "hybrid", "k": k}).encode())
            for text in queries]


def measure_latency(platform_: Platform, base: str, requests: list[bytes], clients: int,
                    args: argparse.Namespace) -> dict[str, Any]:
    assert platform_.root is not None
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    platform_.remember_pids()
    cpu_before = cpu_seconds(process_tree(platform_.root))
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    # Replica processes each second meanwhile: autoscaling during the window shows here.
    timeline: list[dict[str, Any]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(1.0):
            timeline.append({"t_s": round(time.monotonic() - started, 1),
                             "replicas": replica_processes(platform_.root)})
            platform_.remember_pids()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = runner(closed_loop(base, requests, clients, args.warmup, args.duration, args.timeout,
                                    max_requests=2_000_000))
    finally:
        stop.set()
        sampler.join(5)
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    tree = process_tree(platform_.root)
    cpu_after = cpu_seconds(tree)
    result["replica_processes_timeline"] = timeline
    result["platform_cpu_s"] = round(sum(v - cpu_before.get(pid, 0.0) for pid, v in cpu_after.items()), 2)
    by_role: Counter[str] = Counter()
    for proc in tree:
        if proc.pid in cpu_after:
            by_role[short_name(proc)] += cpu_after[proc.pid] - cpu_before.get(proc.pid, 0.0)
    result["platform_cpu_s_by_role"] = {name: round(v, 2) for name, v in by_role.most_common(8)}
    result["loadgen_cpu_s"] = round(own_after.ru_utime - own_before.ru_utime
                                    + own_after.ru_stime - own_before.ru_stime, 2)
    return result


# --- the run --------------------------------------------------------------------------------
def ensure_running(platform_: Platform) -> None:
    code = platform_.exited()
    if code is not None:
        raise BenchError(f"stratmaster up exited with {code} during the run:\n{platform_.tail()}")


def server_defaults() -> dict[str, Any]:
    """The retrieval settings the platform loads (configs/knowledge.yaml), for the record."""
    try:
        from stratmaster.knowledge.config import load_knowledge_config

        return load_knowledge_config().retrieval.model_dump()
    except Exception as exc:  # noqa: BLE001 - a record, not a requirement
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    dataset = load_beir(args.dataset)
    queries = dataset.judged_queries()
    http_port = args.http_port or free_port()
    metrics_port = args.metrics_port or free_port()
    while metrics_port == http_port:
        metrics_port = free_port()
    base = f"http://{HOST}:{http_port}"
    work = Path(tempfile.mkdtemp(prefix="stratmaster-retrieval-bench-"))
    env = platform_env(args, work / "data", http_port, metrics_port)
    result: dict[str, Any] = {
        "kind": "platform_retrieval_bench",  # the gate set of configs/evals/thresholds.yaml
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "machine": machine_info(),
        "config": {
            "dataset": {"path": str(args.dataset), "name": dataset.name, "split": dataset.split,
                        "documents": len(dataset.corpus), "judged_queries": len(queries),
                        "judgments": sum(len(j) for j in dataset.qrels.values())},
            "search_k": args.k, "measures": list(MEASURES),
            "configurations": {c.name: c.request for c in CONFIGURATIONS},
            "latency": {"request": {"mode": "hybrid", "k": args.latency_k}, "clients": args.clients,
                        "warmup_s": args.warmup, "duration_s": args.duration},
            "server_retrieval_defaults": server_defaults(),
            "http_port": http_port, "metrics_port": metrics_port,
            "backends": "inherited from the environment" if args.inherit_backends else "embedded defaults",
        },
        "targets": TARGETS,
        "noise": {"loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
                  "foreign_ray_processes_at_start": foreign_ray_processes(set())},
    }
    per_query: dict[str, Any] = {}
    platform_ = Platform(env, work / "stratmaster-up.log")
    failed = True
    try:
        print(f"starting stratmaster up on {base} (data dir {work / 'data'}) ...", flush=True)
        platform_.start()
        wall = wait_for_services(platform_, base, args.startup_timeout)
        print(f"healthy after {wall:.1f} s", flush=True)
        token = get_token(env)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=args.ingest_timeout) as client:
            print(f"ingest: {len(dataset.corpus)} documents in batches of {args.batch_size} ...", flush=True)
            result["ingest"] = ingest(lambda: httpx.Client(base_url=base, headers=headers,
                                                           timeout=args.ingest_timeout),
                                      dataset, args.batch_size)
            platform_.remember_pids()
            stats = client.get("/knowledge/stats")
            result["ingest"]["stats_after"] = stats.json() if stats.status_code == 200 else stats.status_code
            result["quality"] = {}
            for configuration in CONFIGURATIONS:
                ensure_running(platform_)
                print(f"quality: {configuration.name} ({len(queries)} queries, k={args.k}) ...", flush=True)
                measured = run_configuration(client, dataset, configuration, args.k)
                if measured["answered"] == 0:  # zeros from a broken endpoint would read as a quality result
                    raise BenchError(f"search answered no query of {configuration.name!r} "
                                     f"(errors {measured['errors']}, first: {measured['first_error']})")
                per_query[configuration.name] = measured.pop("_per_query")
                result["quality"][configuration.name] = measured
                print(f"  nDCG@10 {measured['nDCG@10']:.4f}  errors {measured['errors'] or 0}", flush=True)
        requests = search_requests(base, token, [q.text for q in queries], args.latency_k)
        result["latency"] = {}
        for clients in args.clients:
            ensure_running(platform_)
            print(f"latency: hybrid default, {clients} client(s), {args.warmup:.0f} s warm-up + "
                  f"{args.duration:.0f} s ...", flush=True)
            load = result["latency"][str(clients)] = measure_latency(platform_, base, requests, clients, args)
            ensure_running(platform_)
            if load["ok"] == 0:
                raise BenchError(f"no search succeeded with {clients} client(s): {load['errors_by_status']}")
        if args.parallel_ingest_streams > 1:
            # The same corpus again, for another tenant, from several clients at once: how far
            # concurrent uploads fill the pipeline's gaps between one client's batches.
            ensure_running(platform_)
            streams = args.parallel_ingest_streams
            print(f"ingest: the corpus again as another tenant, {streams} streams ...", flush=True)
            other = {"Authorization": f"Bearer {get_token(env, tenant='cisi-parallel')}"}
            # Texts get a suffix: the embedding cache (keyed by text) must not answer for them.
            result["ingest_parallel"] = ingest(lambda: httpx.Client(base_url=base, headers=other,
                                                                    timeout=args.ingest_timeout),
                                               dataset, args.batch_size, streams, text_suffix="\n\n(second copy)")
            platform_.remember_pids()
        result["noise"]["foreign_ray_processes_at_end"] = foreign_ray_processes(set(platform_.seen_pids))
        result["noise"]["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
        failed = False
    finally:
        print("stopping the platform (SIGINT) ...", flush=True)
        result["shutdown"] = platform_.stop()
        if failed or args.keep_work_dir:
            print(f"platform log and data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["verdicts"] = verdicts(result)
    return result, per_query


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: the measured value and whether it is met."""
    quality, latency = result["quality"], result["latency"]
    keyword, dense = quality["keyword"]["nDCG@10"], quality["dense"]["nDCG@10"]
    hybrid = quality[DEFAULT_HYBRID]["nDCG@10"]
    rows = [
        ("keyword nDCG@10", keyword, f">= {TARGETS['keyword_ndcg10']}", keyword >= TARGETS["keyword_ndcg10"]),
        ("dense nDCG@10", dense, f">= {TARGETS['dense_ndcg10']}", dense >= TARGETS["dense_ndcg10"]),
        (f"{DEFAULT_HYBRID} nDCG@10", hybrid, f">= {TARGETS['hybrid_ndcg10']} and > keyword, dense",
         hybrid >= TARGETS["hybrid_ndcg10"] and hybrid > max(keyword, dense)),
    ]
    for clients, key in (("1", "p95_ms_1_client"), ("16", "p95_ms_16_clients")):
        if clients in latency:
            load = latency[clients]
            p95 = load["latency_ms"]["p95"]
            rows.append((f"hybrid p95 ms, {clients} client(s)", p95, f"< {TARGETS[key]:.0f}, no errors",
                         p95 is not None and p95 < TARGETS[key] and load["errors"] == 0))
    chunks_per_s = result["ingest"]["chunks_per_s"]
    rows.append(("ingest chunks/s", chunks_per_s, f">= {TARGETS['ingest_chunks_per_s']:.0f}",
                 chunks_per_s >= TARGETS["ingest_chunks_per_s"]))
    return [{"measure": m, "value": v, "target": t, "met": bool(ok)} for m, v, t, ok in rows]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["quality"])
    values = [result["quality"][n]["nDCG@10"] for n in names]
    colours = {"keyword": "#4c72b0", "dense": "#dd8452", "hybrid": "#55a868"}
    fig, ax = plt.subplots(figsize=(10, 5))
    bars = ax.bar(names, values, color=[colours[result["quality"][n]["kind"]] for n in names])
    errors = [sum(result["quality"][n]["errors"].values()) for n in names]
    ax.bar_label(bars, fontsize=8, labels=[f"{v:.3f}" + (f"\n{e} errors" if e else "")
                                           for v, e in zip(values, errors, strict=True)])
    for kind, key in (("keyword", "keyword_ndcg10"), ("dense", "dense_ndcg10"), ("hybrid", "hybrid_ndcg10")):
        ax.axhline(TARGETS[key], color=colours[kind], linestyle="--", linewidth=1,
                   label=f"{kind} target {TARGETS[key]}")
    dataset = result["config"]["dataset"]
    ax.set_title(f"nDCG@10 on {dataset['name']} ({dataset['judged_queries']} queries, {dataset['documents']} documents)"
                 f" - {result['timestamp']}")
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, max([*values, TARGETS["hybrid_ndcg10"]]) * 1.2)
    ax.legend(loc="upper left", fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def summary(result: dict[str, Any]) -> str:
    m, ingest_, dataset = result["machine"], result["ingest"], result["config"]["dataset"]
    lines = [
        f"StratMaster retrieval benchmark  {result['timestamp']}  commit {str(result['git']['commit'])[:10]}",
        f"  machine  {m['cpu_count']} CPUs, {m['memory_total_gb']} GB, Python {m['python']}, Ray {m['ray']}",
        f"  dataset  {dataset['name']}: {dataset['documents']} documents, {dataset['judged_queries']} judged queries",
        f"  ingest   {ingest_['accepted']}/{ingest_['documents']} documents, {ingest_['chunks']} chunks in "
        f"{ingest_['wall_s']} s: {ingest_['documents_per_s']} docs/s, {ingest_['chunks_per_s']} chunks/s",
        *([f"  ingest   {p['streams']} streams (another tenant): {p['chunks']} chunks in {p['wall_s']} s: "
            f"{p['chunks_per_s']} chunks/s (reported, not a verdict)"] if (p := result.get("ingest_parallel")) else []),
        "",
        f"  {'configuration':<26}{'nDCG@10':>9}{'MAP@100':>9}{'R@100':>8}{'MRR@10':>8}{'docs':>6}{'p50 ms':>8}"
        f"{'errors':>8}",
    ]
    for name, q in result["quality"].items():
        lines.append(f"  {name:<26}{q['nDCG@10']:>9.4f}{q['MAP@100']:>9.4f}{q['Recall@100']:>8.4f}{q['MRR@10']:>8.4f}"
                     f"{q['mean_documents']:>6.0f}{q['client_latency_ms']['p50'] or 0:>8.1f}"
                     f"{sum(q['errors'].values()):>8}")
    lines.append("")
    for clients, load in result["latency"].items():
        lat = load["latency_ms"]
        lines.append(f"  latency  hybrid default, {clients:>2} client(s): {load['requests_per_s']} req/s, "
                     f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, errors {load['errors']}"
                     + (f" {load['errors_by_status']}" if load["errors"] else ""))
        if load.get("replica_processes_timeline"):
            at_end = load["replica_processes_timeline"][-1]["replicas"]
            lines.append("           knowledge replicas at the end: " + ", ".join(
                f"{name.split(':', 1)[1]} {count}" for name, count in at_end.items() if name.startswith("knowledge:")))
    lines.append("")
    for verdict in result["verdicts"]:
        lines.append(f"  {'MET ' if verdict['met'] else 'MISS'}  {verdict['measure']:<32} {verdict['value']!s:<10} "
                     f"target {verdict['target']}")
    noise = result["noise"]
    if noise.get("foreign_ray_processes_at_start") or noise.get("foreign_ray_processes_at_end"):
        lines.append(f"  WARNING  other Ray processes were running (start {noise['foreign_ray_processes_at_start']}, "
                     f"end {noise.get('foreign_ray_processes_at_end')}): latency numbers are disturbed")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.retrieval_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET,
                        help=f"BEIR folder (default {DEFAULT_DATASET})")
    parser.add_argument("--batch-size", type=int, default=100, help="documents per ingest request (default 100)")
    parser.add_argument("--parallel-ingest-streams", type=int, default=2,
                        help="after everything else, ingest the corpus again (another tenant) from this many "
                             "clients at once; 1 skips it (default 2)")
    parser.add_argument("--k", type=int, default=SEARCH_K, help="hits per quality query (default 100)")
    parser.add_argument("--latency-k", type=int, default=10, help="hits per latency query (default 10, the API's)")
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16],
                        help="comma-separated client counts for the latency runs (default 1,16)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per latency run (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="uncounted seconds first (default 3)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per search request in the latency runs")
    parser.add_argument("--quick", action="store_true", help="a short try: 4 s latency runs after 1 s warm-up")
    parser.add_argument("--ingest-timeout", type=float, default=600.0, help="per ingest or search request, seconds")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--http-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--metrics-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--inherit-backends", action="store_true",
                        help="keep DATABASE_URL, REDIS_URL, ... from the environment")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-work-dir", action="store_true", help="keep the temporary data dir and log")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 4.0, 1.0
    if not (1 <= args.batch_size <= 200 and 1 <= args.k <= 100 and 1 <= args.latency_k <= 100):
        parser.error("batch size 1..200, k and latency k 1..100 (the API's limits)")
    if not (all(1 <= c <= 256 for c in args.clients) and 0 < args.duration <= 600 and 0 <= args.warmup <= 60):
        parser.error("clients 1..256, duration 0..600 s, warm-up 0..60 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome = guarded_run(lambda: run(args), (BenchError, httpx.HTTPError, FileNotFoundError, DatasetFormatError))
    if isinstance(outcome, int):
        return outcome
    result, per_query = outcome
    out = args.output_dir
    write_result(result, out / "retrieval.json")
    write_result({"timestamp": result["timestamp"], "measures": list(MEASURES), "per_query": per_query},
                 out / "retrieval_per_query.json")
    plot(result, out / "retrieval.png")
    print(summary(result))
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"-> {shown}/retrieval.json, retrieval_per_query.json, retrieval.png")
    return 0  # a missed target is a finding, printed and recorded, not a failure of the run


if __name__ == "__main__":
    raise SystemExit(main())
