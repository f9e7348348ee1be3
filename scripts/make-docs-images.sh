#!/usr/bin/env bash
# Makes the pictures in the README: trains two small models quickly and draws
# them with the CLI, as a user would.
#   scripts/make-docs-images.sh      (from anywhere; needs a build and the data)
# writes
#   docs/mnist_samples.png         vaed sample: 64 draws z ~ N(0, I) through the MLP
#   docs/mnist_recon.png           vaed reconstruct: 16 MNIST test images above
#                                  their reconstructions (decoder mean at mu)
#   docs/fashion_conv_samples.png  the same for the conv VAE on Fashion-MNIST
#   docs/fashion_conv_recon.png
# The MLP is `vaed train`'s default (784-400-20, Bernoulli), the conv model
# `--arch conv`'s (channels 32,64,128,256, latent 20). Training is seeded,
# so the pictures change only when the engine or the options do.
# Environment: MLP_EPOCHS (default 10, ~1 minute on 2 cores), CONV_EPOCHS
# (default 5, ~3 minutes), OUT_DIR (default <repo>/docs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mlp_epochs=${MLP_EPOCHS:-10}
conv_epochs=${CONV_EPOCHS:-5}
out_dir=${OUT_DIR:-$root/docs}
case "$mlp_epochs$conv_epochs" in
    *[!0-9]*|'') echo "make-docs-images: MLP_EPOCHS and CONV_EPOCHS must be integers" >&2; exit 2 ;;
esac

bash scripts/get-data.sh mnist
bash scripts/get-data.sh fashion
make --no-print-directory all >/dev/null
mkdir -p "$out_dir"
tmp=$(mktemp -d /tmp/vaed-docs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# train NAME DATA EPOCHS [options]: the checkpoint is $tmp/NAME.safetensors;
# prints the last epoch's line (its test loss is the negative ELBO per image)
train() {
    local name=$1 data=$2 epochs=$3
    shift 3
    echo "training $name: vaed train --data $data --epochs $epochs $*"
    build/vaed train --data "$data" --epochs "$epochs" --seed 1 --out "$tmp/$name.safetensors" "$@" \
        >"$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log" >&2; exit 1; }
    grep '^epoch ' "$tmp/$name.log" | tail -n 1 | sed 's/^/  /'
}

# draw NAME DATA PREFIX: the sample grid and the reconstructions
draw() {
    local name=$1 data=$2 prefix=$3
    build/vaed sample --model "$tmp/$name.safetensors" -n 64 --seed 1 -o "$out_dir/${prefix}_samples.png"
    build/vaed reconstruct --model "$tmp/$name.safetensors" --data "$data" -n 16 \
        -o "$out_dir/${prefix}_recon.png"
}

train mlp mnist "$mlp_epochs"
draw mlp mnist mnist
train conv fashion "$conv_epochs" --arch conv
draw conv fashion fashion_conv
ls -l "$out_dir"/mnist_samples.png "$out_dir"/mnist_recon.png \
    "$out_dir"/fashion_conv_samples.png "$out_dir"/fashion_conv_recon.png
