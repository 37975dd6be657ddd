# Shared by deploy/cluster/start and stop (sourced, not run).

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=cluster.env
source "$REPO/deploy/cluster/cluster.env"

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# PostgreSQL refuses to run as root, so when we are root the database side (etcd, Patroni and
# PostgreSQL, PgBouncer, HAProxy) runs as the postgres account; otherwise as ourselves.
if [ "$(id -u)" = 0 ]; then
    service_user=postgres
    as_service=(setpriv --reuid=postgres --regid=postgres --init-groups -- env HOME="$CLUSTER_DIR")
else
    service_user=$(id -un)
    as_service=()
fi

pid_dir() { printf '%s/pids' "$CLUSTER_DIR"; }

# Starts a long-running program in a session of its own, its output in CLUSTER_DIR/logs/NAME.log
# and its process id in CLUSTER_DIR/pids/NAME.
start_daemon() {
    local name=$1
    shift
    mkdir -p "$(pid_dir)" "$CLUSTER_DIR/logs"
    setsid "$@" >>"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$(pid_dir)/$name"
}

daemon_pid() { cat "$(pid_dir)/$1" 2>/dev/null || true; }

# Whether a process runs (a zombie, dead but not yet reaped by whoever adopted it, does not).
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

is_running() {
    local pid
    pid=$(daemon_pid "$1")
    [ -n "$pid" ] && alive "$pid"
}

# Sends SIGTERM to a daemon this cluster started and waits for it (SIGKILL after `grace` s).
stop_daemon() {
    local name=$1 grace=${2:-20} pid
    pid=$(daemon_pid "$name")
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 $((grace * 10))); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "$name did not stop within ${grace}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$(pid_dir)/$name"
}

# Waits until a command succeeds, for at most `timeout` seconds.
wait_for() {
    local what=$1 timeout=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            log "gave up waiting for $what after ${timeout}s"
            return 1
        fi
        sleep 0.2
    done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The PostgreSQL server programs of the newest installed version.
pg_bin() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/postgres" ] || die "no PostgreSQL server programs under /usr/lib/postgresql (apt-get install postgresql)"
    printf '%s' "$dir"
}

# Copies a template, replacing each @NAME@ with the value of the variable NAME given.
render() {
    local template=$1 output=$2
    shift 2
    local text name value
    text=$(cat "$template")
    for name in "$@"; do
        value=${!name}
        text=${text//@$name@/$value}
    done
    printf '%s\n' "$text" >"$output"
}

instance_port() { echo $((CLUSTER_INSTANCE_PORT + $1 - 1)); }

node_pg_port() { local v="CLUSTER_NODE$1_PG_PORT"; echo "${!v}"; }
node_api_port() { local v="CLUSTER_NODE$1_API_PORT"; echo "${!v}"; }

pooler_url() { printf 'postgres://postgres@127.0.0.1:%s/%s' "$CLUSTER_POOLER_PORT" "${1:-registrar}"; }
primary_url() { printf 'postgres://postgres@127.0.0.1:%s/%s' "$CLUSTER_PRIMARY_PORT" "${1:-registrar}"; }
node_url() { printf 'postgres://postgres@127.0.0.1:%s/%s' "$(node_pg_port "$1")" "${2:-registrar}"; }

# Starts registrar instance N (1, 2...) on CLUSTER_INSTANCE_PORT + N - 1, with the cluster's
# shared secrets, on PgBouncer (or CLUSTER_INSTANCE_DATABASE_URL); the instance creates and
# migrates the database if needed.
start_instance() {
    local i=$1
    set -a
    # shellcheck source=/dev/null
    source "$CLUSTER_DIR/secrets.env"
    set +a
    start_daemon "api$i" env \
        DATABASE_URL="${CLUSTER_INSTANCE_DATABASE_URL:-$(pooler_url)}" \
        REGISTRAR_BIND="127.0.0.1:$(instance_port "$i")" \
        REGISTRAR_ENV="${REGISTRAR_ENV:-production}" \
        REGISTRAR_JWT_SECRET="$REGISTRAR_JWT_SECRET" \
        REGISTRAR_ENCRYPTION_KEYS="$REGISTRAR_ENCRYPTION_KEYS" \
        REGISTRAR_DB_POOL_SIZE="$REGISTRAR_DB_POOL_SIZE" \
        REGISTRAR_DB_TIMEOUT_MS="$REGISTRAR_DB_TIMEOUT_MS" \
        REGISTRAR_REGISTRATION_RATE_LIMIT="$REGISTRAR_REGISTRATION_RATE_LIMIT" \
        REGISTRAR_PUBLIC_CACHE_MS="$REGISTRAR_PUBLIC_CACHE_MS" \
        RUST_LOG="$RUST_LOG" \
        "$REGISTRAR_BIN" serve
}
