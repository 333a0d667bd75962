"""Metric definitions and the instrument interface the domain code records into.

The domain knows metric *names*, never the metrics backend: `deployments/` binds these
specs to `ray.util.metrics`, so every replica's samples reach the node's metrics agent
and one Prometheus scrape finds them (exported with Ray's `ray_` prefix). Names follow
Prometheus conventions: base units, an application prefix, low-cardinality labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

Tags = Mapping[str, str] | None


class Counter(Protocol):
    def inc(self, value: float = 1.0, tags: Tags = None) -> None: ...


class Gauge(Protocol):
    def set(self, value: float, tags: Tags = None) -> None: ...


class Histogram(Protocol):
    def observe(self, value: float, tags: Tags = None) -> None: ...


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Literal["counter", "gauge", "histogram"]
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


# Latency buckets from 1 ms to 30 s (the request timeout): p50/p95/p99 are derivable
# with histogram_quantile() at a resolution fine enough for an API gateway.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25,
                     0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUEST_DURATION = MetricSpec(
    "stratmaster_http_request_duration_seconds", "histogram",
    "HTTP request latency at the platform's edge, by route template.",
    ("service", "route", "method", "status_class"), LATENCY_BUCKETS_S,
)
HTTP_REQUESTS = MetricSpec(
    "stratmaster_http_requests_total", "counter",
    "HTTP requests answered, by route template and status class.",
    ("service", "route", "method", "status_class"),
)
DB_POOL_IN_USE = MetricSpec(
    "stratmaster_db_pool_connections_in_use", "gauge",
    "Database connections checked out of this process's pool.",
    ("service", "backend"),
)
CACHE_HITS = MetricSpec(
    "stratmaster_cache_hits_total", "counter", "Cache look-ups that found a value.",
    ("service", "backend"),
)
CACHE_MISSES = MetricSpec(
    "stratmaster_cache_misses_total", "counter", "Cache look-ups that found nothing.",
    ("service", "backend"),
)
ROUTING_DECISIONS = MetricSpec(
    "stratmaster_routing_decisions_total", "counter",
    "Model routing decisions, by task, chosen model and outcome.",
    ("task", "model", "outcome"),
)

ALL_METRICS = (HTTP_REQUEST_DURATION, HTTP_REQUESTS, DB_POOL_IN_USE, CACHE_HITS,
               CACHE_MISSES, ROUTING_DECISIONS)


class NullInstrument:
    """Records nothing: the default where no metrics backend is bound (unit tests, CLI)."""

    def inc(self, value: float = 1.0, tags: Tags = None) -> None:
        pass

    def set(self, value: float, tags: Tags = None) -> None:
        pass

    def observe(self, value: float, tags: Tags = None) -> None:
        pass


NULL = NullInstrument()


def status_class(status_code: int) -> str:
    """'2xx', '4xx', ...: the label Prometheus can afford, unlike raw status codes."""
    return f"{status_code // 100}xx"
