#!/usr/bin/env bash
# make test: everything a clean clone needs, from packages to end-to-end.
#   scripts/test.sh [all|unit|fuzz|integration|e2e|contract]
# Unit and integration tests run the ASan+UBSan build. Integration and e2e tests
# use their own stack under .run/test on ports that do not clash with `make run`.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-all}
jobs=$(nproc 2>/dev/null || echo 2)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export IAS_REPO_ROOT=$root
# BUILD (as for make) selects the output directory; make reads it from the environment.
export BUILD=${BUILD:-build}
case $BUILD in /*) out=$BUILD ;; *) out=$root/$BUILD ;; esac
export IAS_BIN_DIR=$out/asan/bin

failed=()
passed=0
note() { printf '\n== %s\n' "$*"; }

# Runs one test command with a deadline; output goes to $BUILD/test-logs/<name>.log
# and is shown only when it fails (or always with VERBOSE=1).
run_one() {
    local name=$1 limit=$2
    shift 2
    local log=$out/test-logs/$name.log
    mkdir -p "$(dirname "$log")"
    local t0=$SECONDS
    if timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        printf '  ok    %-48s %3ss\n' "$name" $((SECONDS - t0))
        [ "${VERBOSE:-0}" = 1 ] && cat "$log"
    else
        local rc=$?
        failed+=("$name")
        printf '  FAIL  %-48s %3ss (exit %s, log %s)\n' "$name" $((SECONDS - t0)) "$rc" "$log"
        tail -n 60 "$log" | sed 's/^/        /'
    fi
}

build() {
    note "build (release + sanitizer)"
    make -s -j"$jobs" all asan || { echo "build failed"; exit 1; }
}

unit() {
    note "unit tests (ASan+UBSan)"
    make -s -j"$jobs" tests >/dev/null || { echo "build failed"; exit 1; }
    for t in "$out"/asan/tests/unit/test_*; do
        [ -x "$t" ] || { failed+=("unit: no test binaries in $out/asan/tests/unit"); continue; }
        run_one "unit/$(basename "$t")" 300 "$t"
    done
}

fuzz() {
    note "fuzz targets over their seed corpora"
    run_one "fuzz/smoke" 900 bash scripts/fuzz.sh smoke
}

contract() {
    note "contract checks"
    for t in tests/contract/*.sh; do
        [ -f "$t" ] || continue
        run_one "contract/$(basename "$t" .sh)" 300 bash "$t"
    done
}

stack_up() {
    # Below the kernel's ephemeral range (32768-60999): a restarted server must
    # never find its port taken by some client socket's local end.
    export IAS_STACK_DIR=$root/.run/test
    export IAS_PG_PORT=${IAS_TEST_PG_PORT:-25442}
    export IAS_REDIS_PORT=${IAS_TEST_REDIS_PORT:-26389}
    export IAS_AMQP_PORT=${IAS_TEST_AMQP_PORT:-25682}
    export IAS_STACK_CTL="bash $root/scripts/stack.sh"
    # A fresh stack per run: no state leaks from one run into the next.
    bash scripts/stack.sh down >/dev/null 2>&1 || true
    rm -rf "$IAS_STACK_DIR"
    note "test stack up ($IAS_STACK_DIR)"
    if ! bash scripts/stack.sh up; then
        echo "the test stack did not start"
        exit 1
    fi
    trap 'bash "$root/scripts/stack.sh" down >/dev/null 2>&1 || true' EXIT
    set -a
    # shellcheck disable=SC1091
    . "$IAS_STACK_DIR/stack.env"
    set +a
}

integration() {
    note "integration tests (real PostgreSQL, Redis, RabbitMQ)"
    make -s -j"$jobs" asan >/dev/null || { echo "build failed"; exit 1; }
    for t in "$out"/asan/tests/integration/test_*; do
        [ -x "$t" ] || continue
        run_one "integration/$(basename "$t")" 600 "$t"
    done
    ensure_node_modules || return
    for t in tests/integration/*.test.mjs; do
        [ -f "$t" ] || continue
        run_one "integration/$(basename "$t" .test.mjs)" 600 node --test --test-reporter=spec "$t"
    done
}

ensure_node_modules() {
    [ -d tests/e2e/node_modules ] && return 0
    if ! (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
        failed+=("npm-ci")
        echo "  FAIL  npm ci in tests/e2e"
        return 1
    fi
}

e2e() {
    note "end-to-end tests (official openai SDK)"
    if [ ! -f tests/e2e/package.json ]; then
        echo "  (no e2e suite yet)"
        return
    fi
    ensure_node_modules || return
    for t in tests/e2e/*.test.mjs; do
        [ -f "$t" ] || continue
        run_one "e2e/$(basename "$t" .test.mjs)" 600 node --test --test-reporter=spec "$t"
    done
}

bash scripts/deps.sh || { echo "installing dependencies failed"; exit 1; }
t_start=$SECONDS
case $mode in
all)
    build
    unit
    contract
    fuzz
    stack_up
    integration
    e2e
    ;;
unit) build; unit ;;
fuzz) fuzz ;;
contract) contract ;;
integration) build; stack_up; integration ;;
e2e) build; stack_up; e2e ;;
*) echo "usage: $0 [all|unit|fuzz|contract|integration|e2e]"; exit 2 ;;
esac

note "summary: $passed passed, ${#failed[@]} failed, $((SECONDS - t_start))s"
if [ ${#failed[@]} -gt 0 ]; then
    printf '  failed: %s\n' "${failed[@]}"
    exit 1
fi
