"""Routing against real HTTP: fallback order, cooldowns, budgets and ledger rows, with a fake
OpenAI-compatible server on 127.0.0.1 and a migrated SQLite database."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import pytest
from router_fake_llm import FakeLLM, fail, stall
from router_fake_llm import fake_catalogue as catalogue_for

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.router.bandit import ThompsonRecommender
from stratmaster.router.catalogue import parse_catalogue
from stratmaster.router.repository import RouterRepository
from stratmaster.router.service import (
    AllModelsFailed,
    AlreadyRated,
    BudgetExhausted,
    Cooldowns,
    InvalidRequest,
    NoEligibleModel,
    NotFound,
    Router,
    build_providers,
)

QUESTION = [{"role": "system", "content": "Prices rose 12 percent. Customers stayed."},
            {"role": "user", "content": "Did customers stay?"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def repository(tmp_path) -> RouterRepository:
    url = f"sqlite:///{tmp_path / 'router.db'}"
    upgrade(url)
    return RouterRepository(create_db_engine(url))


@pytest.fixture
def clock() -> Clock:
    return Clock()


# One event loop for the whole module: the providers' connection pools belong to a loop.
LOOP = asyncio.Runner()


@pytest.fixture
def router(fake, repository, clock):
    fake.reset()
    catalogue = catalogue_for(fake.base_url)
    made = Router(catalogue, repository, build_providers(catalogue, {"FAKE_LLM_KEY": "sk-fake"}),
                  cooldowns=Cooldowns(clock))
    yield made
    LOOP.run(made.aclose())


def complete(router: Router, tenant: str = "rich", task: str = "default", **kwargs):
    return LOOP.run(router.complete(tenant, task, QUESTION, **kwargs))


def test_the_primary_answers_and_the_call_is_in_the_ledger(router, fake):
    done = complete(router, tenant="acme", request_id="req-1")
    assert done.call.model == "primary-m" and done.content == "fake answer" and done.fallbacks_tried == []
    assert done.decision.why == "primary of policies.default.default"
    assert done.call.cost_usd == pytest.approx(1000 / 1000 * 0.01 + 500 / 1000 * 0.02)
    rows, total = router.repository.list("acme")
    assert total == 1 and rows[0].outcome == "ok" and rows[0].tokens_in == 1000 and rows[0].tokens_out == 500
    assert rows[0].request_id == "req-1" and rows[0].cost_usd == pytest.approx(0.02)
    assert fake.calls("primary-m")[0].authorization == "Bearer sk-fake"


def test_a_failing_primary_falls_back_in_order_and_every_attempt_is_a_row(router, fake):
    fake.script("primary-m", fail(500), fail(500))  # the first try and its one retry
    done = complete(router)
    assert done.call.model == "backup-m" and done.call.attempt == 1
    assert [r.model for r in fake.calls()] == ["primary-m", "primary-m", "backup-m"]
    assert done.fallbacks_tried[0]["model"] == "primary-m" and done.fallbacks_tried[0]["outcome"] == "server_error"
    rows, _ = router.repository.list("rich")
    assert [(r.attempt, r.model, r.outcome, r.status_code) for r in sorted(rows, key=lambda r: r.attempt)] == [
        (0, "primary-m", "server_error", 500), (1, "backup-m", "ok", None)]
    assert next(r for r in rows if r.outcome != "ok").cost_usd == 0.0  # a failure costs nothing


def test_a_stalled_primary_times_out_and_falls_back(router, fake):
    fake.script("primary-m", stall(2.0))
    done = complete(router)
    assert done.call.model == "backup-m" and done.fallbacks_tried[0]["outcome"] == "timeout"
    assert len(fake.calls("primary-m")) == 1  # a timeout is not retried


def test_a_failed_model_cools_down_then_comes_back(router, fake, clock):
    fake.script("primary-m", fail(429), fail(429))
    complete(router)
    fake.reset()
    second = complete(router)
    assert second.call.model == "backup-m" and fake.calls("primary-m") == []
    cooling = second.decision.excluded[0]
    assert cooling["model"] == "primary-m"
    assert "cooling down" in cooling["reason"] and "rate_limited" in cooling["reason"]
    assert second.decision.why.startswith("fallback 1 of policies.default.default")
    clock.now += 31
    assert complete(router).call.model == "primary-m"


def test_when_everything_fails_the_error_lists_each_attempt_and_the_rows_are_kept(router, fake):
    fake.script("primary-m", fail(503), fail(503))
    fake.script("backup-m", fail(500), fail(500))
    with pytest.raises(AllModelsFailed) as caught:
        complete(router, task="remote")
    assert caught.value.status == 502
    assert [t["model"] for t in caught.value.details["fallbacks_tried"]] == ["primary-m", "backup-m"]
    rows, total = router.repository.list("rich")
    assert total == 2 and {r.outcome for r in rows} == {"server_error"}
    # Both cooling down: the next request tries them anyway rather than refusing.
    decision = router.decide("rich", "remote", QUESTION)
    assert decision.candidates == ["primary-m", "backup-m"] and "tried anyway" in decision.why


def test_budget_exhaustion_is_refused_with_a_clear_message_and_spend_matches_the_ledger(router):
    for _ in range(3):  # 0.02 each against a 0.05 monthly limit: the third starts under it
        complete(router, tenant="acme")
    status = router.budget("acme")
    assert status.exhausted and status.spent_usd == pytest.approx(0.06)
    rows, _ = router.repository.list("acme")
    assert sum(r.cost_usd for r in rows) == pytest.approx(status.spent_usd)
    with pytest.raises(BudgetExhausted) as caught:
        complete(router, tenant="acme")
    message = caught.value.message
    assert caught.value.status == 402 and "budget exhausted" in message and "'acme'" in message
    assert "$0.05" in message and "this month" in message and "resets at" in message
    assert router.repository.list("acme")[1] == 3  # nothing was called or recorded
    assert not router.budget("globex").exhausted  # budgets are per tenant


def test_spend_is_kept_per_period(repository, fake):
    catalogue = catalogue_for(fake.base_url)
    november = Router(catalogue, repository, {}, now=lambda: datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    december = Router(catalogue, repository, {}, now=lambda: datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    from stratmaster.router.repository import new_call

    repository.record([new_call("acme", "plan", "primary-m", "fake", 0, "ok", cost_usd=0.05)], "month:2026-11")
    assert november.budget("acme").exhausted and november.budget("acme").resets_at.month == 12
    assert not december.budget("acme").exhausted and december.budget("acme").spent_usd == 0


def test_constraints_exclude_models_and_say_why(router):
    private = router.decide("rich", "private", QUESTION)
    assert private.candidates == ["local-extractive"]
    assert "keeps data in the cluster" in private.excluded[0]["reason"]
    cheap = router.decide("rich", "cheap", QUESTION, temperature=0.9)
    assert cheap.candidates == ["backup-m"] and "prompt price" in cheap.excluded[0]["reason"]
    assert cheap.temperature == 0.2 and cheap.temperature_capped_from == 0.9 and "capped" in cheap.why
    huge = [{"role": "user", "content": "word " * 4_000}]  # ~5,000 tokens: over primary-m's 4,096
    assert "context window" in router.decide("rich", "default", huge).excluded[0]["reason"]


def test_nothing_eligible_is_a_422_naming_each_reason(router):
    huge = [{"role": "user", "content": "word " * 20_000}]
    with pytest.raises(NoEligibleModel) as caught:
        router.decide("rich", "cheap", huge, max_tokens=100_000)
    assert "primary-m" in caught.value.message and "backup-m" in caught.value.message


def test_a_requested_model_is_tried_first_within_the_policy(router):
    decision = router.decide("rich", "default", QUESTION, model="backup-m")
    assert decision.candidates[0] == "backup-m" and decision.chooser == "request"
    with pytest.raises(InvalidRequest, match="model: 'gpt-9' is not in the catalogue"):
        router.decide("rich", "default", QUESTION, model="gpt-9")
    with pytest.raises(NoEligibleModel, match="model: 'primary-m' cannot serve"):
        router.decide("rich", "private", QUESTION, model="primary-m")


def test_a_provider_without_its_key_is_excluded_naming_the_variable(fake, repository):
    catalogue = catalogue_for(fake.base_url)
    keyless = Router(catalogue, repository, build_providers(catalogue, {}))
    decision = keyless.decide("rich", "default", QUESTION)
    assert decision.candidates == ["local-extractive"]
    assert "FAKE_LLM_KEY is unset" in decision.excluded[0]["reason"]


def test_feedback_rewards_the_arm_once_per_call_and_only_the_tenants(router):
    done = complete(router, tenant="acme")
    result = router.feedback("acme", 1.0, call_id=done.call.id)
    assert result["model"] == "primary-m" and result["arm"]["pulls"] == 1 and 0.7 < result["reward"] <= 1.0
    assert router.repository.get("acme", done.call.id).quality == 1.0
    with pytest.raises(AlreadyRated):
        router.feedback("acme", 0.5, call_id=done.call.id)
    with pytest.raises(NotFound):
        router.feedback("globex", 0.5, call_id=done.call.id)
    scored = router.feedback("acme", 0.4, task="default", model="backup-m")  # an eval score, no call
    assert scored["reward"] == pytest.approx(0.4)
    with pytest.raises(InvalidRequest):
        router.feedback("acme", 0.4, task="default")


def test_a_failed_call_scores_zero_and_cannot_be_rated(router, fake):
    fake.script("primary-m", fail(500), fail(500))
    complete(router)
    failed = next(r for r in router.repository.list("rich")[0] if r.outcome != "ok")
    assert router.arms("rich", "default")["primary-m"].pulls == 1
    assert router.arms("rich", "default")["primary-m"].reward_sum == 0.0
    with pytest.raises(AlreadyRated, match="failed"):
        router.feedback("rich", 1.0, call_id=failed.id)


def test_ledger_pages_newest_first_and_filters(router):
    for _ in range(4):
        complete(router, tenant="rich")
    complete(router, tenant="rich", task="private")
    page, total = router.repository.list("rich", limit=2, offset=0)
    assert total == 5 and len(page) == 2 and page[0].task == "private"
    assert router.repository.list("rich", task="private")[1] == 1
    assert router.repository.list("rich", model="primary-m")[1] == 4
    assert router.repository.list("someone-else") == ([], 0)


def test_with_the_flag_off_policy_order_decides_whatever_the_arms_say(router):
    for _ in range(5):
        router.feedback("rich", 1.0, task="default", model="backup-m")
        router.feedback("rich", 0.0, task="default", model="primary-m")
    assert router.decide("rich", "default", QUESTION).candidates[0] == "primary-m"


def test_recommender_v2_learns_from_feedback_and_its_state_persists(fake, repository):
    """Through decide() and feedback() with the database: the best of three wins within 150 calls."""
    catalogue = catalogue_for(fake.base_url)
    providers = build_providers(catalogue, {"FAKE_LLM_KEY": "k"})
    router = Router(catalogue, repository, providers, recommender_enabled=True,
                    recommender=ThompsonRecommender(random.Random(3)))
    quality = {"primary-m": 0.3, "backup-m": 0.9, "local-extractive": 0.5}
    world = random.Random(4)
    picks = []
    for _ in range(150):
        decision = router.decide("acme", "default", QUESTION)
        chosen = decision.candidates[0]
        assert decision.chooser == "recommender-v2"
        router.feedback("acme", 1.0 if world.random() < quality[chosen] else 0.0, task="default", model=chosen)
        picks.append(chosen)
    assert sum(p == "backup-m" for p in picks[-50:]) >= 40
    # A new router (another replica, a restart) reads the same state.
    again = Router(catalogue, repository, providers, recommender_enabled=True)
    arms = again.arms("acme", "default")
    assert sum(a.pulls for a in arms.values()) == 150
    assert max(arms, key=lambda m: arms[m].pulls) == "backup-m"
    decision = again.decide("acme", "default", QUESTION)
    assert "Thompson" in decision.why and decision.recommender["arms"]["backup-m"]["pulls"] >= 100


class Recorder:
    def __init__(self) -> None:
        self.samples: list[dict[str, str]] = []

    def inc(self, value: float = 1.0, tags=None) -> None:
        self.samples.append(dict(tags or {}))


def test_routing_decisions_are_counted_by_task_model_and_outcome(fake, repository):
    fake.reset()
    catalogue = catalogue_for(fake.base_url)
    counter = Recorder()
    router = Router(catalogue, repository, build_providers(catalogue, {"FAKE_LLM_KEY": "k"}), decisions=counter)
    fake.script("primary-m", fail(500), fail(500))
    LOOP.run(router.complete("acme", "default", QUESTION))
    LOOP.run(router.complete("acme", "made-up-task", QUESTION))
    assert counter.samples == [
        {"task": "default", "model": "primary-m", "outcome": "server_error"},
        {"task": "default", "model": "backup-m", "outcome": "ok_after_fallback"},
        {"task": "other", "model": "backup-m", "outcome": "ok"},  # unknown tasks share one label; primary cools
    ]
    LOOP.run(router.aclose())


def test_the_request_deadline_bounds_every_attempt_and_skips_what_cannot_start(fake, repository):
    fake.reset()
    raw = catalogue_for(fake.base_url).model_dump()
    raw["routing"]["deadline_s"] = 0.4
    raw["providers"]["fake"]["timeout_s"] = 5.0
    catalogue = parse_catalogue(raw, "deadline-catalogue")
    router = Router(catalogue, repository, build_providers(catalogue, {"FAKE_LLM_KEY": "k"}))
    fake.script("primary-m", stall(1.0))
    started = time.monotonic()
    done = LOOP.run(router.complete("rich", "default", QUESTION))
    assert time.monotonic() - started < 0.9  # not the provider's 5 s timeout
    assert done.call.model == "local-extractive"  # the offline fallback still answers
    assert [t["outcome"] for t in done.fallbacks_tried] == ["timeout", "deadline_passed"]
    assert router.cooldowns.remaining("backup-m") is None  # skipped for time, not failed
    assert {r.model for r in router.repository.list("rich")[0]} == {"primary-m", "local-extractive"}
    LOOP.run(router.aclose())


def test_a_request_specific_4xx_falls_back_without_cooling_the_model(router, fake):
    fake.script("primary-m", fail(400))
    done = complete(router)
    assert done.call.model == "backup-m" and done.fallbacks_tried[0]["outcome"] == "client_error"
    assert router.cooldowns.remaining("primary-m") is None
    fake.script("primary-m", fail(401))  # a key the provider refuses: every request would fail
    complete(router)
    assert router.cooldowns.remaining("primary-m") is not None
