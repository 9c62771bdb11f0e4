#!/usr/bin/env bash
# Management API benchmark (issue 3): one release-build ias-users (2 workers)
# on a fresh database, wrk -t1 against
#   GET /health               baseline: the HTTP stack alone, no JWT, no SQL
#   POST /api/v1/keys         key creation (transaction + outbox row; the relay
#                             publishes each audit/config event to RabbitMQ)
#   GET /api/v1/keys          list keys (first page of 50) as the org admin
#   GET /api/v1/keys          own keys as an org user
#   GET /api/v1/orgs/{id}     get org as its org admin
# Target: reads >= 500 req/s per instance with p99 < 50 ms.
#
# Background rows (SQL): BENCH_ORGS (1,000) orgs x 10 users x 2 keys, so the
# tables are not toy-sized; the benchmark org's admin owns every key the
# creation run makes (thousands), so list keys pages through a big org.
#
# Self-contained: uses the stack in BENCH_STACK_DIR (default
# build/bench2-stack) if it is up, else starts one there and stops it at the
# end. Everything it starts it stops by PID. Raw output in build/bench/users/.
#   bench/users.sh            BENCH_SECONDS=10 BENCH_CONNS=8
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${BUILD:-build}
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-8}
ORGS=${BENCH_ORGS:-1000}
W=$B/bench/users
mkdir -p "$W"
export IAS_STACK_DIR=${BENCH_STACK_DIR:-$B/bench2-stack}
# Below the kernel's ephemeral range (32768-60999), like scripts/test.sh: a
# server must never find its port taken by some client socket's local end.
export IAS_PG_PORT=${IAS_PG_PORT:-27432} IAS_REDIS_PORT=${IAS_REDIS_PORT:-27379} IAS_AMQP_PORT=${IAS_AMQP_PORT:-27672}
JWT_SECRET=bench-secret-0123456789abcdef0123456789
for t in wrk psql curl python3 jq; do command -v $t >/dev/null || { echo "$t not found"; exit 1; }; done

pids=()
stack_started=0
db=bench_users
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    if [ -n "${IAS_PG_DSN:-}" ]; then psql "$IAS_PG_DSN" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; fi
    if [ "$stack_started" = 1 ]; then bash scripts/stack.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

make -s BUILD="$B" "$B/bin/ias-users" "$B/bin/ias-migrate"
if ! bash scripts/stack.sh status >/dev/null 2>&1; then
    bash scripts/stack.sh up
    stack_started=1
fi
set -a
# shellcheck disable=SC1091
. "$IAS_STACK_DIR/stack.env"
set +a

psql "$IAS_PG_DSN" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null 2>&1
dsn=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$IAS_PG_DSN" "$db")
IAS_PG_DSN="$dsn" IAS_MIGRATIONS_DIR=migrations "$B/bin/ias-migrate" up >/dev/null

psql "$dsn" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET ias.org_id = '*';
INSERT INTO orgs (name) SELECT 'bg-' || g FROM generate_series(1, $ORGS) g;
INSERT INTO users (org_id, email, password_hash, role_id)
SELECT o.id, o.name || '-u' || g || '@example.com', '!bench-no-login',
       (SELECT id FROM roles WHERE name = CASE WHEN g = 1 THEN 'org_admin' ELSE 'org_user' END)
FROM orgs o, generate_series(1, 10) g;
INSERT INTO api_keys (org_id, user_id, name, prefix, key_hash)
SELECT org_id, id, 'bg-' || g, 'bg' || lpad(row_number() OVER ()::text, 6, '0'),
       encode(sha256((id::text || g)::bytea), 'hex')
FROM users, generate_series(1, 2) g;
ANALYZE orgs, users, api_keys;
SQL

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IAS_PORT=$port IAS_BIND=127.0.0.1 IAS_WORKERS=2 IAS_LOG_LEVEL=warn IAS_PG_DSN="$dsn" \
    IAS_JWT_SECRET=$JWT_SECRET IAS_LOGIN_MAX_FAILURES_ADDR=100000 \
    "$B/bin/ias-users" >"$W/users.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
