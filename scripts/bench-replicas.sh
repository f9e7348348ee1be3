#!/usr/bin/env bash
# The shared PostgreSQL registry against the SQLite default, in one run on
# 127.0.0.1: the same trained model served from a SQLite file and from a
# PostgreSQL database (a throwaway server started here), one daemon at a time.
#   scripts/bench-replicas.sh [BUILD_DIR]        (default build)
# Hot path (wrk, DURATION 5 s, 64 connections, 1 thread, ROUNDS 3 interleaved
# rounds, medians): POST /encode of one image, POST /sample?n=16,
# GET /interpolate (one URL): requests/s and p99 on each registry and the
# ratio PostgreSQL / SQLite (target: within 10 %: the registry stays off the
# hot path). ONLY=TEXT: only the endpoints whose label contains TEXT. Registry path: upload latency (N_UPLOADS
# distinct checkpoints, curl's time_total, median and max) on each; job claim
# latency, from POST /jobs to the job's started_at, on the replica that got
# the POST and (PostgreSQL) on another replica, whose worker finds the job by
# polling the shared queue. The model is the default 784-400-20 MLP trained
# for one epoch on MNIST here.
# BASELINE=OTHER_VAED: instead, uploads to the PostgreSQL registry with
# OTHER_VAED (e.g. main's build) against this build, ROUNDS interleaved
# rounds: each upload's latency, and GET /models answered meanwhile (curl in
# a loop while the N_UPLOADS uploads run one after another): median, p90
# and max.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${1:-build}
vaed=$root/$build/vaed
duration=${DURATION:-5s}
conns=${CONNECTIONS:-64}
n_uploads=${N_UPLOADS:-20}
n_jobs=${N_JOBS:-8}
pgbin=${VAED_PG_BIN:-/usr/lib/postgresql/15/bin}

command -v wrk >/dev/null || { echo "bench-replicas: wrk is not installed (scripts/install-deps.sh --with-bench)" >&2; exit 1; }
[ -x "$vaed" ] || { echo "bench-replicas: $vaed not found (make all)" >&2; exit 1; }
[ -x "$pgbin/postgres" ] || { echo "bench-replicas: no PostgreSQL in $pgbin (make deps)" >&2; exit 1; }
[ -f data/mnist/t10k-images-idx3-ubyte ] || bash scripts/get-data.sh mnist

tmp=$(mktemp -d /tmp/vaed-bench-replicas-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -f "$tmp/pg/data/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$tmp/pg/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# initdb and postgres refuse root: as root they run as Debian's postgres user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

echo "bench-replicas: training the benchmark model (784-400-20, 1 epoch)..." >&2
"$vaed" train --data mnist --epochs 1 --register digits --data-dir "$tmp/sqlite" \
    --out "$tmp/digits.safetensors" >"$tmp/train.log" 2>&1

echo "bench-replicas: starting PostgreSQL..." >&2
mkdir -p "$tmp/pg"
if [ "$(id -u)" = 0 ]; then chmod 711 "$tmp"; chown postgres: "$tmp/pg"; fi
pg_port=$(free_port)
as_pg "$pgbin/initdb" -D "$tmp/pg/data" -U vaed -A trust -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1
as_pg "$pgbin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/log" -w \
    -o "-p $pg_port -k $tmp/pg -c listen_addresses=127.0.0.1" start >/dev/null
url="postgresql://vaed@127.0.0.1:$pg_port/postgres"
"$vaed" registry copy --from "$tmp/sqlite/registry.db" --to "$url" >&2

# serve NAME DATA_DIR [ARGS...]: starts a daemon, sets $port and $pid.
serve() {
    local name=$1 dir=$2
    shift 2
    rm -f "$tmp/$name.port"
    VAED_DATA=$root/data VAED_TOKEN=bench-replicas-token-0123 "$vaed" serve --listen 127.0.0.1:0 \
        --data-dir "$dir" --port-file "$tmp/$name.port" --max-connections 1024 "$@" \
        >"$tmp/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do [ -s "$tmp/$name.port" ] && break; sleep 0.1; done
    port=$(cat "$tmp/$name.port")
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

/usr/bin/python3 - "$tmp/encode.json" <<'PY'
import sys, json
with open("data/mnist/t10k-images-idx3-ubyte", "rb") as f:
    f.read(16)
    raw = f.read(784)
json.dump({"x": [[round(b / 255.0, 6) for b in raw]]}, open(sys.argv[1], "w"))
PY
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[%s]==]\n' \
    "$(cat "$tmp/encode.json")" >"$tmp/encode.lua"
printf 'wrk.method = "POST"\nwrk.headers["Content-Length"] = "0"\n' >"$tmp/post.lua"
: >"$tmp/get.lua"

to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
# wrk_run URL SCRIPT -> "rps p99"
wrk_run() {
    local out
    curl -fsS -o /dev/null -X "$([ "$2" = get ] && echo GET || echo POST)" \
        $([ "$2" = encode ] && echo "-H Content-Type:application/json --data-binary @$tmp/encode.json") "$1"
    out=$(wrk -t1 -c"$conns" -d"$duration" --latency -s "$tmp/$2.lua" "$1" 2>&1)
    echo "$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }') $(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")"
}

