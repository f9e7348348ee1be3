#!/usr/bin/env bash
# `mpirun -np 2 vaed train` on loopback (two real Open MPI ranks, one shard
# of MNIST each) against one process with the same flags: the parameters
# after 1 and after 10 steps agree to 1e-5 (relative, per tensor), for the
# MLP, the conv model and the MLP with every option that couples the batch
# (dynamic binarisation, free bits, clipping, KL warm-up, 2 MC samples, a
# conditional model on one class), and on a CIFAR-10 folder and a PNG folder
# (with a validation split, with a class) that each rank reads only its shard
# of; after 2 epochs the test -ELBO is within 0.3 nats. Ranks that disagree on the run are refused at start; a rank
# killed mid-run or stopped (hung) ends the run with a message within a
# bounded time and no checkpoint; a 2-rank run stopped by SIGUSR1 (what
# mpirun passes on) keeps its state in --resume FILE and the same command
# ends in the bytes of a run never stopped.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
command -v mpirun >/dev/null || { echo "no mpirun (openmpi-bin): skipped"; exit 77; }
tmp=$(mktemp -d /tmp/vaed-test-mpi.XXXXXX)
pid=       # the mpirun in the background, when there is one
rank1=     # its rank 1
trap 'for p in $pid $rank1; do kill -KILL "$p" 2>/dev/null || true; done; wait; rm -rf -- "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# root in a container: Open MPI refuses root unless told; 2 ranks on a
# machine of fewer cores need --oversubscribe
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# under the sanitizers, Open MPI's own allocations at exit are not ours to
# answer for: the ranks (mpirun sets their environment from this list) check
# no leaks; one process does
export OMPI_MCA_mca_base_env_list="ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi=(mpirun --oversubscribe --bind-to none -np 2)

