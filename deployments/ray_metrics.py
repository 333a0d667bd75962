"""Binds the domain's metric specs to `ray.util.metrics`.

Ray aggregates every replica's samples in the node's metrics agent, which serves them
in Prometheus format on the node's metrics export port (prefixed `ray_`): one scrape
target per node, the same locally and on KubeRay.
"""

from __future__ import annotations

import threading

from ray.util import metrics as ray_metrics

from stratmaster.telemetry import MetricSpec

_instruments: dict[str, object] = {}
_lock = threading.Lock()


def instrument(spec: MetricSpec):  # -> Counter | Gauge | Histogram (ray.util.metrics)
    """The process-wide Ray instrument for a spec (Ray refuses duplicate registration)."""
    with _lock:
        if spec.name not in _instruments:
            if spec.kind == "counter":
                made = ray_metrics.Counter(spec.name, description=spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == "gauge":
                made = ray_metrics.Gauge(spec.name, description=spec.description, tag_keys=spec.tag_keys)
            else:
                made = ray_metrics.Histogram(spec.name, description=spec.description,
                                             boundaries=list(spec.boundaries), tag_keys=spec.tag_keys)
            _instruments[spec.name] = made
        return _instruments[spec.name]
