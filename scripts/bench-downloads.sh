#!/usr/bin/env bash
# /healthz while checkpoints are downloaded from a PostgreSQL registry, in
# one run on 127.0.0.1 (a throwaway PostgreSQL from build/tests/pg_run):
#   scripts/bench-downloads.sh [BUILD_DIR]        (default build)
#   BASELINE=OTHER_VAED scripts/bench-downloads.sh  (e.g. main's build/vaed)
# The checkpoint: a 784-1300-20 MLP trained one epoch on 64 random images
# here (some 8 MB, 8 pieces of 1 MiB). Per daemon: PROBES (200) /healthz
# one after another, each on a new connection (python3, perf_counter), idle,
# then while N_DOWNLOADS (16) curl clients download the checkpoint over and
# over (each at most RATE, 8M/s, so downloads last through the probes):
# p50 / p99 / max ms, and the downloads finished meanwhile (each body's
# size checked). With BASELINE, ROUNDS (3) rounds alternate which daemon
# goes first; each daemon has a database of its own. Prints the load
# average before and after, and per round the ratio this / baseline of
# the loaded p99 and of loaded / idle.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${1:-build}
if [ -z "${VAED_TEST_PG_URL2:-}" ]; then
    [ -x "$build/tests/pg_run" ] || { echo "bench-downloads: $build/tests/pg_run not found (make all)" >&2; exit 1; }
    exec "$build/tests/pg_run" -n 2 bash "$0" "$@"
fi
this=$root/$build/vaed
base=${BASELINE:-}
rounds=${ROUNDS:-3}
probes=${PROBES:-200}
n_dl=${N_DOWNLOADS:-16}
rate=${RATE:-8M}
command -v curl >/dev/null || { echo "bench-downloads: curl is not installed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vaed-bench-downloads-XXXXXX)
pids=()
cleanup() {
    touch "$tmp/stop"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

python3 - "$tmp/tiny-images-idx3-ubyte" <<'EOF'
import random, struct, sys
random.seed(3)
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('>IIII', 0x803, 64, 28, 28))
    f.write(bytes(random.randrange(256) for _ in range(64 * 784)))
EOF
"$this" train --data "$tmp/tiny-images-idx3-ubyte" --hidden 1300 --epochs 1 \
    --out "$tmp/wide.safetensors" >"$tmp/train.log" 2>&1
size=$(stat -c %s "$tmp/wide.safetensors")

# probe PORT: "p50 p99 max" in ms of PROBES sequential GET /healthz.
probe() {
    python3 - "$1" "$probes" <<'EOF'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ts = []
for _ in range(n):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    c.request('GET', '/healthz')
    r = c.getresponse(); r.read(); c.close()
    assert r.status == 200, r.status
    ts.append((time.perf_counter() - t0) * 1e3)
ts.sort()
print('%.2f %.2f %.2f' % (ts[n // 2], ts[min(n - 1, int(n * 0.99))], ts[-1]))
EOF
}

# run NAME VAED URL: one daemon's line.
run() {
    local name=$1 bin=$2 url=$3 dir="$tmp/$1" port pid
    rm -rf "$dir"; mkdir -p "$dir"
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir" --port-file "$dir/port" \
        --registry "$url" --max-per-ip 0 >"$dir/log" 2>&1 &
    pid=$!; pids+=("$pid")
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
    port=$(cat "$dir/port")
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/octet-stream' \
        --data-binary @"$tmp/wide.safetensors" "http://127.0.0.1:$port/models/wide/checkpoints" || true
    local idle loaded
    idle=$(probe "$port")
    rm -f "$tmp/stop" "$dir"/dl.*
    local dls=()
    for i in $(seq "$n_dl"); do
        ( while [ ! -f "$tmp/stop" ]; do
              curl -s -o /dev/null -w '%{size_download}\n' --limit-rate "$rate" \
                  "http://127.0.0.1:$port/models/wide/versions/latest/file" >>"$dir/dl.$i" || true
          done ) &
        dls+=($!)
    done
    sleep 1 # every download under way
    loaded=$(probe "$port")
    touch "$tmp/stop"
    wait "${dls[@]}" 2>/dev/null || true
    local done_ok bad
    done_ok=$(cat "$dir"/dl.* | awk -v s="$size" '$1 == s' | wc -l)
    bad=$(cat "$dir"/dl.* | awk -v s="$size" '$1 != s' | wc -l)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$name $idle $loaded $done_ok $bad"
}

echo "bench-downloads: $size-byte checkpoint, $n_dl downloads at <= $rate/s each, $probes probes; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %5s | %-22s | %-22s | %s\n' build round "idle p50/p99/max ms" "loaded p50/p99/max ms" "downloads ok (short)"
for r in $(seq "$rounds"); do
    if [ -z "$base" ]; then
        lines=$(run this "$this" "$VAED_TEST_PG_URL1")
    elif [ $((r % 2)) = 1 ]; then
        lines=$(run baseline "$base" "$VAED_TEST_PG_URL2"; run this "$this" "$VAED_TEST_PG_URL1")
    else
        lines=$(run this "$this" "$VAED_TEST_PG_URL1"; run baseline "$base" "$VAED_TEST_PG_URL2")
    fi
    echo "$lines" | while read -r name i50 i99 imax l50 l99 lmax ok bad; do
        printf '%-9s %5s | %6s %6s %8s | %6s %7s %8s | %s (%s)\n' "$name" "$r" "$i50" "$i99" "$imax" \
            "$l50" "$l99" "$lmax" "$ok" "$bad"
    done
    if [ -n "$base" ]; then
        echo "$lines" | awk -v r="$r" '{ i99[$1] = $3; l99[$1] = $6 }
            END { printf "round %s: loaded p99 this/baseline %.3f; loaded/idle p99: this %.2f, baseline %.2f\n",
                  r, l99["this"] / l99["baseline"], l99["this"] / i99["this"], l99["baseline"] / i99["baseline"] }'
    fi
done
echo "bench-downloads: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
