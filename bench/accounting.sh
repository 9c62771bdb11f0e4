#!/usr/bin/env bash
# Accounting benchmarks (issue 6):
#   ingest  - drain rate of a pre-filled ias.usage queue (events/s) against a
#             raw COPY into usage_events (the floor), then consumer lag while
#             events arrive at BENCH_RATE (2,000/s = 2,000 inference req/s);
#             events are published in packs of up to BENCH_PACK_MAX (256, the
#             router's IAS_EVENTS_PACK_MAX; 1 = one message per event), and
#             the CPU time per 1,000 events of ias-accounting, its PostgreSQL
#             backends and RabbitMQ is reported with the drain;
#   query   - analytics API p50/p99 over BENCH_USAGE_ROWS (10 M) usage events
#             of 1,000 orgs x 100 users, seeded with SQL (generate_series into
#             usage_events, then usage_rollups_hourly aggregated from them, and
#             the month totals and daily rollups from those, every day before
#             today summarised: the daily watermark at today).
#
#   bench/accounting.sh [ingest|query|all]        (default all)
#
# Self-contained: uses the stack in BENCH_STACK_DIR (default build/bench2-stack)
# if it is up, else starts one there (and stops it at the end); builds a
# release ias-accounting and bench/evpub.c (publisher through libcommon's
# ias_publisher). Everything it starts it stops by PID. Logs and raw wrk output
# in build/bench/accounting/. The seeded 10 M-row database (bench_usage) is
# kept and reused on the same day (BENCH_RESEED=1 forces a new seed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${BUILD:-build}
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
MODE=${1:-all}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-8}
EVENTS=${BENCH_EVENTS:-200000}
RATE=${BENCH_RATE:-2000}
LAG_SECS=${BENCH_LAG_SECONDS:-30}
PACK=${BENCH_PACK_MAX:-256}
ROWS=${BENCH_USAGE_ROWS:-10000000}
ORGS=${BENCH_ORGS:-1000}
USERS=${BENCH_USERS:-100}
W=$B/bench/accounting
mkdir -p "$W"
export IAS_STACK_DIR=${BENCH_STACK_DIR:-$B/bench2-stack}
export IAS_PG_PORT=${IAS_PG_PORT:-27432} IAS_REDIS_PORT=${IAS_REDIS_PORT:-27379} IAS_AMQP_PORT=${IAS_AMQP_PORT:-27672}
export IAS_JWT_SECRET=bench-secret-0123456789abcdef0123456789
for t in wrk psql curl python3; do command -v $t >/dev/null || { echo "$t not found"; exit 1; }; done

pids=()
stack_started=0
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    if [ "$stack_started" = 1 ]; then bash scripts/stack.sh down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
stop_pid() { kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; }

make -s BUILD="$B" "$B/bin/ias-accounting" "$B/bin/ias-migrate" "$B/lib/libcommon.a"
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

