#!/usr/bin/env bash
# The dashboard in a real browser: trains two small versions of a model and
# a small conditional one (MNIST, a few seconds), starts a real tokenless vaed on 127.0.0.1 and runs
# tests/browser/dashboard.mjs (Debian's chromium driven by playwright-core,
# installed once into tests/browser/node_modules by tests/browser/install.sh)
# through every panel. Screenshots of each panel go to
# BUILD/test-logs/dashboard/. Skips (77) without MNIST, node or chromium.
# DASHBOARD_EPOCHS, DASHBOARD_LIMIT and DASHBOARD_HIDDEN (3, 4000, 64) size
# the model: the README's screenshots (docs/dashboard-*.png) come from
#   DASHBOARD_EPOCHS=8 DASHBOARD_LIMIT=60000 DASHBOARD_HIDDEN=256 bash tests/sh/test_dashboard.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
build=${VAED_BUILD:-$root/build}
out=$build/test-logs/dashboard
if [ ! -r data/mnist/t10k-images-idx3-ubyte ] || ! command -v node >/dev/null ||
    [ ! -x /usr/bin/chromium ]; then
    echo "skip: needs data/mnist, node and /usr/bin/chromium (make deps, make data)"
    exit 77
fi
bash tests/browser/install.sh
tmp=$(mktemp -d /tmp/vaed-test-dashboard.XXXXXX)
pid=
classes_pid=
cleanup() {
    for p in $pid $classes_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf -- "$tmp"
}
trap cleanup EXIT
# The conditional model trains beside the other two (two cores; its own name).
"$vaed" train --data mnist --limit 4000 --epochs 2 --hidden 64 --latent 2 --conditional \
    --threads 1 --register classes --data-dir "$tmp/data" >"$tmp/train-classes.log" 2>&1 &
classes_pid=$!
for seed in 1 2; do
    "$vaed" train --data mnist --limit "${DASHBOARD_LIMIT:-4000}" --epochs "${DASHBOARD_EPOCHS:-3}" \
        --hidden "${DASHBOARD_HIDDEN:-64}" --latent 2 --seed "$seed" \
        --iwae 16 --threads 1 --register digits --data-dir "$tmp/data" >"$tmp/train.log" 2>&1 ||
        { cat "$tmp/train.log"; echo "FAIL: training the test's model"; exit 1; }
done
wait "$classes_pid" ||
    { cat "$tmp/train-classes.log"; echo "FAIL: training the test's conditional model"; exit 1; }
classes_pid=
rm -rf -- "$out"
env -u VAED_TOKEN VAED_DATA="$root/data" "$vaed" serve --listen 127.0.0.1:0 --data-dir "$tmp/data" \
    --port-file "$tmp/port" --threads 2 >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 200); do { [ -s "$tmp/port" ] || ! kill -0 "$pid" 2>/dev/null; } && break; sleep 0.05; done
[ -s "$tmp/port" ] || { cat "$tmp/serve.log"; echo "FAIL: the daemon did not start"; exit 1; }
rc=0
node tests/browser/dashboard.mjs "http://127.0.0.1:$(cat "$tmp/port")" "$out" || rc=$?
# The daemon stops cleanly, with nothing a sanitizer reported (make asan).
kill -TERM "$pid"
stop_rc=0
wait "$pid" || stop_rc=$?
pid=
if [ "$stop_rc" -ne 0 ] || grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/serve.log"; then
    echo "FAIL: vaed exited with status $stop_rc or reported an error"
    rc=1
fi
if [ "$rc" -ne 0 ]; then
    echo "--- vaed log"
    cat "$tmp/serve.log"
    exit 1
fi
echo "screenshots in $out"
