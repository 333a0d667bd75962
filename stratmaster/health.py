"""Health results shared by every backend check and by the health endpoints."""

from __future__ import annotations

import time
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


def probed(name: str, backend: str, embedded: bool, started: float, detail: str | None = None) -> ComponentHealth:
    """The answer of a probe begun at `started` (`time.perf_counter()`): down when `detail` says why."""
    return ComponentHealth(name=name, status="down" if detail else "ok", backend=backend, embedded=embedded,
                           latency_ms=(time.perf_counter() - started) * 1000, detail=detail)


class HealthReport(BaseModel):
    """A set of component checks; unhealthy if any required one is down."""

    status: Status
    components: dict[str, ComponentHealth]

    @classmethod
    def of(cls, *components: ComponentHealth) -> HealthReport:
        status: Status = "ok" if all(c.healthy for c in components) else "down"
        return cls(status=status, components={c.name: c for c in components})
