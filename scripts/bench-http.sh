#!/usr/bin/env bash
# HTTP throughput and latency of vaed against a reference server: the same
# checkpoint in PyTorch behind Python's ThreadingHTTPServer
# (scripts/bench_http_torch.py), both on 127.0.0.1, measured with wrk
# (10 s, 64 connections, 2 threads) in the same run:
#   scripts/bench-http.sh [BUILD_DIR]        (default build)
# Endpoints: POST /encode of one image (JSON), POST /sample?n=16 (PNG grid),
# GET /interpolate between two MNIST test images (PNG strip, 10 steps): once
# the same URL over and over (after the first request vaed answers it from its
# response cache, as it does a dashboard's reloads), and once with other
# from/to indexes on every request (a wrk Lua script; no pair repeats, so
# nearly every request misses the cache and computes the strip).
# The model is the default 784-400-20 MLP trained for one epoch on MNIST here
# (a few seconds). Prints a markdown table with requests/s, p50 and p99, and
# the ratio vaed / reference. Environment: DURATION (default 10s),
# CONNECTIONS (64), WRK_THREADS (1), VAED_THREADS (0 = cores). One wrk thread
# drives 30,000 requests/s; on a 2-core machine a second one takes a core from
# the server being measured (vaed's /encode p99 goes from ~4 to ~6.6 ms).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. scripts/bench-lib.sh
bench_name=bench-http
build=${1:-build}
vaed=$build/vaed
duration=${DURATION:-10s}
conns=${CONNECTIONS:-64}
wrk_threads=${WRK_THREADS:-1}

bench_need "$vaed"

tmp=$(mktemp -d /tmp/vaed-bench-http-XXXXXX)
vaed_pid=
torch_pid=
trap 'bench_stop "$vaed_pid" "$torch_pid"; rm -rf "$tmp"' EXIT

bench_model "$vaed" "$tmp"
bench_serve_vaed "$vaed" "$tmp" "${VAED_THREADS:-0}"

torch_port=$(bench_free_port)
/usr/bin/python3 scripts/bench_http_torch.py "$tmp/digits.safetensors" "$torch_port" "$root/data" \
    >"$tmp/torch.log" 2>&1 &
torch_pid=$!
bench_wait_ready "$tmp/torch.log"

# One MNIST test image as the /encode body.
bench_encode_body "$tmp/encode.json"
bench_post_lua "$tmp/encode.lua" "$tmp/encode.json"
bench_post_lua "$tmp/post.lua"
: >"$tmp/get.lua"
# GET /interpolate over pairs of MNIST test images that do not repeat: request
# i of thread t is number k = i * 256 + t, from = k mod 10000 and
# to = (7k + k div 10000) mod 10000 (two k with the same from differ in to).
cat >"$tmp/varied.lua" <<'LUA'
local threads = 0
function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end
local i = 0
function request()
    local k = i * 256 + (id or 0)
    i = i + 1
    local a = k % 10000
    local b = (7 * k + math.floor(k / 10000)) % 10000
    return wrk.format("GET", "/interpolate?from=mnist:test:" .. a .. "&to=mnist:test:" .. b .. "&steps=10")
end
LUA

# Checks each endpoint answers 200 before timing it.
check() {
    local url=$1 method=$2 script=$3 code
    if [ "$script" = encode ]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/encode.json" "$url")
    else
        code=$(curl -s -o /dev/null -w '%{http_code}' -X "$method" "$url")
    fi
    [ "$code" = 200 ] || { echo "bench-http: $method $url answered $code" >&2; exit 1; }
}

