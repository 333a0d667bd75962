"""Quality gates: the thresholds file, dotted paths into a result, pass/fail/skip per gate,
and the committed benchmark result against the committed thresholds."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from stratmaster.evals.gates import (
    DEFAULT_THRESHOLDS,
    Gate,
    GateSetError,
    PathNotFound,
    ThresholdsError,
    evaluate_gate,
    evaluate_gates,
    format_table,
    load_thresholds,
    parse_thresholds,
    resolve,
    select_gate_set,
)

REPO = Path(__file__).resolve().parents[2]
RETRIEVAL_RESULT = REPO / "bench" / "results" / "retrieval.json"


@pytest.fixture(scope="module")
def retrieval_result():
    return json.loads(RETRIEVAL_RESULT.read_text(encoding="utf-8"))


# --- the committed files ----------------------------------------------------------------------
def test_the_committed_thresholds_hold_a_set_per_kind_of_result():
    sets = load_thresholds()
    assert DEFAULT_THRESHOLDS == REPO / "configs" / "evals" / "thresholds.yaml"
    assert {"platform_retrieval_bench", "retrieval_benchmark", "eval_sweep", "rag_eval"} <= set(sets)
    floors = {g.name: g.min for g in sets["platform_retrieval_bench"]}
    assert (floors["keyword nDCG@10"], floors["dense nDCG@10"], floors["hybrid nDCG@10 (server defaults)"]) == \
        (0.38, 0.41, 0.46)


def test_the_committed_retrieval_benchmark_passes_its_gates(retrieval_result):
    _, gates = select_gate_set(load_thresholds(), retrieval_result, "platform_retrieval_bench")
    results = evaluate_gates(gates, retrieval_result)
    assert [r.status for r in results] == ["pass"] * len(gates)
    measured = {r.gate.name: r.value for r in results}
    # The values read through the gates' dotted paths are the file's own (whatever run it holds).
    assert measured["hybrid nDCG@10 (server defaults)"] == retrieval_result["quality"]["hybrid default"]["nDCG@10"]
    assert measured["hybrid p95 ms, 16 clients"] == retrieval_result["latency"]["16"]["latency_ms"]["p95"]


def test_a_worse_retrieval_benchmark_fails_the_gates_it_misses(retrieval_result):
    worse = copy.deepcopy(retrieval_result)
    worse["quality"]["hybrid default"]["nDCG@10"] = 0.45
    worse["latency"]["16"]["latency_ms"]["p95"] = 612.0
    _, gates = select_gate_set(load_thresholds(), worse, "platform_retrieval_bench")
    failed = {r.gate.name: (r.value, r.detail) for r in evaluate_gates(gates, worse) if r.failed}
    assert failed == {"hybrid nDCG@10 (server defaults)": (0.45, "below the floor 0.46"),
                      "hybrid p95 ms, 16 clients": (612.0, "above the ceiling 500")}


# --- paths ------------------------------------------------------------------------------------
def test_paths_take_the_longest_matching_key_so_keys_may_hold_dots_and_spaces(retrieval_result):
    assert resolve(retrieval_result, "quality.hybrid convex kw=0.3.nDCG@10") == \
        retrieval_result["quality"]["hybrid convex kw=0.3"]["nDCG@10"]
    assert resolve(retrieval_result, "latency.16.latency_ms.p95") == \
        retrieval_result["latency"]["16"]["latency_ms"]["p95"]
    assert resolve({"a": {"b": 1}, "a.b": 2}, "a.b") == 2
    assert resolve({"a": {"b": 1}, "a.b": {"c": 3}}, "a.b.c") == 3


def test_a_number_indexes_a_list(retrieval_result):
    assert resolve(retrieval_result, "verdicts.0.value") == retrieval_result["verdicts"][0]["value"]
    with pytest.raises(PathNotFound, match="verdicts is a list of 6; '6' is not an index"):
        resolve(retrieval_result, "verdicts.6.value")


def test_a_missing_path_says_where_it_stopped(retrieval_result):
    with pytest.raises(PathNotFound, match=r"no key at quality matches 'hybrid defualt.nDCG@10' \(keys: dense, "):
        resolve(retrieval_result, "quality.hybrid defualt.nDCG@10")
    with pytest.raises(PathNotFound, match="timestamp is a str"):
        resolve(retrieval_result, "timestamp.year")


# --- one gate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value, status, detail", [
    (0.5, "pass", ""),
    (0.4, "pass", ""),  # floors and ceilings are inclusive
    (0.6, "pass", ""),
    (0.39, "fail", "below the floor 0.4"),
    (0.61, "fail", "above the ceiling 0.6"),
    (True, "fail", "not a number: True"),
    ("0.5", "fail", "not a number: '0.5'"),
    (float("nan"), "fail", "not a number: NaN"),
    (None, "fail", "not measured: null"),
])
def test_a_gate_checks_its_bounds(value, status, detail):
    result = evaluate_gate(Gate("g", "m.v", min=0.4, max=0.6), {"m": {"v": value}})
    assert (result.status, result.detail) == (status, detail)


def test_an_unmeasured_gate_fails_unless_it_is_optional():
    assert evaluate_gate(Gate("g", "speedup", min=1.7), {}).status == "fail"
    assert evaluate_gate(Gate("g", "speedup", min=1.7, required=False), {}).status == "skip"
    assert evaluate_gate(Gate("g", "speedup", min=1.7, required=False), {"speedup": None}).status == "skip"
    assert evaluate_gate(Gate("g", "speedup", min=1.7, required=False), {"speedup": 1.2}).status == "fail"


def test_the_table_shows_each_gate_and_the_counts():
    results = evaluate_gates([Gate("nDCG", "n", min=0.46), Gate("p95 ms", "p", max=500),
                              Gate("speedup", "s", min=1.7, required=False)], {"n": 0.45, "p": 120})
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["STATUS", "GATE", "VALUE", "BOUNDS", "DETAIL"]
    assert lines[1].split() == ["FAIL", "nDCG", "0.45", ">=", "0.46", "below", "the", "floor", "0.46"]
    assert lines[2].split() == ["PASS", "p95", "ms", "120", "<=", "500"]
    assert lines[3].startswith("SKIP    speedup")
    assert lines[4] == "3 gates: 1 passed, 1 failed, 1 skipped"


# --- choosing a set ---------------------------------------------------------------------------
def test_the_set_comes_from_the_result_kind_or_by_name():
    sets = {"eval_sweep": (Gate("g", "x", min=0),), "rag_eval": (Gate("h", "y", min=0),)}
    assert select_gate_set(sets, {"kind": "rag_eval"})[0] == "rag_eval"
    assert select_gate_set(sets, {"kind": "rag_eval"}, "eval_sweep")[0] == "eval_sweep"
    with pytest.raises(GateSetError, match="no \"kind\" field .* --set \\(sets: eval_sweep, rag_eval\\)"):
        select_gate_set(sets, {"quality": {}})
    with pytest.raises(GateSetError, match="no gate set 'retrieval'"):
        select_gate_set(sets, {"kind": "retrieval"})


# --- thresholds files -------------------------------------------------------------------------
@pytest.mark.parametrize("text, location, message", [
    ("[]", "", "expected a mapping of gate set names"),
    ("sweep: []", "sweep", "non-empty mapping of gate names"),
    ("sweep:\n  best: 0.4", "sweep > best", "must be a mapping with path"),
    ("sweep:\n  best: {min: 0.4}", "sweep > best > path", "must be a non-empty string"),
    ("sweep:\n  best: {path: a.b}", "sweep > best", "needs min, max or both"),
    ("sweep:\n  best: {path: a.b, min: high}", "sweep > best > min", "must be a finite number, got 'high'"),
    ("sweep:\n  best: {path: a.b, max: .nan}", "sweep > best > max", "must be a finite number"),
    ("sweep:\n  best: {path: a.b, min: true}", "sweep > best > min", "must be a finite number, got True"),
    ("sweep:\n  best: {path: a.b, min: 2, max: 1}", "sweep > best", "min 2 is above max 1"),
    ("sweep:\n  best: {path: a.b, floor: 1}", "sweep > best > floor", "unknown field"),
    ("sweep:\n  best: {path: a.b, min: 1, required: maybe}", "sweep > best > required", "must be true or false"),
])
def test_malformed_thresholds_name_the_file_and_the_place(tmp_path, text, location, message):
    path = tmp_path / "thresholds.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ThresholdsError) as caught:
        load_thresholds(path)
    assert caught.value.location == (tuple(location.split(" > ")) if location else ())
    assert str(caught.value).startswith(f"{path}: {location + ': ' if location else ''}")
    assert message in str(caught.value)


def test_invalid_yaml_names_its_line(tmp_path):
    path = tmp_path / "thresholds.yaml"
    path.write_text("sweep:\n  best: {path: a.b\n  other: 1\n", encoding="utf-8")
    with pytest.raises(ThresholdsError, match=rf"{path}: line \d+: not valid YAML"):
        load_thresholds(path)


def test_thresholds_parse_into_gates_in_file_order():
    sets = parse_thresholds({"s": {"b": {"path": "x", "max": 3}, "a": {"path": "y", "min": 1, "required": False}}})
    assert sets == {"s": (Gate("b", "x", max=3), Gate("a", "y", min=1, required=False))}
