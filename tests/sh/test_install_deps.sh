#!/usr/bin/env bash
# scripts/install-deps.sh on a machine that has everything: it must succeed
# without touching apt-get (a fake apt-get that fails comes first in PATH),
# and its --print lists are what the build and the Docker runtime need.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
script=$root/scripts/install-deps.sh
tmp=$(mktemp -d /tmp/vaed-test-install-deps.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
fails=0
fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

mkdir -p "$tmp/bin"
for tool in apt-get apt sudo; do
    printf '#!/bin/sh\necho "fake %s called: $*" >>"%s/calls"\nexit 99\n' "$tool" "$tmp" >"$tmp/bin/$tool"
    chmod +x "$tmp/bin/$tool"
done

# Everything installed here (the suite runs after `make test` installed it).
if out=$(PATH="$tmp/bin:$PATH" bash "$script" 2>&1); then
    grep -qE '^install-deps: all [0-9]+ packages present$' <<<"$out" || fail "unexpected output: $out"
else
    fail "install-deps.sh failed with everything installed: $out"
fi
if [ -e "$tmp/calls" ]; then
    fail "install-deps.sh called the package manager: $(cat "$tmp/calls")"
fi

list=$(bash "$script" --print)
for p in libmicrohttpd-dev libcjson-dev libopenblas-dev libpng-dev libsqlite3-dev zlib1g-dev \
         libcmocka-dev pkg-config dataset-fashion-mnist curl; do
    grep -qx "$p" <<<"$list" || fail "--print does not list $p"
done
grep -qx python3-torch <<<"$list" && fail "--print lists python3-torch without --with-bench"

runtime=$(bash "$script" --print --runtime)
for p in libmicrohttpd12 libcjson1 libopenblas0-pthread libpng16-16 libsqlite3-0 zlib1g ca-certificates curl; do
    grep -qx "$p" <<<"$runtime" || fail "--print --runtime does not list $p"
done
grep -q -- '-dev$' <<<"$runtime" && fail "--runtime lists a -dev package: $runtime"

bench=$(bash "$script" --print --with-bench)
for p in python3-torch python3-numpy wrk libmicrohttpd-dev; do
    grep -qx "$p" <<<"$bench" || fail "--print --with-bench does not list $p"
done

if bash "$script" --no-such-option >/dev/null 2>&1; then
    fail "an unknown option was accepted"
fi

# A missing package, as a non-root user without sudo, must fail with a clear
# message and still not call apt-get. Simulated with a fake dpkg-query that
# reports one package as not installed, and a fake id that says uid 1000.
cat >"$tmp/bin/dpkg-query" <<'FAKE'
#!/bin/sh
for a in "$@"; do last=$a; done
if [ "$last" = libcmocka-dev ]; then printf 'unknown ok not-installed'; exit 0; fi
exec /usr/bin/dpkg-query "$@"
FAKE
printf '#!/bin/sh\necho 1000\n' >"$tmp/bin/id"
rm -f "$tmp/bin/sudo"
chmod +x "$tmp/bin/dpkg-query" "$tmp/bin/id"
rm -f "$tmp/calls"
if out=$(PATH="$tmp/bin:$PATH" bash "$script" 2>&1); then
    fail "succeeded although libcmocka-dev is missing and there is no root or sudo: $out"
else
    grep -q 'libcmocka-dev' <<<"$out" || fail "the error does not name the missing package: $out"
    grep -q 'sudo' <<<"$out" || fail "the error does not say root/sudo is needed: $out"
fi
[ -e "$tmp/calls" ] && fail "apt-get was called without root or sudo: $(cat "$tmp/calls")"

# As root with the package missing: apt-get update once, then install just it.
printf '#!/bin/sh\necho 0\n' >"$tmp/bin/id"
printf '#!/bin/sh\necho "apt-get $*" >>"%s/calls"\nexit 0\n' "$tmp" >"$tmp/bin/apt-get"
chmod +x "$tmp/bin/apt-get"
if out=$(PATH="$tmp/bin:$PATH" bash "$script" 2>&1); then
    calls=$(cat "$tmp/calls" 2>/dev/null || true)
    [ "$(grep -c '^apt-get update$' <<<"$calls")" = 1 ] || fail "expected one apt-get update: $calls"
    grep -qx 'apt-get install -y --no-install-recommends libcmocka-dev' <<<"$calls" ||
        fail "expected an install of libcmocka-dev alone: $calls"
else
    fail "install with a (fake) apt-get failed: $out"
fi

if [ "$fails" -gt 0 ]; then
    echo "test_install_deps: $fails check(s) failed"
    exit 1
fi
echo "test_install_deps: all checks passed"
