"""Research runs in the database: one run per idempotency key, steps kept once, cancel, resume list."""

from __future__ import annotations

import pytest

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.research.runs import IdempotencyConflict, ResearchRunRepository

REQUEST = {"question": "Should we reposition brand X as premium?", "depth": 1}


@pytest.fixture
def runs(tmp_path) -> ResearchRunRepository:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade(url)
    return ResearchRunRepository(create_db_engine(url))


def test_a_retried_request_with_the_same_key_returns_the_same_run(runs):
    first, created = runs.create("acme", REQUEST, "embedded", idempotency_key="k-1")
    again, created_again = runs.create("acme", REQUEST, "embedded", idempotency_key="k-1")
    assert created and not created_again and again.id == first.id
    assert runs.list("acme")[1] == 1
    with pytest.raises(IdempotencyConflict, match="k-1"):
        runs.create("acme", {**REQUEST, "depth": 2}, "embedded", idempotency_key="k-1")
    other, created_other = runs.create("globex", REQUEST, "embedded", idempotency_key="k-1")
    assert created_other and other.id != first.id, "keys are per tenant"
    assert runs.create("acme", REQUEST, "embedded")[0].id != first.id, "no key: a new run each time"


def test_steps_are_kept_once_and_progress_follows_them(runs):
    run, _ = runs.create("acme", REQUEST, "embedded")
    assert runs.save_step(run.id, "plan", {"subquestions": ["a"]}) == {"subquestions": ["a"]}
    assert runs.save_step(run.id, "plan", {"subquestions": ["b"]}) == {"subquestions": ["a"]}, "first one wins"
    runs.save_step(run.id, "gather", {"hits": []})
    assert runs.step_outputs(run.id) == {"plan": {"subquestions": ["a"]}, "gather": {"hits": []}}
    assert runs.get("acme", run.id).progress() == {"done": 2, "total": 7, "steps": ["plan", "gather"]}


def test_states_cancel_and_the_resume_list(runs):
    queued, _ = runs.create("acme", REQUEST, "embedded")
    running, _ = runs.create("acme", REQUEST, "embedded")
    runs.set_state(running.id, "running", "gather")
    assert runs.unfinished("embedded") == [queued.id, running.id] and runs.unfinished("temporal") == []
    assert runs.request_cancel("acme", queued.id).status == "cancelled", "a queued run stops at once"
    assert runs.request_cancel("acme", running.id).status == "running" and runs.cancel_requested(running.id)
    assert runs.request_cancel("globex", running.id) is None
    runs.set_state(running.id, "cancelled")
    runs.set_state(running.id, "running", "plan")
    assert runs.get("acme", running.id).status == "cancelled", "terminal states stay"
    assert runs.unfinished("embedded") == []
    assert runs.get("globex", running.id) is None
