#!/usr/bin/env bash
# Benchmark harness (`make bench`): wrk against ias-mockllm directly, through an
# nginx reverse-proxy hop (the floor for any proxy), through ias (ingress ->
# router, brought up here with its own stack) and through Portkey's open-source
# gateway; then the RSS of each gateway holding 1,000 open streams. Results go
# to bench/README.md between the results markers. Loopback only.
#
# Environment:
#   BENCH_SECONDS     [10]        duration of each wrk run
#   BENCH_CONNS       ["1 16 64"] connection counts
#   BENCH_MODES       ["json stream"]  non-streaming and streaming requests
#   BENCH_MAX_TOKENS  [16]        max_tokens in each request
#   BENCH_BIN_DIR     [build/bin] where the release binaries are
#   BENCH_MOCK_BIN    [$BENCH_BIN_DIR/ias-mockllm]
#   BENCH_IAS         [1]         bring up ias itself: a stack (PostgreSQL, Redis,
#                                 RabbitMQ) under BENCH_STACK_DIR, users, pdp,
#                                 router, ingress, seeded through the management API
#                                 (0: only mockllm and nginx, unless BENCH_IAS_URL)
#   BENCH_IAS_URL     unset       bench an ias that is already running instead
#                                 (e.g. http://127.0.0.1:8080; implies BENCH_IAS=0)
#   BENCH_IAS_KEY     unset       API key for BENCH_IAS_URL (its mock-gpt should
#                                 route to a mockllm with TTFT 0, unlimited tokens/s)
#   BENCH_PDP         [1]         start ias-pdp for the policy step (0: ingress's
#                                 built-in allow-by-org-allowed-models decision)
#   BENCH_ROUTER_UNIX [1]         ingress reaches the router over a unix socket
#                                 (IAS_UNIX_SOCKET / IAS_ROUTER_URL=unix:...), as
#                                 when both run in one pod; 0: loopback TCP
#   BENCH_PORTKEY     [1 with BENCH_IAS, else 0]  also bench @portkey-ai/gateway
#                                 (npm-installed into build/bench/portkey once)
#   BENCH_PORTKEY_VERSION [1.15.2]
#   BENCH_STREAMS     [1000]      open streams for the RSS measurement (0: skip)
#   BENCH_DIR         [build/bench]  logs, wrk output, results (one per concurrent run)
#   BENCH_STACK_DIR   [$BENCH_DIR/stack]  the bench's own stack
#   BENCH_PG_PORT, BENCH_REDIS_PORT, BENCH_AMQP_PORT  [free ports]
#   BENCH_STACK_KEEP  [0]         1: leave the stack running afterwards
#   BENCH_PIN_STACK   [1]         pin Redis, RabbitMQ and PostgreSQL to the server core too
#   BENCH_WRITE       [1]         0: print the table, leave bench/README.md alone
#   BENCH_WRK_CPU     [0]         core for wrk; servers get BENCH_SERVER_CPU [1]
#   BENCH_HOLD        [0]         1: start everything, write build/bench/hold.env,
#                                 and wait (for profiling) instead of measuring
set -euo pipefail
# shellcheck disable=SC2034 # used by lib.sh
IAS_LOG_TAG=bench
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
cd "$IAS_REPO_ROOT"

SECS="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNS:-1 16 64}"
MODES="${BENCH_MODES:-json stream}"
MAX_TOKENS="${BENCH_MAX_TOKENS:-16}"
BIN_DIR="${BENCH_BIN_DIR:-build/bin}"
MOCK_BIN="${BENCH_MOCK_BIN:-$BIN_DIR/ias-mockllm}"
IAS_URL="${BENCH_IAS_URL:-}"
IAS_KEY="${BENCH_IAS_KEY:-}"
OWN_IAS="${BENCH_IAS:-1}"
[ -z "$IAS_URL" ] || OWN_IAS=0
USE_PDP="${BENCH_PDP:-1}"
ROUTER_UNIX="${BENCH_ROUTER_UNIX:-1}"
USE_PORTKEY="${BENCH_PORTKEY:-$OWN_IAS}"
PORTKEY_VERSION="${BENCH_PORTKEY_VERSION:-1.15.2}"
NSTREAMS="${BENCH_STREAMS:-1000}"
PIN_STACK="${BENCH_PIN_STACK:-1}"
WRITE="${BENCH_WRITE:-1}"
WRK_CPU="${BENCH_WRK_CPU:-0}"
SERVER_CPU="${BENCH_SERVER_CPU:-1}"
DIR="${BENCH_DIR:-$IAS_REPO_ROOT/build/bench}"
STACK_DIR="${BENCH_STACK_DIR:-$DIR/stack}"
README="$IAS_REPO_ROOT/bench/README.md"

[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -gt 0 ] || ias_die "BENCH_SECONDS must be a positive integer"
[[ "$NSTREAMS" =~ ^[0-9]+$ ]] || ias_die "BENCH_STREAMS must be a number"
case "$ROUTER_UNIX" in 0 | 1) ;; *) ias_die "BENCH_ROUTER_UNIX must be 0 or 1" ;; esac
for m in $MODES; do
    case "$m" in json | stream) ;; *) ias_die "BENCH_MODES: unknown mode '$m' (json, stream)" ;; esac
