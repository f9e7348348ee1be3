#!/usr/bin/env bash
# The vaed command line end to end on real MNIST: train (byte-identical twice
# with --threads 1 and a seed), sample, eval, reconstruct, import/export, and
# clear errors with a non-zero exit for bad flags and bad files.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
tmp=$(mktemp -d /tmp/vaed-test-cli.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_fail() { # expect_fail "what" "message regex" cmd...
    local what=$1 re=$2; shift 2
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then fail "$what: exit 0"; return; fi
    grep -qE "$re" <<<"$out" || fail "$what: message '$out' does not match '$re'"
}

"$vaed" --version | grep -qE '^vaed [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
"$vaed" --help | grep -q 'serve' || fail "--help lists serve"
"$vaed" train --help | grep -q -- '--likelihood' || fail "train --help lists --likelihood"

small=(--data mnist --limit 600 --epochs 2 --hidden 48 --latent 6 --batch 64 --seed 5 --threads 1)
"$vaed" train "${small[@]}" --out "$tmp/a.safetensors" >"$tmp/train.log" || fail "train: $(cat "$tmp/train.log")"
"$vaed" train "${small[@]}" --out "$tmp/b.safetensors" >/dev/null || fail "train again"
cmp -s "$tmp/a.safetensors" "$tmp/b.safetensors" || fail "two runs with --threads 1 and one seed differ"
grep -qE '^epoch 2/2  train loss [0-9.]+  test loss [0-9.]+ .* images/s$' "$tmp/train.log" \
    || fail "train output lacks the per-epoch line: $(cat "$tmp/train.log")"
# the checkpoint's metrics hold the IWAE bound of the first 256 test images
# (K = 64). Comparing it with `vaed eval` on those images with the training
# seed is a consistency check, not a test of the bound: both run eval.c's one
# function with one seed, so an error there passes it. What it catches is the
# training pipeline evaluating other images, another K or another seed (the
# bound itself is checked below: never above the ELBO).
grep -qE '^test IWAE bound \(K=64, first 256 images\): [0-9.]+ nats$' "$tmp/train.log" \
    || fail "train output lacks the IWAE line: $(cat "$tmp/train.log")"
# (the metrics are a JSON string inside the safetensors header: quotes escaped)
metrics_iwae=$(grep -aoE 'test_iwae_nll\\":[0-9.]+,\\"iwae_k\\":64,\\"iwae_images\\":256' \
    "$tmp/a.safetensors" | sed -E 's/^test_iwae_nll[^0-9]*([0-9.]+),.*/\1/' || true)
[ -n "$metrics_iwae" ] || fail "checkpoint metrics lack the IWAE bound"
eval_iwae=$("$vaed" eval --model "$tmp/a.safetensors" --data mnist --limit 256 --iwae 64 --seed 5 \
    | awk '/^iwae_nll/{print $2}')
awk -v a="$metrics_iwae" -v b="$eval_iwae" 'BEGIN{d=a-b; exit !(d < 1e-4 && d > -1e-4)}' \
    || fail "metrics IWAE $metrics_iwae differs from vaed eval's $eval_iwae"
"$vaed" train "${small[@]}" --iwae 0 --out "$tmp/noiwae.safetensors" >/dev/null || fail "train --iwae 0"
grep -aq 'test_iwae_nll\\":null,\\"iwae_k\\":null' "$tmp/noiwae.safetensors" \
    || fail "--iwae 0 still wrote a bound"
"$vaed" train "${small[@]}" --seed 6 --out "$tmp/c.safetensors" >/dev/null
cmp -s "$tmp/a.safetensors" "$tmp/c.safetensors" && fail "another seed gave the same checkpoint"

"$vaed" sample --model "$tmp/a.safetensors" -n 9 --seed 3 -o "$tmp/s.png" >/dev/null || fail "sample"
head -c 8 "$tmp/s.png" | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a' || fail "sample is not a PNG"
out=$("$vaed" eval --model "$tmp/a.safetensors" --data mnist --limit 100 --iwae 20)
grep -qE '^neg_elbo +[0-9.]+' <<<"$out" || fail "eval: $out"
elbo=$(awk '/^neg_elbo/{print $2}' <<<"$out"); iwae=$(awk '/^iwae_nll/{print $2}' <<<"$out")
awk -v e="$elbo" -v i="$iwae" 'BEGIN{exit !(i <= e + 1e-6)}' || fail "IWAE bound $iwae above the ELBO's $elbo"
grep -qE '^active_units +[0-9]+ of 6' <<<"$out" || fail "eval active units: $out"
"$vaed" reconstruct --model "$tmp/a.safetensors" -n 4 -o "$tmp/r.png" >/dev/null || fail "reconstruct"
# PNG bytes 16..23: width, height; byte 25: colour type (0 grey, 2 RGB)
png_info() { od -An -tu1 -j16 -N10 "$1" | awk '{printf "%d %d %d", $3*256+$4, $7*256+$8, $10}'; }
# 4 originals above their 4 reconstructions, 28x28 each
[ "$(png_info "$tmp/r.png")" = "112 56 0" ] || fail "reconstruct PNG: $(png_info "$tmp/r.png")"
"$vaed" export --model "$tmp/a.safetensors" --format pytorch-examples --out "$tmp/pe.safetensors" >/dev/null \
    || fail "export pytorch-examples"
"$vaed" import --from pytorch-examples "$tmp/pe.safetensors" --out "$tmp/back.safetensors" >/dev/null \
    || fail "import pytorch-examples"
e1=$("$vaed" eval --model "$tmp/a.safetensors" --limit 50 | awk '/^neg_elbo/{print $2}')
e2=$("$vaed" eval --model "$tmp/back.safetensors" --limit 50 | awk '/^neg_elbo/{print $2}')
[ -n "$e1" ] && [ "$e1" = "$e2" ] || fail "export/import changed the model: '$e1' vs '$e2'"

# a conditional VAE: the labels of MNIST, 10 classes, kept in the checkpoint
"$vaed" train "${small[@]}" --conditional --out "$tmp/cond.safetensors" >"$tmp/cond.log" \
    || fail "conditional train: $(cat "$tmp/cond.log")"
grep -q 'conditional on 10 classes' "$tmp/cond.log" || fail "conditional header: $(head -1 "$tmp/cond.log")"
grep -aq 'n_classes\\":10,' "$tmp/cond.safetensors" || fail "the checkpoint lacks n_classes"
grep -aq 'n_classes' "$tmp/a.safetensors" && fail "an unconditional checkpoint names n_classes"
"$vaed" sample --model "$tmp/cond.safetensors" -n 4 --label 3 -o "$tmp/cond.png" >/dev/null \
    || fail "conditional sample --label 3"
expect_fail "label out of range" 'classes 0 to 9' "$vaed" sample --model "$tmp/cond.safetensors" --label 10
expect_fail "label to an unconditional model" 'not a conditional model' \
    "$vaed" sample --model "$tmp/a.safetensors" --label 1
"$vaed" reconstruct --model "$tmp/cond.safetensors" -n 4 -o "$tmp/cond-r.png" >/dev/null \
    || fail "conditional reconstruct"
"$vaed" eval --model "$tmp/cond.safetensors" --limit 50 --iwae 8 | grep -qE '^iwae_nll +[0-9.]+' \
    || fail "conditional eval"

# anomaly scores: an MNIST model scores Fashion-MNIST, and the AUROC of each
# score is a number in [0, 1]; the same seed gives the same table
score=("$vaed" score --model "$tmp/a.safetensors" --data mnist --against fashion --limit 40 --iwae 8)
out=$("${score[@]}") || fail "score: $out"
auroc=$(awk '/^auroc/{print NF - 1; for (i = 2; i <= NF; i++) if ($i != "n/a" && ($i < 0 || $i > 1)) print "bad", $i}' <<<"$out")
[ "$auroc" = 9 ] || fail "score's AUROC row: $out"
[ "$("${score[@]}")" = "$out" ] || fail "score is not deterministic given the seed"
grep -qE '^mnist \(test, 40\) +[0-9.]+' <<<"$out" || fail "score's means: $out"
"$vaed" score --model "$tmp/cond.safetensors" --data mnist --limit 8 --iwae 4 --regret 2 >/dev/null \
    || fail "score a conditional model with the likelihood regret"
expect_fail "score --iwae 0" 'iwae' "$vaed" score --model "$tmp/a.safetensors" --iwae 0
expect_fail "score without --model" 'model' "$vaed" score --data mnist

# convolutional VAE on MNIST (28x28 padded to 32 and cropped back)
"$vaed" train --data mnist --arch conv --channels 4,8 --latent 4 --limit 256 --epochs 1 \
    --out "$tmp/conv.safetensors" >"$tmp/conv.log" || fail "conv train: $(cat "$tmp/conv.log")"
grep -q 'training conv VAE' "$tmp/conv.log" || fail "conv train header: $(head -1 "$tmp/conv.log")"
"$vaed" sample --model "$tmp/conv.safetensors" -n 4 -o "$tmp/conv.png" >/dev/null || fail "conv sample"
[ "$(png_info "$tmp/conv.png")" = "56 56 0" ] || fail "conv sample PNG: $(png_info "$tmp/conv.png")"

# CIFAR-10 binary batches written here (1 label byte, 3072 channel-planar pixel bytes)
mkdir -p "$tmp/cifar"
python3 - "$tmp/cifar" <<'PY'
import os, random, sys
random.seed(1)
def batch(path, n):
    with open(path, "wb") as f:
        for i in range(n):
            f.write(bytes([i % 10]) + bytes(random.randrange(256) for _ in range(3072)))
batch(os.path.join(sys.argv[1], "data_batch_1.bin"), 24)
batch(os.path.join(sys.argv[1], "test_batch.bin"), 8)
PY
"$vaed" train --data "$tmp/cifar" --arch conv --channels 4,8 --latent 4 --batch 8 --epochs 1 \
    --out "$tmp/cifar.safetensors" >"$tmp/cifar.log" || fail "cifar train: $(cat "$tmp/cifar.log")"
grep -q '24 train, 8 test images' "$tmp/cifar.log" || fail "cifar counts: $(head -1 "$tmp/cifar.log")"
"$vaed" train --data "$tmp/cifar" --arch conv --channels 4,8 --latent 4 --batch 8 --epochs 1 \
    --conditional --out "$tmp/cifar-cond.safetensors" >"$tmp/cifar-cond.log" \
    || fail "conditional conv cifar train: $(cat "$tmp/cifar-cond.log")"
grep -q 'conditional on 10 classes' "$tmp/cifar-cond.log" || fail "cifar conditional: $(head -1 "$tmp/cifar-cond.log")"
"$vaed" sample --model "$tmp/cifar.safetensors" -n 1 -o "$tmp/cifar.png" >/dev/null || fail "cifar sample"
[ "$(png_info "$tmp/cifar.png")" = "32 32 2" ] || fail "RGB sample PNG: $(png_info "$tmp/cifar.png")"
head -c 3000 "$tmp/cifar/test_batch.bin" >"$tmp/cifar/data_batch_2.bin"
expect_fail "truncated CIFAR batch" 'data_batch_2.bin' "$vaed" train --data "$tmp/cifar" --arch conv --out "$tmp/x"

# a folder of PNGs (no test split: --val-split holds some out)
mkdir -p "$tmp/pngs"
python3 - "$tmp/pngs" <<'PY'
import os, struct, sys, zlib
def png(path, w, h, seed):
    raw = b"".join(b"\0" + bytes((x * 7 + y * 3 + seed) % 256 for x in range(w)) for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for i in range(20):
    png(os.path.join(sys.argv[1], "img%02d.png" % i), 16, 16, i)
PY
"$vaed" train --data "$tmp/pngs" --hidden 8 --latent 2 --batch 4 --epochs 1 --val-split 0.25 \
    --out "$tmp/pngs.safetensors" >"$tmp/pngs.log" || fail "png folder train: $(cat "$tmp/pngs.log")"
grep -q '15 train, 5 test images' "$tmp/pngs.log" || fail "val split counts: $(head -1 "$tmp/pngs.log")"
expect_fail "conditional on a folder without labels" "a conditional model needs a label for every image, and .*pngs has none" \
    "$vaed" train --data "$tmp/pngs" --conditional --val-split 0.25 --out "$tmp/x"
# sub-folders are classes: three of them
mkdir -p "$tmp/classes/a" "$tmp/classes/b" "$tmp/classes/c"
for i in 00 01 02 03 04 05 06; do
    cp "$tmp/pngs/img$i.png" "$tmp/classes/a/"; cp "$tmp/pngs/img1${i#0}.png" "$tmp/classes/b/"
done
cp "$tmp/pngs/img07.png" "$tmp/pngs/img08.png" "$tmp/classes/c/"
"$vaed" train --data "$tmp/classes" --conditional --hidden 8 --latent 2 --batch 4 --epochs 1 \
    --val-split 0.25 --out "$tmp/classes.safetensors" >"$tmp/classes.log" \
    || fail "conditional png folder train: $(cat "$tmp/classes.log")"
grep -q 'conditional on 3 classes' "$tmp/classes.log" || fail "png classes: $(head -1 "$tmp/classes.log")"
printf 'not a png' >"$tmp/pngs/img99.png"
expect_fail "non-PNG in a PNG folder" 'img99.png' "$vaed" train --data "$tmp/pngs" --out "$tmp/x"

expect_fail "unknown command" 'unknown command' "$vaed" frobnicate
expect_fail "unknown flag" 'unknown option --nope' "$vaed" train --nope
expect_fail "bad number" 'wants an integer' "$vaed" train --epochs many --out "$tmp/x"
expect_fail "bad likelihood" 'likelihood' "$vaed" train --likelihood poisson --out "$tmp/x"
expect_fail "no output" 'give --out' "$vaed" train --epochs 1
expect_fail "missing data file" 'No such file' "$vaed" train --data "$tmp/none-images-idx3-ubyte" --out "$tmp/x"
printf 'not a checkpoint' >"$tmp/bad.safetensors"
expect_fail "bad checkpoint" 'not a valid safetensors' "$vaed" sample --model "$tmp/bad.safetensors"
expect_fail "missing checkpoint" 'none.safetensors: No such file' "$vaed" eval --model "$tmp/none.safetensors"
[ -e "$tmp/x" ] && fail "a failed train left $tmp/x"

# Two processes opening one fresh registry at once (two `vaed train
# --register` beside each other) both get in: the switch to WAL was refused
# with "database is locked" about one time in four.
for i in $(seq 12); do
    d=$tmp/race-$i
    "$vaed" registry import --model a "$tmp/a.safetensors" --data-dir "$d" >"$d.a.log" 2>&1 &
    racer=$!
    "$vaed" registry import --model b "$tmp/a.safetensors" --data-dir "$d" >"$d.b.log" 2>&1 ||
        fail "a second process opening a fresh registry: $(cat "$d.b.log")"
    wait "$racer" || fail "a first process opening a fresh registry: $(cat "$d.a.log")"
    [ "$("$vaed" registry list --data-dir "$d" | wc -l)" = 2 ] || fail "two imports at once: $("$vaed" registry list --data-dir "$d")"
done

# registry list / export / copy's source open the registry read-only: a
# file that is not vaed's (empty, or someone else's) is refused with a clear
# message and keeps its bytes; a missing one is not created; a vaed registry
# lists and exports as before, and is not written either.
ro=$tmp/ro
mkdir -p "$ro"
: >"$ro/empty.db"
python3 - "$ro/foreign.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE notes (t TEXT)")
db.execute("INSERT INTO notes VALUES ('keep me')")
db.commit()
PY
for f in empty foreign; do
    before=$(sha256sum "$ro/$f.db")
    expect_fail "registry list of a $f file" "$f.db is not a vaed registry \(no models table\)" \
        "$vaed" registry list --registry "$ro/$f.db"
    expect_fail "registry export from a $f file" "$f.db is not a vaed registry \(no models table\)" \
        "$vaed" registry export --registry "$ro/$f.db" --model a --out "$ro/x.safetensors"
    expect_fail "registry copy from a $f file" "$f.db is not a vaed registry" \
        "$vaed" registry copy --from "$ro/$f.db" --to "$ro/copy.db"
    [ "$(sha256sum "$ro/$f.db")" = "$before" ] || fail "a read changed the $f file"
done
[ ! -e "$ro/x.safetensors" ] || fail "a refused export wrote a file"
[ ! -e "$ro/copy.db" ] || fail "a refused copy created its destination"
[ "$(ls "$ro")" = "$(printf 'empty.db\nforeign.db')" ] || fail "reads left files beside: $(ls "$ro")"
# a missing path: an empty list (scripts/run.sh relies on it), no file
out=$("$vaed" registry list --registry "$ro/none/registry.db") || fail "registry list of a missing file"
[ -z "$out" ] || fail "registry list of a missing file printed '$out'"
expect_fail "registry export from a missing file" 'no registry at' \
    "$vaed" registry export --registry "$ro/none/registry.db" --model a --out "$ro/x.safetensors"
[ ! -e "$ro/none" ] || fail "reading a missing registry created $ro/none"
# a vaed registry: as before, and its file not written
vdb=$tmp/race-1/registry.db
before=$(sha256sum "$vdb")
out=$("$vaed" registry list --registry "$vdb") || fail "registry list of a vaed registry"
grep -qP '^a\t1 versions\tlatest 1\t' <<<"$out" || fail "registry list of a vaed registry: $out"
"$vaed" registry export --registry "$vdb" --model b --out "$ro/b.safetensors" >/dev/null \
    || fail "registry export from a vaed registry"
cmp -s "$tmp/a.safetensors" "$ro/b.safetensors" || fail "exported b is not the bytes imported"
[ "$(sha256sum "$vdb")" = "$before" ] || fail "list and export wrote the registry file"
# another schema version: refused, and not migrated
sqlite3 "$vdb" 'PRAGMA user_version = 1'
expect_fail "registry list of an older registry" 'schema version 1 is older.*vaed serve' \
    "$vaed" registry list --registry "$vdb"
[ "$(sqlite3 "$vdb" 'PRAGMA user_version')" = 1 ] || fail "a list migrated an older registry"
sqlite3 "$vdb" 'PRAGMA user_version = 99'
expect_fail "registry list of a newer registry" 'schema version 99 is newer' \
    "$vaed" registry list --registry "$vdb"

if [ "$fails" -gt 0 ]; then echo "test_cli: $fails check(s) failed"; exit 1; fi
echo "test_cli: all checks passed"
