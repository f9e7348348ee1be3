#!/usr/bin/env bash
# The soak (make soak; not part of make test): a mixed load over every
# endpoint — inference, uploads, alias moves, version deletes, jobs submitted
# and cancelled, event streams — at SOAK_CONNECTIONS (64) connections for
# SOAK_SECONDS (300) against a daemon built with ASan and UBSan
# (build-asan), then against the release build (build). For each it reports
# requests and their rate, unexpected statuses (scripts/soak_load.c says
# which each operation may answer), sanitizer reports in the daemon's log,
# its exit status after SIGTERM, its resident memory at the end of the first
# minute and of the last one, and whether the registry is whole; and fails
# unless: 0 unexpected statuses, 0 sanitizer reports, exit 0, RSS drift
# under SOAK_MAX_DRIFT_PCT (5) percent, registry whole.
#   scripts/soak.sh [BUILD_DIR ...]        (default: build-asan build)
# Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${SOAK_SECONDS:-300}
connections=${SOAK_CONNECTIONS:-64}
max_drift=${SOAK_MAX_DRIFT_PCT:-5}
builds=("$@")
[ "${#builds[@]}" -gt 0 ] || builds=(build-asan build)
if [ "$seconds" -lt 120 ]; then
    echo "soak: SOAK_SECONDS must be at least 120 (a first and a last minute)" >&2
    exit 2
fi

failures=0
report=()
for build in "${builds[@]}"; do
    bin=$build/vaed
    load=$build/soak_load
    for f in "$bin" "$load"; do
        [ -x "$f" ] || { echo "soak: no $f (make soak builds it)" >&2; exit 2; }
    done
    dir=$(mktemp -d /tmp/vaed-soak-XXXXXX)
    "$load" setup "$dir/var" "$dir/data"
    echo "=== soak: $build, ${seconds}s at $connections connections, in $dir"
    # --stream-max-s 5: an event stream of a job still queued behind a hundred
    # others ends (with its retry line) instead of holding the load past its
    # time. --response-cache-mb 1 and --model-cache-mb 1: both caches are full
    # within the first minute, so what grows after is not them. At the
    # defaults (16 and 512 MB) they fill for the whole soak: every upload is a
    # new version that /readyz and inference load and keep (~5.5 kB each,
    # ~500 a minute here), which heaptrack showed was most of the growth.
    # ASan's own caches likewise: a quarantine of freed memory (256 MB by
    # default) still filled for two minutes of this load (RSS 355 MB in the
    # first minute's last 30 s, flat at ~420 MB from 140 s); 32 MB fills in
    # seconds, and freed pages go back to the system every 5 s as the
    # release build's malloc_trim does.
    VAED_DATA=$dir/data \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:quarantine_size_mb=32:allocator_release_to_os_interval_ms=5000 \
        UBSAN_OPTIONS=print_stacktrace=1 \
        "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/var" --port-file "$dir/port" \
        --workers 1 --max-connections 256 --stream-max-s 5 --response-cache-mb 1 \
        --model-cache-mb 1 >"$dir/vaed.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do
        [ -s "$dir/port" ] && break
        sleep 0.1
    done
    port=$(cat "$dir/port")
    # RSS (kB) once a second, with the seconds since the load began.
    (
        t=0
        while kill -0 "$pid" 2>/dev/null; do
            rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [ -n "$rss" ] && echo "$t $rss"
            sleep 1
            t=$((t + 1))
        done
    ) >"$dir/rss" &
    sampler=$!
    load_rc=0
    "$load" run "$port" "$seconds" "$connections" | tee "$dir/load.txt" || load_rc=$?
    kill -TERM "$pid"
    exit_rc=0
    wait "$pid" || exit_rc=$?
    wait "$sampler" 2>/dev/null || true
    check_rc=0
    "$load" check "$dir/var/registry.db" || check_rc=$?
    reports=$(grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$dir/vaed.log" || true)
    # The resident size at the end of the first minute and of the last: the
    # mean of each one's last 30 s. A job's training state (several MB)
    # comes and goes within seconds, so one sample read whether a job was
    # training at that second (it swung from -17 % to +41 % between two
    # runs); the mean of 30 holds as much training in both. The last window
    # ends 5 s before the load does (the sampler's seconds run a little
    # slow), so no sample falls after the load, when jobs end.
    first=$(awk '$1 > 30 && $1 <= 60 {s += $2; n++} END {printf "%d", s / n}' "$dir/rss")
    last=$(awk -v end="$seconds" '$1 > end - 35 && $1 <= end - 5 {s += $2; n++} END {printf "%d", s / n}' "$dir/rss")
    echo "RSS (s:kB) every 30 s: $(awk '$1 % 30 == 0 {printf "%s:%s ", $1, $2}' "$dir/rss")"
    drift=$(awk -v a="$first" -v b="$last" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')
    rate=$(sed -nE 's/.*in [0-9]+ s \(([0-9]+)\/s\).*/\1/p' "$dir/load.txt")
    unexpected=$(sed -nE 's/.* ([0-9]+) unexpected statuses/\1/p' "$dir/load.txt")
    ok=1
    [ "$load_rc" -eq 0 ] || ok=0
    [ "$exit_rc" -eq 0 ] || ok=0
    [ "$check_rc" -eq 0 ] || ok=0
    [ "$reports" -eq 0 ] || ok=0
    awk -v d="$drift" -v m="$max_drift" 'BEGIN {exit !(d < m)}' || ok=0
    line=$(printf '%-10s %7s req/s  %s unexpected  %s sanitizer reports  exit %s  mean RSS %s kB in 30-60 s, %s kB in %s-%s s (%s %%)  registry %s' \
        "$build" "${rate:-?}" "${unexpected:-?}" "$reports" "$exit_rc" "$first" "$last" "$((seconds - 35))" "$((seconds - 5))" \
        "$drift" "$([ "$check_rc" -eq 0 ] && echo whole || echo BROKEN)")
    report+=("$line: $([ "$ok" = 1 ] && echo ok || echo FAILED)")
    if [ "$ok" = 1 ]; then
        rm -rf "$dir"
    else
        failures=$((failures + 1))
        echo "soak: $build failed; kept $dir (vaed.log, rss, load.txt)"
        grep -E -A12 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$dir/vaed.log" | head -40 || true
    fi
done
echo
echo "=== soak: ${seconds}s at $connections connections"
printf '  %s\n' "${report[@]}"
echo "$(( ${#builds[@]} - failures )) passed, $failures failed"
[ "$failures" -eq 0 ]