dsn_of() { python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$IAS_PG_DSN" "$1"; }
newdb() { # name -> fresh migrated database
    psql "$IAS_PG_DSN" -qAt -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
    IAS_PG_DSN="$(dsn_of "$1")" IAS_MIGRATIONS_DIR=migrations "$B/bin/ias-migrate" up >/dev/null
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
acct_pid=""
acct_port=""
start_acct() { # dsn log extra-env...
    local dsn=$1 log=$2
    shift 2
    acct_port=$(free_port)
    env IAS_PORT="$acct_port" IAS_BIND=127.0.0.1 IAS_WORKERS=2 IAS_LOG_LEVEL=info IAS_PG_DSN="$dsn" "$@" \
        "$B/bin/ias-accounting" >"$log" 2>&1 &
    acct_pid=$!
    pids+=("$acct_pid")
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$acct_port/ready" >/dev/null && return 0; sleep 0.1; done
    echo "ias-accounting not ready"; tail "$log"; exit 1
}
metric() { curl -s "http://127.0.0.1:$acct_port/metrics" | awk -v m="$1" '$1 == m && v == "" { v = $2 } END { print v }' || true; }
cpu_ticks() { # pid... -> utime + stime, summed
    local p s=0
    for p in "$@"; do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    echo "$s"
}
now_s() { date +%s.%N; }
results=$W/results.md
: >"$results"
row() { echo "$*" | tee -a "$results"; }

# IO stalls (PSI) matter as much as the load: a request that reads pages out
# of the page cache waits for the disk.
hoststate() { echo "load $(cut -d' ' -f1-3 /proc/loadavg)$(awk '/^some/ {sub("avg60=", "", $3); printf ", io pressure (PSI some avg60) %s %%", $3}' /proc/pressure/io 2>/dev/null)"; }
machine="$(uname -sr), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(hoststate) at start"
row "Run $(date -u '+%Y-%m-%d %H:%M UTC'), $machine; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
row ""

# ------------------------------------------------------------------ ingest
bench_ingest() {
    local db=bench_acct_ingest dsn t0 t1 n start ready done_at c0 c1 lagstart
    newdb $db
    dsn=$(dsn_of $db)
    bash scripts/stack.sh rabbitmqctl purge_queue ias.usage >/dev/null 2>&1 || true

    # Floor: COPY of the same number of rows into usage_events (no dedup, no
    # pricing, no rollups), one client, one transaction.
    python3 - "$EVENTS" >"$W/copy.csv" <<'PY'
import sys, uuid, random
n = int(sys.argv[1]); r = random.Random(1)
for i in range(n):
    o, u = r.randrange(1000), r.randrange(100)
    print(f"{uuid.uuid4()},2026-11-22 10:00:00+00,req_copy_{i},{o:08x}-0000-4000-8000-000000000000,"
          f"{o:08x}-0000-4000-8001-{u:012x},{o:08x}-0000-4000-8002-{u:012x},mock-gpt,mockllm-1,200,"
          f"{r.randrange(2000)},{r.randrange(500)},80,900,true,false")
PY
    psql "$dsn" -qAt -c "SELECT ias_ensure_usage_partitions('2026-11-01', 1)" >/dev/null
    t0=$(now_s)
    psql "$dsn" -qAt -v ON_ERROR_STOP=1 -c "\\copy usage_events(event_id,created_at,request_id,org_id,user_id,api_key_id,model,backend,status,prompt_tokens,completion_tokens,ttft_ms,duration_ms,stream,aborted) FROM '$W/copy.csv' CSV"
    t1=$(now_s)
    psql "$dsn" -qAt -c "TRUNCATE usage_events" >/dev/null
    copy_rate=$(python3 -c "print(round($EVENTS/($t1-$t0)))")

    # Drain: fill the queue with the consumer stopped (two publishers), then
    # start ias-accounting and time until every event is committed.
    echo "publishing $EVENTS usage events into ias.usage ..."
    rm -rf "$W/spool-a" "$W/spool-b"
    mkdir -p "$W/spool-a" "$W/spool-b"
    BENCH_PACK_MAX=$PACK BENCH_SPOOL=$W/spool-a "$W/evpub" usage $((EVENTS / 2)) 0 "$ORGS" "$USERS" 2>>"$W/evpub.log" &
    local p1=$!
    BENCH_PACK_MAX=$PACK BENCH_SPOOL=$W/spool-b "$W/evpub" usage $((EVENTS - EVENTS / 2)) 0 "$ORGS" "$USERS" 2>>"$W/evpub.log" &
    local p2=$!
    pids+=("$p1" "$p2")
    wait "$p1" "$p2"
    start=$(now_s)
    start_acct "$dsn" "$W/accounting-ingest.log" IAS_REDIS_URL="$IAS_REDIS_URL" IAS_AMQP_URL="$IAS_AMQP_URL"
    ready=$(now_s)
    # CPU of the drain: the consumer, the broker and (below) the consumer's
    # PostgreSQL backends, which connect with the first batch: their whole
    # lifetime is the drain.
    local backends beam pg1 b0 b1
    beam=$(cat "$IAS_STACK_DIR/rabbitmq/rabbitmq.pid" 2>/dev/null || true)
    c0=$(cpu_ticks "$acct_pid")
    # shellcheck disable=SC2086 # a pid or none
    b0=$(cpu_ticks $beam)
    local t10="" t90=""
    while :; do
        n=$(metric accounting_events_total)
        n=${n:-0}
        n=${n%.*}
        if [ -z "$t10" ] && [ "$n" -ge $((EVENTS / 10)) ]; then t10=$(now_s); fi
        if [ -z "$t90" ] && [ "$n" -ge $((EVENTS * 9 / 10)) ]; then t90=$(now_s); fi
        if [ "$n" -ge "$EVENTS" ]; then break; fi
        python3 -c "import sys; sys.exit(0 if $(now_s) - $start < 300 else 1)" || { echo "drain timeout at $n"; break; }
        sleep 0.2
    done
    done_at=$(now_s)
    c1=$(cpu_ticks "$acct_pid")
    backends=$(psql "$dsn" -qAt -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'ias-accounting-consumer'")
    # shellcheck disable=SC2086 # lists of pids, possibly empty
    pg1=$(cpu_ticks $backends) b1=$(cpu_ticks $beam)
    local stored sums
    stored=$(psql "$dsn" -qAt -c "SELECT count(*) FROM usage_events")
    sums=$(psql "$dsn" -qAt -c "SELECT (SELECT sum(prompt_tokens + completion_tokens) FROM usage_events) = (SELECT sum(prompt_tokens + completion_tokens) FROM usage_rollups_hourly)")
    drain_rate=$(python3 -c "print(round($EVENTS/($done_at-$ready)))")
    mid_rate=$(python3 -c "print(round($EVENTS*0.8/($t90-$t10)))")
    drain_cpu=$(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)/($done_at-$ready)*100))")
    per_k() { python3 -c "print(round(($2-$1)/$(getconf CLK_TCK)*1000*1000/$EVENTS, 1))"; }
    cpu_acct=$(per_k "$c0" "$c1")
    cpu_pg=$(per_k 0 "$pg1")
    cpu_beam=$(per_k "$b0" "$b1")

    # Lag: a steady RATE events/s for LAG_SECS into the running consumer.
    lagstart=$(psql "$dsn" -qAt -c "SELECT now()")
    local total=$((RATE * LAG_SECS)) maxlag=0 l
    c0=$(cpu_ticks "$acct_pid")
    t0=$(now_s)
    rm -rf "$W/spool-a"
    mkdir -p "$W/spool-a"
    BENCH_PACK_MAX=$PACK BENCH_SPOOL=$W/spool-a "$W/evpub" usage "$total" "$RATE" "$ORGS" "$USERS" 2>>"$W/evpub.log" >"$W/evpub-lag.txt" &
    p1=$!
    pids+=("$p1")
    sleep 2 # the gauge still shows the drain's last batch until the first new one
    while kill -0 "$p1" 2>/dev/null; do
        l=$(metric accounting_ingest_lag_ms)
        l=${l%.*}
        if [ "${l:-0}" -gt "$maxlag" ]; then maxlag=$l; fi
        sleep 0.5
    done
    wait "$p1"
    while [ "$(metric accounting_events_total | cut -d. -f1)" -lt $((EVENTS + total)) ]; do sleep 0.2; done
    t1=$(now_s)
    c1=$(cpu_ticks "$acct_pid")
    lag_cpu=$(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)/($t1-$t0)*100))")
    read -r lag50 lag99 lagmax < <(psql "$dsn" -qAt -F' ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)), round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)), round(max(ms)) FROM (SELECT extract(epoch FROM received_at - created_at) * 1000 AS ms FROM usage_events WHERE received_at > '$lagstart') s")
    local batches
    batches=$(curl -s "http://127.0.0.1:$acct_port/metrics" | awk '$1=="accounting_batch_events_sum"{s=$2} $1=="accounting_batch_events_count"{c=$2} END{if(c>0) printf "%.0f", s/c}')
    stop_pid "$acct_pid"
    achieved=$(sed -n 's/.*: \([0-9]*\) events\/s.*/\1/p' "$W/evpub-lag.txt")

    row "### Ingest"
    row ""
    row "| measurement | events/s | notes |"
    row "|---|---:|---|"
    row "| raw \`\\copy\` of $EVENTS rows into usage_events (floor) | $copy_rate | one client, one transaction, indexes only |"
    row "| ias-accounting draining $EVENTS queued events | $drain_rate | from /ready to the last commit; $stored rows stored, rollup sums equal: $sums; ~${drain_cpu}% of one core |"
    row "| same, steady state (10 % → 90 %) | $mid_rate | |"
    row ""
    local threads
    threads=$(sed -n 's/.*consuming [^ ]* (\([0-9]*\) threads.*/\1/p' "$W/accounting-ingest.log" | head -n 1)
    row "Events published in packs of up to $PACK; ias-accounting with ${threads:-?} consumer thread(s). CPU per 1,000 events during the drain: ias-accounting ${cpu_acct} ms, its PostgreSQL backends ${cpu_pg} ms, RabbitMQ ${cpu_beam} ms."
    row ""
    row "Lag at $RATE events/s for ${LAG_SECS}s ($total events, publisher achieved ${achieved:-?}/s; mean batch over the whole run ${batches:-?} events):"
    row "received_at − occurred_at p50 ${lag50} ms, p99 ${lag99} ms, max ${lagmax} ms; \`accounting_ingest_lag_ms\` max sampled ${maxlag} ms; ias-accounting ~${lag_cpu}% of one core."
    row ""
    psql "$IAS_PG_DSN" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    rm -f "$W/copy.csv"
}

