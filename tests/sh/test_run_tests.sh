#!/usr/bin/env bash
# scripts/run-tests.sh counts right: small cmocka binaries that pass, fail,
# skip, crash outside cmocka, print nothing, or hang go into a throwaway
# build directory, and the closing line and exit status are checked.
# The inner runs' output is shown only on failure, so that their
# "N passed, N failed" lines never end up in the suite's own output.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d /tmp/vaed-test-run-tests.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

cat >"$tmp/fake.c" <<'EOF'
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *mode(void) { const char *m = getenv("FAKE_MODE"); return m ? m : "pass"; }
static void t_pass(void **state) { (void)state; assert_int_equal(2, 1 + 1); }
static void t_maybe_fail(void **state) { (void)state; if (!strcmp(mode(), "fail")) assert_int_equal(1, 2); }
static void t_maybe_skip(void **state) { (void)state; if (!strcmp(mode(), "skip")) skip(); }

int main(void)
{
    if (!strcmp(mode(), "hang")) sleep(60);
    if (!strcmp(mode(), "crash")) raise(SIGKILL);
    if (!strcmp(mode(), "silent")) return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_pass), cmocka_unit_test(t_maybe_fail), cmocka_unit_test(t_maybe_skip),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (!strcmp(mode(), "badexit")) return 3;  /* like a sanitizer report at exit */
    return failed;
}
EOF
mkdir -p "$tmp/build/tests"
gcc -std=c11 -Wall -Wextra -Werror "$tmp/fake.c" -o "$tmp/fake" -lcmocka
# Each binary picks its behaviour from its name through a wrapper script.
for m in pass fail skip crash silent badexit hang; do
    printf '#!/bin/sh\nFAKE_MODE=%s exec "%s"\n' "$m" "$tmp/fake" >"$tmp/build/tests/unit_$m"
    chmod +x "$tmp/build/tests/unit_$m"
done
cp "$tmp/build/tests/unit_pass" "$tmp/build/tests/http_pass"

# check TESTS EXPECTED-LAST-LINE EXPECTED-STATUS
check() {
    local tests=$1 want=$2 want_rc=$3 out rc=0 last
    out=$(cd "$root" && TESTS=$tests VAED_TEST_TIMEOUT=2 bash scripts/run-tests.sh "$tmp/build" 2>&1) || rc=$?
    last=$(tail -n 1 <<<"$out")
    if [ "$last" != "$want" ] || [ "$rc" != "$want_rc" ]; then
        fail "TESTS='$tests': got '$last' (exit $rc), want '$want' (exit $want_rc)"
        awk '{ print "    | " $0 }' <<<"$out"
    fi
}
check 'unit_pass http_pass' '6 passed, 0 failed' 0
[ -f "$tmp/build/test-logs/unit_pass.log" ] || fail "no log kept in BUILD_DIR/test-logs"
check 'unit_fail' '2 passed, 1 failed' 1
check 'unit_skip' '2 passed, 0 failed, 1 skipped' 0
check 'unit_crash' '0 passed, 1 failed' 1
check 'unit_silent' '0 passed, 1 failed' 1
check 'unit_badexit' '3 passed, 1 failed' 1
check 'unit_hang' '0 passed, 1 failed' 1
check 'unit_p*' '3 passed, 0 failed' 0
check 'no_such_test' '0 passed, 1 failed' 1

if [ "$fails" -gt 0 ]; then
    echo "test_run_tests: $fails check(s) failed"
    exit 1
fi
echo "test_run_tests: all checks passed"
