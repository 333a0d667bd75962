"""`stratmaster evals ir|rag|gate`: JSON on stdout, exit 0; bad input exits 2 with the reason
on stderr; a failed gate exits 1."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stratmaster.cli import main

REPO = Path(__file__).resolve().parents[2]
RETRIEVAL_RESULT = REPO / "bench" / "results" / "retrieval.json"
RAG_CASES = REPO / "tests" / "data" / "rag_cases.jsonl"


@pytest.fixture(autouse=True)
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("KEYCLOAK_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


def _json(capsys):
    return json.loads(capsys.readouterr().out)


# --- ir ---------------------------------------------------------------------------------------
@pytest.fixture
def trec_files(tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\nq1 0 d2 0\nq1 0 d3 2\nq2 0 d4 1\n", encoding="utf-8")
    run = tmp_path / "run.txt"
    run.write_text("q1 Q0 d3 1 3.0 t\nq1 Q0 d1 2 2.0 t\nq1 Q0 d5 3 1.0 t\nq2 Q0 d6 1 1.0 t\nq2 Q0 d4 2 0.5 t\n",
                   encoding="utf-8")
    return qrels, run


def test_ir_prints_the_measures_as_json(capsys, trec_files):
    qrels, run = trec_files
    assert main(["evals", "ir", "--qrels", str(qrels), "--run", str(run), "--measures", "nDCG@10, P@2"]) == 0
    report = _json(capsys)
    # q1 ranks d3 (grade 2), d1 (grade 1) first: ideal, nDCG 1. q2 finds d4 at rank 2: 1/log2(3).
    assert report["per_query"]["q2"]["nDCG@10"] == pytest.approx(1 / math.log2(3))
    assert report["aggregate"] == pytest.approx({"nDCG@10": (1 + 1 / math.log2(3)) / 2, "P@2": (1 + 0.5) / 2})


def test_ir_defaults_to_the_default_measures(capsys, trec_files):
    qrels, run = trec_files
    assert main(["evals", "ir", "--qrels", str(qrels), "--run", str(run)]) == 0
    assert _json(capsys)["measures"] == ["nDCG@10", "MAP@100", "Recall@100", "MRR@10"]


def test_ir_with_a_malformed_run_exits_2_naming_the_line(capsys, trec_files, tmp_path):
    qrels, _ = trec_files
    run = tmp_path / "bad-run.txt"
    run.write_text("q1 Q0 d3 1 3.0 t\nq1 Q0 d1 2 high t\n", encoding="utf-8")
    assert main(["evals", "ir", "--qrels", str(qrels), "--run", str(run)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == f"error: {run}, line 2: score must be a number, got 'high'"


@pytest.mark.parametrize("args, message", [
    (["--measures", "nDCG@10,F1"], "unknown measure 'F1'"),
    (["--qrels", "/nonexistent/qrels.txt"], "No such file"),
])
def test_ir_with_bad_arguments_exits_2(capsys, trec_files, args, message):
    qrels, run = trec_files
    assert main(["evals", "ir", "--qrels", str(qrels), "--run", str(run), *args]) == 2
    assert message in capsys.readouterr().err


# --- gate -------------------------------------------------------------------------------------
def test_gate_passes_the_committed_retrieval_benchmark(capsys):
    assert main(["evals", "gate", str(RETRIEVAL_RESULT), "--set", "platform_retrieval_bench"]) == 0
    out = capsys.readouterr().out
    assert "7 gates: 7 passed, 0 failed, 0 skipped" in out
    assert "FAIL" not in out


def test_gate_fails_a_worse_copy_with_exit_1_and_shows_what_failed(capsys, tmp_path):
    worse = json.loads(RETRIEVAL_RESULT.read_text(encoding="utf-8"))
    worse["quality"]["dense"]["nDCG@10"] = 0.3
    worse["latency"]["1"]["errors"] = 3
    path = tmp_path / "worse.json"
    path.write_text(json.dumps(worse), encoding="utf-8")
    assert main(["evals", "gate", str(path), "--set", "platform_retrieval_bench"]) == 1
    failing = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert failing == [["FAIL", "dense", "nDCG@10", "0.3", ">=", "0.41", "below", "the", "floor", "0.41"],
                       ["FAIL", "errors,", "1", "client", "3", "<=", "0", "above", "the", "ceiling", "0"]]


def test_gate_takes_the_set_from_the_result_kind_and_prints_json(capsys, tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"kind": "eval_sweep", "best_per_measure": {"nDCG@10": {"value": 0.47}}}))
    assert main(["evals", "gate", str(path), "--json"]) == 0
    report = _json(capsys)
    assert (report["set"], report["passed"]) == ("eval_sweep", True)
    assert [(g["gate"], g["status"]) for g in report["gates"]] == [
        ("best nDCG@10", "pass"), ("speedup over sequential", "skip"), ("scheduling overhead share", "skip")]


def test_gate_checks_the_retrieval_benchmark_pipeline_by_its_kind(capsys, tmp_path):
    results = {name: {"measures": {"nDCG@10": value}} for name, value in
               (("keyword", 0.39), ("dense", 0.42), ("hybrid", 0.455))}
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps({"kind": "retrieval_benchmark", "results": results}))
    assert main(["evals", "gate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "gate set 'retrieval_benchmark'" in out
    assert "3 gates: 2 passed, 1 failed, 0 skipped" in out


def test_gate_with_custom_thresholds(capsys, tmp_path):
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("mine:\n  speed:\n    path: speed\n    max: 2\n", encoding="utf-8")
    result = tmp_path / "r.json"
    result.write_text('{"kind": "mine", "speed": 2.5}')
    assert main(["evals", "gate", str(result), "--thresholds", str(thresholds)]) == 1
    assert "above the ceiling 2" in capsys.readouterr().out


@pytest.mark.parametrize("content, thresholds, message", [
    ("{not json", None, "not valid JSON"),
    ('{"quality": {}}', None, "no \"kind\" field naming its gate set; choose one with --set"),
    ('{"kind": "nightly"}', None, "no gate set 'nightly'"),
    ('{"kind": "mine"}', "mine:\n  speed: {path: speed}\n", "mine > speed: needs min, max or both"),
])
def test_gate_with_bad_input_exits_2(capsys, tmp_path, content, thresholds, message):
    result = tmp_path / "r.json"
    result.write_text(content, encoding="utf-8")
    args = ["evals", "gate", str(result)]
    if thresholds:
        (tmp_path / "t.yaml").write_text(thresholds, encoding="utf-8")
        args += ["--thresholds", str(tmp_path / "t.yaml")]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_gate_on_a_missing_result_exits_2(capsys, tmp_path):
    assert main(["evals", "gate", str(tmp_path / "absent.json")]) == 2
    assert "absent.json" in capsys.readouterr().err


# --- rag --------------------------------------------------------------------------------------
def test_rag_prints_per_case_and_mean_scores(capsys):
    assert main(["evals", "rag", "--cases", str(RAG_CASES), "--no-relevancy"]) == 0
    report = _json(capsys)
    assert (report["kind"], report["cases"], report["cases_file"]) == ("rag_eval", 4, str(RAG_CASES))
    assert [c["id"] for c in report["per_case"]][:2] == ["market-entry-de-fr", "pricing-churn"]
    assert report["mean"]["faithfulness"] == pytest.approx((1 + 1 / 3 + 1 / 3 + 2 / 3) / 4)
    assert report["mean"]["answer_relevancy"] is None


def test_rag_output_can_be_gated(capsys, tmp_path):
    assert main(["evals", "rag", "--cases", str(RAG_CASES), "--no-relevancy"]) == 0
    result = tmp_path / "rag.json"
    result.write_text(capsys.readouterr().out)
    # The examples are deliberately flawed: faithfulness 0.58, citation precision 0.5 and recall 0.75 < 0.8.
    assert main(["evals", "gate", str(result), "--json"]) == 1
    statuses = {gate["gate"]: gate["status"] for gate in _json(capsys)["gates"]}
    assert statuses == {"faithfulness": "fail", "citation precision": "fail", "citation recall": "fail",
                        "context recall": "pass", "answer relevancy": "skip"}


def test_rag_threshold_changes_what_counts_as_support(capsys):
    assert main(["evals", "rag", "--cases", str(RAG_CASES), "--no-relevancy", "--threshold", "0.8"]) == 0
    report = _json(capsys)
    assert report["support_threshold"] == 0.8
    assert report["per_case"][0]["faithfulness"] == pytest.approx(2 / 3)  # 9/13 of the third sentence < 0.8
    assert main(["evals", "rag", "--cases", str(RAG_CASES), "--no-relevancy", "--threshold", "0"]) == 2
    assert "--threshold must be in (0, 1]" in capsys.readouterr().err


def test_rag_with_a_malformed_case_exits_2_naming_line_and_field(capsys, tmp_path):
    cases = tmp_path / "cases.jsonl"
    lines = RAG_CASES.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[1])
    broken["answer"] = broken["answer"].replace("[nrr]", "[nrr-2023]", 1)
    cases.write_text("\n".join([lines[0], json.dumps(broken)]) + "\n", encoding="utf-8")
    assert main(["evals", "rag", "--cases", str(cases), "--no-relevancy"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {cases}, line 2: field 'answer': cites 'nrr-2023'")


def test_rag_scores_answer_relevancy_with_the_onnx_embedder(capsys, data_dir):
    assert main(["evals", "rag", "--cases", str(RAG_CASES)]) == 0
    report = _json(capsys)
    relevancy = [c["answer_relevancy"] for c in report["per_case"]]
    assert all(0.3 < value <= 1.0 for value in relevancy), relevancy
    assert report["mean"]["answer_relevancy"] == pytest.approx(sum(relevancy) / 4)
    assert any((data_dir / "models").glob("*.onnx"))  # built in STRATMASTER_DATA_DIR/models
