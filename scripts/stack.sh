#!/usr/bin/env bash
# The real local stack: PostgreSQL 15, Redis 7 and RabbitMQ from Debian's
# packages, each in its own directory under $IAS_STACK_DIR, loopback only, on
# non-default ports, so several stacks (make run's and the test suite's) can run
# side by side. As root every server runs as its Debian user through runuser.
#
#   scripts/stack.sh up|down|status [postgres|redis|rabbitmq ...]
#   scripts/stack.sh start|stop|restart <service...>
#   scripts/stack.sh env            print the stack.env contents
#   scripts/stack.sh rabbitmqctl <args...>   rabbitmqctl bound to this stack's broker
#
# Environment (defaults in brackets):
#   IAS_STACK_DIR   [<repo>/.run]  relative paths are taken from the repo root
#   IAS_PG_PORT     [55432]
#   IAS_REDIS_PORT  [56379]
#   IAS_AMQP_PORT   [55672]  RabbitMQ also uses AMQP+1 (its own epmd) and AMQP+2
#                            (Erlang distribution); override with IAS_EPMD_PORT,
#                            IAS_AMQP_DIST_PORT
#   IAS_STACK_TIMEOUT [90]   seconds to wait for each server to become ready
# Ports not given in the environment are taken from an existing
# $IAS_STACK_DIR/stack.env, so `IAS_STACK_DIR=.run/test scripts/stack.sh down`
# finds a stack started on other ports.
set -euo pipefail
umask 022
IAS_LOG_TAG=stack
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

SELF="$(readlink -f "$0")"
SERVICES=(postgres redis rabbitmq)
PG_BIN=/usr/lib/postgresql/15/bin
RMQ_BIN=/usr/lib/rabbitmq/bin

