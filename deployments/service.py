"""The frame each of the five service applications is built on.

A service declares its ingress as a subclass of `ServiceIngress` and, once it has routes
of its own, overrides `build_api()` to add them to `service_api()`'s app. Serve builds
the app in each replica after the constructor (`__serve_build_asgi_app__`), so routes
reach the replica's runtime through `request.app.state`. The base gives every service the
same handle methods: `health()` for the gateway's `/health/services`, `openapi_schema()`
for the merged API docs, and Serve's own `check_health()`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import Depends, FastAPI, Request

from deployments.args import ServiceArgs
from deployments.http import create_api, require_principal
from deployments.runtime import ReplicaRuntime
from stratmaster import __version__
from stratmaster.health import ComponentHealth, HealthReport
from stratmaster.identity import Principal
from stratmaster.logs import correlation_scope

log = logging.getLogger("stratmaster.service")


def service_api(service: str, description: str) -> FastAPI:
    """A service's FastAPI app with the shared stack and the common `/info` route."""
    api = create_api(service, title=f"StratMaster {service} service", description=description,
                     version=__version__)

    @api.get("/info", tags=[service], summary=f"What the {service} service is running")
    def info(request: Request, principal: Principal = Depends(require_principal)) -> dict[str, Any]:
        runtime: ReplicaRuntime = request.app.state.runtime
        return {
            "service": service,
            "description": description,
            "version": __version__,
            "replica": {"id": runtime.replica_id(), "uptime_s": runtime.uptime_s()},
            "backends": runtime.settings.backends(),
            "feature_flags": runtime.settings.feature_flags(),
            "endpoints": sorted(
                f"{method.upper()} {request.scope.get('root_path', '')}{path}"
                for path, operations in request.app.openapi().get("paths", {}).items()
                for method in operations
            ),
            "caller": {"subject": principal.subject, "tenant": principal.tenant, "roles": list(principal.roles)},
        }

    return api


class ServiceIngress:
    """Base class of every service ingress deployment."""

    service: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, args: ServiceArgs) -> None:
        self.args = args
        self.runtime = ReplicaRuntime(self.service)

    def build_api(self) -> FastAPI:
        return service_api(self.service, self.description)

    def __serve_build_asgi_app__(self) -> FastAPI:
        self.api = self.runtime.attach(self.build_api())
        self.api.state.ingress = self
        return self.api

    async def dependency_checks(self) -> list[ComponentHealth]:
        """The stores and deployments this service depends on; services add theirs."""
        return []

    async def report(self) -> HealthReport:
        replica = ComponentHealth(name=self.service, status="ok", backend="ray-serve", embedded=False,
                                  detail=f"replica {self.runtime.replica_id()} up {self.runtime.uptime_s()} s")
        return HealthReport.of(replica, *await self.dependency_checks())

    async def check_health(self) -> None:
        """Serve's periodic probe: only what restarting this replica would fix.

        A store outage shows in `health()` (and /health/services) instead: replacing the
        ingress replica would not bring a database back.
        """

    async def health(self, correlation_id: str | None = None) -> dict[str, Any]:
        """Handle method for the gateway; logs under the caller's correlation id."""
        with correlation_scope(correlation_id):
            report = await self.report()
            log.info("health checked", extra={"status": report.status})
            return report.model_dump()

    async def openapi_schema(self, correlation_id: str | None = None) -> dict[str, Any]:
        with correlation_scope(correlation_id):
            return self.api.openapi()
