#!/usr/bin/env bash
# make run / make stop: the real local stack plus every ias service built from this
# tree, bootstrapped with demo data through the CLI.
#   scripts/run.sh start|stop|status
# Data and logs live under .run/ (see docs/operations/local-stack.md). Running
# start twice is fine: what runs is left alone and what exists is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
run_dir=$root/.run
pid_dir=$run_dir/pids
log_dir=$run_dir/log
export IAS_STACK_DIR=$run_dir

# name:port in start order (model server and data owners first, the front door last).
SERVICES=(
    "mockllm:${IAS_MOCKLLM_PORT:-8090}"
    "users:8085"
    "pdp:8082"
    "accounting:8083"
    "audit:8084"
    "router:8081"
    "ingress:8080"
)
ADMIN_EMAIL=admin@demo.local
ORG_ADMIN_EMAIL=lead@demo.local
ORG_USER_EMAIL=dev@demo.local

svc_pid() { cat "$pid_dir/$1.pid" 2>/dev/null || true; }
svc_alive() { local p; p=$(svc_pid "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

wait_http() {
    local url=$1 name=$2 deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ] || ! svc_alive "$name"; then
            echo "error: $name did not answer $url; last log lines ($log_dir/$name.log):" >&2
            tail -n 20 "$log_dir/$name.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

# Secrets are generated once and kept (mode 600): restarts keep tokens and
# audit checkpoints verifiable.
ensure_secrets() {
    local f=$run_dir/secrets.env
    if [ ! -s "$f" ]; then
        umask 077
        cat >"$f" <<EOT
IAS_JWT_SECRET=$(openssl rand -hex 32)
IAS_INTERNAL_TOKEN=$(openssl rand -hex 24)
IAS_AUDIT_SIGNING_KEY=$(openssl rand -base64 32)
IAS_ADMIN_PASSWORD=Demo-$(openssl rand -hex 6)-Aa1!
IAS_ORG_ADMIN_PASSWORD=Lead-$(openssl rand -hex 6)-Aa1!
IAS_ORG_USER_PASSWORD=Dev-$(openssl rand -hex 6)-Aa1!
EOT
    fi
    set -a
    # shellcheck disable=SC1090
    . "$f"
    set +a
}

start_service() {
    local name=$1 port=$2
    if [ ! -x "build/bin/ias-$name" ]; then
        echo "  $name: no binary (build/bin/ias-$name), skipped"
        return 0
    fi
    if svc_alive "$name"; then
        echo "  $name already running (pid $(svc_pid "$name"), port $port)"
        return 0
    fi
    mkdir -p "$pid_dir" "$log_dir" "$run_dir/spool/$name"
    IAS_PORT=$port IAS_SPOOL_DIR=$run_dir/spool/$name \
        nohup "build/bin/ias-$name" >>"$log_dir/$name.log" 2>&1 &
    echo $! >"$pid_dir/$name.pid"
    wait_http "http://127.0.0.1:$port/ready" "$name"
    echo "  $name running (pid $(svc_pid "$name"), port $port, log .run/log/$name.log)"
}

stop_service() {
    local name=$1 pid
    pid=$(svc_pid "$name")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "  $name stopped"
    fi
    rm -f "$pid_dir/$name.pid"
}

# ias-admin as one of the demo identities; each has its own credentials dir.
admin_as() {
    local who=$1
    shift
    IAS_CONFIG_DIR=$run_dir/cli/$who IAS_BASE_URL=http://127.0.0.1:8080 build/bin/ias-admin "$@"
}

# Runs a CLI write that may already have been done by an earlier `make run`.
idempotent() {
    local out
    if out=$("$@" 2>&1); then
        return 0
    fi
    if grep -q 'HTTP 409' <<<"$out"; then
        return 0
    fi
    echo "$out" >&2
    return 1
}

bootstrap_demo() {
    echo "demo data"
    idempotent admin_as admin bootstrap create-super-admin --email "$ADMIN_EMAIL" \
        --password-stdin <<<"$IAS_ADMIN_PASSWORD"
    admin_as admin login --email "$ADMIN_EMAIL" --password-stdin <<<"$IAS_ADMIN_PASSWORD" >/dev/null
    idempotent admin_as admin orgs create demo-team --display-name "Demo team"
    admin_as admin budgets set demo-team --monthly-tokens 1000000 >/dev/null
    idempotent admin_as admin models add mock-gpt --context-length 8192 \
        --backend "http://127.0.0.1:${IAS_MOCKLLM_PORT:-8090}" --input-rate 0.5 --output-rate 1.5
    admin_as admin orgs models demo-team --set mock-gpt >/dev/null
    idempotent admin_as admin users invite --org demo-team --email "$ORG_ADMIN_EMAIL" \
        --role org_admin --password-stdin <<<"$IAS_ORG_ADMIN_PASSWORD"
    idempotent admin_as admin users invite --org demo-team --email "$ORG_USER_EMAIL" \
        --role org_user --password-stdin <<<"$IAS_ORG_USER_PASSWORD"
    admin_as user login --email "$ORG_USER_EMAIL" --password-stdin <<<"$IAS_ORG_USER_PASSWORD" >/dev/null

    # Keep the key of an earlier run while it still works; otherwise make a new one.
    local key=""
    if [ -f "$run_dir/demo.env" ]; then
        key=$(sed -n 's/^IAS_API_KEY=//p' "$run_dir/demo.env")
    fi
    if [ -z "$key" ] || ! curl -fsS -o /dev/null -H "Authorization: Bearer $key" \
        http://127.0.0.1:8080/v1/models; then
        key=$(admin_as user keys create --name demo -o json 2>/dev/null |
            sed -n 's/.*"key"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
        [ -n "$key" ] || { echo "error: could not create the demo API key" >&2; return 1; }
    fi
    umask 077
    cat >"$run_dir/demo.env" <<EOT
# Written by make run. Use it with: set -a; . .run/demo.env; set +a
# ias-admin reads IAS_BASE_URL; OpenAI SDKs read OPENAI_BASE_URL and OPENAI_API_KEY.
IAS_BASE_URL=http://127.0.0.1:8080
IAS_API_KEY=$key
IAS_ADMIN_EMAIL=$ADMIN_EMAIL
IAS_ADMIN_PASSWORD=$IAS_ADMIN_PASSWORD
IAS_ORG_ADMIN_EMAIL=$ORG_ADMIN_EMAIL
IAS_ORG_ADMIN_PASSWORD=$IAS_ORG_ADMIN_PASSWORD
IAS_ORG_USER_EMAIL=$ORG_USER_EMAIL
IAS_ORG_USER_PASSWORD=$IAS_ORG_USER_PASSWORD
OPENAI_BASE_URL=http://127.0.0.1:8080/v1
OPENAI_API_KEY=$key
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
    ensure_secrets
    export IAS_USERS_URL=http://127.0.0.1:8085 IAS_ROUTER_URL=http://127.0.0.1:8081 \
        IAS_PDP_URL=http://127.0.0.1:8082 IAS_ACCOUNTING_URL=http://127.0.0.1:8083 \
        IAS_AUDIT_URL=http://127.0.0.1:8084
    echo "migrating"
    IAS_MIGRATIONS_DIR=$root/migrations build/bin/ias-migrate up
    echo "services"
    for s in "${SERVICES[@]}"; do start_service "${s%%:*}" "${s##*:}"; done
    bootstrap_demo
    cat <<'EOT'

ias is running: http://127.0.0.1:8080 (OpenAI API under /v1, management API under /api/v1).
Credentials: .run/demo.env   Logs: .run/log/   Stop: make stop

A first request and a first streamed completion:
  set -a; . .run/demo.env; set +a
  curl -s $OPENAI_BASE_URL/models -H "Authorization: Bearer $IAS_API_KEY"
  curl -N $OPENAI_BASE_URL/chat/completions -H "Authorization: Bearer $IAS_API_KEY" \
    -H 'Content-Type: application/json' \
    -d '{"model":"mock-gpt","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"Hello"}]}'
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
