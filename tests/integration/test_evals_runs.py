"""Eval runs through the API: a sweep submitted as a real Ray job on the platform's cluster,
followed to completion, its result and gates read back through GET /evals/runs/{id}."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def sweep(dataset: Path) -> dict:
    return {"kind": "eval_sweep",
            "config": {"name": "api-slice", "dataset": str(dataset), "grid": {"mode": ["keyword", "hybrid"]}}}


def wait_until_finished(http, run_id: str, auth: dict, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = http.get(f"/evals/runs/{run_id}", headers=auth).json()
        if run["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return run
        time.sleep(2)
    raise AssertionError(f"run {run_id} still {run['status']} after {timeout_s} s: {run}")


def test_a_sweep_runs_as_a_ray_job_and_its_result_comes_back(http, bearer, issuer, cisi_slice):
    started = http.post("/evals/runs", json=sweep(cisi_slice), headers=bearer)
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["job"] == f"evals-{run['id']}" and run["status"] == "PENDING"

    done = wait_until_finished(http, run["id"], bearer)
    assert done["status"] == "SUCCEEDED", done
    assert done["progress"]["phase"] == "done" and done["progress"]["done"] == 2
    assert {row["label"] for row in done["result"]["table"]} == {"keyword", "hybrid"}
    assert done["result"]["kind"] == "eval_sweep"
    gates = {gate["gate"]: gate for gate in done["gates"]}
    assert gates["best nDCG@10"]["value"] == done["result"]["best_per_measure"]["nDCG@10"]["value"]
    assert done["gates_passed"] is all(g["status"] != "fail" for g in done["gates"])

    listed = http.get("/evals/runs", headers=bearer).json()
    assert run["id"] in [r["id"] for r in listed["runs"]]
    other = {"Authorization": f"Bearer {issuer.issue('someone', 'globex', ('analyst',), 3600)}"}
    assert http.get(f"/evals/runs/{run['id']}", headers=other).status_code == 404
    assert run["id"] not in [r["id"] for r in http.get("/evals/runs", headers=other).json()["runs"]]


def test_a_bad_config_is_refused_before_anything_runs(http, bearer, tmp_path):
    bad_grid = {"kind": "eval_sweep", "config": {"name": "x", "dataset": str(tmp_path), "grid": "hybrid"}}
    answer = http.post("/evals/runs", json=bad_grid, headers=bearer)
    assert answer.status_code == 422 and "config.grid" in answer.json()["error"]["message"]
    no_dataset = sweep(tmp_path / "nowhere")
    answer = http.post("/evals/runs", json=no_dataset, headers=bearer)
    assert answer.status_code == 422 and "config.dataset" in answer.json()["error"]["message"]
    assert http.post("/evals/runs", json={"kind": "compress", "config": {}}, headers=bearer).status_code == 422


def test_a_sweep_submitted_by_hand_with_a_tenant_is_listed_by_the_api(http, bearer, platform, cisi_slice, tmp_path):
    import shlex
    import sys

    import yaml

    from cluster.jobs import JobsClient

    config = tmp_path / "by-hand.yaml"
    config.write_text(yaml.safe_dump({"name": "by-hand", "dataset": str(cisi_slice), "grid": {"mode": ["keyword"]}}))
    root = Path(__file__).resolve().parents[2]
    entrypoint = (f"cd {shlex.quote(str(root))} && {shlex.quote(sys.executable)} -m pipelines.eval_sweep "
                  f"--config {shlex.quote(str(config))} --output-dir {shlex.quote(str(tmp_path / 'out'))} "
                  f"--tenant acme")
    jobs = JobsClient(platform.dashboard_url)
    job = jobs.submit(entrypoint)
    finished = jobs.wait(job, timeout_s=300)
    assert finished.status == "SUCCEEDED", jobs.logs(job)

    listed = http.get("/evals/runs", headers=bearer).json()["runs"]
    mine = [r for r in listed if r["job"] == job]
    assert len(mine) == 1 and mine[0]["status"] == "SUCCEEDED" and mine[0]["kind"] == "eval_sweep"
    run = http.get(f"/evals/runs/{mine[0]['id']}", headers=bearer).json()
    assert [row["label"] for row in run["result"]["table"]] == ["keyword"]
    assert run["gates"] and run["gates_passed"] is all(g["status"] != "fail" for g in run["gates"])
