#!/usr/bin/env bash
# No Docker engine runs in CI, so this checks what docker/compose.yaml and
# docker/haproxy.cfg would do against the tree: HAProxy (Debian's) accepts the
# configuration, checks every replica on /readyz, and lists every replica the
# compose file defines; every option of the replicas' command is one vaed
# serve knows; the files the compose file builds from exist; no password is
# written into the compose file (libpq gets it as PGPASSWORD).
# Env: VAED_BIN (default build/vaed).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bin=${VAED_BIN:-$root/build/vaed}
compose=docker/compose.yaml
cfg=docker/haproxy.cfg
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

[ -f "$compose" ] && [ -f "$cfg" ] || { echo "FAIL: $compose or $cfg missing"; exit 1; }

if out=$(haproxy -c -f "$cfg" 2>&1); then
    ok "haproxy -c accepts $cfg"
else
    fail "haproxy -c rejects $cfg: $out"
fi
grep -Eq '^[[:space:]]*option httpchk GET /readyz' "$cfg" && ok "replicas checked on /readyz" ||
    fail "$cfg does not check GET /readyz"

# Every replica service of the compose file (vaedN) is a server of HAProxy.
mapfile -t replicas < <(sed -n -E 's/^  (vaed[0-9]+):.*/\1/p' "$compose")
[ "${#replicas[@]}" -ge 2 ] && ok "${#replicas[@]} replicas in $compose" ||
    fail "fewer than two replicas in $compose"
for r in "${replicas[@]}"; do
    grep -Eq "^[[:space:]]*server $r $r:8080" "$cfg" && ok "HAProxy sends to $r" ||
        fail "$cfg has no server line for $r"
done

# The replicas' command: each --option is one `vaed serve` accepts.
help=$("$bin" serve --help 2>&1 || true)
cmd=$(sed -n '/^  command: \["serve"/,/\]$/p' "$compose" | tr -d '\n')
[ -n "$cmd" ] || fail "no replica command in $compose"
for opt in $(grep -oE '"--[a-z-]+"' <<<"$cmd" | tr -d '"'); do
    grep -q -- "$opt" <<<"$help" && ok "vaed serve knows $opt" || fail "vaed serve has no $opt"
done
grep -q -- '"--registry", "postgresql://' <<<"$cmd" && ok "replicas share a postgresql:// registry" ||
    fail "the replicas' command names no postgresql:// registry"

for f in $(sed -n -E 's/^[[:space:]]*dockerfile: (.*)/\1/p' "$compose"); do
    [ -f "$f" ] && ok "builds from $f" || fail "$compose builds from missing $f"
done
if grep -v '^[[:space:]]*#' "$compose" | grep -Eq 'postgres(ql)?://[^@"]*:[^@"]*@'; then
    fail "$compose writes a password into a URL"
else
    ok "no password in a URL of $compose"
fi

[ "$fails" = 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