done
command -v wrk >/dev/null || ias_die "wrk not found (scripts/deps.sh bench)"
NGINX="$(command -v nginx || true)"
[ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
[ -n "$NGINX" ] || ias_die "nginx not found (scripts/deps.sh bench)"
command -v curl >/dev/null || ias_die "curl not found (scripts/deps.sh)"
[ -x "$MOCK_BIN" ] || ias_die "$MOCK_BIN not built (make all)"
if [ -n "$IAS_URL" ]; then
    [[ "$IAS_URL" =~ ^http://127\.0\.0\.1:[0-9]+/?$ ]] || ias_die "BENCH_IAS_URL must be http://127.0.0.1:<port>"
    IAS_URL="${IAS_URL%/}"
fi
if [ "$OWN_IAS" = 1 ]; then
    for b in migrate users router ingress; do
        [ -x "$BIN_DIR/ias-$b" ] || ias_die "$BIN_DIR/ias-$b not built (make all)"
    done
    [ "$USE_PDP" = 0 ] || [ -x "$BIN_DIR/ias-pdp" ] || ias_die "$BIN_DIR/ias-pdp not built (make all, or BENCH_PDP=0)"
    command -v node >/dev/null || ias_die "node not found (needed to seed ias and for the streams test)"
    command -v psql >/dev/null || ias_die "psql not found (scripts/deps.sh)"
fi
if [ "$USE_PORTKEY" = 1 ]; then
    command -v node >/dev/null || ias_die "node not found (BENCH_PORTKEY=0 to skip Portkey)"
fi

# Pin wrk and the servers to different cores when there are two or more, so the
# load generator does not steal the servers' CPU.
WRK_PIN=()
SRV_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    WRK_PIN=(taskset -c "$WRK_CPU")
    SRV_PIN=(taskset -c "$SERVER_CPU")
else
    ias_log "notice: not pinning (needs taskset and 2+ cores)"
fi

mkdir -p "$DIR/tmp"
PIDS=()
STACK_STARTED=0
SOCK_TMP=""
stack() {
    IAS_STACK_DIR="$STACK_DIR" IAS_PG_PORT="$PG_PORT" IAS_REDIS_PORT="$REDIS_PORT" IAS_AMQP_PORT="$AMQP_PORT" \
        bash scripts/stack.sh "$@"
}
cleanup() {
    local i
    # Reverse start order: ingress before the router, the router before users.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        ias_stop_pid "${PIDS[$i]}" TERM 10 || true
    done
    if [ "$STACK_STARTED" = 1 ] && [ "${BENCH_STACK_KEEP:-0}" != 1 ]; then
        stack down >/dev/null 2>&1 || ias_log "warning: stack down failed ($STACK_DIR)"
    fi
    [ -z "$SOCK_TMP" ] || rm -rf "$SOCK_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {
    local url="$1" pid="$2" log="$3"
    local deadline=$((SECONDS + 30))
    until curl -sf -o /dev/null --max-time 1 "$url"; do
        ias_pid_alive "$pid" || { ias_tail_log "$log"; ias_die "server for $url exited"; }
        [ "$SECONDS" -lt "$deadline" ] || { ias_tail_log "$log"; ias_die "no answer from $url"; }
        sleep 0.1
    done
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Starts "ias-<name>" from BIN_DIR on a free port, pinned to the server core,
# with the given extra environment; sets SVC_URL and SVC_PID.
start_ias() {
    local name="$1" ready="$2" port log
    shift 2
    port="$(ias_free_port)" || ias_die "no free port"
    log="$DIR/$name.log"
    env IAS_BIND=127.0.0.1 IAS_PORT="$port" IAS_WORKERS=1 IAS_LOG_LEVEL="${IAS_LOG_LEVEL:-warn}" "$@" \
        "${SRV_PIN[@]}" "$BIN_DIR/ias-$name" </dev/null >"$log" 2>&1 &
    SVC_PID=$!
    PIDS+=("$SVC_PID")
    SVC_URL="http://127.0.0.1:$port"
    wait_http "$SVC_URL$ready" "$SVC_PID" "$log"
}

# ---- upstream: ias-mockllm, one worker, no artificial delay
MOCK_PORT="$(ias_free_port)" || ias_die "no free port"
MOCK_LOG="$DIR/mockllm.log"
IAS_BIND=127.0.0.1 IAS_PORT="$MOCK_PORT" IAS_WORKERS=1 IAS_MOCK_TTFT_MS=0 IAS_MOCK_TOKENS_PER_S=0 \
    IAS_MOCK_MAX_TOKENS_DEFAULT="$MAX_TOKENS" IAS_LOG_LEVEL="${IAS_LOG_LEVEL:-warn}" \
    "${SRV_PIN[@]}" "$MOCK_BIN" </dev/null >"$MOCK_LOG" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_http "http://127.0.0.1:$MOCK_PORT/health" "$MOCK_PID" "$MOCK_LOG"
MOCK_URL="http://127.0.0.1:$MOCK_PORT"

# ---- nginx hop in front of it
NGINX_PORT="$(ias_free_port)" || ias_die "no free port"
sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@UPSTREAM_PORT@|$MOCK_PORT|g" \
    bench/nginx.conf.tmpl >"$DIR/nginx.conf"
: >"$DIR/nginx-error.log"
"$NGINX" -t -q -e "$DIR/nginx-error.log" -p "$DIR" -c "$DIR/nginx.conf" ||
    { ias_tail_log "$DIR/nginx-error.log"; ias_die "nginx rejected $DIR/nginx.conf"; }
"${SRV_PIN[@]}" "$NGINX" -e "$DIR/nginx-error.log" -p "$DIR" -c "$DIR/nginx.conf" \
    </dev/null >"$DIR/nginx-stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/health" "$NGINX_PID" "$DIR/nginx-error.log"

# ---- a slow mockllm (1 token/s) for the open-streams measurement: model mock-slow
SLOW_URL=""
SLOW_PID=""
if [ "$NSTREAMS" -gt 0 ] && { [ "$OWN_IAS" = 1 ] || [ "$USE_PORTKEY" = 1 ]; }; then
    SLOW_PORT="$(ias_free_port)" || ias_die "no free port"
    IAS_BIND=127.0.0.1 IAS_PORT="$SLOW_PORT" IAS_WORKERS=1 IAS_MOCK_TTFT_MS=0 IAS_MOCK_TOKENS_PER_S=1 \
        IAS_MOCK_MODEL=mock-slow IAS_LOG_LEVEL="${IAS_LOG_LEVEL:-warn}" \
        "${SRV_PIN[@]}" "$MOCK_BIN" </dev/null >"$DIR/mockllm-slow.log" 2>&1 &
    SLOW_PID=$!
    PIDS+=("$SLOW_PID")
    wait_http "http://127.0.0.1:$SLOW_PORT/health" "$SLOW_PID" "$DIR/mockllm-slow.log"
    SLOW_URL="http://127.0.0.1:$SLOW_PORT"
fi

# ---- ias: its own stack, migrated database, users, pdp, router, ingress
ING_PID=""
RTR_PID=""
USERS_PID=""
PDP_PID=""
STACK_PIDS=""
POLICY="-"
if [ "$OWN_IAS" = 1 ]; then
    # Ports: given, else free ones (RabbitMQ also needs AMQP+1 and AMQP+2).
    PG_PORT="${BENCH_PG_PORT:-$(ias_free_port)}" || ias_die "no free port"
    REDIS_PORT="${BENCH_REDIS_PORT:-$(ias_free_port)}" || ias_die "no free port"
    AMQP_PORT="${BENCH_AMQP_PORT:-}"
    while [ -z "$AMQP_PORT" ]; do
        AMQP_PORT="$(ias_free_port)" || ias_die "no free port"
        for p in "$AMQP_PORT" $((AMQP_PORT + 1)) $((AMQP_PORT + 2)); do
            [ "$p" -lt 65536 ] && ! ias_port_listening "$p" && [ "$p" != "$PG_PORT" ] &&
                [ "$p" != "$REDIS_PORT" ] || AMQP_PORT=""
        done
    done
    ias_log "stack in $STACK_DIR (postgres $PG_PORT, redis $REDIS_PORT, rabbitmq $AMQP_PORT)"
    STACK_STARTED=1
    stack up >"$DIR/stack.log" 2>&1 || { tail -n 30 "$DIR/stack.log" >&2; ias_die "stack up failed"; }
    set -a
    # shellcheck disable=SC1091
    . "$STACK_DIR/stack.env"
    set +a
    REDIS_PID="$(ias_read_pid "$STACK_DIR/redis/redis.pid")"
    RABBIT_PID="$(ias_read_pid "$STACK_DIR/rabbitmq/rabbitmq.pid")"
    PG_PID="$(ias_read_pid "$STACK_DIR/postgres/postmaster.pid")"
    if [ "$PIN_STACK" = 1 ] && [ "${#SRV_PIN[@]}" -gt 0 ]; then
        # The gateway's dependencies share the server core with it; forked
        # PostgreSQL backends inherit the postmaster's affinity.
        for f in "$STACK_DIR/redis/redis.pid" "$STACK_DIR/rabbitmq/rabbitmq.pid" "$STACK_DIR/postgres/postmaster.pid"; do
            pid="$(ias_read_pid "$f")"
            [ -z "$pid" ] || taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null || ias_log "warning: could not pin pid $pid"
        done
    fi
    # A fresh database per run (the bootstrap admin can be created only once).
    DB=ias_bench
    psql "$IAS_PG_DSN" -qAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" \
        >/dev/null || ias_die "could not create database $DB"
    DB_DSN="${IAS_PG_DSN%/*}/$DB"
    IAS_PG_DSN="$DB_DSN" IAS_MIGRATIONS_DIR="$IAS_REPO_ROOT/migrations" "$BIN_DIR/ias-migrate" up \
        >"$DIR/migrate.log" 2>&1 || { tail -n 20 "$DIR/migrate.log" >&2; ias_die "migrations failed"; }
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null 2>&1 || true
    SECRET="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    TOKEN="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    rm -rf "$DIR/spool"
    mkdir -p "$DIR/spool"
    COMMON=(IAS_REDIS_URL="$IAS_REDIS_URL" IAS_AMQP_URL="$IAS_AMQP_URL" IAS_INTERNAL_TOKEN="$TOKEN")

    start_ias users /ready "${COMMON[@]}" IAS_PG_DSN="$DB_DSN" IAS_JWT_SECRET="$SECRET"
    USERS_URL="$SVC_URL"
    USERS_PID="$SVC_PID"
    PDP_URL=""
    POLICY="built-in (allowed models)"
    if [ "$USE_PDP" = 1 ]; then
        start_ias pdp /ready IAS_PG_DSN="$DB_DSN" IAS_AMQP_URL="$IAS_AMQP_URL" IAS_INTERNAL_TOKEN="$TOKEN" \
            IAS_JWT_SECRET="$SECRET" IAS_SPOOL_DIR="$DIR/spool/pdp"
        PDP_URL="$SVC_URL"
        PDP_PID="$SVC_PID"
        POLICY="ias-pdp"
    fi
    # Both run on this host: by default the hop is a unix socket, as with the
    # router in the ingress pod (deploy/components/router-sidecar); the router
    # keeps its TCP port for /ready.
    RTR_SOCK=""
    if [ "$ROUTER_UNIX" = 1 ]; then
        RTR_SOCK="$DIR/tmp/router.sock"
        if [ "${#RTR_SOCK}" -ge 108 ]; then # sun_path holds 107 bytes
            SOCK_TMP="$(mktemp -d)"
            RTR_SOCK="$SOCK_TMP/router.sock"
        fi
    fi
    start_ias router /ready "${COMMON[@]}" IAS_USERS_URL="$USERS_URL" IAS_SPOOL_DIR="$DIR/spool/router" \
        IAS_UNIX_SOCKET="$RTR_SOCK"
    RTR_PID="$SVC_PID"
    RTR_TARGET="$SVC_URL"
    HOP="loopback TCP ($SVC_URL)"
    if [ -n "$RTR_SOCK" ]; then
        [ -S "$RTR_SOCK" ] || ias_die "the router did not create $RTR_SOCK"
        RTR_TARGET="unix:$RTR_SOCK"
        HOP="unix socket ($RTR_SOCK)"
    fi
    ias_log "ingress -> router hop: $HOP"
    start_ias ingress /ready "${COMMON[@]}" IAS_USERS_URL="$USERS_URL" IAS_ROUTER_URL="$RTR_TARGET" \
        IAS_PDP_URL="$PDP_URL"
    ING_PID="$SVC_PID"
    IAS_URL="$SVC_URL"
    # Seeding goes through ingress's management proxy, like an operator would.
    seed="$(node bench/ias.mjs seed "$IAS_URL" "$MOCK_URL" "${SLOW_URL:-$MOCK_URL}")" || ias_die "seeding ias failed"
    IAS_KEY="$(printf '%s' "$seed" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')"
    [ -n "$IAS_KEY" ] || ias_die "seeding ias: no key in $seed"
fi

# ---- Portkey's open-source gateway (node), pointed at the same mockllm
PK_URL=""
PK_PID=""
PK_HDRS=""
PK_VERSION=""
if [ "$USE_PORTKEY" = 1 ]; then
    PK_DIR="$DIR/portkey"
    PK_JS="$PK_DIR/node_modules/@portkey-ai/gateway/build/start-server.js"
    # Newer @hono/node-server releases make Portkey's streaming answers fail on
    # node 20 with "TypeError: immutable" (Portkey-AI/gateway#1389), so it is
    # pinned to the version of Portkey's own lockfile.
    PK_HONO=1.13.5
    if [ ! -f "$PK_JS" ] || [ "$(node -p "require('$PK_DIR/node_modules/@portkey-ai/gateway/package.json').version" 2>/dev/null)" != "$PORTKEY_VERSION" ] ||
        [ -d "$PK_DIR/node_modules/@portkey-ai/gateway/node_modules/@hono/node-server" ] ||
        [ "$(node -p "require('$PK_DIR/node_modules/@hono/node-server/package.json').version" 2>/dev/null)" != "$PK_HONO" ]; then
        command -v npm >/dev/null || ias_die "npm not found (BENCH_PORTKEY=0 to skip Portkey)"
        mkdir -p "$PK_DIR"
        printf '{"name":"ias-bench-portkey","private":true,"dependencies":{"@portkey-ai/gateway":"%s"},"overrides":{"@hono/node-server":"%s"}}\n' \
            "$PORTKEY_VERSION" "$PK_HONO" >"$PK_DIR/package.json"
        rm -rf "$PK_DIR/node_modules" "$PK_DIR/package-lock.json"
        ias_log "installing @portkey-ai/gateway@$PORTKEY_VERSION into $PK_DIR"
        (cd "$PK_DIR" && npm install --no-audit --no-fund) >"$DIR/portkey-npm.log" 2>&1 ||
            { tail -n 20 "$DIR/portkey-npm.log" >&2; ias_die "npm install @portkey-ai/gateway failed (BENCH_PORTKEY=0 to skip)"; }
    fi
    PK_VERSION="$(node -p "require('$PK_DIR/node_modules/@portkey-ai/gateway/package.json').version")"
    PK_PORT="$(ias_free_port)" || ias_die "no free port"
    NODE_ENV=production "${SRV_PIN[@]}" node "$PK_JS" --port="$PK_PORT" --headless \
        </dev/null >"$DIR/portkey.log" 2>&1 &
    PK_PID=$!
    PIDS+=("$PK_PID")
    PK_URL="http://127.0.0.1:$PK_PORT"
    wait_http "$PK_URL/" "$PK_PID" "$DIR/portkey.log"
    # Portkey's OpenAI provider with a custom host = mockllm's OpenAI base URL.
    PK_HDRS="x-portkey-provider: openai;x-portkey-custom-host: $MOCK_URL/v1"
fi

# ---- request bodies and the wrk script
body() {
    local stream=false
    [ "$1" = stream ] && stream=true
    printf '{"model":"mock-gpt","messages":[{"role":"user","content":"Write one short sentence about benchmarks."}],"max_tokens":%s,"stream":%s}' \
        "$MAX_TOKENS" "$stream"
}
# Extra headers: "Name: value;Name: value".
lua_script() {
    local mode="$1" key="$2" name="$3" hdrs="$4" f h
    f="$DIR/chat-$name-$mode.lua"
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        [ -z "$key" ] || printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$key"
        if [ -n "$hdrs" ]; then
            IFS=';' read -r -a hs <<<"$hdrs"
            for h in "${hs[@]}"; do
                printf 'wrk.headers["%s"] = "%s"\n' "${h%%:*}" "$(printf '%s' "${h#*:}" | sed 's/^ *//')"
            done
        fi
        printf "wrk.body = '%s'\n" "$(body "$mode")"
    } >"$f"
    printf '%s' "$f"
}
curl_headers() {
    local key="$1" hdrs="$2" h
    CURL_H=()
    [ -z "$key" ] || CURL_H+=(-H "Authorization: Bearer $key")
    if [ -n "$hdrs" ]; then
        IFS=';' read -r -a hs <<<"$hdrs"
        for h in "${hs[@]}"; do CURL_H+=(-H "$h"); done
    fi
}

# One request per target and mode before measuring: a 200 with the right shape.
# ias gets a few seconds: the router loads the models seeded a moment ago.
check_target() {
    local name="$1" base="$2" key="$3" hdrs="$4" mode out code deadline
    curl_headers "$key" "$hdrs"
    for mode in $MODES; do
        out="$DIR/check-$name-$mode.txt"
        deadline=$((SECONDS + 20))
        while :; do
            code="$(curl -s -o "$out" -w '%{http_code}' --max-time 10 -X POST \
                -H 'Content-Type: application/json' "${CURL_H[@]}" \
                --data "$(body "$mode")" "$base/v1/chat/completions")" || code=000
            [ "$code" != 200 ] && [ "$name" = ias ] && [ "$SECONDS" -lt "$deadline" ] || break
            sleep 0.5
        done
        [ "$code" = 200 ] || { head -c 500 "$out" >&2; ias_die "$name ($mode): HTTP $code from $base"; }
        if [ "$mode" = stream ]; then
            grep -q '^data: \[DONE\]' "$out" || ias_die "$name (stream): no 'data: [DONE]' in the response ($out)"
        else
            grep -q '"choices"' "$out" || ias_die "$name (json): no choices in the response ($out)"
        fi
    done
}

TARGETS=("mockllm|$MOCK_URL||" "nginx|http://127.0.0.1:$NGINX_PORT||")
[ -z "$IAS_URL" ] || TARGETS+=("ias|$IAS_URL|$IAS_KEY|")
[ -z "$PK_URL" ] || TARGETS+=("portkey|$PK_URL|bench-unused|$PK_HDRS")
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name base key hdrs <<<"$t"
    check_target "$name" "$base" "$key" "$hdrs"
done

# BENCH_HOLD=1: leave everything running for profiling (perf, callgrind,
# your own wrk) instead of measuring; the addresses and pids go to hold.env.
if [ "${BENCH_HOLD:-0}" = 1 ]; then
    {
        printf 'MOCK_URL=%s\nNGINX_URL=http://127.0.0.1:%s\nIAS_URL=%s\nIAS_KEY=%s\n' "$MOCK_URL" "$NGINX_PORT" "$IAS_URL" "$IAS_KEY"
        printf 'ROUTER_HOP=%q\n' "${HOP:-}"
        printf 'MOCK_PID=%s\nNGINX_PID=%s\nING_PID=%s\nRTR_PID=%s\nPDP_PID=%s\nUSERS_PID=%s\n' \
            "$MOCK_PID" "$NGINX_PID" "$ING_PID" "$RTR_PID" "$PDP_PID" "$USERS_PID"
        printf 'REDIS_PID=%s\nRABBIT_PID=%s\nPG_PID=%s\nBODY_JSON=%s\n' "${REDIS_PID:-}" "${RABBIT_PID:-}" "${PG_PID:-}" \
            "$DIR/chat-ias-json.lua"
    } >"$DIR/hold.env"
    for mode in $MODES; do lua_script "$mode" "$IAS_KEY" ias "" >/dev/null; done
    ias_log "holding (BENCH_HOLD=1): see $DIR/hold.env; Ctrl-C or SIGTERM to stop everything"
    while :; do sleep 3600 & wait $!; done
fi

# wrk's latency figures come with units (us, ms, s, m); print milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

# CPU time (user + system, clock ticks) of each "name:pid" group given, the
# pid and all its descendants (nginx's worker, PostgreSQL's backends), one
# "name ticks" line per group. CPU per request does not depend on how busy
# the machine was the way req/s does, so it is the figure to optimise.
cpu_snapshot() {
    awk -v groups="$*" '
        BEGIN { n = split(groups, g, " "); for (i = 1; i <= n; i++) { split(g[i], kv, ":"); if (kv[2] != "") root[kv[2]] = kv[1] } }
        { line = $0; sub(/^.*\) /, "", line); split(line, f, " ");
          pid = $1; pp[pid] = f[2]; t[pid] = f[12] + f[13] }
        END { for (p in t) { q = p; while (q != "" && q > 1) { if (q in root) { sum[root[q]] += t[p]; break } q = pp[q] } }
              for (i = 1; i <= n; i++) { split(g[i], kv, ":"); if (kv[2] != "") print kv[1], sum[kv[1]] + 0 } }' \
        < <(cat /proc/[0-9]*/stat 2>/dev/null) # processes come and go: cat skips them
}
cpu_groups() {
    case "$1" in
    mockllm) echo "mockllm:$MOCK_PID" ;;
    nginx) echo "nginx:$NGINX_PID mockllm:$MOCK_PID" ;;
    ias) [ -z "$ING_PID" ] || echo "ingress:$ING_PID router:$RTR_PID redis:${REDIS_PID:-} rabbitmq:${RABBIT_PID:-}" \
        "pdp:$PDP_PID users:$USERS_PID postgres:${PG_PID:-} mockllm:$MOCK_PID" ;;
    portkey) echo "portkey:$PK_PID mockllm:$MOCK_PID" ;;
    esac
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

