#!/usr/bin/env bash
# Runs the libFuzzer targets that `make fuzz` built, one after another:
#   scripts/fuzz.sh BUILD_DIR [NAME ...]      (default: every BUILD_DIR/fuzz_*)
# Each runs FUZZ_SECONDS (default 60) under nice, from its seeds
# (tests/fuzz/corpus/NAME, read only) and what earlier runs found
# (BUILD_DIR/corpus/NAME, where new inputs go), with tests/fuzz/NAME.dict
# when there is one. Per target it prints libFuzzer's final coverage (cov:
# edges, ft: features), corpus size, executions and executions per second.
# A crash, sanitizer report, leak, timeout (FUZZ_TIMEOUT s per input,
# default 25) or out-of-memory fails the target, and its input is copied
# into tests/fuzz/corpus/NAME/ so that `make test` replays it from then on:
# commit it with the fix. Logs: BUILD_DIR/fuzz-logs/NAME.log. The last line
# is "N passed, N failed", one test per target.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: scripts/fuzz.sh BUILD_DIR [NAME ...]" >&2
    exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "$1" && pwd)
shift
cd "$root"
seconds=${FUZZ_SECONDS:-60}
per_input=${FUZZ_TIMEOUT:-25}

names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
    for bin in "$build"/fuzz_*; do
        [ -x "$bin" ] && names+=("${bin##*/fuzz_}")
    done
fi
if [ "${#names[@]}" -eq 0 ]; then
    echo "fuzz: no fuzz_* binaries in $build (run make fuzz)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

mkdir -p "$build/fuzz-logs"
passed=0
failed=0
failed_names=()
printf '%-12s %8s %8s %8s %12s %8s  %s\n' target seconds cov ft execs exec/s result
for name in "${names[@]}"; do
    bin=$build/fuzz_$name
    log=$build/fuzz-logs/$name.log
    corpus=$build/corpus/$name
    artifacts=$build/artifacts/$name
    mkdir -p "$corpus" "$artifacts"
    rm -f "$artifacts"/*
    args=(-max_total_time="$seconds" -timeout="$per_input" -rss_limit_mb=2560
          -print_final_stats=1 -artifact_prefix="$artifacts/")
    [ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
    rc=0
    t0=$(date +%s)
    nice -n 10 "$bin" "${args[@]}" "$corpus" "tests/fuzz/corpus/$name" >"$log" 2>&1 || rc=$?
    took=$(( $(date +%s) - t0 ))
    # "#123456 DONE   cov: 1234 ft: 5678 corp: 90/12Kb lim: 4096 exec/s: 2057 rss: 312Mb"
    done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -1)
    found=()
    for f in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
        [ -f "$f" ] || continue
        cp "$f" "tests/fuzz/corpus/$name/"
        found+=("tests/fuzz/corpus/$name/${f##*/}")
    done
    if [ "$rc" -eq 0 ] && [ "${#found[@]}" -eq 0 ]; then
        result=ok
        passed=$((passed + 1))
    else
        result="FAILED (exit $rc${found:+, kept ${found[*]}})"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
    printf '%-12s %8s %8s %8s %12s %8s  %s\n' "$name" "$took" "${cov:-?}" "${ft:-?}" \
        "${execs:-?}" "${rate:-?}" "$result"
    if [ "$result" != ok ]; then
        grep -E 'ERROR|SUMMARY|fuzz: .*check failed|runtime error|==[0-9]+==' "$log" | head -20 | sed 's/^/    /'
        echo "    log: $log"
    fi
done
if [ "${#failed_names[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
