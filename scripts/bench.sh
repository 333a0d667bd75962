#!/usr/bin/env bash
# `make bench`: the platform benchmark (cold start, memory, load -> bench/results/platform.json),
# the retrieval benchmark (CISI quality, ingest, search latency -> bench/results/retrieval.*),
# the eval sweep's speed (16 cells as Ray tasks against the same cells one after another
# -> bench/results/sweeps/cisi-fusion/sweep.json, .png), then context compression on CISI
# (coverage, relevant-token share, time per mode -> bench/results/compression.json), then the
# router's own overhead per call through the proxy (-> bench/results/router.json), then research
# runs on CISI questions (citations, precision, support, run time -> bench/results/research.json).
#
#   bash scripts/bench.sh [platform|retrieval|sweep|compression|router|research|all] [--quick] ...   (default all; see each --help)
#
# Arguments after the name go to that benchmark; with `all` to both, so only options both
# take (--quick, --inherit-backends, ...) fit there. With `all` the second runs even when
# the first failed; the exit status is the first failure's.
#
# Needs only what `make setup` installs (the Makefile target depends on it). Each benchmark
# starts its own `stratmaster up` on free loopback ports with a throw-away data dir and
# stops it at the end, so it does not disturb a platform already running on 8080.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || { echo "bench.sh: .venv missing; run make setup" >&2; exit 2; }
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

which=all
case "${1:-}" in
  platform|retrieval|sweep|compression|router|research|all) which=$1; shift ;;
esac

case "$which" in
  platform) exec .venv/bin/python -m bench.platform_bench "$@" ;;
  retrieval) exec .venv/bin/python -m bench.retrieval_bench "$@" ;;
  sweep) exec .venv/bin/python -m pipelines.eval_sweep --config configs/sweeps/cisi-fusion.yaml --fresh --sequential --rounds 3 "$@" ;;
  compression) exec .venv/bin/python -m bench.compression_bench "$@" ;;
  router) exec .venv/bin/python -m bench.router_bench "$@" ;;
  research) exec .venv/bin/python -m bench.research_bench "$@" ;;
esac
status=0
.venv/bin/python -m bench.platform_bench "$@" || status=$?
.venv/bin/python -m bench.retrieval_bench "$@" || { rc=$?; (( status )) || status=$rc; }
.venv/bin/python -m pipelines.eval_sweep --config configs/sweeps/cisi-fusion.yaml --fresh --sequential --rounds 3 \
  || { rc=$?; (( status )) || status=$rc; }
.venv/bin/python -m bench.compression_bench || { rc=$?; (( status )) || status=$rc; }
.venv/bin/python -m bench.router_bench || { rc=$?; (( status )) || status=$rc; }
.venv/bin/python -m bench.research_bench || { rc=$?; (( status )) || status=$rc; }
exit "$status"
