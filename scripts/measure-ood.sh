#!/usr/bin/env bash
# The README's table of anomaly scores: trains one VAE on Fashion-MNIST and
# one on MNIST (vaed train's defaults, EPOCHS epochs, seed 1, one training
# thread, so the numbers are the same run to run), then `vaed score` gives the
# AUROC of every score for the other data set's test images as anomalies
# against the model's own test images: all 10,000 of each without the
# likelihood regret, and the first REGRET_IMAGES of each with it
# (REGRET_STEPS Adam steps on a copy of the encoder per image). Ends with the
# table as Markdown. Run it at a low priority (nice -n 10): it is a
# measurement, not a test.
#   scripts/measure-ood.sh            (from anywhere; needs the build and the data)
# Environment: EPOCHS (default 10), LIKELIHOOD (default bernoulli),
# REGRET_IMAGES (default 500; 0 skips the regret), REGRET_STEPS (default 100),
# LIMIT (train on and score the first N images only; 0 = all, the default),
# BIN (default build/vaed), KEEP (a directory to keep the models in: a model
# already there is not trained again).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
epochs=${EPOCHS:-10}
likelihood=${LIKELIHOOD:-bernoulli}
regret_images=${REGRET_IMAGES:-500}
regret_steps=${REGRET_STEPS:-100}
limit=${LIMIT:-0}
vaed=${BIN:-$root/build/vaed}
case "$epochs$regret_images$regret_steps$limit" in
    *[!0-9]*|'') echo "measure-ood: EPOCHS, REGRET_IMAGES, REGRET_STEPS and LIMIT must be integers" >&2; exit 2 ;;
esac
[ -x "$vaed" ] || { echo "measure-ood: $vaed not found (run make)" >&2; exit 2; }
tmp=$(mktemp -d /tmp/vaed-measure-ood.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
dir=${KEEP:-$tmp}
mkdir -p "$dir"
limit_args=()
[ "$limit" -gt 0 ] && limit_args=(--limit "$limit")
if [ "$regret_images" -gt 0 ] && [ "$limit" -gt 0 ] && [ "$regret_images" -gt "$limit" ]; then
    regret_images=$limit
fi

show() { echo "\$ ${*/#$root\//}"; "$@"; }
for data in fashion mnist; do
    model=$dir/$data-$likelihood.safetensors
    [ -s "$model" ] || show "$vaed" train --data "$data" --likelihood "$likelihood" --epochs "$epochs" \
        --seed 1 --threads 1 "${limit_args[@]}" --out "$model" | grep -E '^(training|epoch '"$epochs"'/)'
done
for pair in "fashion mnist" "mnist fashion"; do
    set -- $pair
    model=$dir/$1-$likelihood.safetensors
    show "$vaed" score --model "$model" --data "$1" --against "$2" "${limit_args[@]}" | tee "$tmp/$1.out"
    if [ "$regret_images" -gt 0 ]; then
        show "$vaed" score --model "$model" --data "$1" --against "$2" --limit "$regret_images" \
            --regret "$regret_steps" | tee "$tmp/$1-regret.out"
    fi
done

# The AUROC row of each run under the header's names; the regret's column
# from the run that computed it.
echo
echo "AUROC, the other set's test images as anomalies against the model's own"
echo "(likelihood regret on the first $regret_images of each, $regret_steps steps):"
echo
for pair in "fashion mnist" "mnist fashion"; do
    set -- $pair
    regret_file=$tmp/$1-regret.out
    [ -s "$regret_file" ] || regret_file=/dev/null
    awk -v row="$1 vs $2" '
        FNR == 1 { file++ }
        /^mean of/ { for (i = 3; i <= NF; i++) name[file, i - 1] = $i; n[file] = NF - 1 }
        /^auroc/ { for (i = 2; i <= NF; i++) v[file, name[file, i]] = $i }
        END {
            if (!header_done) {
                line = "| model vs anomalies |"; rule = "|---|"
                for (i = 2; i <= n[1]; i++) { line = line " " name[1, i] " |"; rule = rule "---|" }
                print line; print rule
            }
            line = "| " row " |"
            for (i = 2; i <= n[1]; i++) {
                k = name[1, i]; x = v[1, k]
                if (k == "regret" && file > 1) x = v[2, k]
                line = line " " x " |"
            }
            print line
        }' header_done="$([ "$1" = fashion ] && echo 0 || echo 1)" "$tmp/$1.out" "$regret_file"
done
