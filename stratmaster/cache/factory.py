"""Pick the cache backend from settings and wrap it with hit/miss counting."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from stratmaster.cache.memory import MemoryCache
from stratmaster.cache.protocol import Cache
from stratmaster.cache.redis_cache import RedisCache
from stratmaster.health import ComponentHealth
from stratmaster.settings import Settings
from stratmaster.telemetry import NULL, Counter


class InstrumentedCache:
    """Counts hits and misses of `get` into metrics and into plain in-process counters.

    The metric counters feed Prometheus; `stats()` answers tests and admin endpoints
    without a metrics backend. Tags always carry `backend`; callers add `service`.
    Failed look-ups (CacheUnavailable) count as neither.
    """

    def __init__(self, inner: Cache, hits: Counter = NULL, misses: Counter = NULL,
                 tags: Mapping[str, str] | None = None) -> None:
        self.inner = inner
        self._hits_metric = hits
        self._misses_metric = misses
        self.tags: dict[str, str] = {"backend": inner.backend, **(tags or {})}
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def backend(self) -> str:
        return self.inner.backend

    @property
    def embedded(self) -> bool:
        return self.inner.embedded

    def get(self, key: str) -> bytes | None:
        value = self.inner.get(key)
        if value is None:
            with self._lock:
                self._misses += 1
            self._misses_metric.inc(1.0, tags=self.tags)
        else:
            with self._lock:
                self._hits += 1
            self._hits_metric.inc(1.0, tags=self.tags)
        return value

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self.inner.set(key, value, ttl_s)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def ping(self) -> ComponentHealth:
        return self.inner.ping()

    def close(self) -> None:
        self.inner.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses}


def create_cache(settings: Settings, hits: Counter = NULL, misses: Counter = NULL,
                 tags: Mapping[str, str] | None = None) -> InstrumentedCache:
    """Redis when REDIS_URL is set, else the per-process LRU."""
    inner: Cache = RedisCache(settings.redis_url) if settings.redis_url else MemoryCache()
    return InstrumentedCache(inner, hits=hits, misses=misses, tags=tags)
