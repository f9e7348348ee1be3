#!/usr/bin/env bash
# Installs the Debian packages vaed needs, only those not installed yet.
#   scripts/install-deps.sh               build + test packages (what `make test` needs)
#   scripts/install-deps.sh --runtime     only the shared libraries the daemon links (Docker runtime stage)
#   scripts/install-deps.sh --with-bench  also python3-torch, python3-numpy, wrk (benchmarks only)
#                                         (scripts/bench-onnx.sh installs its onnxruntime-node with npm)
#   scripts/install-deps.sh --with-fuzz   also clang-14 and its fuzzer and sanitizer runtimes (make fuzz)
#   scripts/install-deps.sh --print       list the packages it would check, install nothing
# When everything is present it never calls apt-get, so it is fast and works offline.
set -euo pipefail

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "$0"
}

runtime=0
bench=0
fuzz=0
print=0
for arg in "$@"; do
    case "$arg" in
        --runtime) runtime=1 ;;
        --with-bench) bench=1 ;;
        --with-fuzz) fuzz=1 ;;
        --print) print=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-deps: unknown option '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ "$runtime" = 1 ]; then
    # curl is for the image's HEALTHCHECK, ca-certificates for any https client;
    # libopenmpi3 is linked (data-parallel training), openmpi-bin's mpirun runs
    # the ranks of a job with "ranks" (vaed serve --mpi-hostfile).
    pkgs=(libmicrohttpd12 libcjson1 libopenblas0-pthread libpng16-16 libsqlite3-0 zlib1g libpq5
          libopenmpi3 openmpi-bin ca-certificates curl)
else
    pkgs=(build-essential pkg-config libmicrohttpd-dev libcjson-dev libopenblas-dev
          libpng-dev libsqlite3-dev zlib1g-dev libcmocka-dev curl ca-certificates
          dataset-fashion-mnist sqlite3 python3
          libpq-dev postgresql-15 openmpi-bin libopenmpi-dev haproxy chromium)
    # libpq/postgresql: the shared-registry tests start their own server;
    # OpenMPI: data-parallel training over ranks; HAProxy: the replicas' front;
    # chromium: the dashboard's browser tests (Debian's, never a downloaded one).
    # npm may come from outside Debian (e.g. a nodesource nodejs); any npm on
    # PATH is good enough for `npm pack`.
    if ! command -v npm >/dev/null 2>&1; then
        pkgs+=(npm)
    fi
fi
if [ "$bench" = 1 ]; then
    pkgs+=(python3-torch python3-numpy wrk)
fi

if [ "$fuzz" = 1 ]; then
    pkgs+=(clang-14 libclang-rt-14-dev)
fi

if [ "$print" = 1 ]; then
    printf '%s\n' "${pkgs[@]}"
    exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi

echo "install-deps: installing ${#missing[@]} missing package(s): ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo)
    else
        echo "install-deps: missing packages (${missing[*]}), and not root and no sudo:" >&2
        echo "  run as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: apt-get not found; this script needs Debian/Ubuntu. Missing: ${missing[*]}" >&2
    exit 1
fi

if ! "${sudo_cmd[@]}" apt-get update; then
    echo "install-deps: apt-get update failed (no network?)" >&2
    exit 1
fi
if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"; then
    echo "install-deps: apt-get install failed for: ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installed ${missing[*]}"