STACK_DIR="${IAS_STACK_DIR:-.run}"
case "$STACK_DIR" in
/*) ;;
*) STACK_DIR="$IAS_REPO_ROOT/$STACK_DIR" ;;
esac
STACK_DIR="${STACK_DIR%/}"
LOG_DIR="$STACK_DIR/log"
ENV_FILE="$STACK_DIR/stack.env"
# Service users may not be allowed into the caller's working directory.
cd /
TIMEOUT="${IAS_STACK_TIMEOUT:-90}"

# Ports: environment, else the stack's own stack.env, else the defaults.
saved_port() {
    local key="$1"
    [ -r "$ENV_FILE" ] || return 0
    sed -n "s/^$key=\([0-9][0-9]*\)\$/\1/p" "$ENV_FILE" | head -n 1
}
port_of() {
    local key="$1" def="$2" v
    v="${!key:-}"
    [ -n "$v" ] || v="$(saved_port "$key")"
    [ -n "$v" ] || v="$def"
    [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] && [ "$v" -lt 65536 ] || ias_die "$key=$v is not a TCP port"
    printf '%s' "$v"
}
PG_PORT="$(port_of IAS_PG_PORT 55432)"
REDIS_PORT="$(port_of IAS_REDIS_PORT 56379)"
AMQP_PORT="$(port_of IAS_AMQP_PORT 55672)"
EPMD_PORT="$(port_of IAS_EPMD_PORT $((AMQP_PORT + 1)))"
DIST_PORT="$(port_of IAS_AMQP_DIST_PORT $((AMQP_PORT + 2)))"

PG_DATA="$STACK_DIR/postgres"
PG_LOG="$LOG_DIR/postgres.log"
PG_SUPERUSER_PW="$STACK_DIR/postgres-superuser.pw"
REDIS_DIR="$STACK_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$LOG_DIR/redis.log"
RMQ_DIR="$STACK_DIR/rabbitmq"
RMQ_PID="$RMQ_DIR/rabbitmq.pid"
RMQ_LAUNCHER_PID="$RMQ_DIR/launcher.pid"
RMQ_LOG="$LOG_DIR/rabbitmq.log"
RMQ_CONSOLE_LOG="$LOG_DIR/rabbitmq-console.log"
EPMD_PID="$RMQ_DIR/epmd.pid"
EPMD_LOG="$LOG_DIR/epmd.log"

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF" >&2
    exit 2
}

# ---------------------------------------------------------------- helpers

# True if <pid> is alive and is the program <comm>; with a third argument, its
# command line (or environment) must also mention that string.
pid_is() {
    local pid="$1" comm="$2" needle="${3:-}" c
    ias_pid_alive "$pid" || return 1
    c="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [ "$c" = "$comm" ] || return 1
    [ -n "$needle" ] || return 0
    # Read whole files (no `| grep -q`: under pipefail an early grep exit can
    # fail the pipeline through SIGPIPE).
    local text
    text="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline")" || true
    [[ "$text" == *"$needle"* ]] && return 0
    text="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ")" || true
    [[ "$text" == *"$needle"* ]]
}

# True if one of <pid>'s arguments is exactly <arg>.
pid_has_arg() {
    local a
    while IFS= read -r -d '' a; do
        [ "$a" = "$2" ] && return 0
    done 2>/dev/null <"/proc/$1/cmdline"
    return 1
}

need_user() {
    ias_is_root || return 0
    getent passwd "$1" >/dev/null || ias_die "user '$1' does not exist (is its Debian package installed? run scripts/deps.sh)"
}

# Makes <dir> exist and belong to <user> (when root), mode <mode>.
own_dir() {
    local dir="$1" user="$2" mode="$3"
    mkdir -p "$dir"
    if ias_is_root && [ "$(stat -c %U "$dir")" != "$user" ]; then
        chown -R "$user:" "$dir"
    fi
    chmod "$mode" "$dir"
}

# Writes stdin to <file> and gives it to <user> (when root).
write_as() {
    local user="$1" file="$2"
    cat >"$file"
    if ias_is_root; then
        chown "$user:" "$file"
    fi
}

# Creates <file> (a log the server appends to) owned by <user>.
own_file() {
    local file="$1" user="$2"
    [ -e "$file" ] || : >"$file"
    if ias_is_root && [ "$(stat -c %U "$file")" != "$user" ]; then
        chown "$user:" "$file"
    fi
}

# The service users must be able to traverse every ancestor of the stack
# directory; a clone under `mktemp -d` (mode 700) is not. Add o+x exactly where
# it is missing and say so.
ensure_traversable() {
    ias_is_root || return 0
    local users=() u ok=1
    for u in postgres redis rabbitmq; do
        getent passwd "$u" >/dev/null && users+=("$u")
    done
    [ "${#users[@]}" -gt 0 ] || return 0
    for u in "${users[@]}"; do
        runuser -u "$u" -- test -x "$STACK_DIR" 2>/dev/null || ok=0
    done
    [ "$ok" = 0 ] || return 0
    local path="" part changed=()
    local IFS=/
    # shellcheck disable=SC2086
    set -f
    for part in $STACK_DIR; do
        [ -n "$part" ] || continue
        path="$path/$part"
        for u in "${users[@]}"; do
            if ! runuser -u "$u" -- test -x "$path" 2>/dev/null; then
                chmod o+x "$path"
                changed+=("$path")
                break
            fi
        done
    done
    set +f
    unset IFS
    if [ "${#changed[@]}" -gt 0 ]; then
        ias_log "notice: added o+x (traverse only) to ${changed[*]} so the postgres/redis/rabbitmq users can reach $STACK_DIR"
    fi
}

prepare() {
    mkdir -p "$STACK_DIR" "$LOG_DIR"
    chmod 755 "$LOG_DIR"
    ensure_traversable
    reserve_ports
}

# Ports inside the kernel's ephemeral range can be taken by a client socket's
# local end while a server restarts (eaddrinuse). As root, reserve ours (best
# effort: containers may not allow it).
reserve_ports() {
    local f=/proc/sys/net/ipv4/ip_local_reserved_ports cur want p
    [ "$(id -u)" = 0 ] && [ -w "$f" ] || return 0
    cur=$(cat "$f" 2>/dev/null) || return 0
    want=$cur
    for p in "$PG_PORT" "$REDIS_PORT" "$AMQP_PORT" "$EPMD_PORT" "$DIST_PORT"; do
        case ",$want," in *",$p,"*) ;; *) want=${want:+$want,}$p ;; esac
    done
    [ "$want" = "$cur" ] || echo "$want" >"$f" 2>/dev/null || true
}

# Runs "<command...>" detached from us: own session, no inherited descriptors,
# stdin from /dev/null, output appended to <log>. Prints the child's pid.
spawn() {
    local log="$1"
    shift
    (
        ias_close_fds
        exec setsid "$@" </dev/null >>"$log" 2>&1
    ) &
    printf '%s' "$!"
}

# As root, the argv prefix that runs a command as <user>.
as_user_argv() {
    if ias_is_root; then
        printf '%s\0' runuser -u "$1" --
    fi
}

fail_start() {
    local what="$1"
    shift
    printf 'stack: error: %s\n' "$what" >&2
    local f
    for f in "$@"; do
        ias_tail_log "$f" 40
    done
    exit 1
}

port_busy_check() {
    local name="$1" port="$2"
    if ias_port_listening "$port"; then
        ias_die "$name: port 127.0.0.1:$port is already in use by another process (not this stack's $name); pick another with the IAS_*_PORT variables"
    fi
}

# ---------------------------------------------------------------- postgres

pg_pid() {
    local pid
    pid="$(ias_read_pid "$PG_DATA/postmaster.pid")"
    [ -n "$pid" ] && pid_is "$pid" postgres "$PG_DATA" && printf '%s' "$pid"
    return 0
}

pg_ready() {
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

# True once <pid> (a dead postmaster's) is gone or is no longer postgres.
pg_stale_gone() {
    local c
    kill -0 "$1" 2>/dev/null || return 0
    c="$(cat "/proc/$1/comm" 2>/dev/null)" || return 0
    [ "$c" != postgres ]
}

pg_psql_super() {
    PGPASSWORD="$(cat "$PG_SUPERUSER_PW")" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres
}

pg_init() {
    [ -f "$PG_DATA/PG_VERSION" ] && return 0
    need_user postgres
    [ -x "$PG_BIN/initdb" ] || ias_die "postgres: $PG_BIN/initdb not found (install postgresql-15: scripts/deps.sh)"
    ias_log "postgres: initdb $PG_DATA"
    rm -rf "$PG_DATA"
    own_dir "$PG_DATA" postgres 700
    # The superuser gets a random password (kept, mode 600, for debugging);
    # the services use the ias role.
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' >"$PG_SUPERUSER_PW")
    local pwtmp="$STACK_DIR/.initdb-pw"
    cp "$PG_SUPERUSER_PW" "$pwtmp"
    ias_is_root && chown postgres: "$pwtmp"
    # -N skips the fsync of the fresh cluster (fsync stays on at run time).
    if ! ias_as_user postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --pwfile="$pwtmp" \
        -A scram-sha-256 -E UTF8 --no-locale -N >"$LOG_DIR/postgres-initdb.log" 2>&1; then
        rm -f "$pwtmp"
        fail_start "postgres: initdb failed" "$LOG_DIR/postgres-initdb.log"
    fi
    rm -f "$pwtmp"
    write_as postgres "$PG_DATA/pg_hba.conf" <<'EOF'
# Written by scripts/stack.sh: TCP on loopback only, passwords (SCRAM).
# TYPE  DATABASE  USER  ADDRESS       METHOD
host    all       all   127.0.0.1/32  scram-sha-256
EOF
    printf "\n# scripts/stack.sh writes ports and listeners there on every start\ninclude_if_exists = 'ias-stack.conf'\n" \
        >>"$PG_DATA/postgresql.conf"
    rm -f "$STACK_DIR/.postgres-bootstrapped" "$STACK_DIR/.postgres-bootstrapped-2"
}

pg_write_conf() {
    write_as postgres "$PG_DATA/ias-stack.conf" <<EOF
# Written by scripts/stack.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
logging_collector = off
# Sized for the ingest path rather than PostgreSQL's 128 MB / 1 GB defaults:
# at 20,000 usage events/s the accounting batches write ~200 MB of WAL a
# second, so max_wal_size = 1GB forced a checkpoint every few seconds and most
# of that WAL was full-page images (bench/README.md, "Accounting ingest").
shared_buffers = ${IAS_PG_SHARED_BUFFERS:-1GB}
max_wal_size = ${IAS_PG_MAX_WAL_SIZE:-8GB}
checkpoint_timeout = 15min
EOF
}

pg_bootstrap() {
    # pg_signal_backend lets the ias role's DROP DATABASE ... WITH (FORCE) end an
    # autovacuum worker busy in that database (a worker has no role, so FORCE
    # otherwise refuses). Marker 2 adds the grant to stacks made before it.
    [ -f "$STACK_DIR/.postgres-bootstrapped-2" ] && return 0
    [ -r "$PG_SUPERUSER_PW" ] || ias_die "postgres: $PG_SUPERUSER_PW is missing; remove $PG_DATA to re-initialise"
    pg_psql_super <<'EOF' || ias_die "postgres: creating role/database ias failed"
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ias') THEN
    CREATE ROLE ias LOGIN CREATEDB PASSWORD 'ias';
  END IF;
END$$;
GRANT pg_signal_backend TO ias;
SELECT 'CREATE DATABASE ias OWNER ias' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ias')\gexec
EOF
    : >"$STACK_DIR/.postgres-bootstrapped-2"
}

pg_start() {
    if [ -n "$(pg_pid)" ]; then
        pg_ready || ias_wait_for "$TIMEOUT" pg_ready ||
            fail_start "postgres: running (pid $(pg_pid)) but not accepting connections on 127.0.0.1:$PG_PORT" "$PG_LOG"
        ias_log "postgres: already running (pid $(pg_pid), 127.0.0.1:$PG_PORT)"
        return 0
    fi
    need_user postgres
    port_busy_check postgres "$PG_PORT"
    pg_init
    own_file "$PG_LOG" postgres
    pg_write_conf
    # After a crash (kill -9) the dead postmaster may linger as a zombie and its
    # children may still hold the shared memory for a moment; PostgreSQL then
    # refuses to start, so wait for the old pid and retry briefly.
    local stale
    stale="$(ias_read_pid "$PG_DATA/postmaster.pid")"
    if [ -n "$stale" ]; then
        ias_wait_for 10 pg_stale_gone "$stale" || true
    fi
    local argv=() try
    mapfile -d '' argv < <(as_user_argv postgres)
    for try in 1 2 3 4 5 6; do
        # pg_ctl -w waits for "ready" in postmaster.pid; the postmaster gets
        # its own session from pg_ctl.
        if (
            ias_close_fds
            exec "${argv[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TIMEOUT" -s start </dev/null
        ); then
            break
        fi
        if [ "$try" -lt 6 ] && tail -n 5 "$PG_LOG" | grep -qE 'lock file "postmaster.pid" already exists|shared memory block .* is still in use'; then
            sleep 1
            continue
        fi
        fail_start "postgres: failed to start on 127.0.0.1:$PG_PORT (log: $PG_LOG)" "$PG_LOG"
    done
    ias_wait_for "$TIMEOUT" pg_ready ||
        fail_start "postgres: not accepting connections on 127.0.0.1:$PG_PORT after ${TIMEOUT}s (log: $PG_LOG)" "$PG_LOG"
    pg_bootstrap
    ias_log "postgres: up (pid $(pg_pid), 127.0.0.1:$PG_PORT)"
}

pg_stop() {
    local pid
    pid="$(pg_pid)"
    if [ -z "$pid" ]; then
        ias_log "postgres: not running"
        return 0
    fi
    # SIGINT = fast shutdown; SIGQUIT = immediate; then SIGKILL.
    kill -INT "$pid" 2>/dev/null || true
    if ! ias_wait_exit "$pid" 60; then
        ias_log "postgres: fast shutdown timed out; immediate shutdown"
        ias_stop_pid "$pid" QUIT 10 || ias_die "postgres: pid $pid would not exit"
    fi
    ias_log "postgres: stopped"
}

# ---------------------------------------------------------------- redis

redis_pid() {
    local pid
    pid="$(ias_read_pid "$REDIS_PID")"
    [ -n "$pid" ] && pid_is "$pid" redis-server "127.0.0.1:$REDIS_PORT" && printf '%s' "$pid"
    return 0
}

redis_ready() {
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

redis_start() {
    if [ -n "$(redis_pid)" ]; then
        redis_ready || ias_wait_for "$TIMEOUT" redis_ready ||
            fail_start "redis: running (pid $(redis_pid)) but not answering PING on 127.0.0.1:$REDIS_PORT" "$REDIS_LOG"
        ias_log "redis: already running (pid $(redis_pid), 127.0.0.1:$REDIS_PORT)"
        return 0
    fi
    need_user redis
    command -v redis-server >/dev/null || ias_die "redis: redis-server not found (scripts/deps.sh)"
    port_busy_check redis "$REDIS_PORT"
    own_dir "$REDIS_DIR" redis 750
    own_file "$REDIS_LOG" redis
    rm -f "$REDIS_PID"
    write_as redis "$REDIS_DIR/redis.conf" <<EOF
# Written by scripts/stack.sh on every start; edits are overwritten.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
supervised no
pidfile $REDIS_PID
logfile $REDIS_LOG
dir $REDIS_DIR
# Restarts keep data (tests restart redis and expect counters back).
appendonly yes
appendfsync everysec
save ""
# No per-command latency histograms (LATENCY HISTOGRAM, INFO latencystats):
# every command, each redis.call of the budget script included, paid an
# hdr_record_values for them (~1 % of Redis CPU on the budget path).
latency-tracking no
EOF
    local argv=()
    mapfile -d '' argv < <(as_user_argv redis)
    if ! (
        ias_close_fds
        exec "${argv[@]}" redis-server "$REDIS_DIR/redis.conf" </dev/null >>"$REDIS_LOG" 2>&1
    ); then
        fail_start "redis: failed to start (log: $REDIS_LOG)" "$REDIS_LOG"
    fi
    ias_wait_for "$TIMEOUT" redis_ready ||
        fail_start "redis: not answering PING on 127.0.0.1:$REDIS_PORT after ${TIMEOUT}s (log: $REDIS_LOG)" "$REDIS_LOG"
    ias_log "redis: up (pid $(redis_pid), 127.0.0.1:$REDIS_PORT)"
}

redis_stop() {
    local pid
    pid="$(redis_pid)"
    if [ -z "$pid" ]; then
        ias_log "redis: not running"
        rm -f "$REDIS_PID"
        return 0
    fi
    ias_stop_pid "$pid" TERM 60 || ias_die "redis: pid $pid would not exit"
    rm -f "$REDIS_PID"
    ias_log "redis: stopped"
}

# ---------------------------------------------------------------- rabbitmq

epmd_pid() {
    local pid
    pid="$(ias_read_pid "$EPMD_PID")"
    [ -n "$pid" ] && pid_is "$pid" epmd && pid_has_arg "$pid" "$EPMD_PORT" && printf '%s' "$pid"
    return 0
}

rmq_pid() {
    local pid
    pid="$(ias_read_pid "$RMQ_PID")"
    [ -n "$pid" ] && pid_is "$pid" beam.smp "$RMQ_DIR" && printf '%s' "$pid"
    return 0
}

# The wrapper shell (or runuser) that started the broker, while the broker has
# not written its own pid file yet.
rmq_launcher_pid() {
    local pid
    pid="$(ias_read_pid "$RMQ_LAUNCHER_PID")"
    [ -n "$pid" ] || return 0
    if pid_is "$pid" runuser "$RMQ_DIR" || pid_is "$pid" rabbitmq-server "$RMQ_DIR"; then
        printf '%s' "$pid"
    fi
    return 0
}

# AMQP 0-9-1 handshake: send the protocol header, expect a Connection.Start
# frame (type 1). Only a fully booted broker has its listener open.
amqp_ready() {
    local first
    first="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        head -c 1 <&3 | od -An -tx1' sh "$AMQP_PORT" 2>/dev/null)" || return 1
    [ "${first// /}" = 01 ]
}

rmq_nodename() {
    if [ -s "$RMQ_DIR/nodename" ]; then
        cat "$RMQ_DIR/nodename"
    else
        printf 'ias-%s@localhost' "$AMQP_PORT"
    fi
}

epmd_start() {
    if [ -n "$(epmd_pid)" ]; then
        return 0
    fi
    port_busy_check "rabbitmq (epmd)" "$EPMD_PORT"
    command -v epmd >/dev/null || ias_die "rabbitmq: epmd not found (erlang-base; scripts/deps.sh)"
    own_file "$EPMD_LOG" rabbitmq
    rm -f "$EPMD_PID"
    local argv=()
    mapfile -d '' argv < <(as_user_argv rabbitmq)
    spawn "$EPMD_LOG" "${argv[@]}" sh -c 'echo $$ >"$1" && exec epmd -port "$2" -address 127.0.0.1' \
        sh "$EPMD_PID" "$EPMD_PORT" >/dev/null
    ias_wait_for 10 ias_port_listening "$EPMD_PORT" ||
        fail_start "rabbitmq: epmd did not listen on 127.0.0.1:$EPMD_PORT" "$EPMD_LOG"
}

# Classic queues stay version 1 (3.10's default): version 2 would save one of
# the two fsyncs per message, but 3.10 confirms v2 messages below
# queue_index_embed_msgs_below (4 KiB: single events, small packs) with no
# fsync at all, which breaks "confirmed = on disk". The broker's cost is per
# message (~1 ms of CPU for an isolated persistent message on the bench VM,
# whatever its size, VM flags such as +S 1:1 or fewer dirty I/O threads made
# no measurable difference), so what cuts it is fewer, larger messages:
# IAS_EVENTS_PACK_MAX / IAS_EVENTS_PACK_WAIT.
rmq_write_conf() {
    write_as rabbitmq "$RMQ_DIR/rabbitmq.conf" <<EOF
# Written by scripts/stack.sh on every start; edits are overwritten.
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
default_user = ias
default_pass = ias
default_vhost = /
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none
log.console = false
log.file.level = info
EOF
    echo "[]." | write_as rabbitmq "$RMQ_DIR/enabled_plugins"
    write_as rabbitmq "$RMQ_DIR/rabbitmq-env.conf" </dev/null
}

# Starts epmd and the broker without waiting for the broker to be ready, so
# `up` can start PostgreSQL and Redis meanwhile.
RMQ_WAS_RUNNING=0
rmq_launch() {
    if [ -n "$(rmq_pid)" ] || [ -n "$(rmq_launcher_pid)" ]; then
        RMQ_WAS_RUNNING=1
        return 0
    fi
    need_user rabbitmq
    [ -x "$RMQ_BIN/rabbitmq-server" ] || ias_die "rabbitmq: $RMQ_BIN/rabbitmq-server not found (scripts/deps.sh)"
    port_busy_check rabbitmq "$AMQP_PORT"
    port_busy_check "rabbitmq (distribution)" "$DIST_PORT"
    own_dir "$RMQ_DIR" rabbitmq 750
    own_dir "$RMQ_DIR/mnesia" rabbitmq 750
    own_dir "$RMQ_DIR/log" rabbitmq 750
    own_file "$RMQ_LOG" rabbitmq
    own_file "$RMQ_CONSOLE_LOG" rabbitmq
    local node
    node="$(rmq_nodename)"
    [ -s "$RMQ_DIR/nodename" ] || printf '%s\n' "$node" | write_as rabbitmq "$RMQ_DIR/nodename"
    rmq_write_conf
    epmd_start
    rm -f "$RMQ_PID"
    local argv=()
    mapfile -d '' argv < <(as_user_argv rabbitmq)
    # A clean environment: nothing from the caller's RABBITMQ_*/ERL_* leaks in,
    # and /etc/rabbitmq is not read (our own env and config files). +sbwt none:
    # idle Erlang schedulers sleep instead of spinning, so on a host shared with
    # the services the broker does not burn the CPU they need (RabbitMQ's advice
    # for shared and containerised hosts).
    local pid
    pid="$(spawn "$RMQ_CONSOLE_LOG" "${argv[@]}" env -i \
        PATH=/usr/bin:/bin LC_ALL=C.UTF-8 LANG=C.UTF-8 HOME="$RMQ_DIR" \
        ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
        ERL_CRASH_DUMP="$RMQ_DIR/erl_crash.dump" \
        RABBITMQ_NODENAME="$node" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" \
        RABBITMQ_DIST_PORT="$DIST_PORT" \
        RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
        RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
        RABBITMQ_LOGS="$RMQ_LOG" \
        RABBITMQ_PID_FILE="$RMQ_PID" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none" \
        sh -c 'cd "$HOME" && exec "$1"' sh "$RMQ_BIN/rabbitmq-server")"
    printf '%s\n' "$pid" >"$RMQ_LAUNCHER_PID"
}

