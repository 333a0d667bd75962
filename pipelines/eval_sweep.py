"""Eval sweep: score a grid of retrieval settings on a BEIR dataset, one Ray task per cell.

    python -m pipelines.eval_sweep --config configs/sweeps/cisi-fusion.yaml
    ray job submit --working-dir . -- python -m pipelines.eval_sweep --config configs/sweeps/cisi-fusion.yaml

The grid is the cartesian product of the config's `grid` axes (fields of
`stratmaster.evals.retrieval_eval.RetrievalSetting`). An index is built once per chunk
size (a task; its snapshot is kept on disk and shared with the cells through the object
store); each cell restores it, runs every judged query through the knowledge service's
own search and scores the rankings. Finished cells are files under the output folder: a
rerun computes only what is missing. The result (`sweep.json`) holds the table, the best
cell per measure, the Pareto front of nDCG@10 against in-process search latency, and
`sweep.png` plots it. `--sequential` also runs the same cells one after another in this
process, for the speed comparison `make bench` reports.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported

import heapq  # noqa: E402
import itertools  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402

from pipelines import common  # noqa: E402
from stratmaster.evals.retrieval_eval import RetrievalSetting, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Issue 4's speed goals for a 16-cell sweep on a 2-core machine (checked by `make bench`).
TARGET_SPEEDUP = 1.7
TARGET_OVERHEAD = 0.05


class SweepConfig(common.PipelineConfig):
    grid: dict[str, list[Any]]
    output_dir: Path = Path("bench/results/sweeps")

    def cells(self) -> list[RetrievalSetting]:
        """Every combination of the grid's values, each setting once (in grid order)."""
        axes = list(self.grid)
        seen: dict[str, RetrievalSetting] = {}
        for values in itertools.product(*(self.grid[a] for a in axes)):
            setting = RetrievalSetting.model_validate(dict(zip(axes, values, strict=True)))
            seen.setdefault(setting.key(), setting)
        return list(seen.values())


def load_config(path: Path) -> SweepConfig:
    config = common.load_config(path, SweepConfig)
    if not config.cells():
        raise SystemExit(f"{path}: the grid has no cell")
    return config


# --- the work (plain functions: a Ray task wraps each, --sequential calls them directly) ----------
def score_cell(setting_json: str, snapshot: bytes, dataset_path: str, split: str, k: int,
               measures: Sequence[str], precision: str) -> dict[str, Any]:
    """Restore the index, run every judged query with this setting, score the rankings."""
    from stratmaster.evals.datasets import load_beir
    from stratmaster.evals.retrieval_eval import close_index, open_index, restore_index, run_queries, score

    started = time.perf_counter()
    setting = RetrievalSetting.model_validate_json(setting_json)
    dataset = load_beir(dataset_path, split)
    model = common.embedder(precision)
    with tempfile.TemporaryDirectory(prefix="sweep-cell-") as directory:
        restore_index(snapshot, Path(directory))
        service = open_index(Path(directory), model.embed, setting)
        ran = run_queries(service, setting, [(q.id, q.text) for q in dataset.judged_queries()], k)
        close_index(service)
    scored = score(dataset, ran["rankings"], ran["latency_ms"], measures)
    elapsed = time.perf_counter() - started
    return {"setting": setting.model_dump(), "label": setting.label(), "key": setting.key(), **scored,
            "cell_seconds": round(elapsed, 3), "pid": os.getpid(), "started_at": time.time() - elapsed,
            "ended_at": time.time()}


def scheduling_overhead(rows: list[dict[str, Any]], submitted_at: float, slots: int, wall: float) -> float:
    """Share of the slots' time spent getting cells started: for each cell, in start order, the
    time from the moment a slot was free (submission, or the end of the cell it followed) to
    its start. Slots idle at the end, when fewer cells than slots remain, are not counted."""
    free = [submitted_at] * slots
    heapq.heapify(free)
    gaps = 0.0
    for row in sorted(rows, key=lambda r: r["started_at"]):
        gaps += max(0.0, row["started_at"] - heapq.heappop(free))
        heapq.heappush(free, row["ended_at"])
    return gaps / (slots * wall)


# --- results ----------------------------------------------------------------------------------
def pareto_front(rows: list[dict[str, Any]], quality: str) -> list[str]:
    """Keys of cells no other cell beats on both quality (higher) and latency p50 (lower)."""
    front = []
    for row in rows:
        q, t = row["measures"][quality], row["latency_ms"]["p50"]
        dominated = any(o["measures"][quality] >= q and o["latency_ms"]["p50"] <= t
                        and (o["measures"][quality] > q or o["latency_ms"]["p50"] < t) for o in rows)
        if not dominated:
            front.append(row["key"])
    return front


