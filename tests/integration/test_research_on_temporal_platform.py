"""The platform with TEMPORAL_ADDRESS set, as `make run` would start it against a Temporal
server: the research service starts its worker actors on the cluster, and a question sent
over HTTP becomes a Temporal workflow that ends in a verified brief.

A platform of its own (`stratmaster up` in a subprocess: one process may join only one Ray
cluster, and the session platform already holds this one), on free loopback ports, with
the real Temporal dev server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from platform_process import platform_process
from temporal_fixtures import temporal_server  # noqa: F401 - the session fixture

from stratmaster.identity import LocalIssuer

pytestmark = pytest.mark.cluster

QUESTION = "Did urban customers leave after the premium price rise?"


@pytest.fixture(scope="module")
def temporal_platform(temporal_server) -> Iterator[tuple[str, Path]]:  # noqa: F811 - the fixture
    with platform_process("sm-temporal-", {"TEMPORAL_ADDRESS": temporal_server.address}) as running:
        yield running


def test_a_question_runs_as_a_temporal_workflow_to_a_verified_brief(temporal_platform, temporal_server):  # noqa: F811
    base, data_dir = temporal_platform
    issuer = LocalIssuer(data_dir / "keys", audience="stratmaster")
    auth = {"Authorization": f"Bearer {issuer.issue('strategist', 'acme', ('analyst',), 3600)}"}
    with httpx.Client(base_url=base, timeout=120) as http:
        documents = [{"id": "pricing", "title": "Premium pricing review",
                      "text": "Urban customers did not leave after the premium price rise. Rural stores saw "
                              "fewer visits after the change."},
                     {"id": "survey", "title": "Loyalty survey",
                      "text": "Urban customers did not leave after the premium price rise, the survey found."}]
        assert http.post("/knowledge/documents", json={"documents": documents}, headers=auth).status_code == 200
        started = http.post("/research/runs", json={"question": QUESTION}, headers=auth)
        assert started.status_code == 202, started.text
        run = started.json()
        assert run["orchestrator"] == "temporal"
        deadline = time.monotonic() + 180
        while run["status"] not in ("complete", "needs_review", "failed", "cancelled"):
            assert time.monotonic() < deadline, run
            time.sleep(1)
            run = http.get(f"/research/runs/{run['id']}", headers=auth).json()
    assert run["status"] == "complete", run
    claims = run["result"]["brief"]["claims"]
    assert claims and {c["document_id"] for claim in claims for c in claim["citations"]} == {"pricing", "survey"}
    assert asyncio.run(_workflow_status(temporal_server.address, run["id"])) == "COMPLETED"


async def _workflow_status(address: str, run_id: str) -> str:
    from temporalio.client import Client

    from stratmaster.research.temporal_runner import workflow_id

    client = await Client.connect(address)
    description = await client.get_workflow_handle(workflow_id(run_id)).describe()
    return description.status.name
