"""Per-tenant rate limits: a token bucket per tenant, in process or shared through Redis.

A tenant's bucket holds up to `burst` tokens and refills at `rate` tokens per second; each
authenticated request takes one. An empty bucket answers how long until the next token,
which the edge returns as `429` with `Retry-After`. In process (no REDIS_URL) every
replica keeps its own buckets, so N replicas of a service allow up to N times the rate;
with REDIS_URL one bucket per tenant is shared by every replica of every service (an
atomic Lua script, so concurrent replicas never both take the last token). A Redis that
does not answer lets the request through and logs it: the limit protects capacity, and
refusing every tenant because the limiter's store is down would be the outage it guards
against.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from stratmaster.settings import Settings

log = logging.getLogger("stratmaster.limits")


class RateLimiter(Protocol):
    def acquire(self, tenant: str) -> float:
        """0.0 when the request may proceed, else the seconds until it could."""
        ...


class InProcessRateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_tenants: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self._clock, self._max = rate, burst, clock, max_tenants
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, tenant: str) -> float:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(tenant, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[tenant] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[tenant] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._buckets) > self._max:  # full buckets carry no state worth keeping
                full = [t for t, (n, a) in self._buckets.items() if n + (now - a) * self.rate >= self.burst]
                for name in full:
                    del self._buckets[name]
        return wait


# KEYS[1] the bucket; ARGV rate, burst, now (s), ttl (s). Returns the wait in milliseconds (0: granted).
_LUA = """
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, at = tonumber(bucket[1]), tonumber(bucket[2])
if tokens == nil then tokens = burst; at = now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return wait
"""


class RedisRateLimiter:
    """One bucket per tenant in Redis, shared by every replica; the server's clock decides."""

    def __init__(self, url: str, rate: float, burst: int, namespace: str = "stratmaster:ratelimit:",
                 timeout_s: float = 0.5) -> None:
        import redis

        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.namespace = rate, burst, namespace
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script = self._client.register_script(_LUA)
        self._ttl = max(1, math.ceil(burst / rate) + 1)

    def _now(self) -> float:
        seconds, microseconds = self._client.time()
        return seconds + microseconds / 1e6

    def acquire(self, tenant: str) -> float:
        import redis

        try:
            wait_ms = self._script(keys=[self.namespace + tenant],
                                   args=[self.rate, self.burst, repr(self._now()), self._ttl])
        except redis.RedisError as exc:
            log.warning("rate limiter unavailable; request let through", extra={"error": str(exc)[:200]})
            return 0.0
        return int(wait_ms) / 1000.0


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, at least 1 (HTTP's Retry-After has no fractions)."""
    return str(max(1, math.ceil(wait_s)))


def create_rate_limiter(settings: Settings) -> RateLimiter | None:
    """Redis-shared when REDIS_URL is set, else in process; None when RATE_LIMIT_RPS is 0."""
    if settings.rate_limit_rps <= 0:
        return None
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, settings.rate_limit_rps, settings.rate_limit_burst)
    return InProcessRateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