rmq_wait() {
    local deadline=$((SECONDS + TIMEOUT))
    while ! amqp_ready; do
        if [ -z "$(rmq_launcher_pid)" ] && [ -z "$(rmq_pid)" ]; then
            fail_start "rabbitmq: the broker exited during startup (logs: $RMQ_LOG, $RMQ_CONSOLE_LOG)" \
                "$RMQ_LOG" "$RMQ_CONSOLE_LOG"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail_start "rabbitmq: no AMQP on 127.0.0.1:$AMQP_PORT after ${TIMEOUT}s (logs: $RMQ_LOG, $RMQ_CONSOLE_LOG)" \
                "$RMQ_LOG" "$RMQ_CONSOLE_LOG"
        fi
        sleep 0.2
    done
    local what=up
    [ "$RMQ_WAS_RUNNING" = 0 ] || what="already running"
    ias_log "rabbitmq: $what (pid $(rmq_pid), 127.0.0.1:$AMQP_PORT, node $(rmq_nodename), epmd :$EPMD_PORT)"
}

rmq_start() {
    rmq_launch
    rmq_wait
}

rmq_stop() {
    local pid launcher stopped=0
    pid="$(rmq_pid)"
    launcher="$(rmq_launcher_pid)"
    if [ -n "$pid" ]; then
        # The VM turns SIGTERM into an orderly rabbit shutdown.
        ias_stop_pid "$pid" TERM 60 || ias_die "rabbitmq: pid $pid would not exit"
        stopped=1
    fi
    launcher="$(rmq_launcher_pid)"
    if [ -n "$launcher" ]; then
        # Still starting (no pid file yet) or the wrapper lingers: runuser
        # forwards the signal to the wrapper, which stops the VM.
        ias_stop_pid "$launcher" TERM 30 || ias_die "rabbitmq: launcher pid $launcher would not exit"
        stopped=1
    fi
    rm -f "$RMQ_PID" "$RMQ_LAUNCHER_PID"
    pid="$(epmd_pid)"
    if [ -n "$pid" ]; then
        ias_stop_pid "$pid" TERM 10 || ias_die "rabbitmq: epmd pid $pid would not exit"
        stopped=1
    fi
    rm -f "$EPMD_PID"
    if [ "$stopped" = 1 ]; then
        ias_log "rabbitmq: stopped"
    else
        ias_log "rabbitmq: not running"
    fi
}

