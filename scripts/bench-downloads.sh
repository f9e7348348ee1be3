#!/usr/bin/env bash
# /healthz while checkpoints are downloaded from a PostgreSQL registry, in
# one run on 127.0.0.1 (a throwaway PostgreSQL from build/tests/pg_run):
#   scripts/bench-downloads.sh [BUILD_DIR]        (default build)
#   BASELINE=OTHER_VAED scripts/bench-downloads.sh  (e.g. main's build/vaed)
# The checkpoint: a 784-1300-20 MLP trained one epoch on 64 random images
# here (some 8 MB, 8 pieces of 1 MiB). Per daemon: PROBES (200) /healthz
# one after another, each on a new connection (python3, perf_counter), idle,
# then while N_DOWNLOADS (16) clients (python3 threads) download the
# checkpoint over and over, each reading at RATE (8M = 8 MiB/s), paced by
# the client so that every build serves the same bytes per second (curl's
# --limit-rate let a build that sends in bursts go some 1.5x faster):
# p50 / p99 / max ms, the downloads finished meanwhile (each body's size
# checked) and the MB/s received. With BASELINE, ROUNDS (3) rounds alternate
# which daemon goes first; each daemon has a database of its own. Prints the load
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

# download_clients PORT: N_DOWNLOADS threads downloading the checkpoint over
# and over until $tmp/stop, each reading at RATE, paced by the client (so
# every build is asked for the same bytes per second, however it sends
# them); prints "downloads-ok short MB/s-received".
download_clients() {
    python3 - "$1" "$n_dl" "$rate" "$tmp/stop" "$size" <<'EOF'
import http.client, os, sys, threading, time
port, n, rate, stop, size = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
mult = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
bps = float(rate[:-1]) * mult[rate[-1].upper()] if rate[-1].upper() in mult else float(rate)
ok = short = total = 0
lock = threading.Lock()
def client():
    global ok, short, total
    while not os.path.exists(stop):
        got = 0
        try:
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
            c.request('GET', '/models/wide/versions/latest/file')
            r = c.getresponse()
            t0 = time.perf_counter()
            while True:
                b = r.read(65536)
                if not b:
                    break
                got += len(b)
                ahead = t0 + got / bps - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            c.close()
        except (OSError, http.client.HTTPException):
            pass
        with lock:
            total += got
            if got == size:
                ok += 1
            else:
                short += 1
t0 = time.perf_counter()
ts = [threading.Thread(target=client) for _ in range(n)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(ok, short, '%.1f' % (total / (time.perf_counter() - t0) / 1e6))
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
    rm -f "$tmp/stop" "$dir/dl"
    download_clients "$port" >"$dir/dl" &
    local dls=$!
    sleep 1 # every download under way
    loaded=$(probe "$port")
    touch "$tmp/stop"
    wait "$dls" 2>/dev/null || true
    local done_ok bad mbps
    read -r done_ok bad mbps <"$dir/dl"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$name $idle $loaded $done_ok $bad $mbps"
}

echo "bench-downloads: $size-byte checkpoint, $n_dl downloads at <= $rate/s each, $probes probes; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %5s | %-22s | %-22s | %s\n' build round "idle p50/p99/max ms" "loaded p50/p99/max ms" "downloads ok (short), MB/s"
for r in $(seq "$rounds"); do
    if [ -z "$base" ]; then
        lines=$(run this "$this" "$VAED_TEST_PG_URL1")
    elif [ $((r % 2)) = 1 ]; then
        lines=$(run baseline "$base" "$VAED_TEST_PG_URL2"; run this "$this" "$VAED_TEST_PG_URL1")
    else
        lines=$(run this "$this" "$VAED_TEST_PG_URL1"; run baseline "$base" "$VAED_TEST_PG_URL2")
    fi
    echo "$lines" | while read -r name i50 i99 imax l50 l99 lmax ok bad mbps; do
        printf '%-9s %5s | %6s %6s %8s | %6s %7s %8s | %s (%s), %s\n' "$name" "$r" "$i50" "$i99" "$imax" \
            "$l50" "$l99" "$lmax" "$ok" "$bad" "$mbps"
    done
    if [ -n "$base" ]; then
        echo "$lines" | awk -v r="$r" '{ i99[$1] = $3; l99[$1] = $6 }
            END { printf "round %s: loaded p99 this/baseline %.3f; loaded/idle p99: this %.2f, baseline %.2f\n",
                  r, l99["this"] / l99["baseline"], l99["this"] / i99["this"], l99["baseline"] / i99["baseline"] }'
    fi
done
echo "bench-downloads: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
