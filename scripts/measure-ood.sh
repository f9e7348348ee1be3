#!/usr/bin/env bash
# The README's table of anomaly scores: trains one VAE on Fashion-MNIST and
# one on MNIST (vaed train's defaults, EPOCHS epochs, seed 1, one training
# thread, so the numbers are the same run to run), then `vaed score` gives the
# AUROC of every score for the other data set's test images as anomalies
# against the model's own test images: all 10,000 of each without the
# likelihood regret, and the first REGRET_IMAGES of each with it (REGRET_STEPS
# Adam steps on the encoder per image, as Xiao et al. 2020 do on 500).
#   scripts/measure-ood.sh            (from anywhere; needs the build and the data)
# Environment: EPOCHS (default 10), LIKELIHOOD (default bernoulli),
# REGRET_IMAGES (default 500; 0 skips the regret), REGRET_STEPS (default 100),
# BIN (default build/vaed), KEEP (a directory to keep the models in).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
epochs=${EPOCHS:-10}
likelihood=${LIKELIHOOD:-bernoulli}
regret_images=${REGRET_IMAGES:-500}
regret_steps=${REGRET_STEPS:-100}
vaed=${BIN:-$root/build/vaed}
case "$epochs$regret_images$regret_steps" in
    *[!0-9]*|'') echo "measure-ood: EPOCHS, REGRET_IMAGES and REGRET_STEPS must be integers" >&2; exit 2 ;;
esac
[ -x "$vaed" ] || { echo "measure-ood: $vaed not found (run make)" >&2; exit 2; }
if [ -n "${KEEP:-}" ]; then
    dir=$KEEP
    mkdir -p "$dir"
else
    dir=$(mktemp -d /tmp/vaed-measure-ood.XXXXXX)
    trap 'rm -rf -- "$dir"' EXIT
fi

show() { echo "\$ ${*/#$root\//}"; "$@"; }
for data in fashion mnist; do
    model=$dir/$data-$likelihood.safetensors
    [ -s "$model" ] || show "$vaed" train --data "$data" --likelihood "$likelihood" --epochs "$epochs" \
        --seed 1 --threads 1 --out "$model" | grep -E '^(training|epoch '"$epochs"'/)'
done
for pair in "fashion mnist" "mnist fashion"; do
    set -- $pair
    model=$dir/$1-$likelihood.safetensors
    show "$vaed" score --model "$model" --data "$1" --against "$2" | tail -n 5
    if [ "$regret_images" -gt 0 ]; then
        show "$vaed" score --model "$model" --data "$1" --against "$2" --limit "$regret_images" \
            --regret "$regret_steps" | tail -n 5
    fi
done
