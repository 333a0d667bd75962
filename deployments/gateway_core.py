"""What the gateway does, apart from Serve: health of backends and services, merged docs.

Services are reached through `handle_for(service)` (a `DeploymentHandle` in a replica, a
fake in unit tests) and the controller's view through `application_statuses()`, so this
class is tested without a cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from deployments.args import GatewayArgs
from stratmaster import __version__
from stratmaster.cache import InstrumentedCache
from stratmaster.db.health import check_database
from stratmaster.db.tenants import TenantRepository
from stratmaster.health import ComponentHealth, HealthReport
from stratmaster.logs import current_correlation_id
from stratmaster.settings import Settings

log = logging.getLogger("stratmaster.gateway")


class Gateway:
    def __init__(self, args: GatewayArgs, settings: Settings, engine: Engine, cache: InstrumentedCache,
                 handle_for: Callable[[str], Any], application_statuses: Callable[[], dict[str, str]],
                 own_openapi: Callable[[], dict[str, Any]]) -> None:
        self.args, self.settings, self.engine, self.cache = args, settings, engine, cache
        self.tenants = TenantRepository(engine)
        self.handle_for, self.application_statuses, self.own_openapi = handle_for, application_statuses, own_openapi

    def database_health(self) -> ComponentHealth:
        return check_database(self.engine, self.settings.database_backend,
                              embedded=self.settings.database_url is None)

    async def _service_health(self, service: str, statuses: dict[str, Any]) -> ComponentHealth:
        app_status = statuses.get(service)
        app_detail = f"application {app_status}" if app_status else "application not deployed"
        try:
            response = self.handle_for(service).health.remote(current_correlation_id())
            report = await asyncio.wait_for(response, timeout=self.args.service_check_timeout_s)
        except TimeoutError:
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
        statuses = await asyncio.to_thread(self.application_statuses)
        checks = await asyncio.gather(*(self._service_health(s, statuses) for s in self.args.services))
        return HealthReport.of(*checks)

    async def merged_openapi(self) -> dict[str, Any]:
        """The gateway's document plus every service's, paths under their route prefixes."""
        key = f"openapi:{__version__}"
        cached = await asyncio.to_thread(self.cache.get, key)
        if cached is not None:
            return json.loads(cached)
        document = self.own_openapi()
        document = {**document, "paths": dict(document.get("paths", {})),
                    "components": {kind: dict(entries) for kind, entries in document.get("components", {}).items()}}
        complete = True
        parts = await asyncio.gather(*(self._service_openapi(s) for s in self.args.services))
        for service, part in zip(self.args.services, parts, strict=True):
            if part is None:
                complete = False
                continue
            for path, item in part.get("paths", {}).items():
                document["paths"][f"/{service}{path}"] = item
            for kind, entries in part.get("components", {}).items():
                document["components"].setdefault(kind, {}).update(entries)
        if complete and self.args.openapi_cache_ttl_s > 0:
            await asyncio.to_thread(self.cache.set, key, json.dumps(document).encode(), self.args.openapi_cache_ttl_s)
        return document

    async def _service_openapi(self, service: str) -> dict[str, Any] | None:
        try:
            response = self.handle_for(service).openapi_schema.remote(current_correlation_id())
            return await asyncio.wait_for(response, timeout=self.args.service_check_timeout_s)
        except Exception:  # noqa: BLE001 - left out of the docs (and not cached) rather than failing them
            log.warning("service OpenAPI unavailable", extra={"target": service}, exc_info=True)
            return None
