#!/usr/bin/env bash
# `make bench`: cold start, memory and load of the whole platform -> bench/results/platform.json.
#
#   bash scripts/bench.sh [--quick] [--duration S] [--clients N] ...   (see --help)
#
# Needs only what `make setup` installs (the Makefile target depends on it). Starts its
# own `stratmaster up` on free loopback ports with a throw-away data dir and stops it at
# the end, so it does not disturb a platform already running on 8080.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || { echo "bench.sh: .venv missing; run make setup" >&2; exit 2; }
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
exec .venv/bin/python -m bench.platform_bench "$@"