RESULTS="$DIR/results.tsv"
CPU="$DIR/cpu.tsv"
printf 'target\tmode\tconns\tgroup\tus_per_request\n' >"$CPU"
printf 'target\tmode\tconns\trps\tp50\tp99\terrors\n' >"$RESULTS"
for mode in $MODES; do
    for c in $CONNS; do
        for t in "${TARGETS[@]}"; do
            IFS='|' read -r name base key hdrs <<<"$t"
            out="$DIR/wrk-$name-$mode-$c.txt"
            ias_log "$name $mode c=$c ${SECS}s"
            # No accounting consumer runs here: empty the usage queue before
            # each ias cell so the broker works as it does behind a consumer
            # that keeps up, not with a backlog of every earlier cell's events.
            if [ "$name" = ias ] && [ "$STACK_STARTED" = 1 ]; then
                stack rabbitmqctl purge_queue ias.usage >/dev/null 2>&1 || ias_log "warning: could not purge ias.usage"
            fi
            groups="$(cpu_groups "$name")"
            cpu_before="$(cpu_snapshot "$groups")"
            "${WRK_PIN[@]}" wrk -t1 -c"$c" -d"${SECS}s" --timeout 10s --latency \
                -s "$(lua_script "$mode" "$key" "$name" "$hdrs")" "$base/v1/chat/completions" >"$out" 2>&1 ||
                { cat "$out" >&2; ias_die "wrk failed against $name"; }
            cpu_after="$(cpu_snapshot "$groups")"
            nreq="$(awk '/requests in/ {print $1; exit}' "$out")"
            if [ -n "$groups" ] && [ "${nreq:-0}" -gt 0 ]; then
                printf '%s\n%s\n' "$cpu_before" "$cpu_after" | awk -v n="$nreq" -v us="$TICK_US" \
                    -v pre="$name	$mode	$c" '
                    { if ($1 in a) d[$1] = $2 - a[$1]; else { a[$1] = $2; o[++k] = $1 } }
                    END { for (i = 1; i <= k; i++) printf "%s\t%s\t%.1f\n", pre, o[i], d[o[i]] * us / n }' >>"$CPU"
            fi
            rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
            p50="$(awk '$1 == "50%" {print $2}' "$out")"
            p99="$(awk '$1 == "99%" {print $2}' "$out")"
            non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
            sockerr="$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")"
            [ -n "$rps" ] && [ -n "$p50" ] && [ -n "$p99" ] || { cat "$out" >&2; ias_die "could not parse $out"; }
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$c" "$rps" \
                "$(to_ms "$p50")" "$(to_ms "$p99")" "$((${non2xx:-0} + ${sockerr:-0}))" >>"$RESULTS"
        done
    done
