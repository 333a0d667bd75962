"""The research service application: its own Serve app behind route prefix `/research`.

- `POST /research/runs` starts a run (`Idempotency-Key`: a retry returns the same run, a
  different request under the same key is a 409); `GET /research/runs/{id}` shows its
  status, current step, progress and, once finished, the result; `GET /research/runs`
  lists the tenant's runs; `POST /research/runs/{id}/cancel` stops it between steps;
  `GET /research/runs/{id}/brief?format=json|markdown` exports the brief.
- Runs execute on the embedded runner in this replica (stratmaster/research/runner.py), or
  on Temporal workers when TEMPORAL_ADDRESS is set; unfinished runs resume when the replica
  starts. The steps reach the knowledge index, the router and the compression service through
  their Serve handles (`service_ports`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

from deployments.args import ServiceArgs
from deployments.http import APIError, require_principal
from deployments.service import ServiceIngress, service_api
from stratmaster.identity import Principal
from stratmaster.logs import current_correlation_id
from stratmaster.research.runs import IdempotencyConflict, ResearchRunRepository, RunRecord
from stratmaster.research.schemas import ResearchRequest

DESCRIPTION = "Runs research workflows that turn a strategy question into a cited decision brief."
ROOT = Path(__file__).resolve().parents[1]
TEMPORAL_WORKERS = 2  # worker actors (0.1 CPU each) polling the research task queue
log = logging.getLogger("stratmaster.research")


def run_view(run: RunRecord, with_result: bool = True) -> dict[str, Any]:
    view = {"id": run.id, "question": run.question, "status": run.status, "current_step": run.current_step,
            "progress": run.progress(), "orchestrator": run.orchestrator, "cancel_requested": run.cancel_requested,
            "reasons": run.reasons, "error": run.error, "created_at": run.created_at.isoformat(),
            "updated_at": run.updated_at.isoformat()}
    if with_result:
        view["request"] = run.request
        view["result"] = run.result
    return view


def research_api(service: str, description: str) -> FastAPI:
    api = service_api(service, description)
    add_source_routes(api)

    def ingress_of(request: Request) -> ResearchIngress:
        return request.app.state.ingress

    @api.post("/runs", status_code=202, tags=["runs"], summary="Start a research run (Idempotency-Key honoured)",
              responses={409: {"description": "The Idempotency-Key was used for a different request"},
                         422: {"description": "The request is invalid; the message names the field"}})
    async def start(body: ResearchRequest, request: Request, principal: Principal = Depends(require_principal),
                    idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> JSONResponse:
        from stratmaster.db.idempotency import check_key

        ingress = ingress_of(request)
        if idempotency_key is not None:
            try:
                check_key(idempotency_key)
            except ValueError as exc:
                raise APIError(400, "bad_request", str(exc)) from None
        try:
            run, created = await asyncio.to_thread(ingress.runs.create, principal.tenant,
                                                   body.model_dump(mode="json"), ingress.orchestrator,
                                                   idempotency_key)
        except IdempotencyConflict as exc:
            raise APIError(409, "idempotency_conflict", str(exc)) from None
        if created or run.status == "queued":  # a replayed run that never started gets its start now
            try:
                await asyncio.to_thread(ingress.start, run.id)
            except Exception as exc:  # noqa: BLE001 - Temporal unreachable: the run waits, the client is told
                log.warning("research run not started", extra={"run": run.id, "error": str(exc)[:300]})
                raise APIError(503, "unavailable", f"run {run.id} is queued but could not be started ({exc}); "
                               "retry with the same Idempotency-Key, or it starts when the service restarts",
                               {"run_id": run.id}) from None
        headers = {} if created else {"Idempotency-Replayed": "true"}
        return JSONResponse(run_view(run, with_result=False), status_code=202, headers=headers)

    @api.get("/runs/{run_id}", tags=["runs"], summary="A run: status, current step, progress, result")
    async def get_run(run_id: str, request: Request, principal: Principal = Depends(require_principal)) -> dict:
        run = await asyncio.to_thread(ingress_of(request).runs.get, principal.tenant, run_id)
        if run is None:
            raise APIError(404, "not_found", f"no research run {run_id!r}")
        return run_view(run)

    @api.get("/runs", tags=["runs"], summary="The tenant's runs, newest first")
    async def list_runs(request: Request, limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0),
                        principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        runs, total = await asyncio.to_thread(ingress_of(request).runs.list, principal.tenant, limit, offset)
        return {"runs": [run_view(r, with_result=False) for r in runs], "total": total, "limit": limit,
                "offset": offset}

    @api.post("/runs/{run_id}/cancel", status_code=202, tags=["runs"], summary="Stop a run before its next step",
              responses={409: {"description": "The run has already finished"}})
    async def cancel(run_id: str, request: Request, principal: Principal = Depends(require_principal)) -> JSONResponse:
        ingress = ingress_of(request)
        run = await asyncio.to_thread(ingress.runs.get, principal.tenant, run_id)
        if run is None:
            raise APIError(404, "not_found", f"no research run {run_id!r}")
        if run.finished:
            raise APIError(409, "conflict", f"research run {run_id!r} has already ended {run.status}")
        cancelled = await asyncio.to_thread(ingress.runs.request_cancel, principal.tenant, run_id)
        await asyncio.to_thread(ingress.cancel, run_id)
        return JSONResponse(run_view(cancelled, with_result=False), status_code=202)

    @api.get("/runs/{run_id}/brief", tags=["runs"], summary="The run's decision brief as JSON or Markdown",
             responses={409: {"description": "The run has no brief (yet)"}})
    async def brief(run_id: str, request: Request, format: Literal["json", "markdown"] = "json",
                    principal: Principal = Depends(require_principal)) -> Any:
        from stratmaster.research.export import brief_markdown

        run = await asyncio.to_thread(ingress_of(request).runs.get, principal.tenant, run_id)
        if run is None:
            raise APIError(404, "not_found", f"no research run {run_id!r}")
        if not run.result:
            raise APIError(409, "not_ready", f"research run {run_id!r} is {run.status}; it has no brief"
                           + (f" ({run.error})" if run.error else ""))
        if format == "markdown":
            return PlainTextResponse(brief_markdown(run.result["brief"], run.status, run.reasons),
                                     media_type="text/markdown; charset=utf-8")
        return {"status": run.status, "reasons": run.reasons, "brief": run.result["brief"],
                "metrics": run.result["metrics"]}

    return api


class SourcesRequest(BaseModel):
    urls: list[str] = Field(min_length=1, max_length=20, description="Pages to fetch and ingest")
    max_bytes: int | None = Field(None, ge=1, le=2_000_000, description="Lower the size limit for these pages")
    timeout_s: float | None = Field(None, gt=0, le=10, description="Lower the time limit per page")


class AllowlistBody(BaseModel):
    hosts: list[str] = Field(max_length=500, description="Hosts (their subdomains too) or IP addresses")


def add_source_routes(api: FastAPI) -> None:
    @api.get("/sources/allowlist", tags=["sources"], summary="The hosts this tenant lets research fetch from")
    async def get_allowlist(request: Request, principal: Principal = Depends(require_principal)) -> dict:
        hosts = await asyncio.to_thread(request.app.state.ingress.allowlists.get, principal.tenant)
        return {"tenant": principal.tenant, "hosts": hosts}

    @api.put("/sources/allowlist", tags=["sources"], summary="Replace the tenant's source allowlist (admin)")
    async def put_allowlist(body: AllowlistBody, request: Request,
                            principal: Principal = Depends(require_principal)) -> dict:
        try:
            hosts = await asyncio.to_thread(request.app.state.ingress.allowlists.replace, principal.tenant,
                                            body.hosts, principal.subject)
        except ValueError as exc:
            raise APIError(422, "invalid_request", f"hosts: {exc}") from None
        return {"tenant": principal.tenant, "hosts": hosts}

    @api.post("/sources", tags=["sources"], summary="Fetch allowed pages (robots.txt, size and time limits) and "
                                                    "ingest them with their provenance",
              responses={207: {"description": "Some pages were refused or failed; see each result"},
                         422: {"description": "Every page was refused"}})
    async def fetch_sources(body: SourcesRequest, request: Request,
                            principal: Principal = Depends(require_principal)) -> JSONResponse:
        ingress: ResearchIngress = request.app.state.ingress
        results = await asyncio.to_thread(ingress.sources.fetch_and_ingest, principal.tenant, body.urls, body.max_bytes,
                                          body.timeout_s, current_correlation_id())
        ok = [r for r in results if r["status"] == "ingested"]
        status = 200 if len(ok) == len(results) else 207 if ok else 422
        return JSONResponse({"results": results}, status_code=status)


class SourceIngestion:
    """Pages fetched under a tenant's allowlist and limits, then ingested by the knowledge index
    (through its Serve handle): for `POST /research/sources` and for runs given `options.sources`."""

    def __init__(self, allowlists: Any, fetcher: Any, handle_timeout_s: float) -> None:
        self.allowlists, self.fetcher, self.handle_timeout_s = allowlists, fetcher, handle_timeout_s

    def fetch_and_ingest(self, tenant: str, urls: list[str], max_bytes: int | None = None,
                         timeout_s: float | None = None, correlation_id: str | None = None) -> list[dict[str, Any]]:
        from stratmaster.research.sources import SourceRefused

        allowlist = self.allowlists.get(tenant)
        results: list[dict[str, Any]] = []
        fetched = []
        for url in urls:
            try:
                source = self.fetcher.fetch(url, allowlist, max_bytes=max_bytes, timeout_s=timeout_s)
            except SourceRefused as exc:
                results.append({"url": url, "status": "refused", "code": exc.code, "reason": exc.message})
                continue
            fetched.append((len(results), source))
            results.append({"url": url, "status": "fetched", "provenance": source.provenance})
        if fetched:
            handle = serve.get_deployment_handle("KnowledgeIndex", app_name="knowledge")
            envelope = handle.ingest.remote(tenant, [s.document() for _, s in fetched], correlation_id).result(
                timeout_s=self.handle_timeout_s * 6)
            outcomes = envelope.get("result", {}).get("results") if "result" in envelope else None
            for number, (index, source) in enumerate(fetched):
                outcome = outcomes[number] if outcomes else {"status": "failed", "error": envelope.get("error")}
                stored = outcome["status"] in ("created", "updated", "unchanged")
                results[index].update(status="ingested" if stored else "failed",
                                      document_id=source.document()["id"], ingest=outcome["status"],
                                      **({} if stored else {"reason": str(outcome.get("error"))}))
        return results

    @classmethod
    def for_settings(cls, settings: Any, handle_timeout_s: float) -> SourceIngestion:
        from stratmaster.db.engine import create_db_engine
        from stratmaster.research.allowlists import AllowlistRepository
        from stratmaster.research.sources import SourceFetcher

        return cls(AllowlistRepository(create_db_engine(settings.effective_database_url)), SourceFetcher(),
                   handle_timeout_s)


def default_ports() -> Any:
    """Ports for a research worker on the platform's Ray cluster (a Temporal worker actor or
    `python -m stratmaster.research.temporal_worker` beside it): the services' Serve handles."""
    import ray

    from stratmaster.settings import load_settings

    if not ray.is_initialized():
        ray.init(address="auto", namespace="stratmaster", logging_level="WARNING")
    return service_ports(30.0, SourceIngestion.for_settings(load_settings(), 30.0).fetch_and_ingest)


