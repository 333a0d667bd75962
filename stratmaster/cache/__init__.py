"""Byte-value caches: an in-process LRU by default, Redis when REDIS_URL is set."""

from stratmaster.cache.factory import InstrumentedCache, create_cache
from stratmaster.cache.memory import MemoryCache
from stratmaster.cache.protocol import Cache, CacheUnavailable
from stratmaster.cache.redis_cache import RedisCache

__all__ = ["Cache", "CacheUnavailable", "InstrumentedCache", "MemoryCache", "RedisCache", "create_cache"]
