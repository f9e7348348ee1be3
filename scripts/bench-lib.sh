# Shared by the HTTP benchmarks (scripts/bench-http.sh, scripts/bench-onnx.sh):
# the benchmark model, a vaed serving it, one MNIST image as a request body,
# and wrk's figures. Sourced, not run:
#   . scripts/bench-lib.sh
#   bench_need build/vaed                       # wrk, torch, vaed and MNIST are there
#   bench_model build/vaed "$tmp" [CKPT]       # -> $tmp/digits.safetensors, model "digits" in $tmp/var
#   bench_serve_vaed build/vaed "$tmp" THREADS  # sets vaed_pid and vaed_port; the caller kills vaed_pid
#   trap 'bench_stop "$vaed_pid" "$ref_pid"; rm -rf "$tmp"' EXIT
#   port=$(bench_free_port); start a reference server; bench_wait_ready its.log   # it prints "ready"
#   bench_encode_body "$tmp/encode.json"        # {"x": [[784 floats]]}: MNIST test image 0
#   bench_post_lua "$tmp/encode.lua" "$tmp/encode.json"   # a wrk script POSTing it
#   read -r rps p50 p99 non2xx <<<"$(bench_wrk LOG wrk ARGS...)"
# Each prints what it does on stderr with the caller's $bench_name as prefix
# and returns non-zero (set -e callers stop) when a step fails.

# bench_need VAED: wrk, python3-torch and the vaed binary are there; fetches
# MNIST when it is not.
bench_need() {
    command -v wrk >/dev/null || { echo "$bench_name: wrk is not installed (scripts/install-deps.sh --with-bench)" >&2; return 1; }
    /usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "$bench_name: python3-torch is not installed (scripts/install-deps.sh --with-bench)" >&2; return 1; }
    [ -x "$1" ] || { echo "$bench_name: $1 not found (make all)" >&2; return 1; }
    [ -f data/mnist/t10k-images-idx3-ubyte ] || bash scripts/get-data.sh mnist
}

# bench_model VAED DIR [CKPT]: the default 784-400-20 MLP trained for one
# epoch on MNIST (a few seconds), or the checkpoint CKPT, registered as
# "digits" in DIR/var and copied to DIR/digits.safetensors.
bench_model() {
    local vaed=$1 dir=$2 ckpt=${3:-}
    if [ -n "$ckpt" ]; then
        echo "$bench_name: registering $ckpt as the benchmark model..." >&2
        cp "$ckpt" "$dir/digits.safetensors"
        "$vaed" registry import --model digits "$dir/digits.safetensors" --data-dir "$dir/var" \
            >"$dir/train.log" 2>&1 || { cat "$dir/train.log" >&2; return 1; }
        return 0
    fi
    echo "$bench_name: training the benchmark model (784-400-20, 1 epoch)..." >&2
    "$vaed" train --data mnist --epochs 1 --register digits --data-dir "$dir/var" \
        --out "$dir/digits.safetensors" >"$dir/train.log" 2>&1 || { cat "$dir/train.log" >&2; return 1; }
}

# bench_serve_vaed VAED DIR THREADS: vaed serve on 127.0.0.1 (a free port)
# over DIR/var, logging to DIR/vaed.log; sets vaed_pid and vaed_port.
bench_serve_vaed() {
    local vaed=$1 dir=$2 threads=$3
    VAED_DATA=${VAED_DATA:-$PWD/data} "$vaed" serve --listen 127.0.0.1:0 --data-dir "$dir/var" \
        --port-file "$dir/port" --threads "$threads" --max-connections 1024 \
        >"$dir/vaed.log" 2>&1 &
    vaed_pid=$!
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
    [ -s "$dir/port" ] || { echo "$bench_name: vaed did not start:" >&2; cat "$dir/vaed.log" >&2; return 1; }
    vaed_port=$(cat "$dir/port")
}

# bench_stop PID...: stops and reaps the servers started (empty PIDs skipped).
bench_stop() {
    local pid
    for pid in "$@"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# bench_free_port: a port of 127.0.0.1 free now, for a reference server.
bench_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_wait_ready LOG: waits up to 30 s for a reference server to print
# "ready" into LOG; fails with the log otherwise.
bench_wait_ready() {
    for _ in $(seq 300); do grep -q ready "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "$bench_name: the reference server did not start:" >&2
    cat "$1" >&2
    return 1
}

# bench_encode_body FILE: MNIST test image 0 as an /encode body.
bench_encode_body() {
    /usr/bin/python3 - "$1" <<'PY'
import sys, json
with open("data/mnist/t10k-images-idx3-ubyte", "rb") as f:
    f.read(16)
    raw = f.read(784)
json.dump({"x": [[round(b / 255.0, 6) for b in raw]]}, open(sys.argv[1], "w"))
PY
}

# bench_post_lua OUT [BODY_FILE]: a wrk script that POSTs BODY_FILE as JSON,
# or an empty body.
bench_post_lua() {
    {
        echo 'wrk.method = "POST"'
        if [ -n "${2:-}" ]; then
            echo 'wrk.headers["Content-Type"] = "application/json"'
            printf 'wrk.body = [==[%s]==]\n' "$(cat "$2")"
        else
            echo 'wrk.headers["Content-Length"] = "0"'
        fi
    } >"$1"
}

# bench_to_ms VALUE: wrk's "1.23ms" / "456.00us" / "1.10s" in milliseconds.
bench_to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}

# bench_wrk LOG WRK_ARGS...: runs wrk --latency WRK_ARGS, keeps its output in
# LOG, prints "req/s p50_ms p99_ms non2xx".
bench_wrk() {
    local log=$1 out rps p50 p99 bad
    shift
    out=$(wrk --latency "$@" 2>&1)
    echo "$out" >"$log"
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
    p50=$(bench_to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
    p99=$(bench_to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
    bad=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { print $5 }')
    echo "$rps $p50 $p99 ${bad:-0}"
}
