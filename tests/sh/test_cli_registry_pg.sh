#!/usr/bin/env bash
# vaed registry list / import / export and vaed train --register, on a SQLite
# file and on PostgreSQL, found through --registry, $VAED_REGISTRY and
# --data-dir as vaed serve finds its registry: both backends list the same
# models, versions and aliases, and export the same bytes (sha256). Then the
# ways it goes wrong: a closed port, a wrong database, a server that never
# answers (bounded by libpq's connect_timeout, which vaed sets), a URL libpq
# cannot parse; each a message and a non-zero exit, and never the URL's
# password in anything printed.
# list, export and copy's source open read-only: on a database that is not
# vaed's (empty, or with a table of someone else's) they refuse with a clear
# message and create nothing there; on an older schema they do not migrate.
# PostgreSQL: tests/lib/pg_server's (initdb in a temporary directory, as the
# postgres user when root, on a free loopback port), started by
# build/tests/pg_run around this script; when VAED_TEST_PG_URL1 ..
# VAED_TEST_PG_URL3 (three empty databases) are already set, those are used.
# Skips (77) without MNIST under data/ or without PostgreSQL.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
vaed=${VAED_BIN:-$root/build/vaed}
build=${VAED_BUILD:-$root/build}
[ -f "${VAED_DATA:-data}/mnist/train-images-idx3-ubyte" ] || { echo "no MNIST: skipped"; exit 77; }
if [ -z "${VAED_TEST_PG_URL1:-}" ] || [ -z "${VAED_TEST_PG_URL2:-}" ] ||
    [ -z "${VAED_TEST_PG_URL3:-}" ]; then
    [ -x "$build/tests/pg_run" ] || { echo "FAIL: $build/tests/pg_run is not built"; exit 1; }
    exec "$build/tests/pg_run" -n 3 bash "${BASH_SOURCE[0]}" "$@"
fi
pg1=$VAED_TEST_PG_URL1
pg2=$VAED_TEST_PG_URL2
pg3=$VAED_TEST_PG_URL3 # someone else's: never vaed's
# The server trusts loopback, so any password is let in: one that must
# never be printed.
secret=Zq7-secret-Pw-91
pg1_pw=${pg1/vaed@/vaed:$secret@}
unset VAED_REGISTRY

