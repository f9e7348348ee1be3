#!/usr/bin/env bash
# vaed against the strongest CPU runtime a user could pick instead: the same
# weights exported to ONNX (scripts/bench_onnx_export.py, Debian's
# python3-torch) and run by onnxruntime-node (the version scripts/onnx/
# package-lock.json pins, CPU binaries from the npm package, installed with
# ONNXRUNTIME_NODE_INSTALL=skip) behind node:http with one worker process per
# core (scripts/bench_onnx_server.js). Both on 127.0.0.1, measured with wrk in
# the same run:
#   scripts/bench-onnx.sh [BUILD_DIR]        (default build)
# It builds the reference itself: installs the npm package (once), trains the
# default 784-400-20 MLP for one epoch on MNIST (or takes CKPT=FILE.safetensors),
# exports it, and checks that both servers' /encode, /decode and /sample
# answers agree to TOL (default 1e-4; scripts/bench_onnx_check.py) before it
# times anything. Rows: POST /encode of one image (JSON), POST /decode of one z
# (format=json), POST /sample?n=16&format=json (z ~ N(0, I) drawn by each
# server) at CONNECTIONS (64) with one and with two wrk threads (on a 2-core
# machine the second takes a core from the server measured), and POST /encode
# on one connection. Each row runs ROUNDS (2) alternating vaed / ONNX Runtime
# rounds of DURATION (8s) and keeps each server's best; prints one markdown
# table (req/s with p50 / p99, ratio vaed / ONNX Runtime) and the load
# average before and after. Environment also: VAED_THREADS (0 = cores),
# ORT_WORKERS (cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. scripts/bench-lib.sh
bench_name=bench-onnx
build=${1:-build}
vaed=$build/vaed
duration=${DURATION:-8s}
conns=${CONNECTIONS:-64}
rounds=${ROUNDS:-2}
tol=${TOL:-1e-4}
workers=${ORT_WORKERS:-$(nproc)}

bench_need "$vaed"
command -v npm >/dev/null || { echo "bench-onnx: node and npm are not installed (scripts/install-deps.sh --with-bench)" >&2; exit 1; }
ort_version=$(bash scripts/onnx/install.sh)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

tmp=$(mktemp -d /tmp/vaed-bench-onnx-XXXXXX)
vaed_pid=
ort_pid=
trap 'bench_stop "$vaed_pid" "$ort_pid"; rm -rf "$tmp"' EXIT

bench_model "$vaed" "$tmp" "${CKPT:-}"
echo "bench-onnx: exporting it to ONNX..." >&2
/usr/bin/python3 scripts/bench_onnx_export.py "$tmp/digits.safetensors" "$tmp/onnx" >"$tmp/export.log" 2>&1 \
    || { cat "$tmp/export.log" >&2; exit 1; }
bench_serve_vaed "$vaed" "$tmp" "${VAED_THREADS:-0}"
ort_port=$(bench_free_port)
# Killing the primary stops its workers too: a node:cluster worker exits when
# its channel to the primary closes.
node scripts/bench_onnx_server.js "$tmp/onnx" "$ort_port" "$workers" >"$tmp/ort.log" 2>&1 &
ort_pid=$!
bench_wait_ready "$tmp/ort.log"
vaed_url=http://127.0.0.1:$vaed_port
ort_url=http://127.0.0.1:$ort_port

echo "bench-onnx: checking that the answers agree to $tol..." >&2
/usr/bin/python3 scripts/bench_onnx_check.py "$vaed_url" "$ort_url" data "$tol" >"$tmp/check.log" \
    || { cat "$tmp/check.log" >&2; echo "bench-onnx: vaed and ONNX Runtime disagree; nothing timed" >&2; exit 1; }
check_max=$(awk '{ v = $NF + 0; if (v > m) m = v } END { printf "%.2g", m }' "$tmp/check.log")

# The bodies: MNIST test image 0, and vaed's mu of it as the z to decode.
bench_encode_body "$tmp/encode.json"
curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/encode.json" "$vaed_url/encode" \
    | /usr/bin/python3 -c 'import json, sys; print(json.dumps({"z": json.load(sys.stdin)["mu"]}))' >"$tmp/decode.json"
bench_post_lua "$tmp/encode.lua" "$tmp/encode.json"
bench_post_lua "$tmp/decode.lua" "$tmp/decode.json"
bench_post_lua "$tmp/post.lua"

# check URL SCRIPT: the request wrk will send answers 200.
check() {
    local body=() code
    case "$2" in
        encode|decode) body=(-H 'Content-Type: application/json' --data-binary @"$tmp/$2.json") ;;
    esac
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "${body[@]}" "$1")
    [ "$code" = 200 ] || { echo "bench-onnx: POST $1 answered $code" >&2; exit 1; }
}

