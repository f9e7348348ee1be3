#!/usr/bin/env bash
# Dynamic batching, measured: vaed with batching (the default --max-batch 32,
# --max-queue-delay-us 0) against the same binary with --max-batch 1, and
# optionally against another build (REF_VAED, e.g. one built from main: "today")
# on one connection, all in the same run:
#   scripts/bench-batch.sh [BUILD_DIR]        (default build)
# Rows: POST /encode of one image (JSON) at CONNECTIONS (64) connections
# (req/s, p99) and on one connection (req/s, p50); POST /sample?n=16 as JSON at
# 64 connections. Each daemon serves its own copy of one registry (the default
# 784-400-20 MLP trained one epoch on MNIST here, a few seconds); every
# measurement alternates between the daemons ROUNDS (3) times and keeps each
# one's best, so that the other helpers' load on a shared machine hurts both
# alike. Prints the load average before and after, and the engine calls and
# requests batched during the batching daemon's runs (from its /metrics).
# Environment: DURATION (5s), CONNECTIONS (64), ROUNDS (3), WRK_THREADS (1),
# REF_VAED (unset: no third column).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${1:-build}
vaed=$build/vaed
duration=${DURATION:-5s}
conns=${CONNECTIONS:-64}
rounds=${ROUNDS:-3}
wrk_threads=${WRK_THREADS:-1}
ref_vaed=${REF_VAED:-}