tmp=$(mktemp -d /tmp/vaed-test-cli-registry-pg.XXXXXX)
silent_pid=
cleanup() {
    if [ -n "$silent_pid" ]; then kill "$silent_pid" 2>/dev/null || true; wait "$silent_pid" 2>/dev/null || true; fi
    rm -rf -- "$tmp"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# Everything vaed prints goes through run, into $tmp/all.log as well, for
# the password check at the end. A hang is a failure, not a stuck suite.
run() {
    local rc=0
    timeout 60 "$@" >"$tmp/out" 2>&1 || rc=$?
    cat "$tmp/out" >>"$tmp/all.log"
    return "$rc"
}
expect_ok() { # expect_ok "what" cmd...: $out is what it printed
    local what=$1; shift
    run "$@" || fail "$what: exit $? ($(cat "$tmp/out"))"
    out=$(cat "$tmp/out")
}
expect_fail() { # expect_fail "what" "message regex" cmd...
    local what=$1 re=$2; shift 2
    local rc=0
    run "$@" || rc=$?
    out=$(cat "$tmp/out")
    if [ "$rc" -eq 0 ]; then fail "$what: exit 0 ($out)"; return; fi
    [ "$rc" -ne 124 ] || fail "$what: still running after 60 s"
    grep -qE -- "$re" <<<"$out" || fail "$what: message '$out' does not match '$re'"
}
# The lists without their time stamps (the last field of a line, if any):
# what two registries filled the same way must agree on.
untimed() { sed -E 's/\t[0-9]{4}-[0-9]{2}-[0-9]{2}T[^\t]*$//'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

small=(--data mnist --limit 200 --epochs 1 --hidden 16 --latent 2 --batch 50 --threads 1 --iwae 0)
"$vaed" train "${small[@]}" --seed 1 --out "$tmp/a.safetensors" >/dev/null
"$vaed" train "${small[@]}" --seed 2 --out "$tmp/b.safetensors" >/dev/null
db=$tmp/sqlite/registry.db

# The same imports, each backend through each way of naming it.
expect_ok "sqlite import a (--data-dir)" "$vaed" registry import --data-dir "$tmp/sqlite" --model digits "$tmp/a.safetensors"
[ "$out" = "imported digits version 1" ] || fail "sqlite import a: $out"
expect_ok "sqlite import b (--registry FILE)" "$vaed" registry import --registry "$db" --model digits "$tmp/b.safetensors"
[ "$out" = "imported digits version 2" ] || fail "sqlite import b: $out"
expect_ok "sqlite import a again (\$VAED_REGISTRY)" env VAED_REGISTRY="$db" "$vaed" registry import --model digits "$tmp/a.safetensors"
[ "$out" = "already present: digits version 1" ] || fail "sqlite import a again: $out"
expect_ok "sqlite import b as fashion" "$vaed" registry import --registry "$db" --model fashion "$tmp/b.safetensors"

expect_ok "pg import a (--registry URL)" "$vaed" registry import --registry "$pg1" --model digits "$tmp/a.safetensors"
[ "$out" = "imported digits version 1" ] || fail "pg import a: $out"
expect_ok "pg import b (\$VAED_REGISTRY)" env VAED_REGISTRY="$pg1" "$vaed" registry import --model digits "$tmp/b.safetensors"
[ "$out" = "imported digits version 2" ] || fail "pg import b: $out"
expect_ok "pg import a again (a password in the URL)" "$vaed" registry import --registry "$pg1_pw" --model digits "$tmp/a.safetensors"
[ "$out" = "already present: digits version 1" ] || fail "pg import a again: $out"
# --registry wins over $VAED_REGISTRY, as for vaed serve
expect_ok "pg import b as fashion (--registry over \$VAED_REGISTRY)" \
    env VAED_REGISTRY="$tmp/elsewhere.db" "$vaed" registry import --registry "$pg1" --model fashion "$tmp/b.safetensors"
[ ! -e "$tmp/elsewhere.db" ] || fail "\$VAED_REGISTRY was opened although --registry was given"

# The same alias on both, by the same SQL (no offline command sets one).
alias_sql="INSERT INTO aliases (model_id, alias, version, set_by_hand) SELECT id, 'prod', 1, 1 FROM models WHERE name = 'digits'"
sqlite3 "$db" "$alias_sql" || fail "sqlite3: set alias prod"
psql -q -X -v ON_ERROR_STOP=1 "$pg1" -c "$alias_sql" >/dev/null || fail "psql: set alias prod"

# list, list --model: the same on both.
expect_ok "sqlite list" "$vaed" registry list --registry "$db"
sqlite_list=$out
grep -qP '^digits\t2 versions\tlatest 2\t20' <<<"$sqlite_list" || fail "sqlite list: $sqlite_list"
grep -qP '^fashion\t1 versions\tlatest 1\t20' <<<"$sqlite_list" || fail "sqlite list: $sqlite_list"
expect_ok "pg list" env VAED_REGISTRY="$pg1" "$vaed" registry list
[ "$(untimed <<<"$out")" = "$(untimed <<<"$sqlite_list")" ] \
    || fail "the lists differ: SQLite '$sqlite_list', PostgreSQL '$out'"
expect_ok "sqlite list --model" "$vaed" registry list --data-dir "$tmp/sqlite" --model digits
sqlite_versions=$out
grep -qP "^version 1\t$(sha "$tmp/a.safetensors")\t[0-9]+ bytes\timport\t20" <<<"$out" || fail "sqlite list --model: $out"
grep -qP '^alias prod\tversion 1\tset by hand$' <<<"$out" || fail "sqlite list --model: no alias prod: $out"
grep -qP '^alias latest\tversion 2$' <<<"$out" || fail "sqlite list --model: no alias latest: $out"
expect_ok "pg list --model" "$vaed" registry list --registry "$pg1_pw" --model digits
[ "$(untimed <<<"$out")" = "$(untimed <<<"$sqlite_versions")" ] \
    || fail "the versions and aliases differ: SQLite '$sqlite_versions', PostgreSQL '$out'"

# export: by number, by alias, latest; the same bytes as imported, from both.
for v in 1 prod latest; do
    expect_ok "sqlite export $v" "$vaed" registry export --registry "$db" --model digits --version "$v" --out "$tmp/s-$v.safetensors"
    expect_ok "pg export $v" "$vaed" registry export --registry "$pg1" --model digits --version "$v" -o "$tmp/p-$v.safetensors"
    [ -f "$tmp/s-$v.safetensors" ] && [ -f "$tmp/p-$v.safetensors" ] || { fail "export $v wrote no file"; continue; }
    want=$tmp/a.safetensors
    [ "$v" = latest ] && want=$tmp/b.safetensors
    [ "$(sha "$tmp/s-$v.safetensors")" = "$(sha "$want")" ] || fail "sqlite export $v: not the bytes imported"
    [ "$(sha "$tmp/p-$v.safetensors")" = "$(sha "$want")" ] || fail "pg export $v: not the bytes imported"
done

# train --register: into PostgreSQL through --registry, the bytes of its --out.
expect_ok "train --register --registry URL" "$vaed" train "${small[@]}" --seed 3 --out "$tmp/c.safetensors" \
    --register trained --registry "$pg1_pw"
grep -q '^registered trained version 1 ' <<<"$out" || fail "train --register: $out"
expect_ok "pg export trained" "$vaed" registry export --registry "$pg1" --model trained --out "$tmp/p-c.safetensors"
[ "$(sha "$tmp/p-c.safetensors" 2>/dev/null)" = "$(sha "$tmp/c.safetensors")" ] || fail "trained: not the bytes trained"

# copy and back: the copy lists the same.
expect_ok "copy sqlite -> pg" "$vaed" registry copy --from "$db" --to "$pg2"
expect_ok "pg copy list --model" "$vaed" registry list --registry "$pg2" --model digits
[ "$(untimed <<<"$out")" = "$(untimed <<<"$sqlite_versions")" ] || fail "the copy's versions differ: '$out'"
expect_ok "copy pg -> sqlite" "$vaed" registry copy --from "$pg1" --to "$tmp/back.db"
expect_ok "copied-back list" "$vaed" registry list --registry "$tmp/back.db"
grep -qP '^trained\t1 versions' <<<"$out" || fail "copied-back list: $out"

# What goes wrong.
expect_fail "closed port" 'unreachable.*(refused|failed)' \
    "$vaed" registry list --registry "postgresql://vaed:$secret@127.0.0.1:1/vaed"
expect_fail "closed port, the password as a parameter" 'unreachable' \
    "$vaed" registry list --registry "postgresql://vaed@127.0.0.1:1/vaed?sslmode=disable&password=$secret"
expect_ok "list, the password as a parameter" "$vaed" registry list --registry "$pg1?password=$secret"
grep -qP '^digits\t2 versions\tlatest 2\t' <<<"$out" || fail "list with ?password=: $out"
expect_fail "wrong database" 'database "no_such_db" does not exist' \
    "$vaed" registry export --registry "${pg1_pw%/*}/no_such_db" --model digits --out "$tmp/x.safetensors"
[ ! -e "$tmp/x.safetensors" ] || fail "a failed export left a file"
expect_fail "a URL libpq cannot parse (it quotes it)" 'IPv6' \
    env VAED_REGISTRY="postgresql://vaed:$secret@[::1/vaed" "$vaed" registry list
expect_fail "a URL libpq cannot parse, the password as a parameter" 'IPv6' \
    "$vaed" registry list --registry "postgresql://vaed@[::1/vaed?password=$secret"
expect_fail "a bad percent escape" 'percent' \
    "$vaed" registry import --registry "postgresql://vaed:$secret@127.0.0.1:5432/%zz" --model digits "$tmp/a.safetensors"
# A server that accepts and never answers: libpq's connect_timeout (vaed's
# default; the URL did not set one) ends the wait.
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(120)' >"$tmp/silent.port" &
silent_pid=$!
for _ in $(seq 100); do [ -s "$tmp/silent.port" ] && break; sleep 0.05; done
expect_fail "a server that never answers" 'timeout expired' \
    "$vaed" registry list --registry "postgresql://vaed:$secret@127.0.0.1:$(cat "$tmp/silent.port")/vaed"
kill "$silent_pid" 2>/dev/null || true; wait "$silent_pid" 2>/dev/null || true; silent_pid=
expect_fail "train --register into an unreachable registry" 'unreachable' \
    "$vaed" train "${small[@]}" --seed 4 --out "$tmp/d.safetensors" --register lost \
    --registry "postgresql://vaed:$secret@127.0.0.1:1/vaed"
[ ! -e "$tmp/d.safetensors" ] || fail "train --register trained before it found the registry unreachable"
expect_fail "export from a missing file" 'no registry at' \
    "$vaed" registry export --registry "$tmp/none.db" --model digits --out "$tmp/x.safetensors"
[ ! -e "$tmp/none.db" ] || fail "export created the registry file it was to read"
expect_fail "a missing model on pg" 'no model' \
    "$vaed" registry export --registry "$pg1" --model nope --out "$tmp/x.safetensors"
expect_fail "an invalid model name" 'invalid model name' \
    "$vaed" registry import --registry "$pg1" --model '../x' "$tmp/a.safetensors"
head -c 1000 "$tmp/a.safetensors" >"$tmp/cut.safetensors"
expect_fail "importing a damaged file into pg" 'registry import' \
    "$vaed" registry import --registry "$pg1" --model digits "$tmp/cut.safetensors"
expect_ok "pg list after the failures" "$vaed" registry list --registry "$pg1" --model digits
grep -c '^version ' <<<"$out" | grep -qx 2 || fail "a failure changed the registry: $out"

# Read-only: a database that is not vaed's is refused and left as it was.
psql_at() { psql -q -X -At -v ON_ERROR_STOP=1 "$@"; }
tables() { # the tables of database $1 outside PostgreSQL's own schemas
    psql_at "$1" -c "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables
                     WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
}
expect_fail "list on an empty database" 'is not a vaed registry \(no vaed_schema table\)' \
    "$vaed" registry list --registry "$pg3"
[ -z "$(tables "$pg3")" ] || fail "list made tables in an empty database: $(tables "$pg3")"
expect_fail "export from an empty database" 'is not a vaed registry \(no vaed_schema table\)' \
    "$vaed" registry export --registry "$pg3" --model digits --out "$tmp/x.safetensors"
expect_fail "copy from an empty database" 'is not a vaed registry' \
    "$vaed" registry copy --from "$pg3" --to "$tmp/from-empty.db"
[ -z "$(tables "$pg3")" ] || fail "export or copy made tables in an empty database: $(tables "$pg3")"
[ ! -e "$tmp/from-empty.db" ] || fail "a refused copy created its destination"
[ ! -e "$tmp/x.safetensors" ] || fail "a refused export wrote a file"
psql_at "$pg3" -c "CREATE TABLE notes (t text); INSERT INTO notes VALUES ('keep me')" >/dev/null
expect_fail "list on a foreign database" 'is not a vaed registry' \
    "$vaed" registry list --registry "$pg3"
expect_fail "export from a foreign database" 'is not a vaed registry' \
    env VAED_REGISTRY="$pg3" "$vaed" registry export --model digits --out "$tmp/x.safetensors"
[ "$(tables "$pg3")" = notes ] || fail "list or export changed a foreign database: $(tables "$pg3")"
[ "$(psql_at "$pg3" -c 'SELECT t FROM notes')" = "keep me" ] || fail "the foreign table changed"
# An older schema is not migrated by a read (older replicas may share it).
known=$(psql_at "$pg2" -c 'SELECT version FROM vaed_schema')
psql_at "$pg2" -c 'UPDATE vaed_schema SET version = 1' >/dev/null
expect_fail "list on an older schema" 'schema version 1 is older.*vaed serve' \
    "$vaed" registry list --registry "$pg2"
[ "$(psql_at "$pg2" -c 'SELECT version FROM vaed_schema')" = 1 ] || fail "a list migrated an older schema"
psql_at "$pg2" -c "UPDATE vaed_schema SET version = $known" >/dev/null
expect_ok "list on the schema restored" "$vaed" registry list --registry "$pg2" --model digits
[ "$(untimed <<<"$out")" = "$(untimed <<<"$sqlite_versions")" ] || fail "the copy's versions, read-only: '$out'"

if grep -qF -- "$secret" "$tmp/all.log"; then
    fail "the password was printed:"
    grep -F -- "$secret" "$tmp/all.log"
fi
grep -qF 'vaed:***@' "$tmp/all.log" || fail "no redacted URL was ever shown (were the errors checked?)"

if [ "$fails" -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "cli registry on SQLite and PostgreSQL: all checks passed"
