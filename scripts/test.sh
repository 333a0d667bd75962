#!/usr/bin/env bash
# `make test`: start the real servers the tests need, run every test, stop the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/servers.sh start
trap 'bash scripts/servers.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(bash scripts/servers.sh env)"
export STRATMASTER_REQUIRE_SERVERS=1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
