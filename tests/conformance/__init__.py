"""One test class per store kind, run against every implementation (haystack-style conformance)."""
