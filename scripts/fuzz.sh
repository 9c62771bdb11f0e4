#!/usr/bin/env bash
# Builds and runs every libFuzzer target (tests/fuzz/fuzz_<x>.c -> build/fuzz/fuzz_<x>).
#
#   scripts/fuzz.sh SECONDS [target...]   fuzz each target for SECONDS over a scratch
#                                         copy of its corpus (build/fuzz/corpus-<x>/)
#   scripts/fuzz.sh smoke [target...]     run each committed seed once, then fuzz 5 s
#
# Targets are names like fuzz_openai or openai. The committed corpus
# (tests/fuzz/corpus/<x>/) is never written to; crashes land in
# build/fuzz/artifacts/<x>/ and the script exits non-zero naming the target.
# An optional dictionary tests/fuzz/<x>.dict is used when present.
set -euo pipefail
IAS_LOG_TAG=fuzz
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$IAS_REPO_ROOT"

mode="${1:-}"
[ -n "$mode" ] || ias_die "usage: scripts/fuzz.sh SECONDS|smoke [target...]"
shift
if [ "$mode" = smoke ]; then
    seconds=5
elif [[ "$mode" =~ ^[0-9]+$ ]] && [ "$mode" -gt 0 ]; then
    seconds="$mode"
    mode=fuzz
else
    ias_die "first argument must be a number of seconds or 'smoke' (got '$mode')"
fi
# "scripts/fuzz.sh 60 smoke" is accepted too.
want=()
for a in "$@"; do
    if [ "$a" = smoke ]; then
        mode=smoke
    else
        want+=("${a#fuzz_}")
    fi
done
[ "$mode" = smoke ] && seconds=5

shopt -s nullglob
srcs=(tests/fuzz/fuzz_*.c)
if [ "${#srcs[@]}" -eq 0 ]; then
    ias_log "no fuzz targets yet (tests/fuzz/fuzz_*.c); nothing to do"
    exit 0
fi

names=()
for src in "${srcs[@]}"; do
    n="${src#tests/fuzz/fuzz_}"
    n="${n%.c}"
    if [ "${#want[@]}" -gt 0 ]; then
        keep=0
        for w in "${want[@]}"; do [ "$w" = "$n" ] && keep=1; done
        [ "$keep" = 1 ] || continue
    fi
    names+=("$n")
done
[ "${#names[@]}" -gt 0 ] || ias_die "no fuzz target matches: ${want[*]}"

# BUILD (as for make) selects the output directory.
fz="${BUILD:-build}/fuzz"
ias_log "building ${#names[@]} target(s)"
jobs="$(nproc 2>/dev/null || echo 2)"
if [ "${#want[@]}" -eq 0 ]; then
    make -s -j"$jobs" fuzz-build >&2 || ias_die "building the fuzz targets failed (make fuzz-build)"
else
    make -s -j"$jobs" "${names[@]/#/$fz/fuzz_}" >&2 ||
        ias_die "building the fuzz targets failed"
fi

# libFuzzer output is long; keep it in a log per target and show the tail on failure.
mkdir -p "$fz/logs"
failed=()
for n in "${names[@]}"; do
    bin="$fz/fuzz_$n"
    seeds="tests/fuzz/corpus/$n"
    art="$fz/artifacts/$n/"
    log="$fz/logs/$n.log"
    rm -rf "$art"
    mkdir -p "$art"
    : >"$log"
    opts=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$art" -print_final_stats=1)
    [ -f "tests/fuzz/$n.dict" ] && opts+=(-dict="tests/fuzz/$n.dict")
    # A scratch corpus, so new inputs never land in the repository.
    if [ "$mode" = smoke ]; then
        work="$fz/smoke-$n"
        rm -rf "$work"
    else
        work="$fz/corpus-$n"
    fi
    mkdir -p "$work"
    if [ -d "$seeds" ]; then
        cp -pR "$seeds"/. "$work"/
    fi

    ok=1
    if [ "$mode" = smoke ]; then
        mapfile -t seedfiles < <(find "$seeds" -type f 2>/dev/null | sort)
        if [ "${#seedfiles[@]}" -gt 0 ]; then
            ias_log "$n: ${#seedfiles[@]} seed(s)"
            # Given files, libFuzzer runs each once and exits.
            "$bin" "${opts[@]}" "${seedfiles[@]}" >>"$log" 2>&1 || ok=0
        else
            ias_log "$n: warning: no committed seeds in $seeds"
        fi
    fi
    if [ "$ok" = 1 ]; then
        ias_log "$n: fuzzing ${seconds}s"
        "$bin" "${opts[@]}" -max_total_time="$seconds" "$work" >>"$log" 2>&1 || ok=0
    fi
    if [ "$ok" = 1 ]; then
        stats="$(grep -E '^stat::number_of_executed_units' "$log" | tail -n 1 | awk '{print $2}')"
        ias_log "$n: ok (${stats:-?} runs)"
    else
        failed+=("$n")
        printf 'fuzz: FAILED: %s (log: %s)\n' "$n" "$log" >&2
        grep -E 'ERROR: |SUMMARY: |^artifact_prefix|Test unit written to' "$log" >&2 || true
        ias_tail_log "$log" 40
        for crash in "$art"*; do
            [ -f "$crash" ] && printf 'fuzz: reproduce: %s %s\n' "$bin" "$crash" >&2
        done
        # A failing seed is not copied to the artifacts: name it.
        seed="$(sed -n 's/^Running: //p' "$log" | tail -n 1)"
        [ -z "$seed" ] || printf 'fuzz: reproduce: %s %s\n' "$bin" "$seed" >&2
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    ias_die "failing target(s): ${failed[*]}"
fi
ias_log "all ${#names[@]} target(s) passed"
