"""The evals service application: its own Serve app behind route prefix `/evals`.

- `POST /evals/runs` starts a pipeline (`retrieval_benchmark` or `eval_sweep`, config as in
  configs/benchmarks/ and configs/sweeps/) as a Ray job on the cluster the platform runs on,
  through its dashboard's job server (RAY_ADDRESS, else this cluster's own dashboard);
  `GET /evals/runs/{id}` follows the job, and once it succeeded stores the result JSON and
  its gate table (configs/evals/thresholds.yaml) on the run's row; `GET /evals/runs` lists.
- `POST /evals/score` scores one RAG case synchronously with `stratmaster.evals.rag_cases`
  (the JSONL case format, as a request body). The model for answer relevancy loads on the
  first request that needs it, in this replica.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.http import APIError, require_principal
from deployments.service import ServiceIngress, service_api
from stratmaster.db.engine import create_db_engine
from stratmaster.evals.gates import gate_table
from stratmaster.evals.runs import EvalRunRecord, EvalRunRepository, RunFiles, entrypoint, refresh
from stratmaster.identity import Principal
from stratmaster.logs import current_correlation_id
from stratmaster.settings import describe_validation_error

ROOT = Path(__file__).resolve().parents[1]

DESCRIPTION = "Computes retrieval and RAG quality metrics and gates releases on them."

SCORE_EXAMPLE = {
    "id": "pricing-1",
    "question": "Did the premium tier keep urban customers?",
    "contexts": [{"id": "c1", "text": "Urban churn fell to 3% after the premium tier launched."},
                 {"id": "c2", "text": "Rural stores saw no change in visits."}],
    "answer": "Urban churn fell to 3% after the premium launch [c1].",
    "relevant": ["c1"],
}


class RunRequest(BaseModel):
    kind: Literal["retrieval_benchmark", "eval_sweep"]
    config: dict[str, Any] = Field(description="A pipeline config, as in configs/benchmarks/ or configs/sweeps/; "
                                               "output_dir is set by the service")


def run_view(run: EvalRunRecord) -> dict[str, Any]:
    gates = run.gates
    return {"id": run.id, "kind": run.kind, "name": run.name, "status": run.status, "progress": run.progress,
            "error": run.error, "created_at": run.created_at.isoformat(), "updated_at": run.updated_at.isoformat(),
            "gates": gates, "gates_passed": None if gates is None else all(g["status"] != "fail" for g in gates),
            "result": run.result, "config": run.config, "job": run.submission_id}


def _config_model(kind: str) -> type[BaseModel]:
    if kind == "eval_sweep":
        from pipelines.eval_sweep import SweepConfig

        return SweepConfig
    from pipelines.retrieval_benchmark import BenchmarkConfig

    return BenchmarkConfig


def evals_api(service: str, description: str) -> FastAPI:
    api = service_api(service, description)

    @api.post("/runs", status_code=202, tags=["runs"], summary="Start a benchmark or sweep as a Ray job",
              responses={422: {"description": "The config is invalid; the message names the field"},
                         503: {"description": "The cluster's job server is unreachable"}})
    async def start_run(body: RunRequest, request: Request,
                        principal: Principal = Depends(require_principal)) -> JSONResponse:
        ingress: EvalsIngress = request.app.state.ingress
        try:
            config = _config_model(body.kind).model_validate({**body.config, "output_dir": "results"})
        except ValidationError as exc:
            raise APIError(422, "invalid_config", describe_validation_error(exc, "config.")) from None
        dataset = Path(config.dataset)  # type: ignore[attr-defined]
        if not dataset.is_absolute():
            dataset = (ROOT / dataset).resolve()
        if not (dataset / "corpus.jsonl").exists():
            raise APIError(422, "invalid_config", f"config.dataset: no BEIR dataset at {dataset} on the cluster")
        config = config.model_copy(update={"dataset": dataset})
        name = config.name  # type: ignore[attr-defined]
        run = await asyncio.to_thread(ingress.runs.create, principal.tenant, body.kind, name,
                                      config.model_dump(mode="json", exclude={"output_dir"}))
        files = ingress.files(run)
        files.folder.mkdir(parents=True, exist_ok=True)
        files.config.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"output_dir"})))
        try:
            submission = await asyncio.to_thread(
                ingress.jobs().submit, entrypoint(sys.executable, ROOT, body.kind, files),
                submission_id=f"evals-{run.id}", metadata={"tenant": principal.tenant, "eval_run": run.id})
        except Exception as exc:  # noqa: BLE001 - the run records why it never started
            await asyncio.to_thread(ingress.runs.update, principal.tenant, run.id, status="FAILED",
                                    error=f"not submitted: {exc}")
            raise APIError(503, "cluster_unavailable", f"run {run.id} could not be submitted: {exc}") from None
        await asyncio.to_thread(ingress.runs.update, principal.tenant, run.id, submission_id=submission)
        found = await asyncio.to_thread(ingress.runs.get, principal.tenant, run.id)
        return JSONResponse(run_view(found), status_code=202)

    @api.get("/runs/{run_id}", tags=["runs"], summary="A run: status, progress, and its result and gates when done")
    async def get_run(run_id: str, request: Request,
                      principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        ingress: EvalsIngress = request.app.state.ingress
        run = await asyncio.to_thread(ingress.runs.get, principal.tenant, run_id)
        if run is None:
            raise APIError(404, "not_found", f"no eval run {run_id!r}")
        return run_view(await asyncio.to_thread(ingress.refresh, run))

    @api.get("/runs", tags=["runs"], summary="The tenant's runs, newest first")
    async def list_runs(request: Request, limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0),
                        principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        ingress: EvalsIngress = request.app.state.ingress
        runs, total = await asyncio.to_thread(ingress.runs.list, principal.tenant, limit, offset)
        runs = [await asyncio.to_thread(ingress.refresh, run) for run in runs]
        return {"runs": [{k: v for k, v in run_view(run).items() if k not in ("result", "config")} for run in runs],
                "total": total, "limit": limit, "offset": offset}

    @api.post("/score", tags=["evals"], summary="Score one RAG case: faithfulness, context, citations, relevancy",
              responses={422: {"description": "The case is malformed; the message names the field"}})
    async def score(request: Request, case: dict[str, Any] = Body(..., examples=[SCORE_EXAMPLE]),
                    relevancy: bool = True,
                    router_call_id: str | None = Query(None, max_length=36, description=(
                        "The routing.call_id of the router call that wrote this answer: its faithfulness is "
                        "reported to the router as eval feedback (the recommender's reward)")),
                    principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        from stratmaster.evals.datasets import DatasetFormatError
        from stratmaster.evals.rag_cases import parse_case, score_case

        try:
            parsed = parse_case(Path("request body"), 1, case)
        except DatasetFormatError as exc:
            raise APIError(422, "invalid_case", str(exc)) from None
        ingress: EvalsIngress = request.app.state.ingress
        embed = (await asyncio.to_thread(ingress.runtime.embedding_model)).embed if relevancy else None
        scored = await asyncio.to_thread(score_case, parsed, embed)
        if router_call_id is not None:
            scored["router_feedback"] = await asyncio.to_thread(ingress.report_to_router, principal.tenant,
                                                                router_call_id, scored["faithfulness"])
        return scored

    return api


@serve.deployment
@serve.ingress()
class EvalsIngress(ServiceIngress):
    service = "evals"
    description = DESCRIPTION

    def __init__(self, args: ServiceArgs) -> None:
        super().__init__(args)
        self._jobs: Any = None
        settings = self.runtime.settings
        self.runs = EvalRunRepository(create_db_engine(settings.effective_database_url))
        self.runs_dir = settings.data_dir / "evals" / "runs"

    def files(self, run: EvalRunRecord) -> RunFiles:
        return RunFiles(self.runs_dir / run.id, run.name, run.kind)

    def jobs(self) -> Any:
        """The job server: RAY_ADDRESS's dashboard, else this cluster's own (connected on first use)."""
        if self._jobs is None:
            from cluster.jobs import JobsClient

            address = self.runtime.settings.ray_address
            if not address or "://" not in address:  # inside the cluster Ray sets RAY_ADDRESS to its GCS
                from ray._private.services import get_webui_url_from_internal_kv

                found = get_webui_url_from_internal_kv()  # what the head's dashboard published
                if not found:
                    raise RuntimeError("this cluster runs no dashboard (started with --no-dashboard?), so it has no "
                                       "job server; set RAY_ADDRESS to a cluster's dashboard URL")
                address = found if "://" in found else f"http://{found}"
            self._jobs = JobsClient(address)
        return self._jobs

    def refresh(self, run: EvalRunRecord) -> EvalRunRecord:
        if run.finished or run.submission_id is None:
            return run
        return refresh(run, self.runs, self.jobs(), self.files(run), gate_table)

    def report_to_router(self, tenant: str, call_id: str, score: float) -> dict[str, Any]:
        """The router call's eval feedback, sent to the router service (its recommender's reward)."""
        handle = serve.get_deployment_handle("RouterIngress", app_name="router")
        envelope = handle.feedback_for.remote(tenant, score, call_id, current_correlation_id()).result(
            timeout_s=self.args.handle_timeout_s)
        if "error" in envelope:
            error = envelope["error"]
            raise APIError(error["status"], error["code"],
                           f"router_call_id: {error['message'].removeprefix('call_id: ')}")
        return envelope["result"]

    def build_api(self) -> FastAPI:
        return evals_api(self.service, self.description)


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return EvalsIngress.bind(ServiceArgs.model_validate(args))
