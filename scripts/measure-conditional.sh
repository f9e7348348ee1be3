#!/usr/bin/env bash
# The README's figure for conditional models: does a conditional VAE draw
# the class it is asked for? Trains conditional MLPs on MNIST for EPOCHS
# (default 5) epochs, seeded, then `vaed eval` draws SAMPLES (default 1000)
# z ~ N(0, T^2 I) per class for each temperature T of TEMPERATURES, decodes
# each with its label and gives it to a nearest-class-mean classifier on
# pixels (the class means of the MNIST test images); the share classified as
# the class it was drawn for is the figure.
# Two latent sizes, since that is what decides it: with 2 latent dimensions z
# has no room for the class and the decoder must take it from the label;
# with vaed's default 20 the encoder puts part of the class into z as well,
# and at T = 1 a sample's class is then partly z's; nearer the prior's centre
# (T < 1) the label decides.
# With TORCH=1 (the default) the same model is trained and judged by PyTorch
# (scripts/measure_conditional_torch.py; python3-torch is installed on demand
# by scripts/install-deps.sh --with-bench), so that the figure can be told to
# be the model's and not the engine's.
#   scripts/measure-conditional.sh            (from anywhere; needs the build and data/mnist)
# Deterministic given the seed (1). Run it at a low priority (nice -n 10): it
# is a measurement, not a test.
# Environment: EPOCHS, SAMPLES, LATENTS (default "2 20"), TEMPERATURES
# (default "1 0.7 0.5"), LIMIT (train on the first N images only; 0 = all,
# the default), TORCH (1 or 0), BIN (default build/vaed).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
epochs=${EPOCHS:-5}
samples=${SAMPLES:-1000}
latents=${LATENTS:-2 20}
temperatures=${TEMPERATURES:-1 0.7 0.5}
limit=${LIMIT:-0}
torch=${TORCH:-1}
vaed=${BIN:-$root/build/vaed}
case "$epochs$samples${latents// /}$limit" in
    *[!0-9]*|'') echo "measure-conditional: EPOCHS, SAMPLES, LATENTS and LIMIT must be integers" >&2; exit 2 ;;
esac
for t in $temperatures; do
    [[ "$t" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "measure-conditional: TEMPERATURES are numbers from 0 to 10" >&2; exit 2; }
done
case "$torch" in 0|1) ;; *) echo "measure-conditional: TORCH is 0 or 1" >&2; exit 2 ;; esac
py=/usr/bin/python3
if [ "$torch" = 1 ] && ! "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "measure-conditional: $py has no torch; installing the benchmark packages"
    bash scripts/install-deps.sh --with-bench
    "$py" -c 'import torch' || { echo "measure-conditional: $py still cannot import torch" >&2; exit 1; }
fi
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
    for t in $temperatures; do
        cmd=("$vaed" eval --model "$tmp/cond-$z.safetensors" --data mnist --class-samples "$samples"
             --class-temperature "$t" --seed 1)
        echo "\$ ${cmd[*]#"$root/"}"
        "${cmd[@]}" | grep -E '^(neg_elbo|class_accuracy|per class)'
    done
    if [ "$torch" = 1 ]; then
        cmd=("$py" scripts/measure_conditional_torch.py --latent "$z" --epochs "$epochs" --seed 1
             --samples "$samples" --temperatures "$(tr ' ' , <<<"$temperatures")" --limit "$limit")
        echo "\$ ${cmd[*]}"
        "${cmd[@]}" | grep -E "^torch latent $z (epoch $epochs/|temperature)"
    fi
done