def summarise(config: SweepConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = {m: max(rows, key=lambda r, m=m: r["measures"][m])["key"] for m in config.measures}
    return {"best_per_measure": {m: {"key": k, "label": next(r["label"] for r in rows if r["key"] == k),
                                     "value": next(r["measures"][m] for r in rows if r["key"] == k)}
                                 for m, k in best.items()},
            "pareto_front_ndcg10_vs_latency": pareto_front(rows, config.measures[0])}


def plot(path: Path, rows: list[dict[str, Any]], front: list[str], quality: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Label points by the axes that vary between cells only.
    varying = [name for name in rows[0]["setting"] if len({str(r["setting"][name]) for r in rows}) > 1]
    figure, axis = plt.subplots(figsize=(9, 6))
    for row in rows:
        on_front = row["key"] in front
        point = (row["latency_ms"]["p50"], row["measures"][quality])
        axis.scatter(*point, color="tab:red" if on_front else "tab:blue")
        axis.annotate(" ".join(f"{name}={row['setting'][name]}" for name in varying), point, fontsize=7,
                      alpha=0.8, xytext=(4, 2), textcoords="offset points")
    axis.set_xlabel("in-process search latency p50 (ms)")
    axis.set_ylabel(quality)
    axis.set_title("Sweep cells (red: Pareto front)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- driver -----------------------------------------------------------------------------------
def _cost_order(cells: Sequence[RetrievalSetting]) -> list[RetrievalSetting]:
    """Costliest first (more candidates, more modes to fuse), so no long cell is left alone at the end."""
    return sorted(cells, key=lambda c: (c.mode != "hybrid", -(c.candidates or 200)))


def _parallel_pass(config: SweepConfig, cells: Sequence[RetrievalSetting], snapshots: dict[int | None, Any],
                   on_row: Any, label: str) -> dict[str, Any]:
    """One Ray task per cell; `on_row` sees each row as it finishes. The pass's timings."""
    import ray
    from tqdm import tqdm

    cell = ray.remote(num_cpus=1)(score_cell)
    args = (str(config.dataset), config.split)
    started = time.perf_counter()
    submitted_at = time.time()
    pending = {cell.remote(c.model_dump_json(), snapshots[c.chunk_tokens], *args, config.k, config.measures,
                           config.embedding_precision): c for c in _cost_order(cells)}
    busy, finished = 0.0, []
    with tqdm(total=len(cells), desc=label, unit="cell", file=sys.stderr) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            row = ray.get(done[0])
            pending.pop(done[0])
            busy += row["cell_seconds"]
            finished.append(row)
            on_row(row, len(pending))
            bar.update(1)
    wall = time.perf_counter() - started
    slots = max(1, min(len(cells), int(ray.cluster_resources().get("CPU", 1))))
    return {"cells": len(cells), "cells_wall_seconds": round(wall, 2), "cell_seconds_sum": round(busy, 2),
            "slots": slots,
            # slots idle for any reason (scheduling, start-up, the last cells' tail)
            "idle_share": round(max(0.0, 1 - busy / (slots * wall)), 4),
            "scheduling_overhead_share": round(scheduling_overhead(finished, submitted_at, slots, wall), 4)}


def _sequential_pass(config: SweepConfig, cells: Sequence[RetrievalSetting], snapshots: dict[int | None, bytes],
                     on_row: Any, label: str) -> dict[str, Any]:
    """The same cells one after another in this process (the speed comparison's baseline)."""
    from tqdm import tqdm

    args = (str(config.dataset), config.split)
    started = time.perf_counter()
    busy = 0.0
    for setting in tqdm(cells, desc=label, unit="cell", file=sys.stderr):
        row = score_cell(setting.model_dump_json(), snapshots[setting.chunk_tokens], *args, config.k,
                         config.measures, config.embedding_precision)
        busy += row["cell_seconds"]
        on_row(row, 0)
    return {"cells": len(cells), "cells_wall_seconds": round(time.perf_counter() - started, 2),
            "cell_seconds_sum": round(busy, 2)}


def speed_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The speedup of each round (sequential over parallel wall time) and their median, with verdicts."""
    for entry in rounds:
        entry["speedup"] = round(entry["sequential"]["cells_wall_seconds"]
                                 / entry["parallel"]["cells_wall_seconds"], 2)
    speedup = round(statistics.median(r["speedup"] for r in rounds), 2)
    overhead = round(statistics.median(r["parallel"]["scheduling_overhead_share"] for r in rounds), 4)
    return {"speedup": speedup, "speed_rounds": rounds, "verdicts": [
        {"measure": "speedup over one process", "value": speedup, "target": f">= {TARGET_SPEEDUP}",
         "met": speedup >= TARGET_SPEEDUP, "rounds": [r["speedup"] for r in rounds]},
        {"measure": "scheduling overhead share", "value": overhead, "target": f"< {TARGET_OVERHEAD}",
         "met": overhead < TARGET_OVERHEAD}]}


def run(config: SweepConfig, *, sequential: bool = False, parallel: bool = True, rounds: int = 1) -> dict[str, Any]:
    """Score the cells not already finished; with `sequential` also time them one after another.

    With `rounds` > 1 (and both modes) the comparison is repeated, every cell each time,
    alternating which mode goes first, and the median speedup is reported: the speed of a
    shared VM drifts by 10% from one minute to the next, which one pair of runs cannot tell
    from the code.
    """
    out, work = config.output_dir / config.name, work_dir(config)
    cells_dir = out / "cells"
    cache_file = str((work / "embedding-cache.sqlite3").resolve())
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    dataset_key = common.dataset_key(config.dataset, config.split)
    cells = config.cells()
    todo = [c for c in cells if not (cells_dir / f"{c.key()}-{dataset_key}.json").exists()]
    result: dict[str, Any] = {"kind": "eval_sweep", "name": config.name,
                              "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                              "config": config.model_dump(mode="json"), "cells": len(cells),
                              "reused_cells": len(cells) - len(todo)}

    def snapshot_path(chunk: int | None) -> Path:
        return work / f"index-{chunk or 'default'}-{config.embedding_precision}-{dataset_key}.tar"

    def keep(row: dict[str, Any], left: int) -> None:
        write_json(cells_dir / f"{row['key']}-{dataset_key}.json", row)
        common.report_progress(out, "cells", len(cells) - left, len(cells))

    def timing_only(row: dict[str, Any], left: int) -> None:
        pass

    args = (str(config.dataset), config.split)
    needed = todo if not sequential else cells
    snapshots_bytes: dict[int | None, bytes] = {}
    refs: dict[int | None, Any] = {}
    if (parallel and todo) or sequential:
        common.report_progress(out, "indexing", len(cells) - len(todo), len(cells))
        if parallel and todo:
            common.init_ray()
        started = time.perf_counter()
        for chunk in sorted({c.chunk_tokens for c in needed}, key=lambda v: (v is None, v or 0)):
            data, built = common.snapshot(snapshot_path(chunk), *args, chunk, config.embedding_precision, cache_file,
                                          remote=parallel and bool(todo))
            if built:
                result.setdefault("indexes", {})[str(chunk)] = built
            snapshots_bytes[chunk] = data
        index_seconds = round(time.perf_counter() - started, 2)
        if parallel and todo:
            import ray

            refs = {chunk: ray.put(data) for chunk, data in snapshots_bytes.items()}
    if parallel and todo:
        result["parallel"] = {**_parallel_pass(config, todo, refs, keep, f"sweep {config.name}"),
                              "index_seconds": index_seconds}
    if sequential:
        result["sequential"] = _sequential_pass(config, cells, snapshots_bytes, keep, f"sequential {config.name}")
    if "parallel" in result and "sequential" in result and result["parallel"]["cells"] == len(cells):
        measured = [{"parallel": result["parallel"], "sequential": result["sequential"]}]
        for n in range(2, rounds + 1):
            first_sequential = n % 2 == 0  # round 1 ran parallel first
            entry: dict[str, Any] = {}
            for mode in (("sequential", "parallel") if first_sequential else ("parallel", "sequential")):
                if mode == "parallel":
                    entry[mode] = _parallel_pass(config, cells, refs, timing_only, f"round {n} parallel")
                else:
                    entry[mode] = _sequential_pass(config, cells, snapshots_bytes, timing_only,
                                                   f"round {n} sequential")
            measured.append({"parallel": entry["parallel"], "sequential": entry["sequential"]})
        result.update(speed_summary(measured))
    rows = [common.read_json(cells_dir / f"{c.key()}-{dataset_key}.json") for c in cells]
    rows = [r for r in rows if r is not None]
    if rows:
        result["table"] = [{"key": r["key"], "label": r["label"], "setting": r["setting"], "measures": r["measures"],
                            "latency_ms": r["latency_ms"]} for r in rows]
        result.update(summarise(config, rows))
        plot(out / "sweep.png", rows, result["pareto_front_ndcg10_vs_latency"], config.measures[0])
    write_json(out / "sweep.json", result)
    common.report_progress(out, "done", len(cells), len(cells))
    return result


def work_dir(config: SweepConfig) -> Path:
    return common.work_dir("eval_sweep", config.name)


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("pipelines.eval_sweep", __doc__, "configs/sweeps/cisi-fusion.yaml")
    parser.add_argument("--fresh", action="store_true",
                        help="forget finished cells, index snapshots and cached embeddings first")
    parser.add_argument("--sequential", action="store_true",
                        help="also run every cell one after another in this process (speed comparison)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="with --sequential on a fresh sweep: repeat the comparison N times, alternating "
                             "which mode goes first, and report the median speedup (default 1)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    config = common.with_output_dir(config, args.output_dir)
    if args.fresh:
        shutil.rmtree(config.output_dir / config.name, ignore_errors=True)
        shutil.rmtree(work_dir(config), ignore_errors=True)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    result = run(config, sequential=args.sequential, rounds=args.rounds)
    summary = {k: result.get(k) for k in ("name", "cells", "reused_cells", "parallel", "sequential", "speedup",
                                          "verdicts", "best_per_measure")}
    print(yaml.safe_dump(summary, sort_keys=False), end="")
    print(f"-> {config.output_dir / config.name / 'sweep.json'}")
    return common.finish(args, "eval_sweep", config, result, config.output_dir / config.name)


if __name__ == "__main__":
    raise SystemExit(main())
