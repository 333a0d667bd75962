"""The router service application: its own Serve app behind route prefix `/router`.

Every generation goes through here: `POST /router/complete` takes an OpenAI chat request
plus a `task`, picks the model from the catalogue's policy for the caller's tenant
(`stratmaster.router`), calls it with fallbacks and cooldowns, records each attempt in the
cost ledger and answers OpenAI's chat.completion with a `routing` block (model, why,
fallbacks tried, cost); with `stream: true`, chat.completion.chunk events whose last one
carries usage and the routing block. `POST /router/route` is the decision alone; `POST /router/feedback`
rates a call (or, from the evals service, a model on a task) for recommender v2
(ENABLE_MODEL_RECOMMENDER_V2); `GET /router/models`, `/router/ledger` (the tenant's calls,
paged) and `/router/budget` describe. An exhausted budget is a 402; a malformed request a
422 naming the field.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field
from ray import serve
from ray.serve import Application
from sqlalchemy.exc import OperationalError

from deployments.args import ServiceArgs
from deployments.http import APIError, error_body, require_principal
from deployments.service import ServiceIngress, service_api
from stratmaster.health import ComponentHealth
from stratmaster.identity import Principal
from stratmaster.logs import current_correlation_id
from stratmaster.router.schemas import (
    TASK_PATTERN,
    CompletionRequest,
    FeedbackRequest,
    completion_body,
    completion_events,
)
from stratmaster.router.service import Router, RoutingError

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("stratmaster.router")
DESCRIPTION = "Chooses, calls and accounts for the model that serves each generation task."


class RouterArgs(ServiceArgs):
    catalogue: str = Field("configs/router/models.yaml",
                           description="The catalogue and policy file; relative paths are from the repository")


def _routing_error(exc: RoutingError) -> APIError:
    return APIError(exc.status, exc.code, exc.message, exc.details)


def router_api(service: str, description: str) -> FastAPI:
    api = service_api(service, description)

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("router database error", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})
        return JSONResponse(error_body(503, "ledger_unavailable", "the router's database (ledger, budgets) did not "
                                       "answer; retry later"), status_code=503)

    api.add_exception_handler(OperationalError, database_unavailable)

    def router_of(request: Request) -> Router:
        return request.app.state.ingress.router

    @api.post("/complete", tags=["router"], summary="An OpenAI chat completion, routed, with a routing block "
                                                    "(stream: true for server-sent events)",
              responses={402: {"description": "The tenant's budget is exhausted"},
                         422: {"description": "Malformed request (names the field) or no model can serve it"},
                         502: {"description": "Every model the policy allows failed; details list each attempt"}})
    async def complete(body: CompletionRequest, request: Request,
                       principal: Principal = Depends(require_principal)) -> Any:
        if body.stream:
            try:
                opened = await router_of(request).open_stream(
                    principal.tenant, body.task, body.plain_messages(), max_tokens=body.max_tokens,
                    temperature=body.temperature, model=body.model, request_id=current_correlation_id(),
                    extra=body.extra())
            except RoutingError as exc:
                raise _routing_error(exc) from None
            return StreamingResponse(completion_events(opened), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            done = await router_of(request).complete(
                principal.tenant, body.task, body.plain_messages(), max_tokens=body.max_tokens,
                temperature=body.temperature, model=body.model, request_id=current_correlation_id(),
                extra=body.extra())
        except RoutingError as exc:
            raise _routing_error(exc) from None
        return completion_body(done)

    @api.post("/route", tags=["router"], summary="The routing decision for a request, without calling a model",
              responses={402: {"description": "The tenant's budget is exhausted"},
                         422: {"description": "Malformed request or no model can serve it"}})
    async def route(body: CompletionRequest, request: Request,
                    principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        try:
            budget, decision = await asyncio.to_thread(router_of(request).prepare, principal.tenant, body.task,
                                                       body.plain_messages(), body.max_tokens, body.temperature,
                                                       body.model)
        except RoutingError as exc:
            raise _routing_error(exc) from None
        return {**decision.as_dict(), "budget": budget.as_dict()}

    @api.post("/feedback", tags=["router"], summary="Rate a call (or a model on a task) for recommender v2",
              responses={403: {"description": "source 'eval' needs the service or admin role"},
                         404: {"description": "No such call for this tenant"},
                         409: {"description": "The call already has feedback, or it failed"}})
    async def feedback(body: FeedbackRequest, request: Request,
                       principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        if body.source == "eval" and not (principal.has_role("service") or principal.has_role("admin")):
            raise APIError(403, "forbidden", "source: 'eval' feedback needs the service or admin role")
        try:
            return await asyncio.to_thread(router_of(request).feedback, principal.tenant, body.score,
                                           body.call_id, body.task, body.model)
        except RoutingError as exc:
            raise _routing_error(exc) from None

    @api.get("/models", tags=["router"], summary="The catalogue: models, prices, availability and the policies")
    async def models(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        router = router_of(request)
        return {"models": router.models(principal.tenant), "policies": router.policies(principal.tenant),
                "recommender_v2": router.recommender_enabled}

    @api.get("/ledger", tags=["router"], summary="The tenant's model calls, newest first")
    async def ledger(request: Request, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                     task: str | None = Query(None, pattern=TASK_PATTERN),
                     model: str | None = Query(None, max_length=128),
                     principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        calls, total = await asyncio.to_thread(router_of(request).repository.list, principal.tenant, limit, offset,
                                               task, model)
        return {"calls": [c.as_dict() for c in calls], "total": total, "limit": limit, "offset": offset}

    @api.get("/budget", tags=["router"], summary="The tenant's budget: limit, spent and when it resets")
    async def budget(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        status = await asyncio.to_thread(router_of(request).budget, principal.tenant)
        return status.as_dict()

    return api


@serve.deployment
@serve.ingress()
class RouterIngress(ServiceIngress):
    service = "router"
    description = DESCRIPTION

    def __init__(self, args: RouterArgs) -> None:
        super().__init__(args)
        from deployments.ray_metrics import instrument
        from stratmaster.db.engine import create_db_engine
        from stratmaster.router.catalogue import load_catalogue
        from stratmaster.router.repository import RouterRepository
        from stratmaster.router.service import build_providers
        from stratmaster.telemetry import ROUTING_DECISIONS

        settings = self.runtime.settings
        path = Path(args.catalogue)
        # A bad catalogue raises CatalogueError naming file, path and problem: the deploy fails with it.
        catalogue = load_catalogue(path if path.is_absolute() else ROOT / path)
        self.router = Router(catalogue, RouterRepository(create_db_engine(settings.effective_database_url)),
                             build_providers(catalogue), recommender_enabled=settings.enable_model_recommender_v2,
                             decisions=instrument(ROUTING_DECISIONS))

    async def dependency_checks(self) -> list[ComponentHealth]:
        available = [m["name"] for m in self.router.models("default") if m["available"]]
        return [ComponentHealth(name="router-catalogue", status="ok" if available else "down",
                                backend="catalogue", embedded=True,
                                detail=f"{len(available)} models available: {', '.join(available)}")]

    async def complete_for(self, tenant: str, task: str, messages: list[dict[str, str]],
                           correlation_id: str | None = None) -> dict[str, Any]:
        """Handle method for the other services (research): a routed completion for a tenant the
        caller has verified, as an envelope {"result": chat.completion} or {"error": ...}."""
        from stratmaster.logs import correlation_scope

        with correlation_scope(correlation_id):
            try:
                done = await self.router.complete(tenant, task, messages, request_id=correlation_id)
            except RoutingError as exc:
                return {"error": {"status": exc.status, "code": exc.code, "message": exc.message}}
            return {"result": completion_body(done)}

    async def feedback_for(self, tenant: str, score: float, call_id: str,
                           correlation_id: str | None = None) -> dict[str, Any]:
        """Handle method for the evals service: an eval score for a call, as the recommender's reward,
        as an envelope {"result": the arm's new state} or {"error": ...}."""
        from stratmaster.logs import correlation_scope

        with correlation_scope(correlation_id):
            try:
                return {"result": await asyncio.to_thread(self.router.feedback, tenant, score, call_id=call_id)}
            except RoutingError as exc:
                return {"error": {"status": exc.status, "code": exc.code, "message": exc.message}}

    def build_api(self) -> FastAPI:
        return router_api(self.service, self.description)


def build_app(args: RouterArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return RouterIngress.bind(RouterArgs.model_validate(args))