# one_round SIDE LOG THREADS CONNS URL SCRIPT: one wrk run; keeps SIDE's best
# req/s with its p50 and p99 in SIDE_rps, SIDE_p50, SIDE_p99, and adds its
# non-2xx answers to SIDE_bad.
one_round() {
    local side=$1 rps p50 p99 bad best=${1}_rps bad_sum=${1}_bad
    read -r rps p50 p99 bad <<<"$(bench_wrk "$tmp/wrk-$2.log" -t"$3" -c"$4" -d"$duration" -s "$tmp/$6.lua" "$5")"
    printf -v "$bad_sum" '%d' $((${!bad_sum} + bad))
    if awk -v a="$rps" -v b="${!best}" 'BEGIN { exit !(a > b) }'; then
        printf -v "${side}_rps" '%s' "$rps"
        printf -v "${side}_p50" '%s' "$p50"
        printf -v "${side}_p99" '%s' "$p99"
    fi
}

# cell RPS P50 P99 NON2XX: "27,221 (0.95 / 6.01 ms)", a warning when some failed.
cell() {
    awk -v r="$1" -v a="$2" -v b="$3" -v n="$4" 'BEGIN {
        s = sprintf("%d", r + 0.5); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
        printf "%s (%s / %s ms)%s", s, a, b, (n > 0 ? " **" n " non-2xx**" : "") }'
}

rows=(
    "encode|\`POST /encode\`, one image, JSON|/encode|encode|$conns|1"
    "encode|\`POST /encode\`, one image, JSON|/encode|encode|$conns|2"
    "decode|\`POST /decode?format=json\`, one z|/decode?format=json|decode|$conns|1"
    "decode|\`POST /decode?format=json\`, one z|/decode?format=json|decode|$conns|2"
    "sample|\`POST /sample?n=16&format=json\`|/sample?n=16&format=json|post|$conns|1"
    "sample|\`POST /sample?n=16&format=json\`|/sample?n=16&format=json|post|$conns|2"
    "encode|\`POST /encode\`, one connection|/encode|encode|1|1"
)
table=()
at_2x=0
failed=0
p99_note=
for row in "${rows[@]}"; do
    IFS="|" read -r name label path body c t <<<"$row"
    check "$vaed_url$path" "$body"
    check "$ort_url$path" "$body"
    key=$name-c$c-t$t
    v_rps=0 v_p50= v_p99= v_bad=0 o_rps=0 o_p50= o_p99= o_bad=0
    echo "bench-onnx: $label, $t wrk thread(s), $c connection(s): vaed, onnxruntime x $rounds..." >&2
    # alternate whole rounds so a load change on the machine hits both sides
    for r in $(seq "$rounds"); do
        one_round v "vaed-$key-$r" "$t" "$c" "$vaed_url$path" "$body"
        one_round o "ort-$key-$r" "$t" "$c" "$ort_url$path" "$body"
    done
    [ $((v_bad + o_bad)) -eq 0 ] || failed=1
    ratio=$(awk -v a="$v_rps" -v b="$o_rps" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }')
    awk -v a="$v_rps" -v b="$o_rps" 'BEGIN { exit !(b > 0 && a >= 2 * b) }' && at_2x=$((at_2x + 1))
    table+=("| $label | $t × $c | $(cell "$v_rps" "$v_p50" "$v_p99" "$v_bad") | $(cell "$o_rps" "$o_p50" "$o_p99" "$o_bad") | $ratio |")
    if [ "$name" = encode ] && [ "$c" = "$conns" ]; then
        p99_note+="vaed /encode p99 at $c connections, $t wrk thread(s): $v_p99 ms (target <= 5 ms)"$'\n'
    fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, 127.0.0.1; wrk -d$duration, best of $rounds alternating rounds;" \
    "reference: onnxruntime-node $ort_version ($workers node:cluster workers, 1 intra-op thread each)," \
    "node $(node --version), same weights (torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') ONNX export);" \
    "answers agree to $check_max (max |difference|, tolerance $tol)"
echo
echo "| endpoint | wrk threads × connections | vaed req/s (p50 / p99) | ONNX Runtime + node:http req/s (p50 / p99) | vaed / ONNX Runtime |"
echo "|---|---|---:|---:|---:|"
printf '%s\n' "${table[@]}"
echo
echo "rows where vaed >= 2x ONNX Runtime: $at_2x of ${#rows[@]} (target: all)"
printf '%s' "$p99_note"
echo "load average (1/5/15 min): before $load_before, after $load_after"
if [ "$failed" = 1 ]; then
    echo "bench-onnx: some requests were not answered 2xx (see the table)" >&2
    exit 1
fi
