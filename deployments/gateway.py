"""The gateway application: health, platform-wide endpoints and the merged API docs.

Service routes do not pass through here: each service application sits directly behind
Serve's proxy under its own prefix. The gateway reaches the services only through
`DeploymentHandle`s, for health and for their OpenAPI documents.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from deployments.args import GatewayArgs, ingress_deployment_name
from deployments.gateway_core import Gateway
from deployments.http import create_api, require_principal
from deployments.ray_metrics import instrument
from deployments.runtime import ReplicaRuntime
from deployments.security import add_security_routes
from stratmaster import __version__
from stratmaster.cache import create_cache
from stratmaster.db.engine import create_db_engine
from stratmaster.health import HealthReport
from stratmaster.identity import Principal
from stratmaster.telemetry import CACHE_HITS, CACHE_MISSES, DB_POOL_IN_USE

log = logging.getLogger("stratmaster.gateway")


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _report_response(report: HealthReport) -> JSONResponse:
    return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)


def build_gateway_api() -> FastAPI:
    """The gateway's routes; a replica attaches its state to the app it serves."""
    api = create_api(
        "gateway", title="StratMaster API",
        description="Evidence-backed strategy decision briefs. The gateway serves health and platform "
                    "endpoints; `/docs` documents every service application's public API.",
        version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
    )

    @api.get("/healthz", tags=["health"], summary="The gateway process is alive")
    def healthz(request: Request) -> dict[str, Any]:
        runtime: ReplicaRuntime = request.app.state.runtime
        return {"status": "ok", "service": "gateway", "version": __version__, "uptime_s": runtime.uptime_s()}


    @api.get("/health/database", tags=["health"], summary="The database answers (SQLite when embedded)")
    def health_database(request: Request) -> JSONResponse:
        return _report_response(HealthReport.of(_gateway(request).database_health()))


    @api.get("/health/redis", tags=["health"], summary="The cache answers (in-process LRU when embedded)")
    def health_redis(request: Request) -> JSONResponse:
        return _report_response(HealthReport.of(_gateway(request).cache.ping()))


    @api.get("/health/services", tags=["health"], summary="Each service application's own health check")
    async def health_services(request: Request) -> JSONResponse:
        return _report_response(await _gateway(request).services_health())


    @api.get("/me", tags=["platform"], summary="The verified caller and their tenant's record")
    def me(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        tenant = _gateway(request).tenants.touch(principal.tenant)
        return {
            "subject": principal.subject, "tenant": principal.tenant, "roles": list(principal.roles),
            "issuer": principal.issuer, "token_expires_at": principal.expires_at.isoformat(),
            "tenant_record": {"first_seen_at": tenant.first_seen_at.isoformat(),
                              "last_seen_at": tenant.last_seen_at.isoformat(),
                              "request_count": tenant.request_count},
        }


    @api.get("/info", tags=["platform"], summary="Platform version, backends, flags and service routes")
    def info(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        gateway = _gateway(request)
        settings = gateway.settings
        return {
            "version": __version__,
            "backends": settings.backends(),
            "feature_flags": settings.feature_flags(),
            "services": {name: f"/{name}" for name in gateway.args.services},
            "docs": "/docs",
        }


    add_security_routes(api)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(await _gateway(request).merged_openapi())


    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="StratMaster API")
    return api


@serve.deployment
@serve.ingress()
class GatewayIngress:
    def __init__(self, args: GatewayArgs) -> None:
        self.runtime = ReplicaRuntime("gateway")
        settings = self.runtime.settings
        engine = create_db_engine(settings.effective_database_url, pool_in_use=instrument(DB_POOL_IN_USE),
                                  metric_tags={"service": "gateway", "backend": settings.database_backend})
        cache = create_cache(settings, hits=instrument(CACHE_HITS), misses=instrument(CACHE_MISSES),
                             tags={"service": "gateway", "backend": settings.cache_backend})
        self.api = self.runtime.attach(build_gateway_api())
        self.gateway = Gateway(args, settings, engine, cache, handle_for=_service_handle,
                               application_statuses=_application_statuses, own_openapi=self.api.openapi)
        self.api.state.gateway = self.gateway

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self.api

    async def check_health(self) -> None:
        """Serve's periodic probe: nothing a restart would fix can fail here once the
        replica is built; a database outage shows in /health/database instead."""


def _service_handle(service: str) -> DeploymentHandle:
    return serve.get_deployment_handle(ingress_deployment_name(service), app_name=service)


def _application_statuses() -> dict[str, str]:
    try:
        return {name: str(getattr(app.status, "value", app.status))
                for name, app in serve.status().applications.items()}
    except Exception:  # noqa: BLE001 - the controller's view is a detail, not the check
        log.warning("could not read Serve application status", exc_info=True)
        return {}


def build_app(args: GatewayArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return GatewayIngress.bind(GatewayArgs.model_validate(args))
