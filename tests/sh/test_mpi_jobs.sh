#!/usr/bin/env bash
# POST /jobs with "ranks": 2 against a real daemon: refused (422) by a daemon
# without --mpi-hostfile; with one (this host, 2 slots) the job runs as two
# Open MPI ranks with the same events as a local job (an epoch event per
# epoch, the model registered), its test loss within 0.3 nats of the same
# job with one process; a cancel stops the ranks (no rank left); SIGTERM to
# the daemon keeps the ranks' position and the job resumes at the next start
# without training its first epochs again. `mpirun vaed train --push` uploads
# rank 0's checkpoint once.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
command -v mpirun >/dev/null || { echo "no mpirun (openmpi-bin): skipped"; exit 77; }
work=$(mktemp -d /tmp/vaed-test-mpi-jobs.XXXXXX)
daemon=
trap '[ -z "$daemon" ] || kill -KILL "$daemon" 2>/dev/null; wait; rm -rf -- "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# the ranks check no leaks (Open MPI's own at exit); the daemon does
export OMPI_MCA_mca_base_env_list="ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

key=mpi-jobs-test-token-0123456789
printf '%s\n' "$key" >"$work/key"; chmod 600 "$work/key"
echo "localhost slots=2" >"$work/hosts"
# serve [FLAGS...]: a daemon on a free port of 127.0.0.1, on this tree's data
serve() {
    rm -f "$work/port"
    VAED_TOKEN= VAED_DATA="$root/data" "$vaed" serve --listen "127.0.0.1:${port:-0}" \
        --data-dir "$work/var" --port-file "$work/port" --token-file "$work/key" "$@" \
        >>"$work/daemon.log" 2>&1 &
    daemon=$!
    local i
    for i in $(seq 400); do [ -s "$work/port" ] && break; sleep 0.05; done
    [ -s "$work/port" ] || { cat "$work/daemon.log"; echo "FAIL: no daemon"; exit 1; }
    port=$(cat "$work/port")
    url=http://127.0.0.1:$port
}
submit() { # submit SPEC: the job's id on stdout
    "$vaed" jobs submit --url "$url" --token-file "$work/key" - <<<"$1" | awk '/^job [0-9]+ /{ print $2 }'
}
spec() { # spec RANKS EPOCHS SEED
    printf '{"model": "m%s", "data": "mnist", "limit": 1500, "hidden": [64], "latent": 8, "batch": 50, "epochs": %s, "seed": %s, "ranks": %s}' \
        "$1" "$2" "$3" "$1"
}
ranks_left() { pgrep -f -- "--job-spec $work/" | wc -l; }

