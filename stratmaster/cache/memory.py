"""In-process LRU cache: the embedded default when REDIS_URL is unset."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from stratmaster.cache.protocol import check_entry
from stratmaster.health import ComponentHealth, probed


class MemoryCache:
    """Thread-safe LRU with per-key TTL, local to one process.

    Every Serve replica holds its own copy, so entries are not shared between replicas
    and vanish on restart; that is why a Redis backend exists for multi-replica
    deployments. Expiry uses the monotonic clock, so wall-clock jumps do not matter.
    """

    backend = "in-process-lru"
    embedded = True

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires_at = entry
            if expires_at is not None and time.monotonic() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        check_entry(value, ttl_s)
        expires_at = None if ttl_s is None else time.monotonic() + ttl_s
        with self._lock:
            self._entries[key] = (value, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> bool:
        with self._lock:
            entry = self._entries.pop(key, None)
        return entry is not None and (entry[1] is None or time.monotonic() < entry[1])

    def ping(self) -> ComponentHealth:
        started = time.perf_counter()
        with self._lock:
            pass
        return probed("cache", self.backend, self.embedded, started)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
