#!/usr/bin/env bash
# The platform against real PostgreSQL and Redis, in the background:
#
#   bash scripts/dev.sh up     # make dev.up: servers, dev database, `stratmaster up`, wait until healthy
#   bash scripts/dev.sh logs   # make dev.logs: follow .run/platform.log (DEV_LOGS_FOLLOW=0: print the tail)
#   bash scripts/dev.sh down   # make dev.down: stop the platform (SIGINT), then the servers
#
# The servers are scripts/servers.sh's (PostgreSQL 127.0.0.1:55432, Redis 127.0.0.1:6390);
# the platform uses the database `stratmaster` and Redis db 1 (tests use stratmaster_test
# and db 0). Everything else comes from the environment as for `make run`: set
# STRATMASTER_HTTP_PORT / STRATMASTER_METRICS_PORT to run it off 8080 / 8090, and get tokens
# with the same STRATMASTER_DATA_DIR (`stratmaster token` reads the signing key there).
#
#   DEV_UP_ARGS      extra arguments for `stratmaster up`, e.g. --no-dashboard
#   DEV_UP_TIMEOUT   seconds to wait for healthy (default 180)
#   DEV_DOWN_TIMEOUT seconds to wait after SIGINT before SIGTERM/SIGKILL (default 60)
#   DEV_LOGS_FOLLOW  1 (default) follows the log, 0 prints the last DEV_LOGS_LINES (100)
#
# `up` when already up and `down` when already down do nothing and say so.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=.run
LOG="$RUN_DIR/platform.log"
PID_FILE="$RUN_DIR/platform.pid"
STRATMASTER=.venv/bin/stratmaster
UP_TIMEOUT="${DEV_UP_TIMEOUT:-180}"
DOWN_TIMEOUT="${DEV_DOWN_TIMEOUT:-60}"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

log() { echo "dev.sh: $*" >&2; }

platform_pid() {  # the pid in the pid file if that process is still our `stratmaster up`
    [[ -s "$PID_FILE" ]] || return 1
    local pid; pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # A recycled pid belongs to some other program: only ours has `stratmaster up` in it.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "stratmaster up" || return 1
    echo "$pid"
}

base_url() {
    echo "http://${STRATMASTER_HTTP_HOST:-127.0.0.1}:${STRATMASTER_HTTP_PORT:-8080}"
}

wait_gone() {  # wait_gone <pid> <seconds>
    local pid="$1" deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

session_pids() {  # session_pids <sid>: processes still in the platform's session
    pgrep -s "$1" 2>/dev/null || true
}

signal_session() {  # signal_session <sid> <signal>: every process of the session, by pid
    local p
    for p in $(session_pids "$1"); do kill "-$2" "$p" 2>/dev/null || true; done
}

stop_platform() {  # SIGINT (clean Serve + Ray shutdown), then the rest of its session
    local pid
    if ! pid="$(platform_pid)"; then
        log "platform not running"
        rm -f "$PID_FILE"
        return 0
    fi
    # setsid made the CLI a session leader: its session id is its pid. Ray puts each
    # actor in a process group of its own, so the session, not the group, holds them all.
    log "stopping the platform (pid $pid, SIGINT)"
    kill -INT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$DOWN_TIMEOUT"; then
        # SIGTERM to the CLI alone: it shuts down as for SIGINT once it is healthy. Sent to
        # every Ray process at once it would kill the Serve controller mid-shutdown.
        log "still running after ${DOWN_TIMEOUT} s: SIGTERM"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 30; then
            log "SIGKILL to its session"
            signal_session "$pid" KILL
            wait_gone "$pid" 5 || true
        fi
    fi
    # A clean stop leaves nothing behind; give stragglers a few seconds, then kill them.
    local deadline=$((SECONDS + 10))
    while [[ -n "$(session_pids "$pid")" ]] && ((SECONDS < deadline)); do sleep 0.5; done
    if [[ -n "$(session_pids "$pid")" ]]; then
        log "processes of the platform remain ($(session_pids "$pid" | tr '\n' ' ')): SIGKILL"
        signal_session "$pid" KILL
    fi
    rm -f "$PID_FILE"
    log "platform stopped"
}

cmd_up() {
    local pid
    if pid="$(platform_pid)"; then
        log "already up (pid $pid) at $(base_url); logs: make dev.logs; stop: make dev.down"
        return 0
    fi
    rm -f "$PID_FILE"
    [[ -x "$STRATMASTER" ]] || { log "error: $STRATMASTER missing; run make setup"; exit 2; }

    bash scripts/servers.sh start
    bash scripts/servers.sh createdb stratmaster
    eval "$(bash scripts/servers.sh dev-env)"
    log "DATABASE_URL=$DATABASE_URL REDIS_URL=$REDIS_URL"

    mkdir -p "$RUN_DIR"
    [[ ! -s "$LOG" ]] || mv -f "$LOG" "$LOG.1"
    # Own session (setsid) and immune to the terminal closing (nohup). A background job of
    # a script starts with SIGINT ignored, and Python keeps it ignored until the CLI sets
    # its handler once healthy; the launcher restores the default first, so `down` can
    # interrupt a start-up too. It writes its pid and execs, so the pid is the CLI's.
    # shellcheck disable=SC2086  # DEV_UP_ARGS is a list of words
    setsid .venv/bin/python -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
with open(sys.argv[1], "w") as pid_file:
    pid_file.write(str(os.getpid()))
os.execvp("nohup", ["nohup", *sys.argv[2:]])
' "$PID_FILE" "$STRATMASTER" up ${DEV_UP_ARGS:-} >"$LOG" 2>&1 </dev/null &
    disown || true

    log "waiting up to ${UP_TIMEOUT} s for $(base_url) to be healthy (log: $LOG)"
    local deadline=$((SECONDS + UP_TIMEOUT))
    while ((SECONDS < deadline)); do
        sleep 2
        if ! pid="$(platform_pid)"; then
            log "error: the platform exited during start-up; last lines of $LOG:"
            tail -n 40 "$LOG" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        if "$STRATMASTER" status --timeout 5 >/dev/null 2>&1; then
            log "up (pid $pid) at $(base_url): docs $(base_url)/docs, metrics" \
                "http://127.0.0.1:${STRATMASTER_METRICS_PORT:-8090}/metrics"
            log "token: $STRATMASTER token --tenant acme --role analyst; logs: make dev.logs; stop: make dev.down"
            return 0
        fi
    done
    log "error: not healthy after ${UP_TIMEOUT} s; last lines of $LOG:"
    tail -n 40 "$LOG" >&2 || true
    "$STRATMASTER" status --timeout 5 >&2 || true
    stop_platform
    exit 1
}

cmd_logs() {
    [[ -f "$LOG" ]] || { log "no log yet ($LOG): make dev.up first"; exit 1; }
    if [[ "${DEV_LOGS_FOLLOW:-1}" == "0" ]]; then
        tail -n "${DEV_LOGS_LINES:-100}" "$LOG"
    else
        exec tail -n "${DEV_LOGS_LINES:-100}" -F "$LOG"
    fi
}

cmd_down() {
    stop_platform
    bash scripts/servers.sh stop
}

case "${1:-}" in
    up) cmd_up ;;
    logs) cmd_logs ;;
    down) cmd_down ;;
    *) echo "usage: $0 up|logs|down" >&2; exit 2 ;;
esac
