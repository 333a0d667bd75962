"""The eval sweep pipeline on a small slice of CISI, as Ray tasks on the test cluster:
every cell scored, results written, and a rerun recomputes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.eval_sweep import SweepConfig, pareto_front, run, speed_summary, work_dir

pytestmark = pytest.mark.cluster


@pytest.fixture
def config(tmp_path: Path, cisi_slice: Path) -> SweepConfig:
    return SweepConfig(name="slice", dataset=cisi_slice, output_dir=tmp_path / "results",
                       grid={"mode": ["keyword", "hybrid"], "keyword_weight": [0.3]})


def test_a_sweep_scores_every_cell_and_a_rerun_recomputes_none(platform, config):
    first = run(config)
    assert first["cells"] == 2 and first["reused_cells"] == 0 and first["parallel"]["cells"] == 2
    labels = {row["label"]: row for row in first["table"]}
    assert set(labels) == {"keyword keyword_weight=0.3", "hybrid keyword_weight=0.3"}
    for row in first["table"]:
        assert 0 < row["measures"]["nDCG@10"] <= 1 and row["latency_ms"]["p50"] > 0
    assert set(first["best_per_measure"]) == set(config.measures)
    out = config.output_dir / config.name
    assert json.loads((out / "sweep.json").read_text())["table"] == first["table"]
    assert (out / "sweep.png").stat().st_size > 0
    assert list(work_dir(config).glob("index-*.tar")), "the index snapshot is kept for reruns"

    again = run(config)
    assert again["reused_cells"] == 2 and "parallel" not in again
    assert again["table"] == first["table"]


def test_speed_rounds_repeat_the_comparison_without_changing_the_results(platform, config):
    result = run(config, sequential=True, rounds=2)
    assert [set(r) for r in result["speed_rounds"]] == [{"parallel", "sequential", "speedup"}] * 2
    assert all(r["parallel"]["cells"] == r["sequential"]["cells"] == 2 for r in result["speed_rounds"])
    assert result["verdicts"][0]["rounds"] == [r["speedup"] for r in result["speed_rounds"]]
    assert {row["label"] for row in result["table"]} == {"keyword keyword_weight=0.3", "hybrid keyword_weight=0.3"}


def test_the_reported_speedup_is_the_median_of_the_rounds():
    def entry(parallel_s, sequential_s, overhead):
        return {"parallel": {"cells_wall_seconds": parallel_s, "scheduling_overhead_share": overhead},
                "sequential": {"cells_wall_seconds": sequential_s}}

    summary = speed_summary([entry(20.0, 30.0, 0.01), entry(20.0, 40.0, 0.02), entry(20.0, 36.0, 0.09)])
    assert [r["speedup"] for r in summary["speed_rounds"]] == [1.5, 2.0, 1.8]
    assert summary["speedup"] == 1.8
    speedup, overhead = summary["verdicts"]
    assert speedup["met"] and speedup["rounds"] == [1.5, 2.0, 1.8]
    assert overhead["value"] == 0.02 and overhead["met"]


def test_the_pareto_front_keeps_cells_nothing_beats_on_both_axes():
    rows = [{"key": key, "measures": {"nDCG@10": q}, "latency_ms": {"p50": t}}
            for key, q, t in (("fast", 0.40, 5.0), ("good", 0.46, 20.0), ("worse", 0.40, 25.0), ("tie", 0.46, 20.0))]
    assert pareto_front(rows, "nDCG@10") == ["fast", "good", "tie"]


def test_a_retrieval_benchmark_shards_queries_and_a_rerun_reuses_its_shards(platform, tmp_path, cisi_slice):
    from pipelines.retrieval_benchmark import BenchmarkConfig
    from pipelines.retrieval_benchmark import run as run_benchmark

    config = BenchmarkConfig(name="slice", dataset=cisi_slice, shards=2,
                             output_dir=tmp_path / "results",
                             settings={"keyword": {"mode": "keyword"}, "hybrid": {"mode": "hybrid"}})
    first = run_benchmark(config)
    assert first["queries"] == 4 and first["shards"] == 2 and first["reused_shards"] == 0
    assert set(first["results"]) == {"keyword", "hybrid"}
    assert all(0 < r["measures"]["nDCG@10"] <= 1 and r["queries"] == 4 for r in first["results"].values())
    per_query = json.loads((config.output_dir / "slice" / "per_query.json").read_text())
    assert len(per_query["hybrid"]) == 4

    again = run_benchmark(config)
    assert again["reused_shards"] == 2
    assert again["results"] == first["results"]
