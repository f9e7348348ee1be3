#!/usr/bin/env bash
# The README's figure for conditional models: does a conditional VAE draw
# the class it is asked for? Trains conditional MLPs on MNIST for EPOCHS
# (default 5) epochs, seeded, then `vaed eval` draws SAMPLES (default 1000)
# z ~ N(0, I) per class, decodes each with its label and gives it to a
# nearest-class-mean classifier on pixels (the class means of the MNIST test
# images); the share classified as the class it was drawn for is the figure.
# Two latent sizes, since that is what decides it: with 2 latent dimensions z
# has no room for the class and the decoder must take it from the label;
# with vaed's default 20 the encoder puts the class into z as well and the
# label is left with little to say.
#   scripts/measure-conditional.sh            (from anywhere; needs the build and data/mnist)
# Deterministic given the seed (1). Run it at a low priority (nice -n 10): it
# is a measurement, not a test.
# Environment: EPOCHS, SAMPLES, LATENTS (default "2 20"), LIMIT (train on the
# first N images only; 0 = all, the default), BIN (default build/vaed).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
epochs=${EPOCHS:-5}
samples=${SAMPLES:-1000}
latents=${LATENTS:-2 20}
limit=${LIMIT:-0}
vaed=${BIN:-$root/build/vaed}
case "$epochs$samples${latents// /}$limit" in
    *[!0-9]*|'') echo "measure-conditional: EPOCHS, SAMPLES, LATENTS and LIMIT must be integers" >&2; exit 2 ;;
esac
limit_args=()
[ "$limit" -gt 0 ] && limit_args=(--limit "$limit")
[ -x "$vaed" ] || { echo "measure-conditional: $vaed not found (run make)" >&2; exit 2; }
tmp=$(mktemp -d /tmp/vaed-measure-conditional.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT

for z in $latents; do
    cmd=("$vaed" train --data mnist --conditional --latent "$z" --epochs "$epochs" --seed 1
         --threads 1 "${limit_args[@]}" --out "$tmp/cond-$z.safetensors")
    echo "\$ ${cmd[*]#"$root/"}"
    "${cmd[@]}" | grep -E '^(training|epoch '"$epochs"'/)'
    cmd=("$vaed" eval --model "$tmp/cond-$z.safetensors" --data mnist --class-samples "$samples" --seed 1)
    echo "\$ ${cmd[*]#"$root/"}"
    "${cmd[@]}" | grep -E '^(neg_elbo|class_accuracy|per class)'
done