bench_name=bench-batch
. scripts/bench-lib.sh
bench_need "$vaed"
[ -z "$ref_vaed" ] || [ -x "$ref_vaed" ] || { echo "bench-batch: REF_VAED=$ref_vaed is not executable" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vaed-bench-batch-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

bench_model "$vaed" "$tmp"

# start NAME BINARY ARGS...: a daemon on its own copy of the registry; its port in $tmp/NAME.port
start() {
    local name=$1 bin=$2
    shift 2
    cp -r "$tmp/var" "$tmp/var-$name"
    VAED_DATA=$root/data "$bin" serve --listen 127.0.0.1:0 --data-dir "$tmp/var-$name" \
        --port-file "$tmp/$name.port" --max-connections 1024 "$@" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$tmp/$name.port" ] && break; sleep 0.1; done
    [ -s "$tmp/$name.port" ] || { echo "bench-batch: $name did not start:" >&2; cat "$tmp/$name.log" >&2; exit 1; }
}
start batch "$vaed"
start single "$vaed" --max-batch 1
daemons=(batch single)
if [ -n "$ref_vaed" ]; then start ref "$ref_vaed"; daemons+=(ref); fi
port() { cat "$tmp/$1.port"; }

bench_encode_body "$tmp/encode.json"
bench_post_lua "$tmp/encode.lua" "$tmp/encode.json"
bench_post_lua "$tmp/post.lua"

# The answers agree before anything is timed: batch and single byte for byte
# (same binary, same registry); another build only has to answer (its
# products may round differently in the last bit).
for d in "${daemons[@]}"; do
    curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/encode.json" \
        "http://127.0.0.1:$(port "$d")/encode" >"$tmp/check-$d.json"
done
cmp -s "$tmp/check-batch.json" "$tmp/check-single.json" || { echo "bench-batch: --max-batch 1 answers /encode differently" >&2; exit 1; }

# Milliseconds with three decimals, not bench-lib's two: one connection's
# p50 is ~0.11 ms, and the 5 % it is compared at is 0.005 ms.
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
metric() {
    curl -fsS "http://127.0.0.1:$(port batch)/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
# wrk_run DAEMON CONNECTIONS PATH SCRIPT -> "rps p50 p99 non2xx"
wrk_run() {
    local out
    out=$(wrk -t"$([ "$2" -lt "$wrk_threads" ] && echo "$2" || echo "$wrk_threads")" -c"$2" -d"$duration" \
        --latency -s "$tmp/$4.lua" "http://127.0.0.1:$(port "$1")$3" 2>&1)
    echo "$out" >>"$tmp/wrk-$1.log"
    echo "$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')" \
        "$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")" \
        "$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")" \
        "$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { print $5 }' | grep . || echo 0)"
}

rows=()
raw=()
# measure LABEL CONNECTIONS PATH SCRIPT: best req/s (and its p50, p99) of each daemon over the rounds
measure() {
    local label=$1 c=$2 path=$3 script=$4
    declare -A best_rps best_p50 best_p99 bad
    local calls0 served0
    calls0=$(metric vaed_infer_batch_requests_count)
    served0=$(metric vaed_infer_batch_requests_sum)
    for r in $(seq "$rounds"); do
        for d in "${daemons[@]}"; do
            echo "bench-batch: $label: $d (round $r)..." >&2
            read -r rps p50 p99 nb <<<"$(wrk_run "$d" "$c" "$path" "$script")"
            raw+=("$label | $d | round $r | $rps req/s | p50 $p50 ms | p99 $p99 ms | non-2xx $nb")
            if [ -z "${best_rps[$d]:-}" ] || awk -v a="$rps" -v b="${best_rps[$d]}" 'BEGIN { exit !(a > b) }'; then
                best_rps[$d]=$rps; best_p50[$d]=$p50; best_p99[$d]=$p99
            fi
            bad[$d]=$(( ${bad[$d]:-0} + nb ))
        done
    done
    local calls served
    calls=$(( $(metric vaed_infer_batch_requests_count) - calls0 ))
    served=$(( $(metric vaed_infer_batch_requests_sum) - served0 ))
    local row="| $label | ${best_rps[batch]} | ${best_p50[batch]} | ${best_p99[batch]} | ${best_rps[single]} | ${best_p50[single]} | ${best_p99[single]} |"
    row+=" $(awk -v a="${best_rps[batch]}" -v b="${best_rps[single]}" 'BEGIN { printf "%.3f", a / b }') |"
    row+=" $(awk -v a="${best_p50[batch]}" -v b="${best_p50[single]}" 'BEGIN { printf "%.3f", a / b }') |"
    if [ -n "$ref_vaed" ]; then
        row+=" ${best_rps[ref]} | ${best_p50[ref]} | ${best_p99[ref]} |"
        row+=" $(awk -v a="${best_p50[batch]}" -v b="${best_p50[ref]}" 'BEGIN { printf "%.3f", a / b }') |"
    fi
    row+=" $(awk -v c="$calls" -v s="$served" 'BEGIN { if (c > 0) printf "%.2f", s / c; else print "-" }') |"
    row+=" ${bad[batch]}/${bad[single]} |"
    rows+=("$row")
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
measure "POST /encode, 1 image, JSON, $conns connections" "$conns" /encode encode
measure "POST /encode, 1 image, JSON, 1 connection" 1 /encode encode
measure "POST /sample?n=16, JSON, $conns connections" "$conns" "/sample?n=16&seed=1&format=json" post
load1=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "wrk -t$wrk_threads -d$duration on 127.0.0.1, $(nproc) cores, best of $rounds alternating rounds; load average $load0 before, $load1 after"
echo "batch: $vaed serve (--max-batch 32, --max-queue-delay-us 0); single: $vaed serve --max-batch 1${ref_vaed:+; ref: $ref_vaed serve}"
echo
hdr="| run | batch req/s | batch p50 ms | batch p99 ms | single req/s | single p50 ms | single p99 ms | req/s batch/single | p50 batch/single |"
sep="|---|---:|---:|---:|---:|---:|---:|---:|---:|"
if [ -n "$ref_vaed" ]; then hdr+=" ref req/s | ref p50 ms | ref p99 ms | p50 batch/ref |"; sep+="---:|---:|---:|---:|"; fi
echo "$hdr requests per engine call (batch) | non-2xx batch/single |"
echo "$sep---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "raw runs:"
printf '  %s\n' "${raw[@]}"
