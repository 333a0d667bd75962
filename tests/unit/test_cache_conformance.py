"""One behaviour for every cache backend (haystack-style conformance tests).

`CacheConformance` holds the tests; each backend's subclass overrides the `cache`
fixture. The Redis subclass needs TEST_REDIS_URL (`make test` / scripts/servers.sh).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from serverenv import server_url

from stratmaster.cache import Cache, CacheUnavailable, InstrumentedCache, MemoryCache, RedisCache, create_cache
from stratmaster.settings import Settings

EXPIRE_AFTER_S = 0.6  # comfortably longer than the 0.2 s TTLs below, even on a busy box


class RecordingCounter:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, str]]] = []

    def inc(self, value: float = 1.0, tags=None) -> None:
        self.calls.append((value, dict(tags or {})))


class CacheConformance:
    """Tests every Cache must pass; subclasses provide the `cache` fixture."""

    @pytest.fixture
    def cache(self) -> Iterator[Cache]:
        raise NotImplementedError

    def test_is_a_cache(self, cache: Cache) -> None:
        assert isinstance(cache, Cache)
        assert isinstance(cache.backend, str) and isinstance(cache.embedded, bool)

    def test_miss_then_hit(self, cache: Cache) -> None:
        assert cache.get("k") is None
        cache.set("k", b"v")
        assert cache.get("k") == b"v"

    def test_overwrite(self, cache: Cache) -> None:
        cache.set("k", b"one")
        cache.set("k", b"two")
        assert cache.get("k") == b"two"

    def test_delete_returns_whether_a_value_was_removed(self, cache: Cache) -> None:
        assert cache.delete("absent") is False
        cache.set("k", b"v")
        assert cache.delete("k") is True
        assert cache.get("k") is None
        assert cache.delete("k") is False

    def test_ttl_expiry(self, cache: Cache) -> None:
        cache.set("short", b"v", ttl_s=0.2)
        cache.set("forever", b"v")
        assert cache.get("short") == b"v"
        time.sleep(EXPIRE_AFTER_S)
        assert cache.get("short") is None
        assert cache.get("forever") == b"v"

    def test_expired_entry_is_not_deleted_twice(self, cache: Cache) -> None:
        cache.set("short", b"v", ttl_s=0.2)
        time.sleep(EXPIRE_AFTER_S)
        assert cache.delete("short") is False

    def test_overwrite_without_ttl_clears_the_old_ttl(self, cache: Cache) -> None:
        cache.set("k", b"v1", ttl_s=0.2)
        cache.set("k", b"v2")
        time.sleep(EXPIRE_AFTER_S)
        assert cache.get("k") == b"v2"

    @pytest.mark.parametrize("value", [b"", b"\x00\xff\x00", bytes(range(256)) * 64, "é".encode()])
    def test_binary_values_round_trip(self, cache: Cache, value: bytes) -> None:
        cache.set("bin", value)
        assert cache.get("bin") == value  # b"" is a hit, not a miss

    def test_rejects_non_bytes_and_bad_ttl(self, cache: Cache) -> None:
        with pytest.raises(TypeError):
            cache.set("k", "text")  # type: ignore[arg-type]
        for ttl in (0, -1.0):
            with pytest.raises(ValueError):
                cache.set("k", b"v", ttl_s=ttl)
        assert cache.get("k") is None

    def test_instrumented_counts(self, cache: Cache) -> None:
        hits, misses = RecordingCounter(), RecordingCounter()
        counted = InstrumentedCache(cache, hits=hits, misses=misses, tags={"service": "test"})
        assert counted.get("k") is None
        counted.set("k", b"v")
        assert counted.get("k") == b"v"
        assert counted.get("k") == b"v"
        assert counted.stats() == {"hits": 2, "misses": 1}
        assert [value for value, _ in hits.calls] == [1.0, 1.0]
        assert misses.calls == [(1.0, {"backend": cache.backend, "service": "test"})]
        assert isinstance(counted, Cache)
        assert (counted.backend, counted.embedded) == (cache.backend, cache.embedded)

    def test_ping_ok(self, cache: Cache) -> None:
        health = cache.ping()
        assert health.name == "cache"
        assert health.status == "ok" and health.healthy
        assert health.backend == cache.backend and health.embedded == cache.embedded
        assert health.latency_ms is not None and health.latency_ms >= 0


class TestMemoryCache(CacheConformance):
    @pytest.fixture
    def cache(self) -> Iterator[Cache]:
        cache = MemoryCache()
        yield cache
        cache.close()

    def test_lru_evicts_least_recently_used(self) -> None:
        cache = MemoryCache(max_entries=3)
        for key in ("a", "b", "c"):
            cache.set(key, key.encode())
        assert cache.get("a") == b"a"  # a is now most recent; b is least
        cache.set("d", b"d")
        assert cache.get("b") is None
        assert [cache.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]
        cache.set("c", b"c2")  # overwriting refreshes too: a is now least recent
        cache.set("e", b"e")
        assert cache.get("a") is None
        assert len(cache) == 3

    def test_rejects_zero_capacity(self) -> None:
        with pytest.raises(ValueError):
            MemoryCache(max_entries=0)


def _redis_url() -> str:
    return server_url("TEST_REDIS_URL")


@pytest.fixture(scope="module")
def redis_namespace() -> Iterator[str]:
    """A namespace unique to this run; only keys under it are removed afterwards."""
    url = _redis_url()
    namespace = f"stratmaster-test:{uuid.uuid4().hex}:"
    yield namespace
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=namespace + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.redis
class TestRedisCache(CacheConformance):
    @pytest.fixture
    def cache(self, redis_namespace: str, request: pytest.FixtureRequest) -> Iterator[Cache]:
        # One sub-namespace per test, so tests never see each other's keys.
        cache = RedisCache(_redis_url(), namespace=f"{redis_namespace}{request.node.name}:")
        yield cache
        cache.close()

    def test_namespaces_are_isolated(self, redis_namespace: str) -> None:
        first = RedisCache(_redis_url(), namespace=redis_namespace + "first:")
        second = RedisCache(_redis_url(), namespace=redis_namespace + "second:")
        try:
            first.set("k", b"1")
            assert second.get("k") is None
            second.set("k", b"2")
            assert (first.get("k"), second.get("k")) == (b"1", b"2")
            assert second.delete("k") is True
            assert first.get("k") == b"1"
        finally:
            first.close()
            second.close()

    def test_keys_are_stored_under_the_namespace(self, cache: RedisCache) -> None:
        cache.set("k", b"v", ttl_s=30)
        raw = redis.Redis.from_url(_redis_url())
        try:
            assert raw.get(cache.namespace + "k") == b"v"
            assert 0 < raw.pttl(cache.namespace + "k") <= 30_000
        finally:
            raw.close()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redis_down_reports_and_raises() -> None:
    cache = RedisCache(f"redis://:secret@127.0.0.1:{_closed_port()}/0", timeout_s=0.5)
    try:
        health = cache.ping()
        assert health.status == "down" and health.name == "cache" and health.backend == "redis"
        assert health.detail and "secret" not in health.detail
        with pytest.raises(CacheUnavailable) as info:
            cache.get("k")
        assert "secret" not in str(info.value)
        with pytest.raises(CacheUnavailable):
            cache.set("k", b"v")
        # A failed look-up is neither a hit nor a miss.
        counted = InstrumentedCache(cache)
        with pytest.raises(CacheUnavailable):
            counted.get("k")
        assert counted.stats() == {"hits": 0, "misses": 0}
    finally:
        cache.close()


def test_create_cache_picks_backend_from_settings() -> None:
    memory = create_cache(Settings(REDIS_URL=None))
    assert isinstance(memory.inner, MemoryCache) and memory.embedded
    remote = create_cache(Settings(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0"), tags={"service": "api"})
    try:
        assert isinstance(remote.inner, RedisCache) and not remote.embedded
        assert remote.tags == {"backend": "redis", "service": "api"}
    finally:
        remote.close()
