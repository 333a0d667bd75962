"""Eval run rows: created pending, updated as the job moves, listed per tenant only."""

from __future__ import annotations

import pytest

from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.evals.runs import EvalRunRepository


@pytest.fixture
def runs(tmp_path) -> EvalRunRepository:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade(url)
    return EvalRunRepository(create_db_engine(url))


def test_a_run_starts_pending_and_keeps_what_its_job_reports(runs):
    run = runs.create("acme", "eval_sweep", "cisi-fusion", {"grid": {"mode": ["hybrid"]}})
    assert run.status == "PENDING" and not run.finished and run.result is None
    runs.update("acme", run.id, status="SUCCEEDED", submission_id="evals-1", result={"speedup": 1.8},
                gates=[{"gate": "speedup", "passed": True}])
    done = runs.get("acme", run.id)
    assert done.finished and done.result == {"speedup": 1.8} and done.submission_id == "evals-1"
    assert done.updated_at >= run.updated_at


def test_tenants_see_only_their_runs(runs):
    mine = runs.create("acme", "retrieval_benchmark", "cisi", {})
    runs.create("globex", "retrieval_benchmark", "cisi", {})
    assert runs.get("globex", mine.id) is None
    listed, total = runs.list("acme")
    assert [r.id for r in listed] == [mine.id] and total == 1


def test_listing_pages_newest_first(runs):
    ids = [runs.create("acme", "eval_sweep", f"s{i}", {}).id for i in range(5)]
    page, total = runs.list("acme", limit=2, offset=1)
    assert total == 5 and [r.id for r in page] == list(reversed(ids))[1:3]


def test_unknown_kinds_and_fields_are_refused(runs):
    with pytest.raises(ValueError, match="kind"):
        runs.create("acme", "compress_corpus", "x", {})
    run = runs.create("acme", "eval_sweep", "x", {})
    with pytest.raises(ValueError, match="kind"):
        runs.update("acme", run.id, kind="retrieval_benchmark")


def test_a_pipeline_run_elsewhere_is_recorded_finished_with_its_gates(runs):
    result = {"kind": "compress_corpus", "run": {"ratio": 3.1}}
    run = runs.record("acme", "compress_corpus", "nightly", {"tenant": "acme"}, result,
                      [{"gate": "ratio", "status": "pass"}], submission_id="raysubmit_1",
                      progress={"phase": "done", "done": 4, "total": 4})
    assert run.status == "SUCCEEDED" and run.finished and run.result == result
    assert run.submission_id == "raysubmit_1" and run.progress["done"] == 4
    assert [r.id for r in runs.list("acme")[0]] == [run.id] and runs.list("globex")[1] == 0
    with pytest.raises(ValueError, match="kind"):
        runs.record("acme", "nightly_backup", "x", {}, {}, [])