# ---------------------------------------------------------------- commands

write_env() {
    local tmp="$ENV_FILE.tmp.$$"
    {
        echo "# Written by scripts/stack.sh; source it (set -a; . $ENV_FILE)."
        printf 'IAS_PG_DSN=%s\n' "postgresql://ias:ias@127.0.0.1:$PG_PORT/ias"
        printf 'IAS_REDIS_URL=%s\n' "redis://127.0.0.1:$REDIS_PORT/0"
        printf 'IAS_AMQP_URL=%s\n' "amqp://ias:ias@127.0.0.1:$AMQP_PORT/%2f"
        printf 'IAS_STACK_DIR=%q\n' "$STACK_DIR"
        printf 'IAS_PG_PORT=%s\nIAS_REDIS_PORT=%s\nIAS_AMQP_PORT=%s\n' "$PG_PORT" "$REDIS_PORT" "$AMQP_PORT"
        printf 'IAS_EPMD_PORT=%s\nIAS_AMQP_DIST_PORT=%s\n' "$EPMD_PORT" "$DIST_PORT"
    } >"$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

start_one() {
    case "$1" in
    postgres) pg_start ;;
    redis) redis_start ;;
    rabbitmq) rmq_start ;;
    esac
}

stop_one() {
    case "$1" in
    postgres) pg_stop ;;
    redis) redis_stop ;;
    rabbitmq) rmq_stop ;;
    esac
}

