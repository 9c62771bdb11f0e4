#!/usr/bin/env bash
# Benchmark harness (`make bench`): wrk against ias-mockllm directly, through an
# nginx reverse-proxy hop (the floor for any proxy), and optionally through ias.
# Results go to bench/README.md between the results markers. Loopback only.
#
# Environment:
#   BENCH_SECONDS     [10]        duration of each wrk run
#   BENCH_CONNS       ["1 16 64"] connection counts
#   BENCH_MODES       ["json stream"]  non-streaming and streaming requests
#   BENCH_MAX_TOKENS  [16]        max_tokens in each request
#   BENCH_MOCK_BIN    [build/bin/ias-mockllm]
#   BENCH_IAS_URL     unset       e.g. http://127.0.0.1:8080: also bench ias
#   BENCH_IAS_KEY     unset       API key for BENCH_IAS_URL (its mock-gpt should
#                                 route to a mockllm with TTFT 0, unlimited tokens/s)
#   BENCH_WRITE       [1]         0: print the table, leave bench/README.md alone
#   BENCH_WRK_CPU     [0]         core for wrk; servers get BENCH_SERVER_CPU [1]
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
MOCK_BIN="${BENCH_MOCK_BIN:-build/bin/ias-mockllm}"
IAS_URL="${BENCH_IAS_URL:-}"
IAS_KEY="${BENCH_IAS_KEY:-}"
WRITE="${BENCH_WRITE:-1}"
WRK_CPU="${BENCH_WRK_CPU:-0}"
SERVER_CPU="${BENCH_SERVER_CPU:-1}"
DIR="$IAS_REPO_ROOT/build/bench"
README="$IAS_REPO_ROOT/bench/README.md"

[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -gt 0 ] || ias_die "BENCH_SECONDS must be a positive integer"
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
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        ias_stop_pid "$pid" TERM 10 || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {
    local url="$1" pid="$2" log="$3"
    local deadline=$((SECONDS + 20))
    until curl -sf -o /dev/null --max-time 1 "$url"; do
        ias_pid_alive "$pid" || { ias_tail_log "$log"; ias_die "server for $url exited"; }
        [ "$SECONDS" -lt "$deadline" ] || { ias_tail_log "$log"; ias_die "no answer from $url"; }
        sleep 0.1
    done
}

# ---- upstream: ias-mockllm, one worker, no artificial delay
MOCK_PORT="$(ias_free_port)" || ias_die "no free port"
MOCK_LOG="$DIR/mockllm.log"
IAS_BIND=127.0.0.1 IAS_PORT="$MOCK_PORT" IAS_WORKERS=1 IAS_MOCK_TTFT_MS=0 IAS_MOCK_TOKENS_PER_S=0 \
    IAS_MOCK_MAX_TOKENS_DEFAULT="$MAX_TOKENS" IAS_LOG_LEVEL="${IAS_LOG_LEVEL:-warn}" \
    "${SRV_PIN[@]}" "$MOCK_BIN" </dev/null >"$MOCK_LOG" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$MOCK_PORT/health" "$!" "$MOCK_LOG"

# ---- nginx hop in front of it
NGINX_PORT="$(ias_free_port)" || ias_die "no free port"
sed -e "s|@DIR@|$DIR|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@UPSTREAM_PORT@|$MOCK_PORT|g" \
    bench/nginx.conf.tmpl >"$DIR/nginx.conf"
: >"$DIR/nginx-error.log"
"$NGINX" -t -q -e "$DIR/nginx-error.log" -p "$DIR" -c "$DIR/nginx.conf" ||
    { ias_tail_log "$DIR/nginx-error.log"; ias_die "nginx rejected $DIR/nginx.conf"; }
"${SRV_PIN[@]}" "$NGINX" -e "$DIR/nginx-error.log" -p "$DIR" -c "$DIR/nginx.conf" \
    </dev/null >"$DIR/nginx-stdout.log" 2>&1 &
PIDS+=("$!")
wait_http "http://127.0.0.1:$NGINX_PORT/health" "$!" "$DIR/nginx-error.log"

