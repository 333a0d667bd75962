"""How hybrid search ranks: fusing the keyword and dense (and graph) result lists.

Two methods, chosen in configs/knowledge.yaml and overridable per request:
- reciprocal rank fusion (Cormack et al. 2009): score = sum of weight / (k + rank); uses
  ranks only, so it needs no score calibration between retrievers;
- convex combination: each list's scores min-max normalised to [0, 1], then a weighted
  sum (a chunk missing from a list gets 0 there). On CISI, BM25 weight 0.4 beats RRF.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stratmaster.stores.protocols import ScoredChunk


@dataclass(frozen=True, slots=True)
class RetrieverHit:
    rank: int  # 1-based
    score: float


@dataclass(slots=True)
class FusedHit:
    chunk_id: str
    document_id: str
    score: float
    retrievers: dict[str, RetrieverHit] = field(default_factory=dict)


def _collect(lists: Mapping[str, Sequence[ScoredChunk]]) -> dict[str, FusedHit]:
    hits: dict[str, FusedHit] = {}
    for name, ranked in lists.items():
        for rank, item in enumerate(ranked, start=1):
            hit = hits.setdefault(item.chunk_id, FusedHit(item.chunk_id, item.document_id, 0.0))
            hit.retrievers.setdefault(name, RetrieverHit(rank, item.score))
    return hits


def _ordered(hits: dict[str, FusedHit]) -> list[FusedHit]:
    # Ties broken by chunk id so results are deterministic.
    return sorted(hits.values(), key=lambda h: (-h.score, h.chunk_id))


def reciprocal_rank_fusion(lists: Mapping[str, Sequence[ScoredChunk]], k: float = 60.0,
                           weights: Mapping[str, float] | None = None) -> list[FusedHit]:
    hits = _collect(lists)
    for hit in hits.values():
        hit.score = sum((weights or {}).get(name, 1.0) / (k + found.rank) for name, found in hit.retrievers.items())
    return _ordered(hits)


def min_max(scores: Sequence[float]) -> list[float]:
    """Scores mapped to [0, 1]; a list of equal scores maps to all 1.0 (all equally good)."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def convex_combination(lists: Mapping[str, Sequence[ScoredChunk]], weights: Mapping[str, float]) -> list[FusedHit]:
    hits = _collect(lists)
    normalised: dict[tuple[str, str], float] = {}
    for name, ranked in lists.items():
        for item, value in zip(ranked, min_max([i.score for i in ranked]), strict=True):
            normalised.setdefault((name, item.chunk_id), value)
    for hit in hits.values():
        hit.score = sum(weights.get(name, 0.0) * normalised[(name, hit.chunk_id)] for name in hit.retrievers)
    return _ordered(hits)
