#!/usr/bin/env bash
# The benchmark scripts are not run by the suite (their figures come from
# full runs, see the README), so this keeps them from rotting cheaply: every
# scripts/bench*.sh parses (bash -n), the Python and Node helpers compile,
# and scripts/bench-lib.sh reads wrk's figures right from a fake wrk's
# output (the units wrk prints: us, ms, s) and counts its non-2xx answers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
tmp=$(mktemp -d /tmp/vaed-test-bench-scripts.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

for f in scripts/bench*.sh scripts/onnx/install.sh; do
    bash -n "$f" 2>"$tmp/err" || fail "$f does not parse: $(cat "$tmp/err")"
done
for f in scripts/bench_*.py; do
    /usr/bin/python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$f" 2>"$tmp/err" \
        || fail "$f does not parse: $(cat "$tmp/err")"
done
if command -v node >/dev/null; then
    for f in scripts/bench_*.js; do
        node --check "$f" 2>"$tmp/err" || fail "$f does not parse: $(cat "$tmp/err")"
    done
fi

# A fake wrk that prints what wrk 4.2 prints for a run with failures.
mkdir "$tmp/bin"
cat >"$tmp/bin/wrk" <<'SH'
#!/bin/sh
cat <<'OUT'
Running 8s test @ http://127.0.0.1:1/encode
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.31ms    1.02ms  40.11ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    2.10ms
     90%    3.50ms
     99%    1.20s
  217770 requests in 8.00s, 120.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  27221.25
Transfer/sec:     15.00MB
OUT
SH
chmod +x "$tmp/bin/wrk"
bench_name=test
. scripts/bench-lib.sh
got=$(PATH="$tmp/bin:$PATH" bench_wrk "$tmp/wrk.log" -t1 -c64 -d8s http://127.0.0.1:1/encode)
[ "$got" = "27221.25 0.85 1200.00 12" ] || fail "bench_wrk read '$got', want '27221.25 0.85 1200.00 12'"
grep -q 'Requests/sec:  27221.25' "$tmp/wrk.log" || fail "bench_wrk did not keep wrk's output in its log"

[ "$fails" -eq 0 ] && echo "test_bench_scripts: all checks passed"
exit $((fails > 0))
