#!/usr/bin/env bash
# pdp decision benchmark: 1,000 orgs x 20 rules (plus a 20-rule global policy)
# loaded into a fresh database, one release-build ias-pdp, wrk posting
# /internal/decide for random orgs. Reports decisions/s, client-side latency
# (HTTP included) and the server-side evaluation time (pdp_decide_seconds).
#
# Needs a running PostgreSQL (IAS_PG_DSN, e.g. from scripts/stack.sh) and wrk.
#   IAS_PG_DSN=... bash bench/pdp.sh          BENCH_SECONDS=10 BENCH_CONNS=16
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-16}
ORGS=${BENCH_ORGS:-1000}
RULES=${BENCH_RULES:-20}
: "${IAS_PG_DSN:?set IAS_PG_DSN (scripts/stack.sh up; . stack.env)}"
command -v wrk >/dev/null || { echo "wrk not found (scripts/deps.sh bench)"; exit 1; }
make -s BUILD="$B" "$B/bin/ias-pdp" "$B/bin/ias-migrate"

work=$(mktemp -d)
db="bench_pdp_$$"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    psql "$IAS_PG_DSN" -qAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
psql "$IAS_PG_DSN" -qAt -c "CREATE DATABASE $db" >/dev/null
dsn=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$IAS_PG_DSN" "$db")
IAS_PG_DSN="$dsn" IAS_MIGRATIONS_DIR=migrations "$B/bin/ias-migrate" up >/dev/null

# Rules that all miss for the benchmark request except the last allow, so every
# rule is evaluated: deny other models, other roles, CIDRs, time windows, tags.
psql "$dsn" -qAt -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET ias.org_id = '*';
INSERT INTO orgs (name) SELECT 'bench-' || g FROM generate_series(1, $ORGS) g;
INSERT INTO guardrail_profiles (scope, name, version, document, active)
VALUES ('global', 'pii', 1, '{"prompt":{"redact":["email"]}}', true);
CREATE FUNCTION pg_temp.rules(n int, scope text) RETURNS jsonb LANGUAGE sql AS \$\$
  SELECT jsonb_build_object('rules', jsonb_agg(r ORDER BY i)) FROM (
    SELECT i, CASE i % 5
      WHEN 0 THEN jsonb_build_object('id', scope || '-m' || i, 'effect', 'deny',
                  'match', jsonb_build_object('resource', jsonb_build_object('model', jsonb_build_array('blocked-' || i))))
      WHEN 1 THEN jsonb_build_object('id', scope || '-r' || i, 'effect', 'deny',
                  'match', jsonb_build_object('subject', jsonb_build_object('role', jsonb_build_array('role-' || i))))
      WHEN 2 THEN jsonb_build_object('id', scope || '-c' || i, 'effect', 'deny',
                  'match', jsonb_build_object('environment', jsonb_build_object('source_cidr', jsonb_build_array('192.0.2.' || i || '/32', '2001:db8::' || i || '/128'))))
      WHEN 3 THEN jsonb_build_object('id', scope || '-t' || i, 'effect', 'deny',
                  'match', jsonb_build_object('resource', jsonb_build_object('tags', jsonb_build_array('secret-' || i)),
                                              'environment', jsonb_build_object('time', jsonb_build_object('from', '00:00', 'to', '23:59'))))
      ELSE jsonb_build_object('id', scope || '-a' || i, 'effect', 'allow',
                  'match', jsonb_build_object('action', jsonb_build_array('inference'), 'resource', jsonb_build_object('model', jsonb_build_array('mock-gpt', 'm-' || i))),
                  'obligations', jsonb_build_object('guardrails', jsonb_build_array('pii')))
    END AS r FROM generate_series(0, n - 1) i) s
\$\$;
INSERT INTO policies (scope, org_id, version, document, active)
VALUES ('global', NULL, 1, pg_temp.rules($RULES, 'g'), true);
INSERT INTO policies (scope, org_id, version, document, active)
SELECT 'org', id, 1, pg_temp.rules($RULES, 'o'), true FROM orgs;
SQL
psql "$dsn" -qAt -c "SET ias.org_id = '*'; SELECT id FROM orgs" >"$work/orgs"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IAS_PORT=$port IAS_WORKERS=1 IAS_LOG_LEVEL=warn IAS_PG_DSN="$dsn" IAS_AMQP_URL= \
    IAS_JWT_SECRET=bench-secret-0123456789abcdef0123456789 \
    taskset -c 1 "$B/bin/ias-pdp" >"$work/pdp.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done

{
    echo 'local orgs = {'
    sed 's/.*/"&",/' "$work/orgs"
    echo '}'
    cat <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local org = orgs[(n % #orgs) + 1]
  local body = '{"subject":{"user_id":"u-' .. n .. '","org_id":"' .. org ..
    '","role":"org_user","allowed_models":["mock-gpt","llama-3"]},"action":"inference",' ..
    '"resource":{"model":"mock-gpt","tags":["public"]},' ..
    '"environment":{"source_ip":"198.51.100.7","region":null}}'
  return wrk.format(nil, "/internal/decide", nil, body)
end
LUA
} >"$work/decide.lua"

# sanity: one decision, allow with the obligation
curl -sf -X POST "http://127.0.0.1:$port/internal/decide" -H 'Content-Type: application/json' \
    -d "{\"subject\":{\"org_id\":\"$(head -1 "$work/orgs")\",\"role\":\"org_user\",\"allowed_models\":[\"mock-gpt\"]},\"action\":\"inference\",\"resource\":{\"model\":\"mock-gpt\"}}" |
    grep -q '"decision":"allow"' || { echo "sanity decision failed"; cat "$work/pdp.log"; exit 1; }

echo "pdp: $ORGS orgs x $RULES rules + $RULES global rules, 1 worker, wrk -c$CONNS ${SECS}s"
taskset -c 0 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$work/decide.lua" "http://127.0.0.1:$port" |
    tee "$work/wrk.txt" | grep -E "Requests/sec|50%|99%|Latency "
curl -s "http://127.0.0.1:$port/metrics" | grep '^pdp_decide_seconds' >"$work/metrics"
python3 - "$work/metrics" <<'PY'
import re, sys
b = []
for line in open(sys.argv[1]):
    m = re.match(r'pdp_decide_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
    if m: b.append((float('inf') if m[1] == '+Inf' else float(m[1]), int(m[2])))
total = b[-1][1]
for q in (0.5, 0.99, 0.999):
    le = next(le for le, c in b if c >= q * total)
    print(f"server-side evaluation p{q*100:g}: <= {le*1e6:.0f} us ({total} decisions)")
PY
