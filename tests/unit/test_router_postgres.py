"""The router's rows on a real PostgreSQL (TEST_DATABASE_URL; `make test` starts one): ledger,
spend bumped from several threads at once, arms inserted on first use, migration 0004 down and up.

Skipped without TEST_DATABASE_URL, as tests/integration/test_postgres.py is.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from stratmaster.db import migrate
from stratmaster.db.engine import create_db_engine
from stratmaster.router.repository import RouterRepository, new_call

pytestmark = pytest.mark.postgres
TABLES = {"router_calls", "router_budget_spend", "router_bandit_arms"}


@pytest.fixture(scope="module")
def url():
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        if os.environ.get("STRATMASTER_REQUIRE_SERVERS") == "1":
            pytest.fail("TEST_DATABASE_URL is not set (STRATMASTER_REQUIRE_SERVERS=1 forbids skipping)")
        pytest.skip("TEST_DATABASE_URL is not set: run `bash scripts/servers.sh start`")
    schema = f"test_router_{uuid.uuid4().hex[:10]}"
    admin = create_db_engine(server)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    yield make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture(scope="module")
def repository(url):
    migrate.upgrade(url)
    engine = create_db_engine(url)
    yield RouterRepository(engine)
    engine.dispose()


def test_migration_0004_goes_down_and_up(url, repository):
    engine = create_db_engine(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    migrate.downgrade(url, "0003")
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_ledger_rows_and_spend_agree_under_concurrent_writers(repository):
    def one(i: int) -> None:
        repository.record([new_call("pg-acme", "plan", "m", "p", 0, "server_error", status_code=500),
                           new_call("pg-acme", "plan", "m2", "p", 1, "ok", tokens_in=10, tokens_out=5,
                                    cost_usd=0.001, latency_ms=12.5)], "month:2026-11")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(40)))
    rows, total = repository.list("pg-acme", limit=500)
    assert total == 80 and sum(r.cost_usd for r in rows) == pytest.approx(0.04)
    assert repository.spent("pg-acme", "month:2026-11") == pytest.approx(0.04)
    assert rows[0].created_at.tzinfo is not None and {r.latency_ms for r in rows} == {0.0, 12.5}
    ok = next(r for r in rows if r.outcome == "ok")
    assert repository.set_quality("pg-acme", ok.id, 0.75) and not repository.set_quality("pg-acme", ok.id, 0.1)
    assert repository.get("pg-acme", ok.id).quality == 0.75 and repository.get("pg-other", ok.id) is None


def test_arms_are_created_on_first_reward_even_from_racing_threads(repository):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: repository.reward_arm("pg-acme", "judge", "m", 0.5), range(24)))
    arm = repository.arms("pg-acme", "judge")["m"]
    assert arm.pulls == 24 and arm.reward_sum == pytest.approx(12.0)
