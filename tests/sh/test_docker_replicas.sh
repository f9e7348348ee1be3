#!/usr/bin/env bash
# No Docker engine runs in CI, so this checks what docker/compose.yaml and
# docker/haproxy.cfg would do against the tree: HAProxy (Debian's) accepts the
# configuration, checks every replica on /readyz, and lists every replica the
# compose file defines; every option of the replicas' command is one vaed
# serve knows; the files the compose file builds from exist; no password is
# written into the compose file (libpq gets it as PGPASSWORD). And against
# the README's "N replicas on N machines": the services it names are the
# compose file's (and its header's), its HAProxy configuration passes
# haproxy -c and is docker/haproxy.cfg without Docker's resolvers and with
# other server lines, the flags of its serve line are the compose replicas',
# and the vaed commands of the compose header take the options they are given.
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

# ---- the README against the compose file and haproxy.cfg ----
readme=README.md
tmp=$(mktemp -d /tmp/vaed-test-docker-replicas.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
section=$(sed -n '/^\*\*N replicas on N machines\.\*\*/,/^Measured by /p' "$readme")
[ -n "$section" ] || fail "$readme has no 'N replicas on N machines' section"

# The services: the compose file's top-level ones, the README's sentence, the header's.
mapfile -t services < <(sed -n '/^services:/,/^[a-z]/p' "$compose" | sed -n -E 's/^  ([a-z0-9_-]+):[[:space:]]*$/\1/p')
compose_services=$(printf '%s\n' "${services[@]}" | sort | tr '\n' ' ')
readme_services=$(tr '\n' ' ' <<<"$section" | grep -oE 'runs the same on one Docker host: services [^;]*' |
    grep -oE '`[a-z0-9_-]+`' | tr -d '`' | sort | tr '\n' ' ')
header_services=$(sed -n '/^# Services:/,/^# [A-Z][a-z]*:/p' "$compose" | sed '$d' | tr '\n' ' ' |
    sed -E 's/\([^)]*\)//g' | grep -oE '\b(db|vaed[0-9]+|haproxy)\b' | sort -u | tr '\n' ' ')
if [ "${#services[@]}" -ge 4 ] && [ "$readme_services" = "$compose_services" ]; then
    ok "the README names the compose services: $compose_services"
else
    fail "the README names services '$readme_services', $compose defines '$compose_services'"
fi
[ "$header_services" = "$compose_services" ] && ok "the compose header names them too" ||
    fail "the header of $compose names '$header_services', it defines '$compose_services'"
grep -qE '^    ports: \["8080:8080"\]' <(sed -n '/^  haproxy:/,/^  [a-z]/p' "$compose") &&
    grep -q 'port 8080' <<<"$section" && ok "HAProxy on port 8080 in both" ||
    fail "the README's port 8080 is not the compose haproxy's"

# The README's HAProxy configuration: valid, and haproxy.cfg but for
# comments, Docker's resolvers and the server lines.
sed -n '/^      global$/,/^$/p' <<<"$section" | sed -E 's/^      //' >"$tmp/readme-haproxy.cfg"
if [ -s "$tmp/readme-haproxy.cfg" ] && out=$(haproxy -c -f "$tmp/readme-haproxy.cfg" 2>&1); then
    ok "haproxy -c accepts the README's configuration"
else
    fail "haproxy -c rejects the README's configuration: $out"
fi
normal() { # the configuration without comments, blanks, resolvers, server lines
    sed -E 's/[[:space:]]*#.*$//; s/[[:space:]]+/ /g; s/^ //; s/ $//; /^$/d' "$1" |
        awk '/^resolvers / { skip = 1; next } /^(global|defaults|frontend|backend|listen)( |$)/ { skip = 0 } !skip' |
        sed -E '/^server /d; s/ resolvers docker init-addr [^ ]+//'
}
if diff <(normal "$cfg") <(normal "$tmp/readme-haproxy.cfg") >"$tmp/diff"; then
    ok "the README's configuration is $cfg with other servers and no Docker resolvers"
else
    fail "the README's HAProxy configuration and $cfg differ: $(cat "$tmp/diff")"
fi
[ "$(grep -c '^ *server ' "$tmp/readme-haproxy.cfg")" -ge 2 ] && ok "the README's configuration has N servers" ||
    fail "the README's configuration has fewer than two server lines"

# The README's serve line (in the Replicas section): vaed knows its flags,
# and the compose replicas give each.
serve_line=$(sed -n '/^## Replicas: one PostgreSQL registry/,/^\*\*N replicas/p' "$readme" |
    sed -n '/^    vaed serve /,/^$/p' | tr '\n' ' ')
[ -n "$serve_line" ] || fail "no 'vaed serve' line in the README's Replicas section"
for opt in $(grep -oE -- '--[a-z][a-z-]*' <<<"$serve_line" | sort -u); do
    grep -q -- "$opt" <<<"$help" || fail "the README's serve line passes $opt, which vaed serve does not know"
    grep -q -- "\"$opt\"" <<<"$cmd" && ok "the compose replicas pass $opt as the README does" ||
        fail "the README's serve line passes $opt, the compose replicas do not"
done

# The vaed commands of the compose header (seeding): their options exist.
header=$(sed -n '1,/^name:/p' "$compose" | sed -E 's/^#[[:space:]]*//; s/^#//' |
    awk '{ if (sub(/\\[[:space:]]*$/, "")) { buf = buf $0 " "; next } print buf $0; buf = "" }')
n_cmds=0
while read -r sub args; do
    n_cmds=$((n_cmds + 1))
    sub_help=$("$bin" registry "$sub" --help 2>&1 || true)
    for opt in $(grep -oE -- '--[a-z][a-z-]*' <<<"$args" | sort -u); do
        grep -q -- "^  $opt " <<<"$sub_help" && ok "vaed registry $sub knows $opt" ||
            fail "the compose header runs vaed registry $sub $opt, which it does not know"
    done
done < <(grep -oE 'vaed registry [a-z]+ .*' <<<"$header" | sed -E 's/^vaed registry //')
[ "$n_cmds" -ge 1 ] || fail "the compose header shows no vaed registry command to seed the registry"
grep -q 'docker/vaed_token' <<<"$header" && grep -Eq '^    file: \./vaed_token$' "$compose" &&
    ok "the header writes docker/vaed_token, the secret's file" ||
    fail "the header's token file is not the compose secret's ./vaed_token"
if grep -Eq 'postgres(ql)?://[^@" ]*:[^@" ]*@' <<<"$header$section"; then
    fail "a password is written into a URL in the compose header or the README"
else
    ok "no password in a URL of the header or the README's section"
fi

[ "$fails" = 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