serve
out=$(curl -s -o "$work/body" -w '%{http_code}' -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' --data "$(spec 2 1 1)" "$url/jobs")
[ "$out" = 422 ] || fail "ranks without a hostfile: HTTP $out"
grep -q 'mpi-hostfile' "$work/body" || fail "ranks without a hostfile: $(cat "$work/body")"
out=$(curl -s -o "$work/body" -w '%{http_code}' -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' --data '{"model": "x", "ranks": 0}' "$url/jobs")
[ "$out" = 422 ] && grep -q 'ranks.* out of range' "$work/body" || fail "ranks 0: HTTP $out $(cat "$work/body")"
kill -TERM "$daemon"; wait "$daemon" || true; daemon=
port=
serve --mpi-hostfile "$work/hosts"

# the same job with 2 ranks and with 1: same events, test loss within 0.3 nats
two=$(submit "$(spec 2 3 5)")
"$vaed" jobs watch --url "$url" "$two" >"$work/two.out" 2>/dev/null || fail "2-rank job: $(cat "$work/two.out")"
one=$(submit "$(spec 1 3 5)")
"$vaed" jobs watch --url "$url" "$one" >"$work/one.out" 2>/dev/null || fail "1-rank job: $(cat "$work/one.out")"
[ "$(grep -c '^epoch [123]/3 ' "$work/two.out")" -eq 3 ] || fail "2-rank job events: $(cat "$work/two.out")"
grep -q "^job $two succeeded: m2 version 1$" "$work/two.out" || fail "2-rank job: $(cat "$work/two.out")"
loss() { grep '^epoch 3/3 ' "$1" | grep -oE 'test[^0-9]*[0-9]+\.[0-9]+' | grep -oE '[0-9]+\.[0-9]+$'; }
a=$(loss "$work/one.out") b=$(loss "$work/two.out")
echo "test loss after 3 epochs: 1 rank $a, 2 ranks $b"
python3 -c "import sys; sys.exit(0 if abs($a - $b) <= 0.3 else 1)" 2>/dev/null \
    || fail "test loss: 1 rank '$a', 2 ranks '$b' ($(grep '^epoch 3/3' "$work/one.out" "$work/two.out"))"
[ "$(ranks_left)" -eq 0 ] || fail "ranks left after the job"

# cancel: the ranks stop, none is left
long=$(submit "$(spec 2 200 6)")
"$vaed" jobs watch --url "$url" "$long" >"$work/cancel.out" 2>/dev/null &
watcher=$!
for i in $(seq 600); do grep -q '^epoch 1/' "$work/cancel.out" && break; sleep 0.05; done
"$vaed" jobs cancel --url "$url" --token-file "$work/key" "$long" >/dev/null || fail "cancel refused"
rc=0
wait "$watcher" || rc=$?
[ "$rc" -eq 1 ] || fail "watch of the cancelled 2-rank job: exit $rc"
grep -q "^job $long cancelled$" "$work/cancel.out" || fail "cancel: $(cat "$work/cancel.out")"
for i in $(seq 100); do [ "$(ranks_left)" -eq 0 ] && break; sleep 0.1; done
[ "$(ranks_left)" -eq 0 ] || fail "ranks left after a cancel"

# SIGTERM mid-job: the ranks keep their position; the next daemon resumes it
job=$(submit "$(spec 2 6 7)")
"$vaed" jobs watch --url "$url" --retry-s 30 "$job" >"$work/resume.out" 2>/dev/null &
watcher=$!
for i in $(seq 600); do grep -q '^epoch 2/' "$work/resume.out" && break; sleep 0.05; done
kill -TERM "$daemon"
rc=0
wait "$daemon" || rc=$?
daemon=
[ "$rc" -eq 0 ] || fail "daemon with a 2-rank job, SIGTERM: exit $rc"
[ "$(ranks_left)" -eq 0 ] || fail "ranks outlived their daemon"
serve --mpi-hostfile "$work/hosts"
rc=0
wait "$watcher" || rc=$?
[ "$rc" -eq 0 ] || fail "the resumed 2-rank job: exit $rc ($(cat "$work/resume.out"))"
grep -q "^job $job queued (interrupted)$" "$work/resume.out" || fail "no interruption: $(cat "$work/resume.out")"
grep -q "^job $job succeeded" "$work/resume.out" || fail "resumed job: $(cat "$work/resume.out")"
[ "$(grep -c '^epoch 1/6 ' "$work/resume.out")" -eq 1 ] || fail "the resumed job trained epoch 1 again"
[ "$(grep -c '^epoch [0-9]*/6 ' "$work/resume.out")" -eq 6 ] || fail "resumed job epochs: $(cat "$work/resume.out")"

# more ranks than the hostfile's slots: the job fails with mpirun's reason
bad=$(submit "$(spec 3 1 8)")
rc=0
"$vaed" jobs watch --url "$url" "$bad" >"$work/bad.out" 2>/dev/null || rc=$?
[ "$rc" -ne 0 ] || fail "a job of 3 ranks on 2 slots succeeded"
"$vaed" jobs show --url "$url" "$bad" | grep -q 'not enough slots' \
    || fail "3 ranks on 2 slots: $("$vaed" jobs show --url "$url" "$bad")"

# `mpirun vaed train --push`: rank 0 alone uploads its checkpoint, once
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 \
    "$vaed" train --data data/mnist/train-images-idx3-ubyte --limit 300 --hidden 32 --latent 4 \
    --epochs 1 --iwae 0 --out "$work/pushed.st" --push "$url" --push-model pushed \
    --token-file "$work/key" >"$work/push.out" 2>&1 || fail "train --push: $(tail -5 "$work/push.out")"
[ "$(grep -c '^pushed pushed version 1 ' "$work/push.out")" -eq 1 ] || fail "train --push: $(cat "$work/push.out")"

kill -TERM "$daemon"; wait "$daemon" || true; daemon=
if [ "$failures" -ne 0 ]; then
    echo "--- daemon.log"; cat "$work/daemon.log"
    exit 1
fi
echo "mpi jobs: all checks passed"