U=http://127.0.0.1:$port
api() { # method path token [body]
    curl -sf -X "$1" "$U$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${4:+-d "$4"}
}
login() { curl -sf -X POST "$U/api/v1/auth/login" -d "{\"email\":\"$1\",\"password\":\"$2\"}" | jq -r .access_token; }
PW='Bench-passw0rd-ok!'
curl -sf -X POST "$U/api/v1/bootstrap/super-admin" -d "{\"email\":\"root@example.com\",\"password\":\"$PW\"}" >/dev/null
ROOT_T=$(login root@example.com "$PW")
ORG=$(api POST /api/v1/orgs "$ROOT_T" '{"name":"bench-org"}' | jq -r .id)
api POST "/api/v1/orgs/$ORG/users" "$ROOT_T" "{\"email\":\"admin@bench.example\",\"password\":\"$PW\",\"role\":\"org_admin\"}" >/dev/null
api POST "/api/v1/orgs/$ORG/users" "$ROOT_T" "{\"email\":\"dev@bench.example\",\"password\":\"$PW\",\"role\":\"org_user\"}" >/dev/null
ADMIN_T=$(login admin@bench.example "$PW")
DEV_T=$(login dev@bench.example "$PW")
for i in $(seq 20); do api POST /api/v1/keys "$DEV_T" "{\"name\":\"dev-$i\"}" >/dev/null; done
# sanity: each read answers 200 with data
api GET /api/v1/keys "$ADMIN_T" | jq -e '.data | length > 0' >/dev/null
api GET "/api/v1/orgs/$ORG" "$ADMIN_T" | jq -e ".id == \"$ORG\"" >/dev/null

results=$W/results.md
: >"$results"
row() { echo "$*" | tee -a "$results"; }
wrk_row() { # label path token [post-body]
    local label=$1 path=$2 tok=$3 body=${4:-} out rps p50 p99 non2xx errs
    out=$W/wrk-$(echo "$label" | tr -c 'a-z0-9' '_').txt
    if [ -n "$body" ]; then
        BENCH_TOKEN=$tok BENCH_BODY=$body wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s bench/lua/post.lua "$U$path" >"$out" 2>&1
    else
        wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -H "Authorization: Bearer $tok" "$U$path" >"$out" 2>&1
    fi
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")
    p50=$(awk '$1=="50%" {print $2}' "$out")
    p99=$(awk '$1=="99%" {print $2}' "$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
    errs=$(awk '/Socket errors/ {s=0; for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$out")
    local shown=${path/$ORG/\{id\}} m=GET
    if [ -n "$body" ]; then m=POST; fi
    row "| $label | \`$m $shown\` | $rps | $p50 | $p99 | $((${non2xx:-0} + ${errs:-0})) |"
}

row "Run $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load $(cut -d' ' -f1-3 /proc/loadavg) at start; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
row "One ias-users, 2 workers; wrk -t1 -c$CONNS, ${SECS}s per row; $ORGS background orgs x 10 users x 2 keys."
row ""
row "| request | path | req/s | p50 | p99 | errors |"
row "|---|---|---:|---:|---:|---:|"
wrk_row "baseline /health" /health "$ADMIN_T"
wrk_row "create key (org admin)" /api/v1/keys "$ADMIN_T" '{"name":"bench"}'
nkeys=$(psql "$dsn" -qAt -c "SET ias.org_id = '*'; SELECT count(*) FROM api_keys WHERE org_id = '$ORG'" | tail -1)
# No ANALYZE here on purpose: the org's keys were all created after the last
# one, so the statistics still describe a ~20-key org (until autovacuum gets
# to it, perhaps during the row). The list must be fast either way.
stale=$(psql "$dsn" -qAt -c "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'api_keys'")
wrk_row "list keys (org admin, $nkeys keys in org)" /api/v1/keys "$ADMIN_T"
wrk_row "list own keys (org user, 20 keys)" /api/v1/keys "$DEV_T"
wrk_row "get org (org admin)" "/api/v1/orgs/$ORG" "$ADMIN_T"
# The relay publishes one audit event (and one config event) per created key.
sleep 2
pending=$(psql "$dsn" -qAt -c "SELECT count(*) FILTER (WHERE sent_at IS NULL), count(*) FROM outbox" 2>/dev/null | tr '|' ' ' || echo "? ?")
row ""
row "api_keys rows changed since its last ANALYZE when the org-admin list started: $stale."
row "Outbox after the run (unsent, total rows): $pending."
echo "results in $results"