# One status line; returns 1 if the service is not up.
status_one() {
    local name="$1" pid="" port extra="" ok=1
    case "$name" in
    postgres)
        pid="$(pg_pid)"
        port="$PG_PORT"
        [ -n "$pid" ] && pg_ready || ok=0
        ;;
    redis)
        pid="$(redis_pid)"
        port="$REDIS_PORT"
        [ -n "$pid" ] && redis_ready || ok=0
        ;;
    rabbitmq)
        pid="$(rmq_pid)"
        port="$AMQP_PORT"
        [ -n "$pid" ] && amqp_ready || ok=0
        local e
        e="$(epmd_pid)"
        extra="  (epmd ${e:-down} :$EPMD_PORT, dist :$DIST_PORT, node $(rmq_nodename))"
        ;;
    esac
    local state
    if [ "$ok" = 1 ]; then
        state=running
    elif [ -n "$pid" ]; then
        state=starting
    else
        state=stopped
    fi
    printf '%-9s %-9s pid %-8s 127.0.0.1:%s%s\n' "$name" "$state" "${pid:--}" "$port" "$extra"
    [ "$ok" = 1 ]
}

lock() {
    mkdir -p "$STACK_DIR"
    exec 9>"$STACK_DIR/.lock"
    flock -w 300 9 || ias_die "another scripts/stack.sh holds $STACK_DIR/.lock"
}