# metric NAME: the value of an unlabelled sample of vaed's /metrics.
metric() {
    curl -fsS "http://127.0.0.1:$vaed_port/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# run NAME URL SCRIPT -> "rps p50 p99 non2xx"
run() {
    bench_wrk "$tmp/wrk-$1.log" -t"$wrk_threads" -c"$conns" -d"$duration" -s "$tmp/$3.lua" "$2"
}

endpoints=(
    "encode|POST /encode (1 image, JSON)|/encode|encode|POST"
    "sample|POST /sample?n=16 (PNG)|/sample?n=16&seed=1|post|POST"
    "interp|GET /interpolate (10-step strip, one URL: cached)|/interpolate?from=mnist:test:3&to=mnist:test:7&steps=10|get|GET"
    "varied|GET /interpolate (varied from/to: uncached)|/interpolate?from=mnist:test:3&to=mnist:test:7&steps=10|varied|GET"
)
rows=()
cache_note=
for e in "${endpoints[@]}"; do
    IFS='|' read -r key label path script method <<<"$e"
    check "http://127.0.0.1:$vaed_port$path" "$method" "$script"
    check "http://127.0.0.1:$torch_port$path" "$method" "$script"
    echo "bench-http: $label: vaed..." >&2
    hits0=$(metric vaed_response_cache_hits_total)
    misses0=$(metric vaed_response_cache_misses_total)
    read -r v_rps v_p50 v_p99 v_bad <<<"$(run "vaed-$key" "http://127.0.0.1:$vaed_port$path" "$script")"
    if [ "$key" = interp ] || [ "$key" = varied ]; then
        cache_note+="vaed response cache during '$label': $(( $(metric vaed_response_cache_hits_total) - hits0 )) hits, $(( $(metric vaed_response_cache_misses_total) - misses0 )) misses"$'\n'
    fi
    echo "bench-http: $label: pytorch..." >&2
    read -r t_rps t_p50 t_p99 _ <<<"$(run "torch-$key" "http://127.0.0.1:$torch_port$path" "$script")"
    ratio=$(awk -v a="$v_rps" -v b="$t_rps" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "n/a" }')
    rows+=("| $label | $v_rps | $v_p50 | $v_p99 | $v_bad | $t_rps | $t_p50 | $t_p99 | $ratio |")
done

echo
echo "wrk -t$wrk_threads -c$conns -d$duration on 127.0.0.1, $(nproc) cores; reference: PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') behind ThreadingHTTPServer, same checkpoint"
echo
echo "| endpoint | vaed req/s | vaed p50 ms | vaed p99 ms | vaed non-2xx | pytorch req/s | pytorch p50 ms | pytorch p99 ms | vaed / pytorch |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
printf '%s' "$cache_note"

# ---- WITH_JOB=1: inference while a training job runs (the jobs issue) ------
# /sample?n=16 latency at a steady, moderate load (wrk -c JOB_CONNECTIONS,
# default 8) on an idle daemon and while one training job (the 784-400-20 MLP
# on MNIST, one worker, nice +10) runs; and the job's training images/s alone
# and under that load, from the progress of GET /jobs/ID (steps x batch over
# the same window). Targets: p99 with the job <= 3x idle.
if [ "${WITH_JOB:-0}" = 1 ]; then
    jconns=${JOB_CONNECTIONS:-8}
    jthreads=$((jconns < wrk_threads ? jconns : wrk_threads)) # wrk wants threads <= connections
    window=${duration%s}
    sample_url="http://127.0.0.1:$vaed_port/sample?n=16&seed=1"
    # images trained so far by job $1: ((epoch - 1) * steps + step) * batch
    job_images() {
        curl -fsS "http://127.0.0.1:$vaed_port/jobs/$1" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
p = j.get("progress") or {}
b = j["config"]["batch"]
print(((p.get("epoch", 1) - 1) * p.get("steps", 0) + p.get("step", 0)) * b if p else 0, j["state"])'
    }
    echo "bench-http: WITH_JOB: /sample?n=16 idle (wrk -c$jconns)..." >&2
    read -r i_rps i_p50 i_p99 i_bad <<<"$(conns=$jconns wrk_threads=$jthreads run job-idle "$sample_url" post)"
    job_id=$(curl -fsS -X POST -H 'Content-Type: application/json' \
        -d '{"model": "bench-job", "data": "mnist", "epochs": 1000, "seed": 3}' \
        "http://127.0.0.1:$vaed_port/jobs" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    for _ in $(seq 300); do
        read -r n state <<<"$(job_images "$job_id")"
        [ "$state" = running ] && [ "$n" -gt 0 ] && break
        sleep 0.1
    done
    [ "$state" = running ] || { echo "bench-http: the training job did not start ($state)" >&2; exit 1; }
    echo "bench-http: WITH_JOB: training alone for ${window}s..." >&2
    read -r n0 _ <<<"$(job_images "$job_id")"; t0=$(date +%s.%N)
    sleep "$window"
    read -r n1 _ <<<"$(job_images "$job_id")"; t1=$(date +%s.%N)
    alone=$(awk -v a="$n0" -v b="$n1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
    echo "bench-http: WITH_JOB: /sample?n=16 while training (wrk -c$jconns)..." >&2
    read -r n0 _ <<<"$(job_images "$job_id")"; t0=$(date +%s.%N)
    read -r j_rps j_p50 j_p99 j_bad <<<"$(conns=$jconns wrk_threads=$jthreads run job-busy "$sample_url" post)"
    read -r n1 _ <<<"$(job_images "$job_id")"; t1=$(date +%s.%N)
    loaded=$(awk -v a="$n0" -v b="$n1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$vaed_port/jobs/$job_id/cancel" || true
    echo
    echo "WITH_JOB: wrk -t$jthreads -c$jconns -d$duration POST /sample?n=16; one training job (784-400-20 on MNIST, --workers 1)"
    echo
    echo "| /sample?n=16 | req/s | p50 ms | p99 ms | non-2xx |"
    echo "|---|---:|---:|---:|---:|"
    echo "| idle | $i_rps | $i_p50 | $i_p99 | $i_bad |"
    echo "| one job training | $j_rps | $j_p50 | $j_p99 | $j_bad |"
    awk -v a="$j_p99" -v b="$i_p99" 'BEGIN { if (b > 0) printf "\np99 with a job / idle: %.2fx (target <= 3x)\n", a / b }'
    echo
    echo "| training | images/s |"
    echo "|---|---:|"
    echo "| alone | $alone |"
    echo "| under the /sample load | $loaded |"
    awk -v a="$loaded" -v b="$alone" 'BEGIN { if (b > 0) printf "\nunder load / alone: %.2f\n", a / b }'
fi