# ------------------------------------------------------------------ queries
seed_usage() { # dsn
    local dsn=$1 chunk=$((ROWS / 10)) i lo hi
    psql "$dsn" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT ias_ensure_usage_partitions(((now() AT TIME ZONE 'UTC') - interval '40 days')::date, 3);
ALTER TABLE usage_events DROP CONSTRAINT usage_events_event_key;
DROP INDEX usage_events_org_time_idx, usage_events_org_user_cover_idx, usage_rollups_hourly_hour_idx,
    usage_rollups_daily_model_day_idx, usage_rollups_daily_user_key_day_idx;
ALTER TABLE usage_rollups_hourly DROP CONSTRAINT usage_rollups_hourly_key;
ALTER TABLE usage_rollups_daily_model DROP CONSTRAINT usage_rollups_daily_model_key;
ALTER TABLE usage_rollups_daily_user_key DROP CONSTRAINT usage_rollups_daily_user_key_key;
SQL
    for i in $(seq 0 9); do
        lo=$((i * chunk + 1))
        hi=$(((i + 1) * chunk))
        if [ "$i" = 9 ]; then hi=$ROWS; fi
        echo "  usage_events rows $lo..$hi ($(date -u +%T))"
        psql "$dsn" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET synchronous_commit = off;
INSERT INTO usage_events (event_id, created_at, received_at, request_id, org_id, user_id, api_key_id,
    model, backend, status, prompt_tokens, completion_tokens, input_rate_per_1k, output_rate_per_1k,
    cost, ttft_ms, duration_ms, stream, aborted)
SELECT gen_random_uuid(), ts, ts, 'req_seed_' || g,
       (lpad(to_hex(o), 8, '0') || '-0000-4000-8000-000000000000')::uuid,
       (lpad(to_hex(o), 8, '0') || '-0000-4000-8001-' || lpad(to_hex(u), 12, '0'))::uuid,
       (lpad(to_hex(o), 8, '0') || '-0000-4000-8002-' || lpad(to_hex(u), 12, '0'))::uuid,
       (ARRAY['mock-gpt', 'llama-3', 'mistral-7b', 'qwen-14b'])[1 + g % 4], 'mockllm-1',
       CASE WHEN g % 50 = 0 THEN 500 ELSE 200 END, pt, ct, 0.5, 1.5, (pt * 0.5 + ct * 1.5) / 1000,
       80, 900, g % 2 = 0, false
FROM (SELECT g, date_trunc('day', now()) - interval '28 days' + g * (28 * 86400.0 / $ROWS) * interval '1 second' AS ts,
             (h % $ORGS)::int AS o, ((h / $ORGS) % $USERS)::int AS u,
             (50 + (h / 100000) % 2000)::int AS pt, (10 + (h / 7) % 500)::int AS ct
      FROM (SELECT g, (g * 2654435761) % 4294967291 AS h FROM generate_series($lo::bigint, $hi) g) a) b;
SQL
    done
    echo "  rollups, indexes, vacuum ($(date -u +%T))"
    psql "$dsn" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET synchronous_commit = off;
SET work_mem = '256MB';
SET maintenance_work_mem = '512MB';
-- In hour order, as the consumer writes them (every org's rows of an hour
-- together): the heap order the hour BRIN index and the visibility-map checks
-- of index-only scans see in production.
INSERT INTO usage_rollups_hourly (org_id, hour, user_id, api_key_id, model, requests, errors,
    prompt_tokens, completion_tokens, cost)
SELECT org_id, date_trunc('hour', created_at, 'UTC'), user_id, api_key_id, model, count(*),
       count(*) FILTER (WHERE status >= 400 OR aborted), sum(prompt_tokens), sum(completion_tokens), sum(cost)
FROM usage_events GROUP BY 1, 2, 3, 4, 5 ORDER BY 2;
-- month totals as migrations/0010_usage_monthly_totals.up.sql backfills them
-- (the consumer keeps them; the drift check reads them)
TRUNCATE usage_month_totals;
INSERT INTO usage_month_totals (org_id, month, user_id, requests, errors, prompt_tokens,
                                completion_tokens, cost)
SELECT org_id, month, user_id, sum(requests), sum(errors), sum(prompt_tokens),
       sum(completion_tokens), sum(cost)
FROM (SELECT org_id, user_id, requests, errors, prompt_tokens, completion_tokens, cost,
             (date_trunc('month', hour, 'UTC') AT TIME ZONE 'UTC')::date AS month
      FROM usage_rollups_hourly) r
GROUP BY GROUPING SETS ((org_id, month), (org_id, month, user_id))
HAVING grouping(user_id) = 1 OR user_id IS NOT NULL;
-- daily rollups as migrations/0011_usage_rollups_daily.up.sql backfills them
-- (the consumer keeps them; the org-wide summaries and daily series read them)
INSERT INTO usage_rollups_daily_model (org_id, day, model, requests, errors, prompt_tokens,
                                       completion_tokens, cost)
SELECT org_id, (hour AT TIME ZONE 'UTC')::date, model, sum(requests), sum(errors),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
FROM usage_rollups_hourly GROUP BY 1, 2, 3 ORDER BY 2;
INSERT INTO usage_rollups_daily_user_key (org_id, day, user_id, api_key_id, requests, errors,
                                          prompt_tokens, completion_tokens, cost)
SELECT org_id, (hour AT TIME ZONE 'UTC')::date, user_id, api_key_id, sum(requests), sum(errors),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
FROM usage_rollups_hourly GROUP BY 1, 2, 3, 4 ORDER BY 2;
-- every day before today is summarised, as the daily job (services/accounting/daily.c)
-- leaves it: today's usage is read from the hourly rollups
UPDATE usage_rollups_daily_watermark SET day = (now() AT TIME ZONE 'UTC')::date;
-- the definitions of migrations/0004_usage.up.sql, 0009_accounting_rollup_key_cover.up.sql
-- and 0011_usage_rollups_daily.up.sql
ALTER TABLE usage_events ADD CONSTRAINT usage_events_event_key UNIQUE (event_id, created_at);
CREATE INDEX usage_events_org_time_idx ON usage_events (org_id, created_at, event_id);
CREATE INDEX usage_events_org_user_cover_idx ON usage_events (org_id, user_id, created_at, event_id)
    INCLUDE (received_at, request_id, api_key_id, model, backend, status, prompt_tokens,
             completion_tokens, cost, ttft_ms, duration_ms, stream, aborted);
ALTER TABLE usage_rollups_hourly ADD CONSTRAINT usage_rollups_hourly_key
    UNIQUE NULLS NOT DISTINCT (org_id, hour, user_id, api_key_id, model)
    INCLUDE (requests, errors, prompt_tokens, completion_tokens, cost);
CREATE INDEX usage_rollups_hourly_hour_idx ON usage_rollups_hourly USING brin (hour);
ALTER TABLE usage_rollups_daily_model ADD CONSTRAINT usage_rollups_daily_model_key
    PRIMARY KEY (org_id, day, model) INCLUDE (requests, errors, prompt_tokens, completion_tokens, cost);
CREATE INDEX usage_rollups_daily_model_day_idx ON usage_rollups_daily_model USING brin (day);
ALTER TABLE usage_rollups_daily_user_key ADD CONSTRAINT usage_rollups_daily_user_key_key
    UNIQUE NULLS NOT DISTINCT (org_id, day, user_id, api_key_id)
    INCLUDE (requests, errors, prompt_tokens, completion_tokens, cost);
CREATE INDEX usage_rollups_daily_user_key_day_idx ON usage_rollups_daily_user_key USING brin (day);
SQL
    psql "$dsn" -qAt -v ON_ERROR_STOP=1 -c "VACUUM ANALYZE usage_events" -c "VACUUM ANALYZE usage_rollups_hourly" \
        -c "VACUUM ANALYZE usage_rollups_daily_model" -c "VACUUM ANALYZE usage_rollups_daily_user_key" >/dev/null
}