check_services() {
    local s ok
    for s in "$@"; do
        ok=0
        for known in "${SERVICES[@]}"; do
            [ "$s" = "$known" ] && ok=1
        done
        [ "$ok" = 1 ] || ias_die "unknown service '$s' (expected: ${SERVICES[*]})"
    done
}

# Keeps the canonical order (postgres, redis, rabbitmq) of the given services.
ordered() {
    local s want
    for s in "${SERVICES[@]}"; do
        for want in "$@"; do
            [ "$s" = "$want" ] && printf '%s\n' "$s" && break
        done
    done
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift
[ "$cmd" = rabbitmqctl ] || check_services "$@"
if [ "$#" -gt 0 ]; then
    mapfile -t targets < <(ordered "$@")
else
    targets=("${SERVICES[@]}")
fi

case "$cmd" in
up | start)
    [ "$cmd" = up ] || [ "$#" -gt 0 ] || ias_die "start needs a service (${SERVICES[*]})"
    lock
    prepare
    # RabbitMQ is the slowest to boot: launch it first, start the others while
    # it boots, then wait for it.
    rmq=0
    for s in "${targets[@]}"; do
        if [ "$s" = rabbitmq ]; then
            rmq=1
            rmq_launch
        fi
    done
    for s in "${targets[@]}"; do
        [ "$s" = rabbitmq ] || start_one "$s"
    done
    [ "$rmq" = 0 ] || rmq_wait
    write_env
    ;;
