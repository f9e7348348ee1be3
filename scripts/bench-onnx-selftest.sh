#!/usr/bin/env bash
# The pieces scripts/bench-onnx.sh builds its reference from, on a small
# model (784-32-4, 512 MNIST images, well under a second to train):
# bench_onnx_export.py writes ONNX that bench_onnx_server.js serves with
# answers scripts/bench_onnx_check.py finds equal to vaed's to 1e-4, the
# check fails against a vaed serving other weights, and the reference server
# answers bad input with a 4xx {"error": {"code", "message"}} before it
# computes anything. `make bench-onnx` runs it before the benchmark, after
# installing onnxruntime-node in scripts/onnx; it is not part of `make test`,
# which does not fetch those 290 MB (a test skipped on every fresh machine
# could never fail there). Exits 77 without onnxruntime-node, python3-torch
# or data/mnist.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/${VAED_BUILD:-build}/vaed}
[ -f scripts/onnx/node_modules/onnxruntime-node/package.json ] && command -v node >/dev/null \
    || { echo "onnxruntime-node is not installed in scripts/onnx: skipped"; exit 77; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "python3-torch is absent: skipped"; exit 77; }
[ -s data/mnist/t10k-images-idx3-ubyte ] || { echo "data/mnist is absent: skipped"; exit 77; }
. scripts/bench-lib.sh
bench_name=bench-onnx-selftest
tmp=$(mktemp -d /tmp/vaed-test-bench-onnx.XXXXXX)
vaed_pid= ort_pid= other_pid=
trap 'bench_stop "$vaed_pid" "$ort_pid" "$other_pid"; rm -rf -- "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

small=(--data mnist --limit 512 --epochs 1 --hidden 32 --latent 4)
mkdir "$tmp/other"
"$vaed" train "${small[@]}" --register digits --data-dir "$tmp/var" --out "$tmp/digits.safetensors" \
    >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; exit 1; }
"$vaed" train "${small[@]}" --seed 2 --register digits --data-dir "$tmp/other/var" \
    >"$tmp/other/train.log" 2>&1 || { cat "$tmp/other/train.log"; exit 1; }
/usr/bin/python3 scripts/bench_onnx_export.py "$tmp/digits.safetensors" "$tmp/onnx" >"$tmp/export.log" 2>&1 \
    || { cat "$tmp/export.log"; exit 1; }
# a vaed serving other weights, for the check to fail against
bench_serve_vaed "$vaed" "$tmp/other" 1
other_pid=$vaed_pid other_port=$vaed_port
bench_serve_vaed "$vaed" "$tmp" 1
ort_port=$(bench_free_port)
node scripts/bench_onnx_server.js "$tmp/onnx" "$ort_port" 1 >"$tmp/ort.log" 2>&1 &
ort_pid=$!
bench_wait_ready "$tmp/ort.log"
ort=http://127.0.0.1:$ort_port

out=$(/usr/bin/python3 scripts/bench_onnx_check.py "http://127.0.0.1:$vaed_port" "$ort" data 2>&1) \
    || fail "the check finds the export unlike vaed: $out"
[ "$(grep -c 'max |vaed - onnxruntime|' <<<"$out")" = 5 ] || fail "the check compared fewer than its 5 answers: $out"
if out=$(/usr/bin/python3 scripts/bench_onnx_check.py "http://127.0.0.1:$other_port" "$ort" data 2>&1); then
    fail "the check passed against a model of other weights: $out"
fi
grep -q 'FAIL /encode mu differs' <<<"$out" || fail "the check's failure does not name /encode: $out"

# expect STATUS CODE METHOD PATH [BODY]: the reference answers STATUS with a
# JSON error whose code is CODE.
expect() {
    local status=$1 code=$2 method=$3 path=$4 got
    got=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 -X "$method" \
        -H 'Content-Type: application/json' ${5+--data-binary "$5"} "$ort$path") || true
    [ "$got" = "$status" ] || { fail "$method $path ${5:-}: status $got, want $status"; return; }
    /usr/bin/python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
sys.exit(0 if e["code"] == sys.argv[2] and isinstance(e["message"], str) else 1)' "$tmp/body" "$code" \
        || fail "$method $path ${5:-}: body $(head -c 200 "$tmp/body"), want error code $code"
}
expect 400 bad_json POST /encode '{"x": [[0.5'
expect 400 bad_request POST /encode '{"x": []}'
expect 400 bad_request POST /encode '{"x": "[[0.5]]"}'
expect 400 bad_shape POST /encode '{"x": [[0.5, 0.5]]}'
expect 400 bad_request POST /encode "{\"x\": [[$(printf '"a",%.0s' $(seq 783))\"a\"]]}"
expect 400 bad_shape POST '/decode?format=json' '{"z": [[1, 2, 3, 4, 5]]}'
expect 400 bad_format POST /decode '{"z": [[1, 2, 3, 4]]}'
expect 400 bad_request POST '/sample?n=0&format=json'
expect 400 bad_request POST '/sample?n=1025&format=json'
expect 400 bad_request POST '/sample?n=1e9&format=json'
expect 400 bad_request POST '/sample?n=4&seed=-1&format=json'
expect 405 method_not_allowed GET /encode
expect 404 not_found POST /nope '{}'
# A body declared over 64 MiB is refused from its header, before it is read.
got=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 -X POST -H 'Content-Type: application/json' \
    -H 'Content-Length: 67108865' --data-binary '{}' "$ort/encode") || true
[ "$got" = 413 ] && grep -q '"code":"too_large"' "$tmp/body" || fail "a 64 MiB + 1 body: $got $(head -c 200 "$tmp/body")"
# and the server still answers
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$ort/sample?n=2&format=json")
[ "$code" = 200 ] || fail "after the bad requests /sample answers $code"

[ "$fails" -eq 0 ] && echo "bench-onnx-selftest: all checks passed"
exit $((fails > 0))
