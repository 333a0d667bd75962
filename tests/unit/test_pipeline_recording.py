"""`--tenant`: a pipeline run by hand or as a job stores its result as the tenant's eval run."""

from __future__ import annotations

import json

import pytest

from pipelines import common
from pipelines.eval_sweep import SweepConfig
from stratmaster.db.engine import create_db_engine
from stratmaster.db.migrate import upgrade
from stratmaster.evals.runs import EvalRunRepository
from stratmaster.settings import get_settings


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATMASTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def sweep_result(tmp_path):
    config = SweepConfig(name="by-hand", dataset=tmp_path, grid={"mode": ["hybrid"]}, output_dir=tmp_path / "out")
    result = {"kind": "eval_sweep", "name": "by-hand", "best_per_measure": {"nDCG@10": {"value": 0.2}}}
    folder = tmp_path / "out" / "by-hand"
    folder.mkdir(parents=True)
    (folder / "progress.json").write_text(json.dumps({"phase": "done", "done": 2, "total": 2}))
    return config, result, folder


def test_the_result_and_its_gates_are_listed_for_the_tenant(data_dir, tmp_path, monkeypatch, capsys):
    from stratmaster.settings import load_settings

    url = load_settings().effective_database_url
    upgrade(url)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR",
                       json.dumps({"runtime_env": {}, "metadata": {"job_submission_id": "raysubmit_abc"}}))
    config, result, folder = sweep_result(tmp_path)
    args = common.argument_parser("p", None, "x").parse_args(["--config", "c.yaml", "--tenant", "acme"])

    assert common.finish(args, "eval_sweep", config, result, folder) == 0

    runs, total = EvalRunRepository(create_db_engine(url)).list("acme")
    assert total == 1 and runs[0].status == "SUCCEEDED" and runs[0].result == result
    assert runs[0].submission_id == "raysubmit_abc" and runs[0].progress["done"] == 2
    assert runs[0].config["name"] == "by-hand" and "output_dir" not in runs[0].config
    # the eval_sweep gate set judged it: nDCG@10 0.2 is under CISI's floor
    assert any(g["status"] == "fail" for g in runs[0].gates)
    assert f"recorded as eval run {runs[0].id} of tenant acme" in capsys.readouterr().out


def test_without_a_tenant_nothing_is_recorded(data_dir, tmp_path):
    config, result, folder = sweep_result(tmp_path)
    args = common.argument_parser("p", None, "x").parse_args(["--config", "c.yaml"])
    assert common.finish(args, "eval_sweep", config, result, folder) == 0
    assert not data_dir.exists()


def test_an_unmigrated_database_is_a_clear_error_not_a_lost_result(data_dir, tmp_path, capsys):
    config, result, folder = sweep_result(tmp_path)
    args = common.argument_parser("p", None, "x").parse_args(["--config", "c.yaml", "--tenant", "acme"])
    assert common.finish(args, "eval_sweep", config, result, folder) == 2
    message = capsys.readouterr().err
    assert "not recorded as an eval run" in message and "stratmaster migrate upgrade" in message


def test_a_malformed_tenant_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        common.argument_parser("p", None, "x").parse_args(["--config", "c.yaml", "--tenant", "../etc"])
    assert exit_.value.code == 2 and "--tenant" in capsys.readouterr().err


def test_the_submission_id_comes_from_rays_job_config(monkeypatch):
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert common.job_submission_id() is None
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"metadata": {"job_submission_id": "raysubmit_x"}}))
    assert common.job_submission_id() == "raysubmit_x"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "not json")
    assert common.job_submission_id() is None