done

# ---- memory: RSS after the load runs, then with NSTREAMS open streams each
RSS="$DIR/rss.tsv"
printf 'process\tbefore_kib\twith_kib\tstreams\n' >"$RSS"
if [ "$NSTREAMS" -gt 0 ] && [ -n "$SLOW_URL" ]; then
    if [ -n "$ING_PID" ]; then
        b_ing="$(rss_kib "$ING_PID")"
        b_rtr="$(rss_kib "$RTR_PID")"
        ias_log "ias: $NSTREAMS open streams (mock-slow, 1 token/s)"
        out="$(BENCH_KEY="$IAS_KEY" "${WRK_PIN[@]}" node bench/ias.mjs streams "$IAS_URL" "$NSTREAMS" mock-slow \
            "ingress:$ING_PID,router:$RTR_PID")" || ias_die "ias did not hold $NSTREAMS streams: $out"
        printf '%s\n' "$out" >"$DIR/streams-ias.json"
        n="$(printf '%s' "$out" | sed -n 's/.*"streams":\([0-9]*\).*/\1/p')"
        printf 'ias-ingress\t%s\t%s\t%s\n' "$b_ing" "$(printf '%s' "$out" | sed -n 's/.*"ingress":\([0-9]*\).*/\1/p')" "$n" >>"$RSS"
        printf 'ias-router\t%s\t%s\t%s\n' "$b_rtr" "$(printf '%s' "$out" | sed -n 's/.*"router":\([0-9]*\).*/\1/p')" "$n" >>"$RSS"
    fi
    if [ -n "$PK_PID" ]; then
        b_pk="$(rss_kib "$PK_PID")"
        ias_log "portkey: $NSTREAMS open streams"
        out="$("${WRK_PIN[@]}" node bench/ias.mjs streams "$PK_URL" "$NSTREAMS" mock-slow "portkey:$PK_PID" \
            "Authorization: Bearer bench-unused" "x-portkey-provider: openai" \
            "x-portkey-custom-host: $SLOW_URL/v1")" || ias_log "warning: Portkey did not hold $NSTREAMS streams: $out"
        printf '%s\n' "$out" >"$DIR/streams-portkey.json"
        n="$(printf '%s' "$out" | sed -n 's/.*"streams":\([0-9]*\).*/\1/p')"
        printf 'portkey\t%s\t%s\t%s\n' "$b_pk" "$(printf '%s' "$out" | sed -n 's/.*"portkey":\([0-9]*\).*/\1/p')" "$n" >>"$RSS"
    fi
