#!/usr/bin/env bash
# Requests/s of vaed's JSON image answers against a reference build of vaed
# (another checkout, e.g. main before a change), in the same run: the same
# checkpoint and flags, both daemons on 127.0.0.1, wrk rounds alternating
# between them, the best round of each kept:
#   scripts/bench-json.sh REFERENCE_BUILD_DIR [BUILD_DIR]   (default build)
# e.g.  git worktree add /tmp/json-base main && make -C /tmp/json-base -j2 &&
#       scripts/bench-json.sh /tmp/json-base/build
# Endpoints: POST /sample?n=16&seed=1&format=json (16 images of 784 floats and
# their latents as JSON), POST /decode of 16 latents (JSON in, JSON out), and
# for scale POST /sample?n=16&seed=1 as PNG. The model is the default
# 784-400-20 MLP trained for one epoch on MNIST here. Before timing, the two
# builds' JSON bodies are parsed and compared as float32, to 1e-5 (the
# products of another build may differ in their last bits; the text's own
# round trip is tested bit for bit by the suite).
# Also prints each daemon's CPU time per request over its best round.
# Environment: DURATION (default 5s), CONNECTIONS (64), WRK_THREADS (1),
# ROUNDS (3 per daemon), VAED_THREADS (0 = cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[ $# -ge 1 ] || { echo "usage: scripts/bench-json.sh REFERENCE_BUILD_DIR [BUILD_DIR]" >&2; exit 2; }
ref_vaed=$1/vaed
vaed=${2:-build}/vaed
duration=${DURATION:-5s}
conns=${CONNECTIONS:-64}
wrk_threads=${WRK_THREADS:-1}
rounds=${ROUNDS:-3}

command -v wrk >/dev/null || { echo "bench-json: wrk is not installed (scripts/install-deps.sh --with-bench)" >&2; exit 1; }
[ -x "$vaed" ] || { echo "bench-json: $vaed not found (make all)" >&2; exit 1; }
[ -x "$ref_vaed" ] || { echo "bench-json: $ref_vaed not found (build the reference)" >&2; exit 1; }
[ -f data/mnist/t10k-images-idx3-ubyte ] || bash scripts/get-data.sh mnist

tmp=$(mktemp -d /tmp/vaed-bench-json-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "bench-json: training the benchmark model (784-400-20, 1 epoch)..." >&2
"$vaed" train --data mnist --epochs 1 --register digits --data-dir "$tmp/var" \
    --out "$tmp/digits.safetensors" >"$tmp/train.log" 2>&1
cp -r "$tmp/var" "$tmp/var-ref"

# start BIN DATA_DIR PORT_FILE: a daemon in the background (in this shell, so
# that cleanup knows its pid); its port is then in PORT_FILE
start() {
    VAED_DATA=$root/data "$1" serve --listen 127.0.0.1:0 --data-dir "$2" --port-file "$3" \
        --threads "${VAED_THREADS:-0}" --max-connections 1024 >"$3.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$3" ] && break; sleep 0.1; done
    [ -s "$3" ] || { echo "bench-json: $1 did not start:" >&2; cat "$3.log" >&2; exit 1; }
}
start "$vaed" "$tmp/var" "$tmp/new.port"
start "$ref_vaed" "$tmp/var-ref" "$tmp/ref.port"
new_port=$(cat "$tmp/new.port")
ref_port=$(cat "$tmp/ref.port")

# 16 latents as the /decode body
/usr/bin/python3 - "$tmp/decode.json" <<'PY'
import json, random, sys
random.seed(7)
json.dump({"z": [[round(random.gauss(0, 1), 4) for _ in range(20)] for _ in range(16)]},
          open(sys.argv[1], "w"))
PY
cat >"$tmp/decode.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[$(cat "$tmp/decode.json")]==]
LUA
cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Length"] = "0"
LUA

endpoints=(
    "sample|POST /sample?n=16 JSON|/sample?n=16&seed=1&format=json|post"
    "decode|POST /decode (16 latents) JSON|/decode?format=json|decode"
    "png|POST /sample?n=16 PNG|/sample?n=16&seed=1|post"
)