# The largest relative difference ||a - b|| / ||a|| over the tensors of two
# checkpoints, on stdout; the safetensors layout read with the standard library.
max_rel_diff() {
    python3 - "$1" "$2" <<'EOF'
import json, math, struct, sys
def tensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, t in head.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        out[name] = struct.unpack("<%df" % ((b - a) // 4), raw[8 + n + a:8 + n + b])
    return out
A, B = tensors(sys.argv[1]), tensors(sys.argv[2])
assert A.keys() == B.keys() and A, "the checkpoints hold other tensors"
worst = 0.0
for k in A:
    num = math.sqrt(sum((x - y) ** 2 for x, y in zip(A[k], B[k])))
    den = math.sqrt(sum(x * x for x in A[k])) or 1.0
    worst = max(worst, num / den)
print("%.3g" % worst)
EOF
}

# parity NAME FLAGS...: one process and two ranks, each with FLAGS, then
# the parameters compared
parity() {
    local name=$1; shift
    "$vaed" train "$@" --threads 1 --iwae 0 --out "$tmp/$name.1.st" >"$tmp/$name.1.log" 2>&1 \
        || { fail "$name, one process: $(tail -3 "$tmp/$name.1.log")"; return; }
    "${mpi[@]}" "$vaed" train "$@" --iwae 0 --out "$tmp/$name.2.st" >"$tmp/$name.2.log" 2>&1 \
        || { fail "$name, two ranks: $(tail -5 "$tmp/$name.2.log")"; return; }
    grep -q 'data parallel over 2 ranks' "$tmp/$name.2.log" || fail "$name: the run did not say it has 2 ranks"
    [ "$(grep -c '^epoch ' "$tmp/$name.2.log")" = "$(grep -c '^epoch ' "$tmp/$name.1.log")" ] \
        || fail "$name: rank 1 printed too (or nobody did): $(cat "$tmp/$name.2.log")"
    local d
    d=$(max_rel_diff "$tmp/$name.1.st" "$tmp/$name.2.st")
    echo "$name: relative difference of the parameters $d (at ${SECONDS} s)"
    python3 -c "import sys; sys.exit(0 if float('$d') <= 1e-5 else 1)" \
        || fail "$name: 2 ranks differ from 1 process by $d (more than 1e-5)"
}

# MNIST's training file as a path: a data set without a test split, so no
# epoch spends its time on the 10,000 test images (but the 2-epoch run)
train_file=data/mnist/train-images-idx3-ubyte
small=(--data "$train_file" --hidden 64 --latent 8 --seed 3)
conv=(--data "$train_file" --arch conv --channels 8,16 --latent 8 --seed 3)
every=(--data "$train_file" --hidden 64 --latent 8 --seed 4 --binarize dynamic --free-bits 0.2
       --clip-grad 5 --kl-warmup 6 --mc-samples 2 --conditional --class 3)
parity mlp-1-step "${small[@]}" --batch 64 --limit 64 --epochs 1
parity mlp-10-steps "${small[@]}" --batch 64 --limit 640 --epochs 1
parity conv-1-step "${conv[@]}" --batch 32 --limit 32 --epochs 1
parity conv-10-steps "${conv[@]}" --batch 32 --limit 320 --epochs 1
# an odd batch and a last batch of 3: the ranks hold unequal parts
parity mlp-every-option-10-steps "${every[@]}" --batch 27 --limit 246 --epochs 1

# the sources each rank reads only its shard of: a CIFAR-10 folder (two
# batch files of uneven sizes and a test batch) and a PNG folder of class
# sub-folders with a validation split, written here
python3 - "$tmp" <<'EOF'
import os, random, struct, sys, zlib
tmp = sys.argv[1]
rnd = random.Random(5)
os.makedirs(tmp + "/cifar")
for name, n in (("data_batch_1.bin", 90), ("data_batch_2.bin", 70), ("test_batch.bin", 30)):
    with open(tmp + "/cifar/" + name, "wb") as f:
        for _ in range(n):
            f.write(bytes([rnd.randrange(10)]) + bytes(rnd.randrange(256) for _ in range(3072)))
def png(path, w, h, rows):
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    raw = b"".join(b"\0" + r for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for k, n in (("cat", 25), ("dog", 17), ("eel", 20)):
    os.makedirs(tmp + "/png/" + k)
    for i in range(n):
        png("%s/png/%s/%03d.png" % (tmp, k, i), 8, 8,
            [bytes(rnd.randrange(256) for _ in range(24)) for _ in range(8)])
EOF
parity cifar-10-steps --data "$tmp/cifar" --hidden 32 --latent 4 --seed 5 --batch 16 --epochs 1
parity png-val-split --data "$tmp/png" --hidden 32 --latent 4 --seed 6 --batch 10 --val-split 0.2 \
    --conditional --epochs 2
parity png-class --data "$tmp/png" --hidden 32 --latent 4 --seed 7 --batch 4 --class 1 --epochs 1
for name in cifar-10-steps png-val-split; do
    a=$(sed -n 's/^epoch .* test loss \([0-9.]*\) .*/\1/p' "$tmp/$name.1.log" | tail -1)
    b=$(sed -n 's/^epoch .* test loss \([0-9.]*\) .*/\1/p' "$tmp/$name.2.log" | tail -1)
    echo "$name: test -ELBO 1 process $a, 2 ranks $b"
    python3 -c "import sys; sys.exit(0 if '$a' and abs($a - ${b:-1e9}) <= 0.3 else 1)" \
        || fail "$name: test -ELBO 1 process '$a', 2 ranks '$b'"
done

# 2 epochs: the test -ELBO of the last epoch within 0.3 nats
parity mlp-2-epochs --data mnist --hidden 64 --latent 8 --seed 3 --batch 100 --limit 3000 --epochs 2
test_loss() { sed -n 's/^epoch 2\/2 .* test loss \([0-9.]*\) .*/\1/p' "$1"; }
a=$(test_loss "$tmp/mlp-2-epochs.1.log") b=$(test_loss "$tmp/mlp-2-epochs.2.log")
echo "test -ELBO after 2 epochs: 1 process $a, 2 ranks $b"
python3 -c "import sys; sys.exit(0 if abs($a - $b) <= 0.3 else 1)" \
    || fail "test -ELBO after 2 epochs: 1 process $a, 2 ranks $b"

# MNIST's test split is evaluated in blocks (each rank reads only its 5,000,
# rank 0 too, for the epochs and for the final evaluation): the epoch's test
# figures, the active units, the IWAE bound and the checkpoint's metrics are
# one process's
iw=(train --data mnist --hidden 64 --latent 8 --seed 3 --batch 64 --limit 640 --epochs 1 --iwae 4)
"$vaed" "${iw[@]}" --threads 1 --out "$tmp/iw.1.st" >"$tmp/iw.1.log" 2>&1 || fail "IWAE, one process: $(tail -3 "$tmp/iw.1.log")"
"${mpi[@]}" "$vaed" "${iw[@]}" --out "$tmp/iw.2.st" >"$tmp/iw.2.log" 2>&1 || fail "IWAE, two ranks: $(tail -5 "$tmp/iw.2.log")"
grep -q '^rank 0 holds test images 0 to 4999 of 10000$' "$tmp/iw.2.log" \
    || fail "rank 0 does not hold only its block of the test split: $(grep -i 'test images' "$tmp/iw.2.log")"
for what in 'test loss [0-9.]*' '^active units .*' 'test IWAE bound .*'; do
    a=$(grep -o "$what" "$tmp/iw.1.log" | head -1) b=$(grep -o "$what" "$tmp/iw.2.log" | head -1)
    echo "blocks of the test split: 1 process '$a', 2 ranks '$b'"
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "blocks of the test split: 1 process '$a', 2 ranks '$b'"
done
# the final evaluation (the checkpoint's metrics) is over the whole test set;
# its sums cross the ranks as two floats per double (about 48 bits), so 1e-6
# relative is float rounding, not a different image or draw
final_metrics() {
python3 - "$1" "$2" <<'EOF' || fail "$3: final metrics of 2 ranks differ from one process's"
import json, struct, sys
def metrics(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(json.loads(raw[8:8 + n])["__metadata__"]["vaed_metrics"])
a, b = metrics(sys.argv[1]), metrics(sys.argv[2])
print("final metrics: test loss %.6f / %.6f, active units %d / %d" % (a["test_loss"], b["test_loss"], a["active_units"], b["active_units"]))
for k in ("test_loss", "test_recon", "test_kl", "test_iwae_nll"):
    assert abs(a[k] - b[k]) <= 1e-6 * abs(a[k]), k
for k in ("active_units", "iwae_k", "iwae_images"):
    assert a[k] == b[k], k
EOF
}
final_metrics "$tmp/iw.1.st" "$tmp/iw.2.st" "MNIST in blocks"
# 31 held-out images of the PNG folder: the bound's first 256 are all of
# them, 15 on rank 0 and 16 on rank 1, with dynamic binarisation, so each
# rank steps over the other's draws
sm=(train --data "$tmp/png" --hidden 32 --latent 4 --seed 8 --batch 10 --val-split 0.5 --epochs 1
    --iwae 8 --binarize dynamic)
"$vaed" "${sm[@]}" --threads 1 --out "$tmp/sm.1.st" >"$tmp/sm.1.log" 2>&1 || fail "PNG IWAE, one process: $(tail -3 "$tmp/sm.1.log")"
"${mpi[@]}" "$vaed" "${sm[@]}" --out "$tmp/sm.2.st" >"$tmp/sm.2.log" 2>&1 || fail "PNG IWAE, two ranks: $(tail -5 "$tmp/sm.2.log")"
grep -q '^rank 0 holds test images 0 to 14 of 31$' "$tmp/sm.2.log" \
    || fail "PNG: rank 0 does not hold only its block: $(grep -i 'test images' "$tmp/sm.2.log")"
for what in '^active units .*' 'test IWAE bound .*'; do
    a=$(grep -o "$what" "$tmp/sm.1.log" | head -1) b=$(grep -o "$what" "$tmp/sm.2.log" | head -1)
    echo "PNG blocks: 1 process '$a', 2 ranks '$b'"
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "PNG blocks: 1 process '$a', 2 ranks '$b'"
done
final_metrics "$tmp/sm.1.st" "$tmp/sm.2.st" "PNG blocks"
# no test split: the final evaluation is over the training images, each
# rank taking its shard of them
nt=(train "${small[@]}" --batch 64 --limit 700 --epochs 1 --iwae 4 --binarize dynamic)
"$vaed" "${nt[@]}" --threads 1 --out "$tmp/nt.1.st" >"$tmp/nt.1.log" 2>&1 || fail "no test split, one process: $(tail -3 "$tmp/nt.1.log")"
"${mpi[@]}" "$vaed" "${nt[@]}" --out "$tmp/nt.2.st" >"$tmp/nt.2.log" 2>&1 || fail "no test split, two ranks: $(tail -5 "$tmp/nt.2.log")"
for what in '^active units .*' 'test IWAE bound .*'; do
    a=$(grep -o "$what" "$tmp/nt.1.log" | head -1) b=$(grep -o "$what" "$tmp/nt.2.log" | head -1)
    echo "training images' shards: 1 process '$a', 2 ranks '$b'"
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "training images' shards: 1 process '$a', 2 ranks '$b'"
done

# the one rank of mpirun -np 1 trains with one thread, as every rank does
# (--threads' default is the cores): the bytes of one process's --threads 1
one=(train "${small[@]}" --batch 64 --limit 640 --epochs 1 --iwae 0)
"$vaed" "${one[@]}" --threads 1 --out "$tmp/np1.1.st" >/dev/null 2>&1 || fail "one process, 1 thread"
mpirun --oversubscribe --bind-to none -np 1 "$vaed" "${one[@]}" --out "$tmp/np1.m.st" >"$tmp/np1.log" 2>&1 \
    || fail "mpirun -np 1: $(tail -3 "$tmp/np1.log")"
cmp -s "$tmp/np1.1.st" "$tmp/np1.m.st" || fail "mpirun -np 1 did not train as one process with one thread"

# ranks that disagree (another seed on rank 1) are refused before a step
run=(train --data "$train_file" --hidden 64 --latent 8 --batch 64 --limit 640 --epochs 1 --iwae 0)
rc=0
mpirun --oversubscribe -np 1 "$vaed" "${run[@]}" --seed 3 --out "$tmp/mix.st" : \
    -np 1 "$vaed" "${run[@]}" --seed 9 --out "$tmp/mix.st" >"$tmp/mix.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "ranks of different seeds trained"
grep -q "rank 1's run differs from rank 0's" "$tmp/mix.log" || fail "mismatch message: $(head -5 "$tmp/mix.log")"
grep -q '^epoch' "$tmp/mix.log" && fail "ranks of different seeds trained an epoch"
[ -e "$tmp/mix.st" ] && fail "ranks of different seeds wrote a checkpoint"

# Starts a 2-rank run of ARGS in the background (log in $1) and waits for
# its first epoch line; sets pid (mpirun's) and rank1 (rank 1's pid).
long=(train "${small[@]}" --batch 32 --limit 2000 --epochs 30 --iwae 0)
start_ranks() {
    local log=$1; shift
    "${mpi[@]}" "$vaed" "$@" >"$log" 2>&1 &
    pid=$!
    rank1=
    local i p
    for i in $(seq 1 1200); do
        grep -q '^epoch 1/' "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    for p in $(pgrep -f "$vaed train" || true); do
        { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' \
            && rank1=$p || true
    done
}
finish() { # waits for mpirun at most $1 s; sets rc and waited
    local i
    rc=
    for i in $(seq 1 $(($1 * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    waited=$((i / 10))
    if kill -0 "$pid" 2>/dev/null; then rc=timeout; return; fi
    rc=0
    wait "$pid" || rc=$?
    pid=
}

# a rank killed mid-run
start_ranks "$tmp/kill.log" "${long[@]}" --out "$tmp/kill.st"
[ -n "$rank1" ] || fail "killed rank: no rank 1 found: $(cat "$tmp/kill.log")"
[ -n "$rank1" ] && kill -KILL "$rank1"
finish 60
[ "$rc" = timeout ] && fail "a killed rank: the run still goes on after 60 s"
[ "$rc" != 0 ] || fail "a run with a killed rank exited 0"
grep -qi 'signal 9\|killed' "$tmp/kill.log" || fail "killed rank: no word of it: $(tail -5 "$tmp/kill.log")"
[ -e "$tmp/kill.st" ] && fail "a run with a killed rank wrote a checkpoint"
echo "killed rank: the run ended within ${waited} s (at ${SECONDS} s)"

# a rank that stops answering (SIGSTOP): rank 0 gives up after --rank-timeout
start_ranks "$tmp/hang.log" "${long[@]}" --rank-timeout 3 --out "$tmp/hang.st"
[ -n "$rank1" ] || fail "hung rank: no rank 1 found: $(cat "$tmp/hang.log")"
[ -n "$rank1" ] && kill -STOP "$rank1"
finish 60
[ "$rc" = timeout ] && fail "a hung rank: the run still goes on after 60 s"
[ "$rc" != 0 ] || fail "a run with a hung rank exited 0"
grep -q 'no answer from the other ranks for [0-9]* s' "$tmp/hang.log" \
    || fail "hung rank: no word of it: $(tail -5 "$tmp/hang.log")"
[ -e "$tmp/hang.st" ] && fail "a run with a hung rank wrote a checkpoint"
echo "hung rank: the run ended within ${waited} s (at ${SECONDS} s)"
[ -n "$rank1" ] && kill -KILL "$rank1" 2>/dev/null || true

# --resume across 2 ranks: stopped by SIGUSR1 (mpirun passes it to both),
# continued by the same command, the same bytes as a run never stopped
# 30 epochs of 1000 images: long enough after epoch 1 (about 0.4 s on a fast
# AVX-512 machine) for the signal to arrive before the last one
res=(train "${small[@]}" --batch 32 --limit 1000 --epochs 30 --iwae 0)
"${mpi[@]}" "$vaed" "${res[@]}" --out "$tmp/R.st" >"$tmp/r.log" 2>&1 || fail "uninterrupted 2-rank run: $(tail -5 "$tmp/r.log")"
start_ranks "$tmp/s1.log" "${res[@]}" --resume "$tmp/F" --out "$tmp/S.st"
kill -USR1 "$pid"
finish 60
[ "$rc" != 0 ] || fail "a 2-rank run stopped by SIGUSR1 exits 0"
grep -q 'the same command continues it' "$tmp/s1.log" || fail "no word on how to continue: $(tail -5 "$tmp/s1.log")"
grep -q '^epoch 30/30' "$tmp/s1.log" && fail "the 2-rank run finished before the signal"
[ -s "$tmp/F" ] || fail "SIGUSR1 left no resume file"
"${mpi[@]}" "$vaed" "${res[@]}" --resume "$tmp/F" --out "$tmp/S.st" >"$tmp/s2.log" 2>&1 \
    || fail "resumed 2-rank run: $(tail -5 "$tmp/s2.log")"
grep -q '^resuming from' "$tmp/s2.log" || fail "the 2-rank run did not resume: $(head -5 "$tmp/s2.log")"
cmp -s "$tmp/R.st" "$tmp/S.st" || fail "the resumed 2-rank run differs from the uninterrupted one"
[ -e "$tmp/F" ] && fail "the finished 2-rank run left its resume file"

[ "$fails" -eq 0 ] || exit 1
echo "mpi: all checks passed"
