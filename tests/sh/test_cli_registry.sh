#!/usr/bin/env bash
# vaed push / models / pull against a real daemon (with a token), and the
# offline vaed registry import / export / list on its database: a checkpoint
# makes the round trip byte for byte. Skips (77) without MNIST under data/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
[ -f "${VAED_DATA:-data}/mnist/train-images-idx3-ubyte" ] || { echo "no MNIST: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/vaed-test-cli-registry.XXXXXX)
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

small=(--data mnist --limit 200 --epochs 1 --hidden 16 --latent 2 --batch 50 --threads 1)
"$vaed" train "${small[@]}" --seed 1 --out "$tmp/a.safetensors" >/dev/null
"$vaed" train "${small[@]}" --seed 2 --out "$tmp/b.safetensors" >/dev/null

token=0123456789abcdef-test-token
printf '%s\n' "$token" >"$tmp/token"
VAED_TOKEN= "$vaed" serve --listen 127.0.0.1:0 --data-dir "$tmp/data" --port-file "$tmp/port" \
    --token-file "$tmp/token" >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$tmp/port" ] && break; sleep 0.05; done
[ -s "$tmp/port" ] || { cat "$tmp/serve.log"; echo "FAIL: the daemon did not start"; exit 1; }
url=http://127.0.0.1:$(cat "$tmp/port")

# push: needs the token; the same bytes twice are one version.
expect_fail "push without a token" '401.*unauthorized' \
    env -u VAED_TOKEN "$vaed" push --url "$url" --model digits "$tmp/a.safetensors"
echo wrong-token-wrong-token >"$tmp/bad"
expect_fail "push with a wrong token" '401' \
    "$vaed" push --url "$url" --model digits --token-file "$tmp/bad" "$tmp/a.safetensors"
out=$("$vaed" push --url "$url" --model digits --token-file "$tmp/token" "$tmp/a.safetensors") \
    || fail "push a"
grep -q '^pushed digits version 1 ' <<<"$out" || fail "push a: $out"
out=$(VAED_TOKEN=$token "$vaed" push --url "$url" --model digits "$tmp/a.safetensors") \
    || fail "push a again"
grep -q '^already present: digits version 1 ' <<<"$out" || fail "push a again: $out"
out=$("$vaed" push --url "$url" --model digits --token-file "$tmp/token" "$tmp/b.safetensors") \
    || fail "push b"
grep -q '^pushed digits version 2 ' <<<"$out" || fail "push b: $out"
head -c 1000 "$tmp/a.safetensors" >"$tmp/cut.safetensors"
expect_fail "push a truncated file" '422.*invalid_checkpoint' \
    "$vaed" push --url "$url" --model digits --token-file "$tmp/token" "$tmp/cut.safetensors"
expect_fail "push to https" 'only http://' \
    "$vaed" push --url "https://127.0.0.1:1" --model digits "$tmp/a.safetensors"
expect_fail "push without a model" 'usage' "$vaed" push --url "$url" "$tmp/a.safetensors"

# models: reads need no token.
out=$(env -u VAED_TOKEN "$vaed" models --url "$url") || fail "models"
grep -qP '^digits\t2 versions\tlatest 2\t' <<<"$out" || fail "models: $out"

# pull: by number, by default (latest), by alias; checked against the ETag.
"$vaed" pull --url "$url" --model digits --version 1 --out "$tmp/p1.safetensors" >/dev/null \
    || fail "pull v1"
cmp -s "$tmp/a.safetensors" "$tmp/p1.safetensors" || fail "pulled v1 differs from what was pushed"
"$vaed" pull --url "$url" --model digits -o "$tmp/p2.safetensors" >/dev/null || fail "pull latest"
cmp -s "$tmp/b.safetensors" "$tmp/p2.safetensors" || fail "pulled latest is not v2"
curl -fsS -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"version": 1}' \
    "$url/models/digits/aliases/prod" >/dev/null || fail "set alias prod"
"$vaed" pull --url "$url" --model digits --version prod --out "$tmp/p3.safetensors" >/dev/null \
    || fail "pull prod"
cmp -s "$tmp/a.safetensors" "$tmp/p3.safetensors" || fail "pulled prod is not v1"
expect_fail "pull a missing version" '404.*model_not_found' \
    "$vaed" pull --url "$url" --model digits --version 9 --out "$tmp/p9.safetensors"
[ ! -e "$tmp/p9.safetensors" ] || fail "a failed pull left a file"
expect_fail "models from nobody" 'cannot connect' "$vaed" models --url http://127.0.0.1:1

# The README's one-line curl for CI.
VAED_TOKEN=$token
curl -fsS -X POST -H "Authorization: Bearer $VAED_TOKEN" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$tmp/b.safetensors" "$url/models/ci/checkpoints" >"$tmp/ci.json" \
    || fail "the README's curl"
grep -q '"version":1' "$tmp/ci.json" || fail "README curl: $(cat "$tmp/ci.json")"

kill "$pid"; wait "$pid" || fail "the daemon did not stop cleanly: $(cat "$tmp/serve.log")"
pid=

# Offline, on the database file.
out=$("$vaed" registry list --data-dir "$tmp/data") || fail "registry list"
grep -qP '^digits\t2 versions\tlatest 2\t' <<<"$out" || fail "registry list: $out"
"$vaed" registry export --data-dir "$tmp/data" --model digits --version prod \
    --out "$tmp/e1.safetensors" >/dev/null || fail "registry export prod"
cmp -s "$tmp/a.safetensors" "$tmp/e1.safetensors" || fail "exported prod is not v1"
"$vaed" registry export --data-dir "$tmp/data" --model digits --out "$tmp/e2.safetensors" \
    >/dev/null || fail "registry export latest"
cmp -s "$tmp/b.safetensors" "$tmp/e2.safetensors" || fail "exported latest is not v2"
expect_fail "export a missing model" 'no model' \
    "$vaed" registry export --data-dir "$tmp/data" --model nope --out "$tmp/x.safetensors"
out=$("$vaed" registry import --data-dir "$tmp/other" --model copy "$tmp/e1.safetensors") \
    || fail "registry import"
grep -q '^imported copy version 1$' <<<"$out" || fail "registry import: $out"
expect_fail "registry import of a bad file" 'registry import' \
    "$vaed" registry import --data-dir "$tmp/other" --model copy "$tmp/cut.safetensors"
expect_fail "registry export without --out" 'usage' \
    "$vaed" registry export --data-dir "$tmp/data" --model digits

if [ "$fails" -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "cli registry: all checks passed"
