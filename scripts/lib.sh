# Shared shell helpers for scripts/*.sh and bench/run.sh. Source it; it has no
# side effects besides defining functions and IAS_REPO_ROOT.
# shellcheck shell=bash

IAS_REPO_ROOT="${IAS_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)}"

ias_log() { printf '%s: %s\n' "${IAS_LOG_TAG:-ias}" "$*" >&2; }
ias_die() {
    printf '%s: error: %s\n' "${IAS_LOG_TAG:-ias}" "$*" >&2
    exit 1
}

ias_is_root() { [ "$(id -u)" = 0 ]; }

# Runs a command as a service user when we are root (runuser), as ourselves
# otherwise.
ias_as_user() {
    local user="$1"
    shift
    if ias_is_root; then
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

# Closes every descriptor above 2 in the current (sub)shell, so daemons we spawn
# do not keep a caller's pipe open (a `$(scripts/stack.sh up)` would hang).
ias_close_fds() {
    local fd
    for fd in /proc/$BASHPID/fd/*; do
        fd="${fd##*/}"
        if [ "$fd" -gt 2 ] 2>/dev/null; then
            eval "exec ${fd}>&-" 2>/dev/null || true
        fi
    done
}

# True if something listens on 127.0.0.1:<port> (TCP).
ias_port_listening() {
    local port="$1"
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

# True if <pid> names a live process. (kill -0 also works for other users'
# processes only as root, so fall back to /proc.)
ias_pid_alive() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ] || return 1
    # A zombie is as good as gone.
    local state
    state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
    [ "$state" != "Z" ]
}

# First line of a pid file (digits only), or empty.
ias_read_pid() {
    local f="$1" pid=""
    [ -r "$f" ] && read -r pid <"$f" 2>/dev/null
    [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s' "$pid"
    return 0
}

# Polls "<command...>" every 0.1 s until it succeeds or <seconds> pass.
ias_wait_for() {
    local seconds="$1"
    shift
    local deadline=$((SECONDS + seconds))
    while ! "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# Waits up to <seconds> for <pid> to exit.
ias_wait_exit() {
    local pid="$1" seconds="$2"
    local deadline=$((SECONDS + seconds))
    while ias_pid_alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# Stops <pid>: <signal>, then after <seconds> SIGKILL. Only for pids we started.
ias_stop_pid() {
    local pid="$1" sig="${2:-TERM}" seconds="${3:-30}"
    ias_pid_alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! ias_wait_exit "$pid" "$seconds"; then
        ias_log "pid $pid did not exit after SIG$sig within ${seconds}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        ias_wait_exit "$pid" 5 || return 1
    fi
}

# A TCP port on 127.0.0.1 nobody listens on (random in 20000-31999, below the
# kernel's ephemeral range, so outgoing connections do not take it meanwhile).
ias_free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000)) # below the ephemeral range
        if ! ias_port_listening "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# Prints the last lines of a log file to stderr, framed.
ias_tail_log() {
    local f="$1" n="${2:-30}"
    if [ -r "$f" ]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2
        printf -- '-----\n' >&2
    else
        printf 'ias: (no log at %s)\n' "$f" >&2
    fi
}