fi

# ---- the markdown tables: absolute numbers and ratios to the nginx hop
cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)"
TABLE="$DIR/results.md"
{
    echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), ${cpu:-unknown CPU}, $(nproc) cores;"
    echo "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk --version 2>&1 | head -n 1 | awk '{print "wrk " $2}')${PK_VERSION:+, @portkey-ai/gateway $PK_VERSION on node $(node --version)},"
    echo "${SECS}s per cell, wrk ${WRK_PIN[*]:+on core $WRK_CPU}, servers ${SRV_PIN[*]:+on core $SERVER_CPU}, max_tokens $MAX_TOKENS,"
    if [ "$OWN_IAS" = 1 ]; then
        echo "ias: release build from $BIN_DIR, ingress and router with IAS_WORKERS=1, policy by $POLICY,"
        echo "ingress -> router over ${HOP%% (*},"
        stack_where=""
        [ "$PIN_STACK" != 1 ] || [ "${#SRV_PIN[@]}" = 0 ] || stack_where=" (Redis, RabbitMQ, PostgreSQL also on core $SERVER_CPU)"
        echo "API key auth, budget reserve/settle in Redis, usage events to RabbitMQ$stack_where,"
    fi
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '(none)')."
    echo
    echo '| target | mode | conns | req/s | p50 ms | p99 ms | added p50 ms | errors | req/s vs nginx | p50 vs nginx | p99 vs nginx | added p50 vs nginx |'
    echo '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
    awk -F'\t' '
        NR == 1 { next }
        {
            key = $2 "/" $3; row[NR] = $0
            if ($1 == "nginx") { nrps[key] = $4; np50[key] = $5; np99[key] = $6 }
            if ($1 == "mockllm") { mp50[key] = $5 }
        }
        function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "-" }
        END {
            for (i = 2; i <= NR; i++) {
                split(row[i], f, "\t"); key = f[2] "/" f[3];
                added = "-"; addr = "-";
                if (f[1] != "mockllm" && (key in mp50)) {
                    a = f[5] - mp50[key]; na = np50[key] - mp50[key];
                    added = sprintf("%.2f", a);
                    addr = (na > 0) ? sprintf("%.2f", a / na) : "-";
                }
                printf "| %s | %s | %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6],
                    added, f[7], ratio(f[4], nrps[key]), ratio(f[5], np50[key]), ratio(f[6], np99[key]), addr
            }
        }' "$RESULTS"
    if [ -n "$IAS_URL" ] && [ -n "$PK_URL" ]; then
        echo
        echo '| ias vs Portkey | conns | ias req/s | Portkey req/s | req/s ias/Portkey | p50 ias/Portkey | p99 ias/Portkey |'
        echo '|---|---:|---:|---:|---:|---:|---:|'
        awk -F'\t' '
            NR == 1 { next }
            $1 == "ias" { k = $2 "/" $3; order[++n] = k; m[k] = $2; c[k] = $3; ir[k] = $4; i5[k] = $5; i9[k] = $6 }
            $1 == "portkey" { k = $2 "/" $3; pr[k] = $4; p5[k] = $5; p9[k] = $6 }
            function ratio(a, b, d) { return (b > 0) ? sprintf(d, a / b) : "-" }
            END { for (j = 1; j <= n; j++) { k = order[j];
                printf "| %s | %s | %.0f | %.0f | %s | %s | %s |\n", m[k], c[k], ir[k], pr[k], ratio(ir[k], pr[k], "%.1f"), ratio(i5[k], p5[k], "%.2f"), ratio(i9[k], p9[k], "%.2f") } }' "$RESULTS"
    fi
    if [ "$(wc -l <"$CPU")" -gt 1 ]; then
        echo
        echo '| server CPU per request (µs, user + system) | mode | conns | total | by process |'
        echo '|---|---|---:|---:|---|'
        awk -F'\t' '
            NR == 1 { next }
            { k = $1 "|" $2 "|" $3; if (!(k in tot)) o[++n] = k; tot[k] += $5; by[k] = by[k] (by[k] == "" ? "" : ", ") $4 " " sprintf("%.0f", $5) }
            END { for (i = 1; i <= n; i++) { split(o[i], f, "|"); printf "| %s | %s | %s | %.0f | %s |\n", f[1], f[2], f[3], tot[o[i]], by[o[i]] } }' "$CPU"
    fi
    if [ "$(wc -l <"$RSS")" -gt 1 ]; then
        echo
        echo "| process | RSS MiB after the load runs | RSS MiB with open streams | open streams |"
        echo '|---|---:|---:|---:|'
        awk -F'\t' 'NR > 1 { printf "| %s | %.1f | %.1f | %s |\n", $1, $2 / 1024, $3 / 1024, $4 }' "$RSS"
    fi
    # The targets of the inference-path issue, checked against this run.
    if grep -q '^ias	' "$RESULTS"; then
        echo
        echo '| target (issue 4) | measured in this run | met |'
        echo '|---|---|---|'
        awk -F'\t' -v nstreams="$NSTREAMS" -v rssfile="$RSS" '
            NR == 1 { next }
            { k = $2 "/" $3; rps[$1, k] = $4; p50[$1, k] = $5; if ($1 == "ias") keys[++n] = k }
            function yes(b) { return b ? "yes" : "**no**" }
            END {
                worst = 1e9; all = 1; list = "";
                for (j = 1; j <= n; j++) { k = keys[j]; if (rps["nginx", k] > 0) { r = rps["ias", k] / rps["nginx", k];
                    list = list sprintf("%s%s %.2f", (list == "" ? "" : ", "), k, r); if (r < 0.5) all = 0 } }
                printf "| ias req/s >= 50 %% of the nginx hop (every cell) | %s | %s |\n", list, yes(all);
                for (j = 1; j <= n; j++) { k = keys[j]; split(k, kk, "/"); if (kk[2] != 16) continue;
                    ia = p50["ias", k] - p50["mockllm", k]; na = p50["nginx", k] - p50["mockllm", k];
                    if (na > 0) printf "| added p50 at 16 conns <= 2x the nginx hop (%s) | ias +%.2f ms, nginx +%.2f ms: %.1fx | %s |\n", kk[1], ia, na, ia / na, yes(ia <= 2 * na);
                    else printf "| added p50 at 16 conns <= 2x the nginx hop (%s) | ias +%.2f ms, nginx +%.2f ms (no positive floor) | %s |\n", kk[1], ia, na, yes(ia <= 0) }
                while ((getline line < rssfile) > 0) { split(line, f, "\t"); if (f[1] ~ /^ias-/)
                    printf "| %s RSS < 64 MiB with %s open streams | %.1f MiB (%s streams held) | %s |\n", f[1], nstreams, f[3] / 1024, f[4], yes(f[3] > 0 && f[3] < 65536 && f[4] == nstreams) }
                pall = 1; plist = ""; have = 0;
                for (j = 1; j <= n; j++) { k = keys[j]; if (rps["portkey", k] > 0) { have = 1; r = rps["ias", k] / rps["portkey", k];
                    plist = plist sprintf("%s%s %.1fx", (plist == "" ? "" : ", "), k, r); if (r < 10) pall = 0 } }
                if (have) printf "| ias req/s >= 10x Portkey (every cell) | %s | %s |\n", plist, yes(pall);
            }' "$RESULTS"
    fi
} >"$TABLE"

cat "$TABLE"
if [ "$WRITE" = 1 ]; then
    grep -q '<!-- results:start -->' "$README" && grep -q '<!-- results:end -->' "$README" ||
        printf '\n<!-- results:start -->\n<!-- results:end -->\n' >>"$README"
    awk -v table="$TABLE" '
        /<!-- results:start -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
        /<!-- results:end -->/ { skip = 0 }
        !skip { print }' "$README" >"$README.tmp"
    mv -f "$README.tmp" "$README"
    ias_log "results written to bench/README.md (raw wrk output in build/bench/)"
fi
