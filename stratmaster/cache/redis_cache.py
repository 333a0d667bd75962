"""Redis cache: shared by every replica, selected when REDIS_URL is set."""

from __future__ import annotations

import math
import time
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stratmaster.cache.protocol import CacheUnavailable, check_entry
from stratmaster.health import ComponentHealth, probed


class RedisCache:
    """Keys live under `namespace`, so several deployments can share one Redis.

    Timeouts are short and there is a single immediate retry (enough to replace a
    connection the server dropped): a cache that takes the request timeout to fail is
    worse than no cache. Errors raise CacheUnavailable instead of reading as misses,
    so an outage is visible rather than a silent drop in hit rate.
    """

    backend = "redis"
    embedded = False

    def __init__(self, url: str, namespace: str = "stratmaster:", timeout_s: float = 2.0) -> None:
        parts = urlsplit(url)
        # Never the full URL in messages: it may carry a password.
        self.location = f"{parts.hostname}:{parts.port or 6379}"
        self.namespace = namespace
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )

    def _key(self, key: str) -> str:
        return self.namespace + key

    def _unavailable(self, operation: str, exc: redis.RedisError) -> CacheUnavailable:
        return CacheUnavailable(f"redis cache at {self.location} failed {operation}: {exc}")

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(self._key(key))
        except redis.RedisError as exc:
            raise self._unavailable("GET", exc) from exc
        return value  # type: ignore[return-value]

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        check_entry(value, ttl_s)
        px = None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        try:
            self._client.set(self._key(key), value, px=px)
        except redis.RedisError as exc:
            raise self._unavailable("SET", exc) from exc

    def delete(self, key: str) -> bool:
        try:
            return bool(self._client.delete(self._key(key)))
        except redis.RedisError as exc:
            raise self._unavailable("DEL", exc) from exc

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        try:
            self._client.ping()
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
            return probed("cache", self.backend, self.embedded, started,
                          f"redis at {self.location}: {type(exc).__name__}: {exc}")
        return probed("cache", self.backend, self.embedded, started)

    def close(self) -> None:
        self._client.close()