# fetch PORT PATH SCRIPT OUT
fetch() {
    if [ "$3" = decode ]; then
        curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @"$tmp/decode.json" \
            -o "$4" "http://127.0.0.1:$1$2"
    else
        curl -fsS -X POST -o "$4" "http://127.0.0.1:$1$2"
    fi
}
for e in "${endpoints[@]}"; do
    IFS='|' read -r key label path script <<<"$e"
    fetch "$new_port" "$path" "$script" "$tmp/$key.new"
    fetch "$ref_port" "$path" "$script" "$tmp/$key.ref"
    [ "$key" = png ] && continue
    /usr/bin/python3 - "$tmp/$key.new" "$tmp/$key.ref" "$label" <<'PY' || exit 1
import json, struct, sys
def floats(path):
    out = []
    def walk(v):
        if isinstance(v, list):
            for x in v: walk(x)
        elif isinstance(v, float) or isinstance(v, int):
            out.append(struct.unpack("f", struct.pack("f", v))[0])
    d = json.load(open(path))
    walk(d.get("x")); walk(d.get("z"))
    return out
a, b = floats(sys.argv[1]), floats(sys.argv[2])
# The text's round trip is tested bit for bit (unit_test_json_num,
# http_test_json_precision); across builds the products may differ in their
# last bits (the batchable endpoints' rows-independent kernel), so: 1e-5.
worst = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
if len(a) != len(b) or not a or worst > 1e-5:
    sys.exit("bench-json: %s: the two builds' answers differ (%d and %d floats, worst %g)"
             % (sys.argv[3], len(a), len(b), worst))
na, nb = len(open(sys.argv[1], "rb").read()), len(open(sys.argv[2], "rb").read())
print("bench-json: %s: %d floats, within %g of the reference's; %d bytes (reference %d, %.2fx)"
      % (sys.argv[3], len(a), worst, na, nb, na / nb), file=sys.stderr)
PY
done

# run PID PORT SCRIPT PATH -> "requests/s CPU-us-per-request": wrk's rate, and
# the daemon's user + system CPU time over the run (/proc/PID/stat) divided by
# the requests it answered, which a busy machine disturbs less than the rate
run() {
    local t0 t1 out
    t0=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    out=$(wrk -t"$wrk_threads" -c"$conns" -d"$duration" -s "$tmp/$3.lua" "http://127.0.0.1:$2$4" 2>&1)
    t1=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    echo "$out" | awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" '
        /requests in/ { n = $1 } /^Requests\/sec:/ { rps = $2 }
        END { printf "%s %.0f\n", rps, n ? t / hz * 1e6 / n : 0 }'
}

echo
echo "wrk -t$wrk_threads -c$conns -d$duration, $rounds alternating rounds per daemon (best kept), $(nproc) cores"
echo "this build: $vaed; reference: $ref_vaed"
echo
echo "| endpoint | this build req/s | reference req/s | ratio | CPU us/request (this / reference) | rounds req/s (this / reference) | load average |"
echo "|---|---:|---:|---:|---:|---|---|"
for e in "${endpoints[@]}"; do
    IFS='|' read -r key label path script <<<"$e"
    best_new=0 best_ref=0 cpu_new=0 cpu_ref=0 all_new= all_ref=
    for _ in $(seq "$rounds"); do
        read -r r c <<<"$(run "${pids[1]}" "$ref_port" "$script" "$path")"
        all_ref+="$r "
        if awk -v a="$best_ref" -v b="$r" 'BEGIN { exit !(b > a) }'; then best_ref=$r cpu_ref=$c; fi
        read -r r c <<<"$(run "${pids[0]}" "$new_port" "$script" "$path")"
        all_new+="$r "
        if awk -v a="$best_new" -v b="$r" 'BEGIN { exit !(b > a) }'; then best_new=$r cpu_new=$c; fi
    done
    ratio=$(awk -v a="$best_new" -v b="$best_ref" 'BEGIN { printf "%.2fx", a / b }')
    echo "| $label | $best_new | $best_ref | $ratio | $cpu_new / $cpu_ref | ${all_new% } / ${all_ref% } | $(cut -d' ' -f1-3 /proc/loadavg) |"
done
