#!/usr/bin/env bash
# make run / make stop: the real local stack plus every ias service built from this tree.
#   scripts/run.sh start|stop|status
# Data and logs live under .run/ (see docs/operations/local-stack.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
run_dir=$root/.run
pid_dir=$run_dir/pids
log_dir=$run_dir/log
export IAS_STACK_DIR=$run_dir

# name:port pairs of the services started here, in start order.
SERVICES=("mockllm:${IAS_MOCKLLM_PORT:-8090}")

svc_pid() { cat "$pid_dir/$1.pid" 2>/dev/null || true; }
svc_alive() { local p; p=$(svc_pid "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

wait_http() {
    local url=$1 name=$2 deadline=$((SECONDS + 20))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            echo "error: $name did not answer $url within 20s; last log lines ($log_dir/$name.log):" >&2
            tail -n 20 "$log_dir/$name.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

start_service() {
    local name=$1 port=$2
    if svc_alive "$name"; then
        echo "  $name already running (pid $(svc_pid "$name"), port $port)"
        return 0
    fi
    mkdir -p "$pid_dir" "$log_dir"
    IAS_PORT=$port nohup "build/bin/ias-$name" >>"$log_dir/$name.log" 2>&1 &
    echo $! >"$pid_dir/$name.pid"
    wait_http "http://127.0.0.1:$port/ready" "$name"
    echo "  $name running (pid $(svc_pid "$name"), port $port, log .run/log/$name.log)"
}

stop_service() {
    local name=$1 pid
    pid=$(svc_pid "$name")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "  $name stopped"
    fi
    rm -f "$pid_dir/$name.pid"
}

write_demo_env() {
    set -a
    # shellcheck disable=SC1091
    . "$run_dir/stack.env"
    set +a
    umask 077
    cat >"$run_dir/demo.env" <<EOT
# Written by make run. Source it: set -a; . .run/demo.env; set +a
IAS_PG_DSN=$IAS_PG_DSN
IAS_REDIS_URL=$IAS_REDIS_URL
IAS_AMQP_URL=$IAS_AMQP_URL
IAS_MOCKLLM_URL=http://127.0.0.1:${IAS_MOCKLLM_PORT:-8090}/v1
EOT
}

case ${1:-start} in
start)
    bash scripts/deps.sh
    make -s -j"$(nproc)" all
    bash scripts/stack.sh up
    set -a
    # shellcheck disable=SC1091
    . "$run_dir/stack.env"
    set +a
    echo "migrating"
    IAS_MIGRATIONS_DIR=$root/migrations build/bin/ias-migrate up
    echo "services"
    for s in "${SERVICES[@]}"; do start_service "${s%%:*}" "${s##*:}"; done
    write_demo_env
    cat <<EOT

ias is running. Credentials and URLs: .run/demo.env; logs: .run/log/.
A first streamed completion from the mock model:
  curl -N http://127.0.0.1:${IAS_MOCKLLM_PORT:-8090}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"Hello"}]}'
Stop everything with: make stop
EOT
    ;;
stop)
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_service "${SERVICES[$i]%%:*}"; done
    bash scripts/stack.sh down
    ;;
status)
    for s in "${SERVICES[@]}"; do
        if svc_alive "${s%%:*}"; then echo "  ${s%%:*}: running (pid $(svc_pid "${s%%:*}"))"; else echo "  ${s%%:*}: stopped"; fi
    done
    bash scripts/stack.sh status
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
