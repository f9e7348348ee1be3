#!/usr/bin/env bash
# vaed jobs submit / watch / list / show / cancel against a real daemon with a
# token, on a small IDX data set this script writes under the daemon's data
# root (VAED_DATA): watch prints one line per epoch and exits 0 when the job
# succeeds, 1 when it is cancelled; watch follows a job across a daemon
# restart (SIGTERM, resume).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
tmp=$(mktemp -d /tmp/vaed-test-cli-jobs.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf -- "$tmp"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_fail() { # expect_fail "what" "message regex" cmd...
    local what=$1 re=$2; shift 2
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then fail "$what: exit 0 ($out)"; return; fi
    grep -qE "$re" <<<"$out" || fail "$what: message '$out' does not match '$re'"
}

# 300 images of 8x8 (IDX): the header, then a deterministic ramp of bytes.
mkdir -p "$tmp/sets"
{
    printf '\x00\x00\x08\x03\x00\x00\x01\x2c\x00\x00\x00\x08\x00\x00\x00\x08'
    seq 0 19199 | LC_ALL=C awk '{ printf "%c", ($1 * 37) % 251 + 1 }'
} >"$tmp/sets/tiny-images-idx3-ubyte"
[ "$(stat -c %s "$tmp/sets/tiny-images-idx3-ubyte")" -eq 19216 ] || { echo "FAIL: data set size"; exit 1; }

token=0123456789abcdef-jobs-token
printf '%s\n' "$token" >"$tmp/token"
start() {
    VAED_TOKEN= VAED_DATA="$tmp/sets" "$vaed" serve --listen 127.0.0.1:0 --data-dir "$tmp/data" \
        --port-file "$tmp/port" --token-file "$tmp/token" >>"$tmp/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do [ -s "$tmp/port" ] && break; sleep 0.05; done
    [ -s "$tmp/port" ] || { cat "$tmp/serve.log"; echo "FAIL: the daemon did not start"; exit 1; }
    url=http://127.0.0.1:$(cat "$tmp/port")
}
start

cat >"$tmp/short.json" <<'JSON'
{"model": "tiny", "data": "tiny-images-idx3-ubyte", "hidden": [32], "latent": 2, "epochs": 3, "seed": 4}
JSON
cat >"$tmp/long.json" <<'JSON'
{"model": "big", "data": "tiny-images-idx3-ubyte", "hidden": [1024, 1024], "latent": 8, "epochs": 40, "seed": 5}
JSON

# submit needs the token; then watch: one line per epoch, exit 0.
expect_fail "submit without a token" '401.*unauthorized' \
    env -u VAED_TOKEN "$vaed" jobs submit --url "$url" "$tmp/short.json"
out=$("$vaed" jobs submit --url "$url" --token-file "$tmp/token" "$tmp/short.json") \
    || fail "submit: $out"
id=$(awk '/^job [0-9]+ /{ print $2 }' <<<"$out")
[ -n "$id" ] || fail "submit printed no job id: $out"
rc=0
out=$("$vaed" jobs watch --url "$url" "$id" 2>/dev/null) || rc=$?
[ "$rc" -eq 0 ] || fail "watch of a job that succeeds: exit $rc ($out)"
[ "$(grep -c '^epoch [0-9]*/3 ' <<<"$out")" -eq 3 ] || fail "watch: not 3 epoch lines: $out"
grep -q "^job $id succeeded: tiny version 1$" <<<"$out" || fail "watch: no success line: $out"

# submit from stdin with --watch
out=$(sed 's/"seed": 4/"seed": 6/' "$tmp/short.json" |
    VAED_TOKEN=$token "$vaed" jobs submit --url "$url" --watch - 2>/dev/null) || fail "submit --watch -: $out"
grep -q 'succeeded: tiny version 2$' <<<"$out" || fail "submit --watch: $out"

# invalid specs: the server's reason
echo '{"model": "x", "data": "/etc/passwd"}' >"$tmp/bad.json"
expect_fail "submit outside the data root" '422.*data' \
    "$vaed" jobs submit --url "$url" --token-file "$tmp/token" "$tmp/bad.json"
echo '{"model": "x", "epochs": "many"}' >"$tmp/bad.json"
expect_fail "submit a bad value" '422.*epochs' \
    "$vaed" jobs submit --url "$url" --token-file "$tmp/token" "$tmp/bad.json"
expect_fail "submit a missing file" 'nope.json' \
    "$vaed" jobs submit --url "$url" --token-file "$tmp/token" "$tmp/nope.json"

# list and show
out=$("$vaed" jobs list --url "$url") || fail "list"
[ "$(grep -cP '^\d+\tsucceeded\ttiny\t3/3 epochs\ttiny version [12]\t' <<<"$out")" -eq 2 ] \
    || fail "list: $out"
out=$("$vaed" jobs list --url "$url" --state queued) || fail "list --state"
[ -z "$out" ] || fail "list --state queued: $out"
expect_fail "list --state bogus" '400' "$vaed" jobs list --url "$url" --state bogus
out=$("$vaed" jobs show --url "$url" "$id") || fail "show"
grep -q '"state":[[:space:]]*"succeeded"' <<<"$out" || fail "show: $out"
expect_fail "show an unknown job" '404' "$vaed" jobs show --url "$url" 9999
expect_fail "show without an id" 'usage' "$vaed" jobs show --url "$url"

# cancel a running job: watch exits 1
out=$("$vaed" jobs submit --url "$url" --token-file "$tmp/token" "$tmp/long.json") || fail "submit long"
long=$(awk '/^job [0-9]+ /{ print $2 }' <<<"$out")
"$vaed" jobs watch --url "$url" "$long" >"$tmp/watch.out" 2>/dev/null &
watch_pid=$!
for _ in $(seq 200); do grep -q '^epoch 1/' "$tmp/watch.out" 2>/dev/null && break; sleep 0.05; done
expect_fail "cancel without a token" '401' env -u VAED_TOKEN "$vaed" jobs cancel --url "$url" "$long"
out=$("$vaed" jobs cancel --url "$url" --token-file "$tmp/token" "$long") || fail "cancel: $out"
grep -qE "^job $long (cancelled|stopping)" <<<"$out" || fail "cancel: $out"
rc=0
wait "$watch_pid" || rc=$?
[ "$rc" -eq 1 ] || fail "watch of a cancelled job: exit $rc"
grep -q "^job $long cancelled$" "$tmp/watch.out" || fail "watch: $(cat "$tmp/watch.out")"
expect_fail "cancel a finished job" '409.*conflict' \
    "$vaed" jobs cancel --url "$url" --token-file "$tmp/token" "$long"

# watch across a restart: SIGTERM mid-job, start again, the job resumes
sed 's/"seed": 5/"seed": 7/' "$tmp/long.json" >"$tmp/long2.json"
out=$("$vaed" jobs submit --url "$url" --token-file "$tmp/token" "$tmp/long2.json") || fail "submit long2"
long2=$(awk '/^job [0-9]+ /{ print $2 }' <<<"$out")
"$vaed" jobs watch --url "$url" --retry-s 20 "$long2" >"$tmp/watch2.out" 2>/dev/null &
watch_pid=$!
for _ in $(seq 200); do grep -q '^epoch 2/' "$tmp/watch2.out" 2>/dev/null && break; sleep 0.05; done
old_port=$(cat "$tmp/port")
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || fail "SIGTERM: exit $rc"
# the same port, so the watcher finds it again
rm -f "$tmp/port"
VAED_TOKEN= VAED_DATA="$tmp/sets" "$vaed" serve --listen "127.0.0.1:$old_port" --data-dir "$tmp/data" \
    --port-file "$tmp/port" --token-file "$tmp/token" >>"$tmp/serve.log" 2>&1 &
pid=$!
rc=0
wait "$watch_pid" || rc=$?
[ "$rc" -eq 0 ] || fail "watch across a restart: exit $rc ($(cat "$tmp/watch2.out"))"
grep -q "^job $long2 queued (interrupted)$" "$tmp/watch2.out" || fail "watch2: no interruption: $(cat "$tmp/watch2.out")"
grep -q "^job $long2 succeeded: big version 1$" "$tmp/watch2.out" || fail "watch2: $(cat "$tmp/watch2.out")"
[ "$(grep -c '^epoch 40/40 ' "$tmp/watch2.out")" -eq 1 ] || fail "watch2: no last epoch: $(cat "$tmp/watch2.out")"
url=http://127.0.0.1:$old_port
out=$("$vaed" jobs show --url "$url" "$long2") || fail "show long2"
[ "$(grep -c '"epoch":' <<<"$out")" -ge 40 ] || fail "show long2: fewer than 40 epochs"

expect_fail "jobs without a subcommand" 'usage' "$vaed" jobs
expect_fail "jobs from nobody" 'cannot connect' "$vaed" jobs list --url http://127.0.0.1:1

if [ "$fails" -ne 0 ]; then
    echo "--- serve.log"; cat "$tmp/serve.log"
    echo "cli jobs: $fails check(s) failed"
    exit 1
fi
echo "cli jobs: all checks passed"
