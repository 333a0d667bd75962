"""Builder arguments: validated by pydantic before any replica starts.

`configs/serve.yaml` passes these as each application's `args`; Serve hands them to the
builder, whose type annotation makes Serve validate them (unknown keys are errors, so a
typo in the YAML fails the deploy instead of being ignored).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SERVICES = ("knowledge", "research", "router", "evals", "compression")


def ingress_deployment_name(service: str) -> str:
    """The ingress deployment of a service's application, e.g. `KnowledgeIngress`."""
    return f"{service.capitalize()}Ingress"


class ServiceArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle_timeout_s: float = Field(10.0, gt=0, le=120,
                                    description="Timeout for calls this service makes to other services.")


class GatewayArgs(ServiceArgs):
    services: tuple[str, ...] = Field(SERVICES, description="Service applications the gateway checks and documents.")
    service_check_timeout_s: float = Field(5.0, gt=0, le=60,
                                           description="How long /health/services waits for each service.")
    openapi_cache_ttl_s: float = Field(60.0, ge=0, le=3600,
                                       description="How long the merged OpenAPI document is cached.")
