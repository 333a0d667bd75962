"""Fusion of ranked lists: what each method rewards, on lists small enough to check by hand."""

from __future__ import annotations

import pytest

from stratmaster.knowledge.fusion import convex_combination, min_max, reciprocal_rank_fusion
from stratmaster.stores.protocols import ScoredChunk


def ranked(*pairs: tuple[str, float]) -> list[ScoredChunk]:
    return [ScoredChunk(chunk_id, f"doc-{chunk_id}", score) for chunk_id, score in pairs]


KEYWORD = ranked(("a", 12.0), ("b", 8.0), ("c", 2.0))
DENSE = ranked(("c", 0.9), ("a", 0.8), ("d", 0.7))


def test_rrf_sums_reciprocal_ranks():
    fused = reciprocal_rank_fusion({"keyword": KEYWORD, "dense": DENSE}, k=60)
    scores = {h.chunk_id: h.score for h in fused}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [h.chunk_id for h in fused] == ["a", "c", "b", "d"]
    assert fused[0].retrievers["keyword"].rank == 1 and fused[0].retrievers["dense"].rank == 2


def test_rrf_weights_scale_each_list():
    fused = reciprocal_rank_fusion({"keyword": KEYWORD, "dense": DENSE}, k=60, weights={"dense": 0.0})
    assert [h.chunk_id for h in fused][:3] == ["a", "b", "c"]


def test_min_max_normalisation():
    assert min_max([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5]
    assert min_max([5.0, 5.0]) == [1.0, 1.0]
    assert min_max([]) == []


def test_convex_combination_uses_normalised_scores_and_zero_for_missing():
    fused = convex_combination({"keyword": KEYWORD, "dense": DENSE}, weights={"keyword": 0.4, "dense": 0.6})
    scores = {h.chunk_id: h.score for h in fused}
    assert scores["a"] == pytest.approx(0.4 * 1.0 + 0.6 * 0.5)
    assert scores["b"] == pytest.approx(0.4 * 0.6)
    assert scores["c"] == pytest.approx(0.4 * 0.0 + 0.6 * 1.0)
    assert scores["d"] == pytest.approx(0.0)
    assert fused[0].chunk_id == "a"


def test_ties_are_broken_deterministically():
    one = ranked(("y", 1.0), ("x", 1.0))
    assert [h.chunk_id for h in convex_combination({"k": one}, {"k": 1.0})] == ["x", "y"]