# ---- request bodies and the wrk script
body() {
    local stream=false
    [ "$1" = stream ] && stream=true
    printf '{"model":"mock-gpt","messages":[{"role":"user","content":"Write one short sentence about benchmarks."}],"max_tokens":%s,"stream":%s}' \
        "$MAX_TOKENS" "$stream"
}
lua_script() {
    local mode="$1" key="$2" f="$DIR/chat-$1.lua"
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        [ -z "$key" ] || printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$key"
        printf "wrk.body = '%s'\n" "$(body "$mode")"
    } >"$f"
    printf '%s' "$f"
}

# One request per target and mode before measuring: a 200 with the right shape.
check_target() {
    local name="$1" base="$2" key="$3" mode out code
    for mode in $MODES; do
        local auth=()
        [ -z "$key" ] || auth=(-H "Authorization: Bearer $key")
        out="$DIR/check-$name-$mode.txt"
        code="$(curl -s -o "$out" -w '%{http_code}' --max-time 10 -X POST \
            -H 'Content-Type: application/json' "${auth[@]}" \
            --data "$(body "$mode")" "$base/v1/chat/completions")" || code=000
        [ "$code" = 200 ] || { head -c 500 "$out" >&2; ias_die "$name ($mode): HTTP $code from $base"; }
        if [ "$mode" = stream ]; then
            grep -q '^data: \[DONE\]' "$out" || ias_die "$name (stream): no 'data: [DONE]' in the response ($out)"
        else
            grep -q '"choices"' "$out" || ias_die "$name (json): no choices in the response ($out)"
        fi
    done
}

TARGETS=("mockllm|http://127.0.0.1:$MOCK_PORT|" "nginx|http://127.0.0.1:$NGINX_PORT|")
[ -z "$IAS_URL" ] || TARGETS+=("ias|$IAS_URL|$IAS_KEY")
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name base key <<<"$t"
    check_target "$name" "$base" "$key"
done

# wrk's latency figures come with units (us, ms, s, m); print milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

RESULTS="$DIR/results.tsv"
printf 'target\tmode\tconns\trps\tp50\tp99\terrors\n' >"$RESULTS"
for mode in $MODES; do
    for c in $CONNS; do
        for t in "${TARGETS[@]}"; do
            IFS='|' read -r name base key <<<"$t"
            out="$DIR/wrk-$name-$mode-$c.txt"
            ias_log "$name $mode c=$c ${SECS}s"
            "${WRK_PIN[@]}" wrk -t1 -c"$c" -d"${SECS}s" --timeout 10s --latency \
                -s "$(lua_script "$mode" "$key")" "$base/v1/chat/completions" >"$out" 2>&1 ||
                { cat "$out" >&2; ias_die "wrk failed against $name"; }
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

# ---- the markdown table: absolute numbers and ratios to the nginx hop
cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)"
TABLE="$DIR/results.md"
{
    echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), ${cpu:-unknown CPU}, $(nproc) cores;"
    echo "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk --version 2>&1 | head -n 1 | awk '{print "wrk " $2}'),"
    echo "${SECS}s per cell, wrk ${WRK_PIN[*]:+on core $WRK_CPU}, servers ${SRV_PIN[*]:+on core $SERVER_CPU}, max_tokens $MAX_TOKENS,"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '(none)')."
    echo
    echo '| target | mode | conns | req/s | p50 ms | p99 ms | errors | req/s vs nginx | p99 vs nginx |'
    echo '|---|---|---:|---:|---:|---:|---:|---:|---:|'
    awk -F'\t' '
        NR == 1 { next }
        { key = $2 "/" $3; row[NR] = $0; if ($1 == "nginx") { nrps[key] = $4; np99[key] = $6 } }
        END {
            for (i = 2; i <= NR; i++) {
                split(row[i], f, "\t"); key = f[2] "/" f[3];
                r = (nrps[key] > 0) ? sprintf("%.2f", f[4] / nrps[key]) : "-";
                p = (np99[key] > 0) ? sprintf("%.2f", f[6] / np99[key]) : "-";
                printf "| %s | %s | %s | %.0f | %.2f | %.2f | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], r, p
            }
        }' "$RESULTS"
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
