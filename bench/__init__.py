"""Benchmarks of the running platform: `make bench` (scripts/bench.sh) runs them."""
