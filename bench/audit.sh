#!/usr/bin/env bash
# Audit append benchmark (issue 6): BENCH_AUDIT_EVENTS (20,000)
# audit.recorded.v1 events are published into ias.audit with the consumer
# stopped (bench/evpub.c, through libcommon's ias_publisher), then one
# release-build ias-audit is started and timed until every event is in the
# hash-chained ledger (appends/s). Baseline in the same run: pgbench, one
# client, running the same transaction shape (lock the head row, look up the
# event id, insert a ledger row with the same indexes, move the head, commit)
# on scratch copies of the tables: the most a one-transaction-per-event design
# can get from this PostgreSQL. Finally GET /api/v1/audit/verify walks the
# whole chain (timed).
#
# Self-contained: uses the stack in BENCH_STACK_DIR (default
# build/bench2-stack) if it is up, else starts one there and stops it at the
# end. Everything it starts it stops by PID. Raw output in build/bench/audit/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${BUILD:-build}
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
EVENTS=${BENCH_AUDIT_EVENTS:-20000}
SECS=${BENCH_SECONDS:-10}
W=$B/bench/audit
mkdir -p "$W"
export IAS_STACK_DIR=${BENCH_STACK_DIR:-$B/bench2-stack}
# Below the kernel's ephemeral range, the same stack as bench/users.sh.
export IAS_PG_PORT=${IAS_PG_PORT:-27432} IAS_REDIS_PORT=${IAS_REDIS_PORT:-27379} IAS_AMQP_PORT=${IAS_AMQP_PORT:-27672}
export IAS_JWT_SECRET=bench-secret-0123456789abcdef0123456789
for t in psql pgbench curl python3 openssl jq; do command -v $t >/dev/null || { echo "$t not found"; exit 1; }; done

pids=()
stack_started=0
db=bench_audit
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    if [ -n "${IAS_PG_DSN:-}" ]; then psql "$IAS_PG_DSN" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; fi
    if [ "$stack_started" = 1 ]; then bash scripts/stack.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
now_s() { date +%s.%N; }

make -s BUILD="$B" "$B/bin/ias-audit" "$B/bin/ias-migrate" "$B/lib/libcommon.a"
# shellcheck disable=SC2046 # pkg-config output is a list of flags
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Ilibcommon/include -o "$W/evpub" bench/evpub.c \
    "$B/lib/libcommon.a" $(pkg-config --libs libevent libevent_pthreads hiredis librabbitmq libpq libcjson libjwt libcrypt libcrypto) -lpthread -lm
if ! bash scripts/stack.sh status >/dev/null 2>&1; then
    bash scripts/stack.sh up
    stack_started=1
fi
set -a
. "$IAS_STACK_DIR/stack.env"
set +a

psql "$IAS_PG_DSN" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null 2>&1
dsn=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$IAS_PG_DSN" "$db")
IAS_PG_DSN="$dsn" IAS_MIGRATIONS_DIR=migrations "$B/bin/ias-migrate" up >/dev/null
bash scripts/stack.sh rabbitmqctl purge_queue ias.audit >/dev/null 2>&1 || true

# ---- baseline: the append transaction in pgbench, one client
psql "$dsn" -qAt -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE bench_ledger (LIKE audit_ledger INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE TABLE bench_head (id boolean PRIMARY KEY, last_seq bigint NOT NULL, last_hash char(64) NOT NULL);
INSERT INTO bench_head VALUES (true, 0, repeat('0', 64));
SQL
cat >"$W/append.sql" <<'SQL'
BEGIN;
SELECT last_seq, last_hash, now() FROM bench_head WHERE id FOR UPDATE;
SELECT 1 FROM bench_ledger WHERE event_id = '00000000-0000-4000-8000-000000000000';
INSERT INTO bench_ledger (seq, event_id, occurred_at, created_at, service, org_id, actor_type, actor_id,
    action, resource_type, resource_id, request_id, outcome, details, prev_hash, hash)
SELECT last_seq + 1, gen_random_uuid(), now(), now(), 'bench', '00000001-0000-4000-8000-000000000000',
    'user', '00000001-0000-4000-8001-000000000001', 'api_key_created', 'api_key', gen_random_uuid()::text,
    'req_bench', 'success', '{"name":"bench","prefix":"ab12cd34"}', last_hash,
    encode(sha256((last_hash || (last_seq + 1))::bytea), 'hex')
FROM bench_head WHERE id;
UPDATE bench_head SET last_seq = last_seq + 1,
    last_hash = encode(sha256((last_hash || (last_seq + 1))::bytea), 'hex') WHERE id;
END;
SQL
pgbench -n -c1 -T"$SECS" -f "$W/append.sql" "$dsn" >"$W/pgbench.txt" 2>&1
base_tps=$(awk '/^tps/ {printf "%.0f", $3}' "$W/pgbench.txt")
base_lat=$(awk '/^latency average/ {print $4}' "$W/pgbench.txt")

# ---- fill the queue with the consumer stopped, then time the drain
rm -rf "$W/spool"
mkdir -p "$W/spool"
BENCH_SPOOL=$W/spool "$W/evpub" audit "$EVENTS" 0 1000 100 2>>"$W/evpub.log" | tee "$W/evpub.txt"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IAS_PORT=$port IAS_BIND=127.0.0.1 IAS_WORKERS=2 IAS_LOG_LEVEL=warn IAS_PG_DSN="$dsn" \
    IAS_AUDIT_SIGNING_KEY="$(openssl rand -base64 32)" \
    "$B/bin/ias-audit" >"$W/audit.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m && v == "" { v = $2 } END { print v }' || true; }
t0=$(now_s)
c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
while :; do
    n=$(metric audit_entries_appended_total)
    n=${n%.*}
    if [ "${n:-0}" -ge "$EVENTS" ]; then break; fi
    if python3 -c "import sys; sys.exit(0 if $(now_s) - $t0 > 280 else 1)"; then echo "drain timeout at $n"; break; fi
    sleep 0.2
done
t1=$(now_s)
c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
rate=$(python3 -c "print(round(${n:-0}/($t1-$t0)))")
cpu=$(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)/($t1-$t0)*100))")
admin=$(echo "- 00000000-0000-4000-8fff-000000000001 system_admin" | python3 bench/lua/jwt.py | cut -d' ' -f3)
v0=$(now_s)
verify=$(curl -s -H "Authorization: Bearer $admin" "http://127.0.0.1:$port/api/v1/audit/verify")
v1=$(now_s)
vok=$(echo "$verify" | jq -r '"ok=\(.ok), \(.entries_checked) entries, \(.checkpoints_checked) checkpoints"')
vsecs=$(python3 -c "print(round($v1-$v0, 2))")
cps=$(metric audit_checkpoints_total)

results=$W/results.md
: >"$results"
row() { echo "$*" | tee -a "$results"; }
row "Run $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load $(cut -d' ' -f1-3 /proc/loadavg) at end; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
row ""
row "| measurement | appends/s | notes |"
row "|---|---:|---|"
row "| pgbench, same transaction shape, 1 client, ${SECS}s (floor for one tx per event) | $base_tps | average latency $base_lat ms per transaction (synchronous_commit on) |"
row "| ias-audit draining $EVENTS queued events | $rate | $n entries appended, ${cpu:-?}% of one core, ${cps:-0} checkpoints signed on the way |"
row ""
row "\`GET /api/v1/audit/verify\` over the whole chain: $vok in ${vsecs}s."
echo "results in $results"
