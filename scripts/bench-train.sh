#!/usr/bin/env bash
# Training benchmark (not a test): vaed against the pytorch/examples VAE on the
# same machine, in the same run, with the same architecture and data:
# MLP 784-400-20, ReLU, Bernoulli (BCE summed) + KL, Adam lr 1e-3, batch 128,
# shuffled MNIST (60,000 train images), negative ELBO on the 10,000 test images.
#   scripts/bench-train.sh           (from anywhere; `make bench` runs it)
# Runs are alternated (vaed, torch 1 thread, torch 2 threads, torch default)
# REPEATS times so that machine noise hits all alike; each setting keeps its
# best images/s (test loss is the mean over repeats). The table gives the
# ratio of vaed to the best torch setting, vaed's peak RSS (GNU time, "n/a"
# without /usr/bin/time) and the fraction of a ~30,000 images/s ceiling.
# vaed runs with --threads 2 (OpenBLAS threads).
#
# Environment: EPOCHS (default 3), REPEATS (default 2), PYTHON (default
# /usr/bin/python3, Debian's python3-torch; another python3 on PATH may lack
# it). OPENBLAS_CORETYPE (and other OPENBLAS_* variables) may be set on these
# machines; they are left as found and printed, and both vaed and torch run
# under the same environment, so the comparison stays fair either way.
# Needs: python3-torch (installed on demand by scripts/install-deps.sh
# --with-bench), data/mnist (scripts/get-data.sh mnist), a build (make all).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
epochs=${EPOCHS:-3}
repeats=${REPEATS:-2}
py=${PYTHON:-/usr/bin/python3}
case "$epochs$repeats" in
    *[!0-9]*|'') echo "bench-train: EPOCHS and REPEATS must be positive integers" >&2; exit 2 ;;
esac
if [ "$epochs" -lt 1 ] || [ "$repeats" -lt 1 ]; then
    echo "bench-train: EPOCHS and REPEATS must be >= 1" >&2
    exit 2
fi

if ! "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "bench-train: $py has no torch; installing the benchmark packages"
    bash scripts/install-deps.sh --with-bench
    "$py" -c 'import torch' || { echo "bench-train: $py still cannot import torch" >&2; exit 1; }
fi
bash scripts/get-data.sh mnist
make --no-print-directory all >/dev/null

tmp=$(mktemp -d /tmp/vaed-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
results=$tmp/results.tsv
: >"$results"

have_time=0
if [ -x /usr/bin/time ]; then have_time=1; fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "# vaed training benchmark"
echo
echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores; $(uname -sr)"
echo "- vaed: $(build/vaed --version 2>/dev/null || echo '?'), --threads 2"
echo "- torch: $("$py" -c 'import torch; print(torch.__version__, "threads default", torch.get_num_threads())')"
echo "- environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}$(env | grep '^OPENBLAS_' | grep -v '^OPENBLAS_CORETYPE=' | sed 's/^/, /' | tr -d '\n')"
echo "- ${epochs} epochs, ${repeats} repeats, alternated"
echo

run_vaed() {
    local out=$tmp/vaed.out rss=n/a
    if [ "$have_time" = 1 ]; then
        /usr/bin/time -f '%M' -o "$tmp/vaed.rss" \
            build/vaed train --data mnist --epochs "$epochs" --threads 2 \
            --out "$tmp/vaed.safetensors" >"$out" 2>"$tmp/vaed.err" ||
            { cat "$tmp/vaed.err" >&2; return 1; }
        rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$tmp/vaed.rss")
    else
        build/vaed train --data mnist --epochs "$epochs" --threads 2 \
            --out "$tmp/vaed.safetensors" >"$out" 2>"$tmp/vaed.err" ||
            { cat "$tmp/vaed.err" >&2; return 1; }
    fi
    # "epoch 2/3  train loss ...  test loss 105.12  (...)  17164 images/s":
    # images/s over all epochs (harmonic mean of the per-epoch rates), test
    # loss after the last epoch
    awk -v rss="$rss" '
        /^epoch [0-9]+\/[0-9]+ .* images\/s$/ {
            n++; inv += 1 / $(NF - 1)
            for (i = 1; i < NF; i++) if ($i == "test" && $(i + 1) == "loss") loss = $(i + 2)
        }
        END {
            if (!n || loss == "" || loss == "n/a") exit 1
            printf "vaed\t2\t%.1f\t%s\t%s\n", n / inv, loss, rss
        }' "$out" >>"$results" || { echo "bench-train: could not read vaed's output:" >&2; cat "$out" >&2; return 1; }
    echo "  vaed:          $(tail -n 1 "$results" | cut -f3) images/s, test loss $(tail -n 1 "$results" | cut -f4)"
}

run_torch() {
    local threads=$1 label=$2 seed=$3
    "$py" scripts/bench_train_torch.py --epochs "$epochs" --threads "$threads" --seed "$seed" \
        >"$tmp/torch.json"
    "$py" - "$tmp/torch.json" "$label" >>"$results" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("torch\t%s\t%.1f\t%.4f\t%.1f" % (sys.argv[2], r["images_per_s"], r["test_loss"], r["peak_rss_mb"]))
EOF
    echo "  torch ($label):$(printf '%*s' $((8 - ${#label})) '') $(tail -n 1 "$results" | cut -f3) images/s, test loss $(tail -n 1 "$results" | cut -f4)"
}

for r in $(seq 1 "$repeats"); do
    echo "repeat $r/$repeats"
    run_vaed
    run_torch 1 1 "$r"
    run_torch 2 2 "$r"
    run_torch 0 default "$r"
done
echo
"$py" scripts/bench_train_torch.py --table "$results"
