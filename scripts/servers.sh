#!/usr/bin/env bash
# Test servers for the integration tests: PostgreSQL and Redis, on 127.0.0.1 only.
#
#   bash scripts/servers.sh start   # install what is missing, start, wait until they answer
#   bash scripts/servers.sh env     # print the TEST_* variables: eval "$(bash scripts/servers.sh env)"
#   bash scripts/servers.sh stop
#
# Both run as plain background processes (not systemd) with their state under
# ${STRATMASTER_SERVERS_DIR:-/tmp/stratmaster-servers}, so a container without an init
# system can run them and `stop` + `rm -rf` of that folder leaves nothing behind. Run as
# root, PostgreSQL runs as the `postgres` user, so that folder's parents must be
# traversable by it (the /tmp default is; a folder under /root is not).
#
# Ports: PostgreSQL 55432, not 5432, so a system PostgreSQL can keep its port.
# Redis 6390, not 6379, because a Ray head node takes 6379 for its own GCS/Redis
# port and the integration tests run next to a local Ray cluster.
set -euo pipefail

STATE_DIR="${STRATMASTER_SERVERS_DIR:-/tmp/stratmaster-servers}"
HOST=127.0.0.1
PG_PORT=55432
PG_USER=postgres
PG_DB=stratmaster_test
PG_DATA="$STATE_DIR/postgres/data"
PG_LOG="$STATE_DIR/postgres/postgres.log"
REDIS_PORT=6390
REDIS_DIR="$STATE_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

log() { echo "servers.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [[ -n "$dir" && -x "$dir/pg_ctl" ]] || die "PostgreSQL not found under /usr/lib/postgresql/*/bin"
    echo "$dir"
}

# initdb and postgres refuse to run as root: run them as the postgres system user.
as_pg() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_pg_user() {
    [[ "$(id -u)" -eq 0 ]] || return 0
    if ! id "$PG_USER" >/dev/null 2>&1; then
        log "creating system user $PG_USER"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PG_USER"
    fi
}

wait_for() {  # wait_for <description> <command...>: up to 30 s
    local what="$1"; shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what did not answer within 30 s"
}

start_postgres() {
    local bin; bin="$(pg_bin)"
    ensure_pg_user
    mkdir -p "$STATE_DIR/postgres"
    [[ "$(id -u)" -ne 0 ]] || chown "$PG_USER": "$STATE_DIR/postgres"
    if [[ ! -s "$PG_DATA/PG_VERSION" ]]; then
        log "initdb $PG_DATA"
        # trust auth: a throw-away test server reachable from 127.0.0.1 / the socket only.
        as_pg "$bin/initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >/dev/null
    fi
    if as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "postgres already running on $HOST:$PG_PORT"
    else
        log "starting postgres on $HOST:$PG_PORT"
        # Socket in the data dir: /var/run/postgresql may not exist or be writable.
        as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 30 start \
            -o "-c listen_addresses=$HOST -p $PG_PORT -k $PG_DATA -c max_connections=100" >/dev/null
    fi
    wait_for "postgres" "$bin/pg_isready" -h "$HOST" -p "$PG_PORT" -U "$PG_USER"
    if ! "$bin/psql" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
        log "creating database $PG_DB"
        "$bin/createdb" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
    fi
}

stop_postgres() {
    local bin; bin="$(pg_bin)"
    if [[ -s "$PG_DATA/PG_VERSION" ]] && as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "stopping postgres"
        as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
    else
        log "postgres not running"
    fi
}

ensure_redis() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    [[ "$(id -u)" -eq 0 ]] || die "redis-server is missing; install it (apt-get install redis-server) as root"
    log "installing redis-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    # The package may start a systemd/init instance on 6379; we run our own on 6390 and
    # leave that one alone (there is no init system in most containers anyway).
}

redis_running() {
    [[ -s "$REDIS_PID" ]] && kill -0 "$(cat "$REDIS_PID")" 2>/dev/null
}

start_redis() {
    ensure_redis
    mkdir -p "$REDIS_DIR"
    if redis_running; then
        log "redis already running on $HOST:$REDIS_PORT"
    else
        log "starting redis on $HOST:$REDIS_PORT"
        # No persistence: test data only; nothing to recover after a restart.
        redis-server --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes \
            --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
            --save "" --appendonly no
    fi
    wait_for "redis" sh -c "redis-cli -h $HOST -p $REDIS_PORT ping | grep -q PONG"
}

stop_redis() {
    if redis_running; then
        log "stopping redis"
        local pid; pid="$(cat "$REDIS_PID")"
        redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$pid"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        rm -f "$REDIS_PID"
    else
        log "redis not running"
    fi
}

print_env() {
    echo "export TEST_DATABASE_URL=postgresql+psycopg://$PG_USER@$HOST:$PG_PORT/$PG_DB"
    echo "export TEST_REDIS_URL=redis://$HOST:$REDIS_PORT/0"
}

case "${1:-}" in
    start) start_postgres; start_redis; log "ready (eval \"\$(bash $0 env)\")" ;;
    stop) stop_redis; stop_postgres ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
