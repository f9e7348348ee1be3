#!/usr/bin/env bash
# The machinery of the two measurement scripts on a few hundred real images
# (the figures themselves come from full runs, see the README):
# scripts/measure-ood.sh ends with its Markdown table, two rows of an AUROC
# in [0, 1] for every score, the regret's among them; scripts/measure-
# conditional.sh prints the class accuracy of each latent size. Skipped
# without data/mnist and data/fashion.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
[ -s data/mnist/t10k-images-idx3-ubyte ] && [ -s data/fashion/t10k-images-idx3-ubyte ] || {
    echo "data/mnist or data/fashion is absent: skipped"; exit 77; }
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

out=$(LIMIT=200 EPOCHS=1 REGRET_IMAGES=10 REGRET_STEPS=2 BIN=$vaed bash scripts/measure-ood.sh 2>&1) \
    || fail "measure-ood.sh: $out"
table=$(grep -E '^\| (fashion vs mnist|mnist vs fashion) \|' <<<"$out" || true)
[ "$(wc -l <<<"$table")" = 2 ] || fail "measure-ood.sh's table lacks its two rows: $out"
grep -qE '^\| model vs anomalies \| neg_elbo .* regret .* ood_score \|$' <<<"$out" \
    || fail "measure-ood.sh's table header: $out"
bad=$(awk -F'|' '{ for (i = 3; i < NF; i++) { v = $i + 0; if ($i !~ /[0-9]/ || v < 0 || v > 1) print $i } }' <<<"$table")
[ -z "$bad" ] || fail "measure-ood.sh's table has values outside [0, 1]: $bad"

out=$(LIMIT=300 EPOCHS=1 SAMPLES=20 LATENTS=2 TEMPERATURES="1 0" TORCH=0 BIN=$vaed \
    bash scripts/measure-conditional.sh 2>&1) || fail "measure-conditional.sh: $out"
grep -qE '^class_accuracy [0-9.]+ of 20 samples per class \(temperature 1\)' <<<"$out" \
    || fail "measure-conditional.sh prints no class accuracy at temperature 1: $out"
# at temperature 0 a class's samples are one image: each class all right or all wrong
grep -qE '^per class +( [0-9]:(0|1)\.000){10}$' <<<"$(grep -A1 'temperature 0)' <<<"$out")" \
    || fail "measure-conditional.sh's temperature 0 is not one image per class: $out"
out=$(TEMPERATURES="1 x" TORCH=0 BIN=$vaed bash scripts/measure-conditional.sh 2>&1) \
    && fail "measure-conditional.sh took a temperature x: $out"

[ "$fails" -eq 0 ] && echo "test_measure_scripts: all checks passed"
exit $((fails > 0))
