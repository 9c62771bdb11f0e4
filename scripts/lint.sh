#!/usr/bin/env bash
# Static checks: clang-format (no diff allowed) and cppcheck over every C source
# and header. Exits non-zero on any finding. `make format` fixes the first kind.
set -euo pipefail
IAS_LOG_TAG=lint
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$IAS_REPO_ROOT"

CLANG_FORMAT="${CLANG_FORMAT:-$(command -v clang-format || command -v clang-format-14 || true)}"
[ -n "$CLANG_FORMAT" ] || ias_die "clang-format not found (scripts/deps.sh)"
command -v cppcheck >/dev/null || ias_die "cppcheck not found (scripts/deps.sh)"

# Every C file we own: libcommon, services, tests (no build output, no vendored
# node_modules).
mapfile -d '' files < <(find libcommon services tests \
    \( -name build -o -name node_modules -o -name corpus \) -prune -o \
    -type f \( -name '*.c' -o -name '*.h' \) -print0 2>/dev/null | sort -z)
if [ "${#files[@]}" -eq 0 ]; then
    ias_log "no C files found"
    exit 0
fi

rc=0
ias_log "clang-format: ${#files[@]} files"
if ! "$CLANG_FORMAT" --dry-run --Werror "${files[@]}"; then
    ias_log "clang-format: files above need formatting (run: make format)"
    rc=1
fi

dirs=()
for d in libcommon/src services tests/unit tests/integration tests/fuzz tests/lib; do
    [ -d "$d" ] && dirs+=("$d")
done
ias_log "cppcheck: ${dirs[*]}"
# One configuration (-D) keeps cppcheck from trying every #ifdef combination,
# which is what makes it slow; the build always compiles with _GNU_SOURCE.
# ctuuninitvar is off: its whole-program pass flags every `T x; init(&x);`
# whose callee fills x through snprintf/memcpy (false positives).
mkdir -p build/cppcheck
if ! cppcheck --quiet --error-exitcode=1 --inline-suppr --std=c11 \
    --enable=warning,performance,portability \
    --suppress=missingIncludeSystem --suppress=unmatchedSuppression --suppress=ctuuninitvar \
    -D_GNU_SOURCE -I libcommon/include -I tests/lib \
    --cppcheck-build-dir=build/cppcheck \
    -j "$(nproc 2>/dev/null || echo 2)" \
    --template='{file}:{line}: {severity} ({id}): {message}' \
    "${dirs[@]}"; then
    ias_log "cppcheck: findings above"
    rc=1
fi

[ "$rc" = 0 ] && ias_log "ok"
exit "$rc"