def service_ports(timeout_s: float, fetch_sources: Any) -> Any:
    """Every step's call goes to the service that owns it, through its Serve handle: search to
    the knowledge index, completions to the router, compression to the compression service."""
    from stratmaster.research.ports import LocalPorts, unwrap

    def complete(tenant: str, task: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        handle = serve.get_deployment_handle("RouterIngress", app_name="router")
        return unwrap(handle.complete_for.remote(tenant, task, messages, current_correlation_id())
                      .result(timeout_s=max(timeout_s, 60.0)), "router")

    def compress(tenant: str, query: str, chunks: list[dict[str, str]], target_tokens: int) -> dict[str, Any]:
        handle = serve.get_deployment_handle("CompressionIngress", app_name="compression")
        return unwrap(handle.compress_for.remote(query, chunks, target_tokens, current_correlation_id())
                      .result(timeout_s=timeout_s), "compression")

    return LocalPorts(_knowledge_search(timeout_s), complete, compress, fetch_sources)


def _knowledge_search(timeout_s: float):
    """Search through the knowledge index's handle (it owns the embedded stores), from a worker thread."""
    from stratmaster.research.ports import unwrap

    def search(tenant: str, request: dict[str, Any]) -> dict[str, Any]:
        handle = serve.get_deployment_handle("KnowledgeIndex", app_name="knowledge")
        return unwrap(handle.search.remote(tenant, request, current_correlation_id()).result(timeout_s=timeout_s),
                      "search")
    return search


@serve.deployment
@serve.ingress()
class ResearchIngress(ServiceIngress):
    service = "research"
    description = DESCRIPTION

    def __init__(self, args: ServiceArgs) -> None:
        super().__init__(args)
        from stratmaster.db.engine import create_db_engine
        from stratmaster.research.allowlists import AllowlistRepository
        from stratmaster.research.runner import EmbeddedRunner
        from stratmaster.research.sources import SourceFetcher

        settings = self.runtime.settings
        engine = create_db_engine(settings.effective_database_url)
        self.runs = ResearchRunRepository(engine)
        self.allowlists = AllowlistRepository(engine)
        self.sources = SourceIngestion(self.allowlists, SourceFetcher(), args.handle_timeout_s)
        self.ports = service_ports(args.handle_timeout_s, self.sources.fetch_and_ingest)
        self.orchestrator = "temporal" if settings.temporal_address else "embedded"
        # A service that is still starting (the index after a restart) gets ~30 s of retries.
        self.runner = EmbeddedRunner(self.runs, self.ports, max_attempts=5, backoff_s=2.0)
        if self.orchestrator == "embedded":
            resumed = self.runner.resume_unfinished()
            if resumed:
                log.info("research runs resumed", extra={"runs": resumed})
        else:
            threading.Thread(target=self._start_temporal_workers, daemon=True).start()

    def _start_temporal_workers(self) -> None:
        """Worker actors on this Ray cluster (named: every replica finds the same ones), then the
        runs that were queued while Temporal or the workers were away."""
        from stratmaster.research.temporal_runner import start_unfinished_sync
        from stratmaster.research.temporal_worker import WORKER_ACTOR_PREFIX, start_worker_actors

        settings = self.runtime.settings
        try:
            start_worker_actors(TEMPORAL_WORKERS, settings.temporal_address, settings.effective_database_url,
                                make_ports="deployments.research:default_ports", name_prefix=WORKER_ACTOR_PREFIX)
            started = start_unfinished_sync(settings)
            log.info("research workers started", extra={"workers": TEMPORAL_WORKERS, "runs_started": started})
        except Exception:  # noqa: BLE001 - runs stay queued; a later start or replica start retries
            log.exception("could not start research workers or queued runs")

    def start(self, run_id: str) -> None:
        if self.orchestrator == "temporal":
            from stratmaster.research.temporal_runner import start_run_sync

            start_run_sync(self.runtime.settings, run_id)
        else:
            self.runner.submit(run_id)

    def cancel(self, run_id: str) -> None:
        """The embedded runner sees the flag between steps; Temporal is told as well."""
        if self.orchestrator == "temporal":
            from stratmaster.research.temporal_runner import cancel_run_sync

            cancel_run_sync(self.runtime.settings, run_id)

    def build_api(self) -> FastAPI:
        return research_api(self.service, self.description)


def build_app(args: ServiceArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return ResearchIngress.bind(ServiceArgs.model_validate(args))
