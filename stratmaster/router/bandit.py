"""Recommender v2: Thompson sampling per (tenant, task) over the models a policy allows.

Each arm (a model for a tenant's task) keeps `pulls` and `reward_sum`, rewards in [0, 1].
Its posterior is Beta(1 + reward_sum, 1 + pulls - reward_sum) (fractional rewards are
fine: a reward r counts as r of a success). To choose, draw once from every eligible
arm's posterior and take the highest draw; an arm never tried draws from Beta(1, 1), so
new models get explored without a separate rule.

A call's reward is the weighted mean of the parts known for it (weights in the catalogue's
`routing.reward`, documented there):

    quality  the feedback score (POST /router/feedback, or an eval score)      default weight 0.7
    latency  1 - min(latency / latency_ref_ms, 1)                             default weight 0.15
    cost     1 - min(cost / cost_ref_usd, 1)                                   default weight 0.15

A failed call (timeout, error) scores 0. Feedback about a model for a task with no call
(an eval report) has only the quality part.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stratmaster.router.catalogue import RewardWeights


@dataclass(frozen=True, slots=True)
class ArmState:
    pulls: int = 0
    reward_sum: float = 0.0

    @property
    def mean(self) -> float | None:
        return None if self.pulls == 0 else self.reward_sum / self.pulls

    def updated(self, reward: float) -> ArmState:
        return ArmState(self.pulls + 1, self.reward_sum + reward)


def reward(weights: RewardWeights, quality: float | None = None, latency_ms: float | None = None,
           cost_usd: float | None = None) -> float:
    """The weighted mean of the known parts, each in [0, 1]; 0.0 when none is known."""
    parts: list[tuple[float, float]] = []
    if quality is not None:
        parts.append((weights.quality, min(max(quality, 0.0), 1.0)))
    if latency_ms is not None:
        parts.append((weights.latency, 1.0 - min(max(latency_ms, 0.0) / weights.latency_ref_ms, 1.0)))
    if cost_usd is not None:
        parts.append((weights.cost, 1.0 - min(max(cost_usd, 0.0) / weights.cost_ref_usd, 1.0)))
    total = sum(w for w, _ in parts)
    return 0.0 if total == 0 else sum(w * v for w, v in parts) / total


@dataclass(frozen=True, slots=True)
class Pick:
    model: str
    draw: float
    state: ArmState


class ThompsonRecommender:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[str], arms: Mapping[str, ArmState]) -> Pick:
        """The candidate with the highest posterior draw; ties keep policy order."""
        if not candidates:
            raise ValueError("no candidates")
        best: Pick | None = None
        for name in candidates:
            state = arms.get(name, ArmState())
            alpha = 1.0 + state.reward_sum
            beta = 1.0 + max(state.pulls - state.reward_sum, 0.0)
            draw = self._rng.betavariate(alpha, beta)
            if best is None or draw > best.draw:
                best = Pick(name, draw, state)
        assert best is not None
        return best
