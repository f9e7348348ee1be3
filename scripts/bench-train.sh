#!/usr/bin/env bash
# Training benchmark (not a test): vaed against PyTorch on the same machine,
# in the same run, with the same architectures and data. Two sections:
#
# 1. MLP (ARCH=mlp): the pytorch/examples VAE, MLP 784-400-20, ReLU, Bernoulli
#    (BCE summed) + KL, Adam lr 1e-3, batch 128, shuffled MNIST (60,000 train
#    images), negative ELBO on the 10,000 test images. Runs are alternated
#    (vaed, torch 1 thread, torch 2 threads, torch default).
# 2. Conv (ARCH=conv): vaed's convolutional VAE with `vaed train --arch conv`'s
#    defaults (channels 32,64,128,256, latent 20, LeakyReLU(0.2), Bernoulli,
#    28x28 padded to 32) against the same model written in PyTorch
#    (scripts/bench_train_torch.py --arch conv), Adam lr 1e-3, batch 128, on
#    Fashion-MNIST; and vaed's MLP (784-400-20) on Fashion-MNIST for the same
#    epochs, to compare the test negative ELBO of the two architectures.
#    Torch settings (TORCH_CONV, default "1 2 1-nhwc 2-nhwc"): N threads, and
#    -nhwc for torch.channels_last. With 2 threads torch runs with
#    OPENBLAS_NUM_THREADS=1: its im2col convolutions call sgemm from inside
#    OpenMP threads, and a multi-threaded OpenBLAS under them oversubscribes
#    the cores (measured 30-430 images/s instead of ~1,500 on 2 cores). vaed
#    also runs OpenBLAS on one thread per training thread.
# ARCH=all (the default) runs both. Each setting keeps its best images/s over
# REPEATS (test loss is the mean over repeats); the tables give the ratio of
# vaed to the best torch setting, peak RSS (GNU time, "n/a" without
# /usr/bin/time) and for the MLP the fraction of the matrix-product ceiling measured in
# the same run (scripts/bench_sgemm_ceiling.c).
# vaed runs with --threads 2 (two data-parallel training threads).
#   scripts/bench-train.sh           (from anywhere; `make bench` runs it)
#
# Environment: ARCH (mlp, conv or all), EPOCHS (default 3), REPEATS (default
# 2), TORCH_CONV, LIMIT (the first N training images: a quick try of the
# script, not a benchmark), PYTHON (default /usr/bin/python3, Debian's python3-torch;
# another python3 on PATH may lack it). OPENBLAS_CORETYPE (and other
# OPENBLAS_* variables) may be set on these machines; they are left as found
# and printed, and both vaed and torch run under the same environment (but
# for the OPENBLAS_NUM_THREADS=1 above), so the comparison stays fair.
# Needs: python3-torch (installed on demand by scripts/install-deps.sh
# --with-bench), data/mnist and data/fashion (scripts/get-data.sh), a build
# (make all). A shared machine is noisy: the load average is printed before
# and after; compare runs made under similar load.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
epochs=${EPOCHS:-3}
repeats=${REPEATS:-2}
arch=${ARCH:-all}
torch_conv=${TORCH_CONV:-1 2 1-nhwc 2-nhwc}
limit=${LIMIT:-0}
py=${PYTHON:-/usr/bin/python3}
case "$arch" in
    mlp|conv|all) ;;
    *) echo "bench-train: ARCH must be mlp, conv or all" >&2; exit 2 ;;
esac
for s in $torch_conv; do
    case "$s" in
        1|2|1-nhwc|2-nhwc) ;;
        *) echo "bench-train: TORCH_CONV settings are 1, 2, 1-nhwc, 2-nhwc; not $s" >&2; exit 2 ;;
    esac
done
case "$epochs$repeats$limit" in
    *[!0-9]*|'') echo "bench-train: EPOCHS, REPEATS and LIMIT must be integers" >&2; exit 2 ;;
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
if [ "$arch" != conv ]; then bash scripts/get-data.sh mnist; fi
if [ "$arch" != mlp ]; then bash scripts/get-data.sh fashion; fi
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
if [ "${VAED_GEMM:-}" = blas ]; then gemm_path="OpenBLAS (VAED_GEMM=blas)"
elif grep -qw avx512vl /proc/cpuinfo; then
    gemm_path="vaed's AVX-512 kernels (engine/gemm.c); conv: implicit GEMM on the 12x16 AVX-512 kernel"
    case "${VAED_CONV:-}" in
        im2col) gemm_path="$gemm_path (off: VAED_CONV=im2col)" ;;
        avx2) gemm_path="$gemm_path (6x16 AVX2 kernel instead: VAED_CONV=avx2)" ;;
    esac
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    gemm_path="vaed's AVX2 kernel for op(a).b, OpenBLAS for a.b^T (no AVX-512 here); conv: implicit GEMM on the AVX2 kernel"
    if [ "${VAED_CONV:-}" = im2col ]; then gemm_path="$gemm_path (off: VAED_CONV=im2col)"; fi
