#!/usr/bin/env bash
# vaed train --resume FILE on real MNIST with --threads 1: a run stopped by
# SIGTERM mid-run saves its position to FILE, exits non-zero saying how to
# continue, and the same command again ends in the same checkpoint bytes as a
# run never interrupted (and removes FILE); a FILE from another run (another
# seed, data limit or model, conditional or not) is refused and left as it
# was; without --resume SIGTERM still ends a run at once, as it always did.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
tmp=$(mktemp -d /tmp/vaed-test-cli-resume.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf -- "$tmp"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 8 epochs of 2000 images: each takes a while (the test set is evaluated
# after every epoch), so a signal sent once epoch 1 is printed lands mid-run.
run=(train --data mnist --limit 2000 --epochs 8 --hidden 48 --latent 6 --batch 64 --seed 5 --threads 1)

# Starts `vaed train ARGS...` in the background with stdout in $1, sends
# signal $2 once its first epoch line is printed, and sets rc to its exit status.
run_and_signal() {
    local log=$1 sig=$2; shift 2
    "$vaed" "$@" >"$log" 2>"$log.err" &
    pid=$!
    local i
    for i in $(seq 1 600); do
        grep -q '^epoch 1/' "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill "-$sig" "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" || rc=$?
    pid=
}

"$vaed" "${run[@]}" --out "$tmp/A.safetensors" >"$tmp/a.log" || fail "uninterrupted run: $(cat "$tmp/a.log")"
grep -q resuming "$tmp/a.log" && fail "a run without --resume says it resumes"

# stopped mid-run, then continued by the same command
run_and_signal "$tmp/b1.log" TERM "${run[@]}" --resume "$tmp/F" --out "$tmp/B.safetensors"
[ "$rc" -ne 0 ] || fail "a run stopped by SIGTERM exits 0"
grep -q 'the same command continues it' "$tmp/b1.log.err" || fail "no word on how to continue: $(cat "$tmp/b1.log.err")"
[ -s "$tmp/F" ] || fail "SIGTERM left no resume file"
[ -e "$tmp/B.safetensors" ] && fail "a stopped run wrote its checkpoint"
grep -q '^epoch 8/8' "$tmp/b1.log" && fail "the run finished before the signal: the test did not stop it"
cp "$tmp/F" "$tmp/F.kept"
"$vaed" "${run[@]}" --resume "$tmp/F" --out "$tmp/B.safetensors" >"$tmp/b2.log" 2>&1 \
    || fail "the resumed run: $(cat "$tmp/b2.log")"
grep -qE '^resuming from .*F: [1-7] of 8 epochs done' "$tmp/b2.log" || fail "resume line: $(cat "$tmp/b2.log")"
grep -q '^epoch 1/8' "$tmp/b2.log" && fail "the resumed run trained epoch 1 again"
grep -q '^epoch 8/8' "$tmp/b2.log" || fail "the resumed run did not finish: $(cat "$tmp/b2.log")"
cmp -s "$tmp/A.safetensors" "$tmp/B.safetensors" || fail "the resumed run's checkpoint differs from the uninterrupted one's"
[ -e "$tmp/F" ] && fail "the resume file is still there after a finished run"

# a resume file from another run is refused, with a reason, and kept as it was
for other in "--seed 6" "--limit 1999" "--latent 7" "--class 3" "--conditional"; do
    cp "$tmp/F.kept" "$tmp/G"
    out=$("$vaed" "${run[@]}" $other --resume "$tmp/G" --out "$tmp/C.safetensors" 2>&1) && rc=0 || rc=$?
    [ "$rc" -eq 1 ] || fail "resume with $other: exit $rc, not 1 ($out)"
    grep -q 'belongs to another run' <<<"$out" || fail "resume with $other: message '$out'"
    cmp -s "$tmp/G" "$tmp/F.kept" || fail "resume with $other changed the file"
    [ -e "$tmp/C.safetensors" ] && fail "resume with $other wrote a checkpoint"
done
printf 'not a resume file' >"$tmp/H"
out=$("$vaed" "${run[@]}" --resume "$tmp/H" --out "$tmp/C.safetensors" 2>&1) && rc=0 || rc=$?
[ "$rc" -eq 1 ] || fail "a corrupt resume file: exit $rc ($out)"
grep -q "$tmp/H" <<<"$out" || fail "a corrupt resume file: the message does not name it: $out"

# SIGINT works the same way
run_and_signal "$tmp/i.log" INT "${run[@]}" --resume "$tmp/I" --out "$tmp/I.safetensors"
[ "$rc" -ne 0 ] && [ -s "$tmp/I" ] || fail "SIGINT: exit $rc, resume file $(ls -la "$tmp/I" 2>&1)"

# without --resume: SIGTERM ends the run at once (128 + 15), and nothing is kept
run_and_signal "$tmp/n.log" TERM "${run[@]}" --out "$tmp/N.safetensors"
[ "$rc" -eq 143 ] || fail "SIGTERM without --resume: exit $rc, not 143"
[ -e "$tmp/N.safetensors" ] && fail "a killed run wrote its checkpoint"

if [ "$fails" -gt 0 ]; then echo "test_cli_resume: $fails check(s) failed"; exit 1; fi
echo "test_cli_resume: all checks passed"
