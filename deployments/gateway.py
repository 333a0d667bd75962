"""The gateway application: health, platform-wide endpoints and the merged API docs.

Service routes do not pass through here: each service application sits directly behind
Serve's proxy under its own prefix. The gateway reaches the services only through
`DeploymentHandle`s, for health and for their OpenAPI documents.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from ray.serve import Application

from deployments.args import GatewayArgs, ingress_deployment_name
from deployments.http import create_api, require_principal
from deployments.ray_metrics import instrument
from deployments.runtime import ReplicaRuntime
from stratmaster import __version__
from stratmaster.cache import create_cache
from stratmaster.db.engine import create_db_engine
from stratmaster.db.health import check_database
from stratmaster.db.tenants import TenantRepository
from stratmaster.health import ComponentHealth, HealthReport
from stratmaster.identity import Principal
from stratmaster.logs import current_correlation_id
from stratmaster.telemetry import CACHE_HITS, CACHE_MISSES, DB_POOL_IN_USE

log = logging.getLogger("stratmaster.gateway")


def _gateway(request: Request) -> GatewayIngress:
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
        settings = gateway.runtime.settings
        return {
            "version": __version__,
            "backends": settings.backends(),
            "feature_flags": settings.feature_flags(),
            "services": {name: f"/{name}" for name in gateway.args.services},
            "docs": "/docs",
        }


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
        self.args = args
        self.runtime = ReplicaRuntime("gateway")
        settings = self.runtime.settings
        backend = settings.database_backend
        self.engine = create_db_engine(settings.effective_database_url, pool_in_use=instrument(DB_POOL_IN_USE),
                                       metric_tags={"service": "gateway", "backend": backend})
        self.tenants = TenantRepository(self.engine)
        tags = {"service": "gateway", "backend": settings.cache_backend}
        self.cache = create_cache(settings, hits=instrument(CACHE_HITS), misses=instrument(CACHE_MISSES), tags=tags)

    def __serve_build_asgi_app__(self) -> FastAPI:
        self.api = self.runtime.attach(build_gateway_api())
        self.api.state.gateway = self
        return self.api

    def database_health(self) -> ComponentHealth:
        settings = self.runtime.settings
        return check_database(self.engine, settings.database_backend, embedded=settings.database_url is None)

    async def check_health(self) -> None:
        # Only what makes this replica useless: a database outage is reported by
        # /health/database, not fixed by restarting the gateway.
        if self.runtime.verifier is None:
            raise RuntimeError("token verifier missing")

    def _handle(self, service: str):
        return serve.get_deployment_handle(ingress_deployment_name(service), app_name=service)

    async def _service_health(self, service: str, statuses: dict[str, Any]) -> ComponentHealth:
        app_status = statuses.get(service)
        app_detail = f"application {app_status}" if app_status else "application not deployed"
        try:
            response = self._handle(service).health.remote(current_correlation_id())
            report = await asyncio.wait_for(response, timeout=self.args.service_check_timeout_s)
        except asyncio.TimeoutError:
            return ComponentHealth(name=service, status="down", backend="ray-serve", embedded=False,
                                   detail=f"no answer within {self.args.service_check_timeout_s} s; {app_detail}")
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency is "down", with its reason
            return ComponentHealth(name=service, status="down", backend="ray-serve", embedded=False,
                                   detail=f"{type(exc).__name__}: {exc}; {app_detail}"[:500])
        down = [name for name, c in report["components"].items() if c["status"] != "ok"]
        detail = f"{app_detail}; " + (f"down: {', '.join(down)}" if down else
                                      report["components"][service].get("detail") or "ok")
        return ComponentHealth(name=service, status=report["status"], backend="ray-serve", embedded=False,
                               detail=detail)

    async def services_health(self) -> HealthReport:
        statuses = await asyncio.to_thread(self._application_statuses)
        checks = await asyncio.gather(*(self._service_health(s, statuses) for s in self.args.services))
        return HealthReport.of(*checks)

    @staticmethod
    def _application_statuses() -> dict[str, str]:
        try:
            return {name: str(app.status.value if hasattr(app.status, "value") else app.status)
                    for name, app in serve.status().applications.items()}
        except Exception:  # noqa: BLE001 - the controller's view is a detail, not the check
            log.warning("could not read Serve application status", exc_info=True)
            return {}

    async def merged_openapi(self) -> dict[str, Any]:
        """The gateway's document plus every service's, paths under their route prefixes."""
        key = f"openapi:{__version__}"
        cached = await asyncio.to_thread(self.cache.get, key)
        if cached is not None:
            return json.loads(cached)
        document = self.api.openapi()
        document = {**document, "paths": dict(document.get("paths", {})),
                    "components": {"schemas": dict(document.get("components", {}).get("schemas", {}))}}
        complete = True
        for service in self.args.services:
            try:
                response = self._handle(service).openapi_schema.remote(current_correlation_id())
                part = await asyncio.wait_for(response, timeout=self.args.service_check_timeout_s)
            except Exception:  # noqa: BLE001 - documented as missing rather than failing the docs
                log.warning("service OpenAPI unavailable", extra={"target": service}, exc_info=True)
                complete = False
                continue
            for path, item in part.get("paths", {}).items():
                document["paths"][f"/{service}{path}"] = item
            document["components"]["schemas"].update(part.get("components", {}).get("schemas", {}))
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        document["security"] = [{"bearer": []}]
        if complete and self.args.openapi_cache_ttl_s > 0:
            await asyncio.to_thread(self.cache.set, key, json.dumps(document).encode(), self.args.openapi_cache_ttl_s)
        return document


def build_app(args: GatewayArgs) -> Application:
    """Serve application builder named by `configs/serve.yaml`."""
    # Serve passes a dict where the annotation is a string (postponed annotations).
    return GatewayIngress.bind(GatewayArgs.model_validate(args))