wrk_row() { # label path
    local label=$1 path=$2 out rps p50 p99 non2xx
    out=$W/wrk-$(echo "$label" | tr -c 'a-z0-9' '_').txt
    BENCH_TOKENS=$W/tokens BENCH_PATH=$path wrk -t1 -c"$CONNS" -d"${SECS}s" --latency \
        -s bench/lua/tokens.lua "http://127.0.0.1:$acct_port" >"$out" 2>&1
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$out")
    p50=$(awk '$1=="50%" {print $2}' "$out")
    p99=$(awk '$1=="99%" {print $2}' "$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
    errs=$(awk '/Socket errors/ {s=0; for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) s+=$i; print s}' "$out")
    row "| $label | \`${path}\` | $rps | $p50 | $p99 | $(( ${non2xx:-0} + ${errs:-0} )) |"
}

bench_query() {
    local db=bench_usage dsn marker have
    dsn=$(dsn_of $db)
    marker="ias bench seed: $ROWS rows, $ORGS orgs x $USERS users, $(date -u +%F)"
    have=$(psql "$IAS_PG_DSN" -qAt -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$db'")
    if [ "${BENCH_RESEED:-0}" = 1 ] || [ "$have" != "$marker" ]; then
        echo "seeding $ROWS usage events ($ORGS orgs x $USERS users, last 28 days) into $db ..."
        local s0 s1
        s0=$(now_s)
        newdb $db
        seed_usage "$dsn"
        psql "$IAS_PG_DSN" -qAt -c "COMMENT ON DATABASE $db IS '$marker'" >/dev/null
        s1=$(now_s)
        seed_secs="$(python3 -c "print(round($s1-$s0))") s"
    else
        seed_secs="reused from an earlier run today"
    fi
    local nev nroll nmodel nuk size
    read -r nev nroll nmodel nuk size < <(psql "$dsn" -qAt -F' ' -c "SELECT (SELECT count(*) FROM usage_events), (SELECT count(*) FROM usage_rollups_hourly), (SELECT count(*) FROM usage_rollups_daily_model), (SELECT count(*) FROM usage_rollups_daily_user_key), pg_size_pretty(pg_database_size(current_database()))")

    # One org-admin token per org (minted with the service's secret); the
    # user in each line is one of that org's users.
    python3 - "$ORGS" "$USERS" <<'PY' | python3 bench/lua/jwt.py >"$W/tokens"
import sys, random
orgs, users = int(sys.argv[1]), int(sys.argv[2]); r = random.Random(7)
for o in range(orgs):
    u = r.randrange(users)
    print(f"{o:08x}-0000-4000-8000-000000000000 {o:08x}-0000-4000-8001-{u:012x} org_admin")
PY
    local admin
    admin=$(echo "- 00000000-0000-4000-8fff-000000000001 system_admin" | python3 bench/lua/jwt.py | cut -d' ' -f3)

    start_acct "$dsn" "$W/accounting-query.log" IAS_REDIS_URL="$IAS_REDIS_URL" IAS_AMQP_URL="$IAS_AMQP_URL" IAS_CONSUME=false
    # The first budget check rebuilds every counter of the month from the
    # rollups; let it finish so it does not run under the measurement.
    for _ in $(seq 600); do grep -q 'budget counters rebuilt\|budget drift check' "$W/accounting-query.log" && break; sleep 0.1; done
    local o1 t1
    read -r o1 _ t1 <"$W/tokens"
    curl -sf -H "Authorization: Bearer $t1" "http://127.0.0.1:$acct_port/api/v1/usage/summary?org_id=$o1&group_by=model" |
        grep -q '"requests"' || { echo "sanity query failed"; tail "$W/accounting-query.log"; exit 1; }

    row "### Usage queries"
    row ""
    row "$nev usage_events rows, $nroll usage_rollups_hourly rows, $nmodel usage_rollups_daily_model and $nuk usage_rollups_daily_user_key rows ($ORGS orgs x $USERS users, last 28 days; database $size; seeding: ${seed_secs});"
    row "one ias-accounting (2 workers, consumer off), wrk -t1 -c$CONNS ${SECS}s per row, a random org per request, org-admin token, default range (last 30 days)."
    row ""
    row "| query | path | req/s | p50 | p99 | errors |"
    row "|---|---|---:|---:|---:|---:|"
    wrk_row "baseline /health" "/health"
    wrk_row "org summary by model" "/api/v1/usage/summary?org_id={org}&group_by=model"
    wrk_row "org summary by user" "/api/v1/usage/summary?org_id={org}&group_by=user"
    wrk_row "user summary by model" "/api/v1/usage/summary?org_id={org}&user_id={user}&group_by=model"
    wrk_row "org daily series by model" "/api/v1/usage/timeseries?org_id={org}&interval=day&group_by=model"
    wrk_row "org events, newest 100" "/api/v1/usage/events?org_id={org}&limit=100"
    wrk_row "user events, newest 100" "/api/v1/usage/events?org_id={org}&user_id={user}&limit=100"
    local i ts=()
    for i in 1 2 3; do
        ts+=("$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $admin" "http://127.0.0.1:$acct_port/api/v1/usage/summary?group_by=model")")
    done
    row ""
    row "Host at the end of the rows: $(hoststate)."
    row "System-wide summary by model (system admin, every org's daily rollups of 30 days), 3 sequential requests: ${ts[*]} s."
    row ""
    stop_pid "$acct_pid"
}

case "$MODE" in
ingest) bench_ingest ;;
query) bench_query ;;
all) bench_ingest; bench_query ;;
*) echo "usage: $0 [ingest|query|all]"; exit 2 ;;
esac
echo "results in $results"
