#!/usr/bin/env bash
# Installs the Debian packages ias needs to build, test (and with `bench`,
# benchmark). Idempotent and quiet when everything is present: apt-get only
# runs when a package is missing. Service packages are installed with starts
# forbidden (policy-rc.d), because scripts/stack.sh runs its own instances.
#
#   scripts/deps.sh          build + test packages
#   scripts/deps.sh bench    also wrk and nginx-light
set -euo pipefail
IAS_LOG_TAG=deps
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

PKGS=(
    build-essential pkg-config
    clang-14 clang libclang-rt-14-dev clang-format cppcheck
    libevent-dev libhiredis-dev librabbitmq-dev libpq-dev libcjson-dev libjwt-dev
    libcmocka-dev libssl-dev libcrypt-dev libcurl4-openssl-dev
    postgresql-15 postgresql-client-15 redis-server redis-tools rabbitmq-server
    curl iproute2 util-linux procps
    docker-compose python3-yaml
)
# node may come from elsewhere (nvm, /usr/local); only ask Debian when absent.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PKGS+=(nodejs npm)
fi
# kubectl (for `kubectl kustomize` in tests/contract/deploy.sh) may come from the
# Kubernetes or a cloud vendor's repository; Debian's kubernetes-client only when absent.
if ! command -v kubectl >/dev/null 2>&1; then
    PKGS+=(kubernetes-client)
fi
for arg in "$@"; do
    case "$arg" in
    bench) PKGS+=(wrk nginx-light) ;;
    -h | --help)
        sed -n '2,9p' "$0"
        exit 0
        ;;
    *) ias_die "unknown argument '$arg' (expected: bench)" ;;
    esac
done

missing=()
for p in "${PKGS[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

SUDO=()
if ! ias_is_root; then
    command -v sudo >/dev/null 2>&1 || ias_die "missing packages (${missing[*]}) and not root and no sudo"
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
ias_log "installing: ${missing[*]}"

# Forbid service starts during the install (exit 101 = "action forbidden"),
# unless the machine already has its own policy; remove ours afterwards.
POLICY=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
    if [ "$own_policy" = 1 ]; then
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# written by ias scripts/deps.sh for the duration of an install\nexit 101\n' |
        "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    own_policy=1
fi

"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"

ias_log "done"
