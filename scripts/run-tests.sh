#!/usr/bin/env bash
# Runs the whole test suite against one build directory and prints one
# closing line, "N passed, N failed" (", N skipped" when any were skipped):
#   scripts/run-tests.sh BUILD_DIR
# 1. every BUILD_DIR/tests/unit_* and BUILD_DIR/tests/http_* cmocka binary,
#    counted test by test from cmocka's summary lines; a binary that crashes,
#    times out, exits non-zero with no failure counted (e.g. a sanitizer
#    report at exit) or prints no summary counts as 1 failed;
# 2. every tests/sh/test_*.sh, one test each: exit 0 passes, exit 77 is
#    skipped, anything else fails. They get VAED_BUILD=BUILD_DIR and
#    VAED_BIN=BUILD_DIR/vaed (absolute paths) in the environment.
# Everything runs from the repository root. Each test's output is printed and
# kept in BUILD_DIR/test-logs/NAME.log.
# Environment:
#   TESTS              space-separated globs on test names (unit_test_vae,
#                      http_*, test_get_data.sh ...); only matching tests run
#   VAED_TEST_TIMEOUT  seconds per binary or script (default 600)
# Exit status is 0 iff no test failed.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: scripts/run-tests.sh BUILD_DIR" >&2
    exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$1" ] || { echo "run-tests: build directory '$1' not found (run make all)" >&2; exit 2; }
build=$(cd "$1" && pwd)
cd "$root"

timeout_s=${VAED_TEST_TIMEOUT:-600}
logs=$build/test-logs
mkdir -p "$logs"
rm -f "$logs"/*.log

total_passed=0
total_failed=0
total_skipped=0
failed_names=()

# Split TESTS on blanks without expanding its globs against the file system.
read -r -a test_patterns <<<"${TESTS:-}"
selected() {
    local name=$1 pat
    [ "${#test_patterns[@]}" -eq 0 ] && return 0
    for pat in "${test_patterns[@]}"; do
        # shellcheck disable=SC2053  # $pat is a glob on purpose
        [[ $name == $pat ]] && return 0
    done
    return 1
}

now_ms() {
    date +%s%3N
}

# sum_counts REGEX GROUP LOG: adds up the number that capture group GROUP of
# REGEX holds on each matching line of LOG.
sum_counts() {
    sed -nE "s/$1/\\$2/p" "$3" | awk '{ s += $1 } END { print s + 0 }'
}

# describe_rc RC: why a process ended, in words.
describe_rc() {
    local rc=$1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "timed out after ${timeout_s}s"
    elif [ "$rc" -gt 128 ]; then
        echo "killed by signal $((rc - 128))"
    else
        echo "exit status $rc"
    fi
}

run_binary() {
    local bin=$1 name log rc t0 ms passed failed skipped why=""
    name=$(basename "$bin")
    log=$logs/$name.log
    echo "=== $name"
    t0=$(now_ms)
    rc=0
    CMOCKA_MESSAGE_OUTPUT=stdout timeout --kill-after=10 "$timeout_s" "$bin" >"$log" 2>&1 </dev/null || rc=$?
    ms=$(( $(now_ms) - t0 ))
    cat "$log"

    # cmocka prints these summary lines once per group; some go to stderr.
    passed=$(sum_counts '^\[  PASSED  \] ([0-9]+) test\(s\)\..*' 1 "$log")
    failed=$(sum_counts '^\[  FAILED  \] (.*: )?([0-9]+) test\(s\), listed below:.*' 2 "$log")
    skipped=$(sum_counts '^\[  SKIPPED \] (.*: )?([0-9]+) test\(s\).*' 2 "$log")
    local groups
    groups=$(grep -cE '^\[  PASSED  \] [0-9]+ test\(s\)\.' "$log" || true)

    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || [ "$rc" -gt 128 ]; then
        why=$(describe_rc "$rc")
    elif [ "$groups" -eq 0 ]; then
        why="no cmocka summary in its output ($(describe_rc "$rc"))"
    elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        why="$(describe_rc "$rc") with no failed test counted (sanitizer report or error at exit?)"
    fi
    if [ -n "$why" ]; then
        failed=$((failed + 1))
        failed_names+=("$name ($why)")
        echo "--- $name: FAILED: $why; $passed passed before it (${ms} ms, log $log)"
    elif [ "$failed" -gt 0 ]; then
        failed_names+=("$name ($failed failed)")
        echo "--- $name: FAILED: $failed failed, $passed passed (${ms} ms, log $log)"
    else
        echo "--- $name: ok, $passed passed$( [ "$skipped" -gt 0 ] && echo ", $skipped skipped") (${ms} ms)"
    fi
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    total_skipped=$((total_skipped + skipped))
}

run_script() {
    local script=$1 name log rc t0 ms
    name=$(basename "$script")
    log=$logs/$name.log
    echo "=== $name"
    t0=$(now_ms)
    rc=0
    VAED_BUILD=$build VAED_BIN=$build/vaed \
        timeout --kill-after=10 "$timeout_s" bash "$script" >"$log" 2>&1 </dev/null || rc=$?
    ms=$(( $(now_ms) - t0 ))
    cat "$log"
    if [ "$rc" -eq 0 ]; then
        total_passed=$((total_passed + 1))
        echo "--- $name: ok (${ms} ms)"
    elif [ "$rc" -eq 77 ]; then
        total_skipped=$((total_skipped + 1))
        echo "--- $name: skipped (${ms} ms)"
    else
        total_failed=$((total_failed + 1))
        failed_names+=("$name ($(describe_rc "$rc"))")
        echo "--- $name: FAILED: $(describe_rc "$rc") (${ms} ms, log $log)"
    fi
}

ran=0
shopt -s nullglob
for bin in "$build"/tests/unit_* "$build"/tests/http_*; do
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        continue
    fi
    selected "$(basename "$bin")" || continue
    run_binary "$bin"
    ran=$((ran + 1))
done
for script in tests/sh/test_*.sh; do
    selected "$(basename "$script")" || continue
    run_script "$script"
    ran=$((ran + 1))
done
shopt -u nullglob

if [ "$ran" -eq 0 ]; then
    echo "run-tests: no test found in $build/tests or tests/sh${TESTS:+ matching TESTS=\"$TESTS\"}"
    total_failed=$((total_failed + 1))
    failed_names+=("(no test found)")
fi

echo
echo "run-tests: $ran test program(s) from $build, logs in $logs"
if [ "${#failed_names[@]}" -gt 0 ]; then
    echo "run-tests: failed:"
    printf '  %s\n' "${failed_names[@]}"
fi
summary="$total_passed passed, $total_failed failed"
if [ "$total_skipped" -gt 0 ]; then
    summary+=", $total_skipped skipped"
fi
echo "$summary"
[ "$total_failed" -eq 0 ]
