"""The interface every cache backend implements.

Synchronous on purpose: FastAPI runs sync handlers in a threadpool, and the embedded
and Redis backends then share one calling convention and one conformance test class.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from stratmaster.health import ComponentHealth


class CacheUnavailable(RuntimeError):
    """The cache server could not answer; callers decide whether to degrade or fail."""


@runtime_checkable
class Cache(Protocol):
    backend: str
    embedded: bool

    def get(self, key: str) -> bytes | None:
        """The stored value, or None on a miss (absent or expired)."""
        ...

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value`; `ttl_s=None` keeps it until evicted or overwritten."""
        ...

    def delete(self, key: str) -> bool:
        """Remove `key`; True if a live entry was removed."""
        ...

    def ping(self) -> ComponentHealth:
        """Health probe named "cache"; never raises."""
        ...

    def close(self) -> None: ...


def check_entry(value: object, ttl_s: float | None) -> None:
    """Argument checks shared by every backend, so they reject the same inputs."""
    if not isinstance(value, bytes):
        raise TypeError(f"cache values are bytes, got {type(value).__name__}")
    if ttl_s is not None and not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive or None, got {ttl_s!r}")