else gemm_path="OpenBLAS (no AVX2 here)"; fi
echo "- vaed matrix products: $gemm_path"
echo "- torch: $("$py" -c 'import torch; print(torch.__version__, "threads default", torch.get_num_threads())')"
echo "- environment: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}$(env | grep '^OPENBLAS_' | grep -v '^OPENBLAS_CORETYPE=' | sed 's/^/, /' | tr -d '\n')"
echo "- ${epochs} epochs, ${repeats} repeats, alternated$([ "$limit" = 0 ] || echo ", LIMIT=$limit training images (not a benchmark)")"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# run_vaed RESULTS LABEL DATA [train options]: one vaed training run, one
# row "LABEL 2 images/s test-loss rss" appended to RESULTS.
run_vaed() {
    local res=$1 label=$2 data=$3 out=$tmp/vaed.out rss=n/a
    shift 3
    local cmd=(build/vaed train --data "$data" --epochs "$epochs" --threads 2 --limit "$limit"
               --out "$tmp/vaed.safetensors" "$@")
    if [ "$have_time" = 1 ]; then
        /usr/bin/time -f '%M' -o "$tmp/vaed.rss" "${cmd[@]}" >"$out" 2>"$tmp/vaed.err" ||
            { cat "$tmp/vaed.err" >&2; return 1; }
        rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$tmp/vaed.rss")
    else
        "${cmd[@]}" >"$out" 2>"$tmp/vaed.err" || { cat "$tmp/vaed.err" >&2; return 1; }
    fi
    # "epoch 2/3  train loss ...  test loss 105.12  (...)  17164 images/s":
    # images/s over all epochs (harmonic mean of the per-epoch rates), test
    # loss after the last epoch
    awk -v rss="$rss" -v label="$label" '
        /^epoch [0-9]+\/[0-9]+ .* images\/s$/ {
            n++; inv += 1 / $(NF - 1)
            for (i = 1; i < NF; i++) if ($i == "test" && $(i + 1) == "loss") loss = $(i + 2)
        }
        END {
            if (!n || loss == "" || loss == "n/a") exit 1
            printf "%s\t2\t%.1f\t%s\t%s\n", label, n / inv, loss, rss
        }' "$out" >>"$res" || { echo "bench-train: could not read vaed's output:" >&2; cat "$out" >&2; return 1; }
    printf '  %-22s %s images/s, test loss %s\n' "$label ($data):" \
        "$(tail -n 1 "$res" | cut -f3)" "$(tail -n 1 "$res" | cut -f4)"
}

# run_torch RESULTS IMPL LABEL SEED [bench_train_torch.py options]
run_torch() {
    local res=$1 impl=$2 label=$3 seed=$4
    shift 4
    "$py" scripts/bench_train_torch.py --epochs "$epochs" --seed "$seed" --limit "$limit" "$@" \
        >"$tmp/torch.json"
    "$py" - "$tmp/torch.json" "$impl" "$label" >>"$res" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("%s\t%s\t%.1f\t%.4f\t%.1f" % (sys.argv[2], sys.argv[3], r["images_per_s"], r["test_loss"],
                                    r["peak_rss_mb"]))
EOF
    printf '  %-22s %s images/s, test loss %s\n' "$impl ($label):" \
        "$(tail -n 1 "$res" | cut -f3)" "$(tail -n 1 "$res" | cut -f4)"
}

if [ "$arch" != conv ]; then
    echo "## MLP on MNIST"
    echo
    for r in $(seq 1 "$repeats"); do
        echo "repeat $r/$repeats"
        run_vaed "$results" vaed mnist
        run_torch "$results" torch 1 "$r" --threads 1
        run_torch "$results" torch 2 "$r" --threads 2
        run_torch "$results" torch default "$r" --threads 0
    done
    echo
    # the step's matrix products alone, as vaed runs them: the ceiling of the
    # table; and the same products on OpenBLAS (what vaed would do without
    # its own kernels, and what PyTorch calls here), for scale
    # (build/bench_sgemm_ceiling: `make bench` builds it)
    if [ -x build/bench_sgemm_ceiling ] &&
        read -r ceiling gflops < <(build/bench_sgemm_ceiling); then
        echo "matrix-product ceiling (the step's five products only, 2 threads, vaed's gemm): $ceiling images/s, $gflops GFLOP/s"
        export CEILING_IMAGES_PER_S=$ceiling
        if read -r bceiling bgflops < <(VAED_GEMM=blas build/bench_sgemm_ceiling); then
            echo "the same five products on OpenBLAS (1 BLAS thread each): $bceiling images/s, $bgflops GFLOP/s"
        fi
    fi
    "$py" scripts/bench_train_torch.py --table "$results"
    echo
fi

if [ "$arch" != mlp ]; then
    conv_results=$tmp/conv_results.tsv
    : >"$conv_results"
    echo "## Conv VAE on Fashion-MNIST (and the MLP at the same epochs)"
    echo
    for r in $(seq 1 "$repeats"); do
        echo "repeat $r/$repeats"
        run_vaed "$conv_results" vaed-conv fashion --arch conv
        for s in $torch_conv; do
            t=${s%-nhwc}
            opts=(--arch conv --data data/fashion --threads "$t")
            [ "$s" = "$t" ] || opts+=(--channels-last)
            if [ "$t" = 2 ]; then
                OPENBLAS_NUM_THREADS=1 run_torch "$conv_results" torch-conv "$s" "$r" "${opts[@]}"
            else
                run_torch "$conv_results" torch-conv "$s" "$r" "${opts[@]}"
            fi
        done
        run_vaed "$conv_results" vaed-mlp fashion
    done
    echo
    "$py" scripts/bench_train_torch.py --conv-table "$conv_results" --epochs "$epochs"
    echo
fi
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