endpoints=(
    "POST /encode (1 image)|/encode|encode"
    "POST /sample?n=16|/sample?n=16&seed=1|post"
    "GET /interpolate (one URL)|/interpolate?from=mnist:test:3&to=mnist:test:7&steps=10|get"
)
# Both daemons up at once (the idle one costs nothing), and the runs
# interleaved, SQLite then PostgreSQL, ROUNDS times: the machine's other load
# drifts alike for both; the table has each backend's median round.
rounds=${ROUNDS:-3}
serve sqlite "$tmp/sqlite"
sqlite_port=$port sqlite_pid=$pid
serve postgresql "$tmp/pgvar" --registry "$url"
pg_port_http=$port pg_pid=$pid
declare -A res
median_of() { sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
for e in "${endpoints[@]}"; do
    IFS='|' read -r label path script <<<"$e"
    s_rps=() s_p99=() p_rps=() p_p99=()
    [ -z "${ONLY:-}" ] || [[ "$label" == *"$ONLY"* ]] || continue
    [ -z "${BASELINE:-}" ] || continue
    for round in $(seq "$rounds"); do
        echo "bench-replicas: $label, round $round of $rounds..." >&2
        # odd rounds SQLite first, even rounds PostgreSQL first
        for b in $([ $((round % 2)) = 1 ] && echo "sqlite pg" || echo "pg sqlite"); do
            if [ "$b" = sqlite ]; then
                read -r x y <<<"$(wrk_run "http://127.0.0.1:$sqlite_port$path" "$script")"
                s_rps+=("$x") s_p99+=("$y")
            else
                read -r x y <<<"$(wrk_run "http://127.0.0.1:$pg_port_http$path" "$script")"
                p_rps+=("$x") p_p99+=("$y")
            fi
        done
    done
    res["sqlite|$label"]="$(printf '%s\n' "${s_rps[@]}" | median_of) $(printf '%s\n' "${s_p99[@]}" | median_of)"
    res["postgresql|$label"]="$(printf '%s\n' "${p_rps[@]}" | median_of) $(printf '%s\n' "${p_p99[@]}" | median_of)"
done
stop "$sqlite_pid"
stop "$pg_pid"

# Distinct valid checkpoints: the trained file with its first weight changed.
/usr/bin/python3 - "$tmp/digits.safetensors" "$tmp/up" "$n_uploads" <<'PY'
import json, os, struct, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = bytearray(open(src, "rb").read())
hlen = struct.unpack("<Q", b[:8])[0]
start = 8 + hlen
os.makedirs(out, exist_ok=True)
for i in range(n):
    b[start:start + 4] = struct.pack("<f", 1e-3 * (i + 1))
    open(f"{out}/{i}.safetensors", "wb").write(b)
PY
# upload_ms PORT -> "median max" over the files
upload_ms() {
    local t=()
    for f in "$tmp"/up/*.safetensors; do
        t+=("$(curl -fsS -o /dev/null -w '%{time_total}' -X POST -H 'Authorization: Bearer bench-replicas-token-0123' \
            -H 'Content-Type: application/octet-stream' --data-binary @"$f" \
            "http://127.0.0.1:$1/models/up-$2/checkpoints")")
    done
    printf '%s\n' "${t[@]}" | sort -n | awk '{ a[NR] = $1 * 1000 } END { printf "%.1f %.1f", a[int((NR + 1) / 2)], a[NR] }'
}
# claim_ms POST_PORT READ_PORT -> "median max" ms from created_at to started_at
claim_ms() {
    local ids=() id
    for i in $(seq "$n_jobs"); do
        id=$(curl -fsS -X POST -H 'Authorization: Bearer bench-replicas-token-0123' -H 'Content-Type: application/json' \
            -d "{\"model\":\"claim\",\"data\":\"mnist\",\"hidden\":[16],\"latent\":2,\"epochs\":1,\"limit\":256,\"seed\":$i}" \
            "http://127.0.0.1:$1/jobs" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
        for _ in $(seq 600); do
            curl -fsS "http://127.0.0.1:$2/jobs/$id" | grep -q '"state":"succeeded"' && break
            sleep 0.05
        done
        ids+=("$id")
    done
    for id in "${ids[@]}"; do curl -fsS "http://127.0.0.1:$2/jobs/$id"; echo; done | /usr/bin/python3 -c '
import json, sys
from datetime import datetime
ms = []
for line in sys.stdin:
    j = json.loads(line)
    f = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    ms.append((f(j["started_at"]) - f(j["created_at"])).total_seconds() * 1000)
ms.sort()
print("%.1f %.1f" % (ms[(len(ms) - 1) // 2], ms[-1]))'
}

# uploads_with_reads PORT NAME -> "upload median max" "GET /models median p90 max count"
uploads_with_reads() {
    : >"$tmp/gets"
    rm -f "$tmp/up.done"
    (while [ ! -e "$tmp/up.done" ]; do
        curl -fsS -o /dev/null -w '%{time_total}\n' -H 'Authorization: Bearer bench-replicas-token-0123' \
            "http://127.0.0.1:$1/models" >>"$tmp/gets"
    done) &
    local reader=$! up
    up=$(upload_ms "$1" "$2")
    touch "$tmp/up.done"
    wait "$reader"
    echo "$up $(sort -n "$tmp/gets" | awk '{ a[NR] = $1 * 1000 } END { printf "%.1f %.1f %.1f %d", a[int((NR + 1) / 2)], a[int(NR * 0.9 + 0.5)], a[NR], NR }')"
}
if [ -n "${BASELINE:-}" ]; then
    [ -x "$BASELINE" ] || { echo "bench-replicas: BASELINE $BASELINE is not a program" >&2; exit 1; }
    this_vaed=$vaed
    declare -A up_rows
    # A round not counted: the first uploads after PostgreSQL started were
    # twice as slow whichever build made them.
    serve warmup "$tmp/pg-warmup" --registry "$url"
    uploads_with_reads "$port" warmup >/dev/null
    stop "$pid"
    for round in $(seq "$rounds"); do
        for b in $([ $((round % 2)) = 1 ] && echo "baseline this" || echo "this baseline"); do
            echo "bench-replicas: uploads with reads, $b, round $round of $rounds..." >&2
            vaed=$([ "$b" = baseline ] && echo "$BASELINE" || echo "$this_vaed")
            serve "$b" "$tmp/pg-$b" --registry "$url"
            up_rows["$b|$round"]=$(uploads_with_reads "$port" "$b-$round")
            stop "$pid"
        done
    done
    vaed=$this_vaed
    echo
    echo "PostgreSQL registry, $n_uploads uploads of $(stat -c %s "$tmp/up/0.safetensors") bytes one after another per round, GET /models in a curl loop meanwhile; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "baseline: $BASELINE; this: $this_vaed"
    echo
    echo "| build | round | upload median / max ms | GET /models median / p90 / max ms (n) |"
    echo "|---|---:|---:|---:|"
    for round in $(seq "$rounds"); do
        for b in baseline this; do
            read -r a c g p h n <<<"${up_rows["$b|$round"]}"
            echo "| $b | $round | $a / $c | $g / $p / $h ($n) |"
        done
    done
    exit 0
fi

echo "bench-replicas: uploads and job claims..." >&2
serve sqlite "$tmp/sqlite"
up_sqlite=$(upload_ms "$port" sqlite)
claim_sqlite=$(claim_ms "$port" "$port")
stop "$pid"
serve postgresql "$tmp/pgvar" --registry "$url"
up_pg=$(upload_ms "$port" pg)
claim_pg=$(claim_ms "$port" "$port")
stop "$pid"
# Two replicas: the one that gets the POST runs no workers.
serve front "$tmp/pgfront" --registry "$url" --workers 0
front=$port
serve worker "$tmp/pgworker" --registry "$url" --workers 1
claim_remote=$(claim_ms "$front" "$port")

echo
echo "wrk -t1 -c$conns -d$duration x $rounds interleaved rounds (medians) on 127.0.0.1, $(nproc) cores; the same model from a SQLite file and from PostgreSQL $("$pgbin/postgres" --version | awk '{ print $3 }')"
echo
echo "| endpoint | SQLite req/s | SQLite p99 ms | PostgreSQL req/s | PostgreSQL p99 ms | PostgreSQL / SQLite |"
echo "|---|---:|---:|---:|---:|---:|"
for e in "${endpoints[@]}"; do
    IFS='|' read -r label _ _ <<<"$e"
    [ -n "${res["sqlite|$label"]:-}" ] || continue
    read -r s_rps s_p99 <<<"${res["sqlite|$label"]}"
    read -r p_rps p_p99 <<<"${res["postgresql|$label"]}"
    echo "| $label | $s_rps | $s_p99 | $p_rps | $p_p99 | $(awk -v a="$p_rps" -v b="$s_rps" 'BEGIN { printf "%.2f", a / b }') |"
done
echo
echo "| registry path ($n_uploads uploads of 1.3 MB, $n_jobs jobs) | SQLite median / max ms | PostgreSQL median / max ms |"
echo "|---|---:|---:|"
read -r a b <<<"$up_sqlite"; read -r c d <<<"$up_pg"
echo "| upload (POST /models/NAME/checkpoints) | $a / $b | $c / $d |"
read -r a b <<<"$claim_sqlite"; read -r c d <<<"$claim_pg"
echo "| job claim, same replica (created_at to started_at) | $a / $b | $c / $d |"
read -r c d <<<"$claim_remote"
echo "| job claim, another replica (woken by NOTIFY) | - | $c / $d |"
