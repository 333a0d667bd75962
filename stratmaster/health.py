"""Health results shared by every backend check and by the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Status = Literal["ok", "down"]


class ComponentHealth(BaseModel):
    """One component's answer to a health probe."""

    name: str
    status: Status
    backend: str
    embedded: bool
    latency_ms: float | None = None
    detail: str | None = None

    @property
    def healthy(self) -> bool:
        return self.status == "ok"


class HealthReport(BaseModel):
    """A set of component checks; unhealthy if any required one is down."""

    status: Status
    components: dict[str, ComponentHealth]

    @classmethod
    def of(cls, *components: ComponentHealth) -> HealthReport:
        status: Status = "ok" if all(c.healthy for c in components) else "down"
        return cls(status=status, components={c.name: c for c in components})