down | stop)
    [ "$cmd" = down ] || [ "$#" -gt 0 ] || ias_die "stop needs a service (${SERVICES[*]})"
    [ -d "$STACK_DIR" ] || exit 0
    lock
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do
        stop_one "${targets[$i]}"
    done
    ;;
restart)
    [ "$#" -gt 0 ] || ias_die "restart needs a service (${SERVICES[*]})"
    lock
    prepare
    for s in "${targets[@]}"; do
        stop_one "$s"
        start_one "$s"
    done
    write_env
    ;;
status)
    rc=0
    for s in "${targets[@]}"; do
        status_one "$s" || rc=1
    done
    exit "$rc"
    ;;
rabbitmqctl)
    # rabbitmqctl bound to this stack's node, epmd and cookie.
    [ -n "$(rmq_pid)" ] || ias_die "rabbitmq is not running in $STACK_DIR"
    argv=()
    mapfile -d '' argv < <(as_user_argv rabbitmq)
    exec "${argv[@]}" env HOME="$RMQ_DIR" ERL_EPMD_PORT="$EPMD_PORT" LC_ALL=C.UTF-8 \
        "$RMQ_BIN/rabbitmqctl" -n "$(rmq_nodename)" "$@"
    ;;
env)
    [ -r "$ENV_FILE" ] || ias_die "no $ENV_FILE (run scripts/stack.sh up)"
    cat "$ENV_FILE"
    ;;
-h | --help | help) usage ;;
*) usage ;;
esac
