#!/usr/bin/env bash
# Data-parallel training benchmark (not a test): images/s of `vaed train`
# as 1 process with 1 thread against 2 Open MPI ranks with 1 thread each, on
# this machine, in the same run, for the MLP (784-400-20, batch 128) and the
# conv model (`--arch conv` defaults, batch 128) on MNIST's training images
# (as a path, so no epoch spends time on a test set). Printed per model: the
# images/s of each setting (the best of REPEATS), the scaling efficiency
# (images/s / (2 x 1-process images/s), for every setting on two cores), and
# what rank 0 says of the
# sums over the ranks: the time per step spent in the gradients' allreduce
# (the wait for the slower rank included) and its share of the run.
#
# Settings: "1 process" (no MPI at all), "1 process x 2 threads" (vaed's own
# data parallelism in one process, --threads 2: what the two cores give
# without MPI, the reference for 2 ranks), "1 rank" (mpirun -np 1: MPI's own
# cost, no peer), "2 ranks" on this host (shared memory), and, when network
# namespaces work here (root, `ip netns`), "2 hosts": two namespaces joined
# by a veth pair, one rank in each, mpirun reaching the second through an
# rsh agent that enters its namespace (so the ranks talk TCP over the veth,
# as two machines on a link would; the same two cores do the work).
#   scripts/bench-mpi.sh
# Environment: LIMIT (training images, default 12000 for the MLP; the conv
# model takes LIMIT/6), REPEATS (default 2), ARCH (mlp, conv or all). A shared
# machine is noisy: the load average is printed before and after.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
vaed=$root/build/vaed
limit=${LIMIT:-12000}
repeats=${REPEATS:-2}
arch=${ARCH:-all}
case "$arch" in mlp|conv|all) ;; *) echo "bench-mpi: ARCH is mlp, conv or all" >&2; exit 2 ;; esac
[ -x "$vaed" ] || { echo "bench-mpi: build first (make)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "bench-mpi: no mpirun (openmpi-bin)" >&2; exit 2; }
data=data/mnist/train-images-idx3-ubyte
[ -e "$data" ] || { echo "bench-mpi: no $data (scripts/get-data.sh mnist)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d /tmp/vaed-bench-mpi.XXXXXX)
ns_a=vaedbenchA ns_b=vaedbenchB addr_a=10.231.77.1 addr_b=10.231.77.2
netns=0
teardown() {
    if [ "$netns" = 1 ]; then ip netns del "$ns_a" 2>/dev/null || true; ip netns del "$ns_b" 2>/dev/null || true; fi
    rm -rf -- "$tmp"
}
trap teardown EXIT

# two "hosts": namespaces A and B, a veth pair between them
if [ "$(id -u)" = 0 ] && ip netns add "$ns_a" 2>/dev/null; then
    netns=1
    ip netns add "$ns_b"
    ip link add vaedbA type veth peer name vaedbB
    ip link set vaedbA netns "$ns_a"
    ip link set vaedbB netns "$ns_b"
    ip -n "$ns_a" addr add "$addr_a/24" dev vaedbA
    ip -n "$ns_b" addr add "$addr_b/24" dev vaedbB
    for n in "$ns_a" "$ns_b"; do ip -n "$n" link set lo up; done
    ip -n "$ns_a" link set vaedbA up
    ip -n "$ns_b" link set vaedbB up
    # mpirun's "ssh": run the command in the host's namespace, under a hostname of its own
    cat >"$tmp/agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in $addr_b) ns=$ns_b ;; *) ns=$ns_a ;; esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$ns; \$*"
EOF
    chmod +x "$tmp/agent"
    printf '%s slots=1\n%s slots=1\n' "$addr_a" "$addr_b" >"$tmp/hosts"
else
    echo "note: network namespaces are not available here (root and ip netns needed): no 2-host runs"
fi

# run SETTING ARGS...: one training run; prints "IMAGES_PER_S MS_PER_SUM SHARE"
run() {
    local setting=$1; shift
    local cmd=("$vaed" train --data "$data" --epochs 1 --iwae 0 --seed 1 --out "$tmp/out.st" "$@")
    case "$setting" in
        process) "${cmd[@]}" --threads 1 ;;
        threads) "${cmd[@]}" --threads 2 ;;
        # a rank trains with one thread whatever --threads says (and -np 1,
        # which the trainer runs as one process, too); said here as well
        rank) mpirun --bind-to none -np 1 "${cmd[@]}" --threads 1 ;;
        ranks) mpirun --oversubscribe --bind-to none -np 2 "${cmd[@]}" --threads 1 ;;
        hosts) ip netns exec "$ns_a" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$ns_a" \
                   mpirun --hostfile "$tmp/hosts" -np 2 --bind-to none --mca plm_rsh_agent "$tmp/agent" \
                   --mca btl tcp,self --mca btl_tcp_if_include "$addr_a/24" \
                   --mca oob_tcp_if_include "$addr_a/24" "${cmd[@]}" --threads 1 ;;
    esac >"$tmp/log" 2>&1 || { echo "bench-mpi: $setting failed:" >&2; tail -5 "$tmp/log" >&2; exit 1; }
    local ips ms share
    ips=$(sed -n 's/^epoch 1\/1 .* \([0-9]*\) images\/s$/\1/p' "$tmp/log")
    ms=$(sed -n 's/^ranks: .*, \([0-9.]*\) ms each.*/\1/p' "$tmp/log")
    share=$(sed -n 's/^ranks: .*(\([0-9.]*%\) of.*/\1/p' "$tmp/log")
    echo "${ips:-0} ${ms:--} ${share:--}"
}

bench() { # bench NAME ARGS...
    local name=$1; shift
    local settings=(process threads rank ranks)
    [ "$netns" = 1 ] && settings+=(hosts)
    declare -A best ms share
    local s r out
    for r in $(seq "$repeats"); do
        for s in "${settings[@]}"; do
            read -r ips m sh < <(run "$s" "$@")
            if [ "$ips" -gt "${best[$s]:-0}" ]; then best[$s]=$ips; ms[$s]=$m; share[$s]=$sh; fi
        done
    done
    echo
    echo "$name ($*)"
    printf '  %-30s %10s %16s %10s %11s\n' setting "images/s" "ms per allreduce" "of the run" "efficiency"
    for s in "${settings[@]}"; do
        local label eff=-
        case "$s" in
            process) label="1 process x 1 thread" ;;
            threads) label="1 process x 2 threads" ;;
            rank) label="1 rank x 1 thread (mpirun)" ;;
            ranks) label="2 ranks x 1 thread, 1 host" ;;
            hosts) label="2 ranks x 1 thread, 2 hosts" ;;
        esac
        case "$s" in threads|ranks|hosts)
            eff=$(awk -v a="${best[$s]}" -v b="${best[process]}" 'BEGIN { printf "%.2f", (b > 0 ? a / (2 * b) : 0) }') ;;
        esac
        printf '  %-30s %10s %16s %10s %11s\n' "$label" "${best[$s]}" "${ms[$s]}" "${share[$s]}" "$eff"
    done
}

echo "bench-mpi: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(mpirun --version | head -1)"
[ "$arch" = conv ] || bench "MLP 784-400-20" --hidden 400 --latent 20 --batch 128 --limit "$limit"
[ "$arch" = mlp ] || bench "conv (channels 32,64,128,256)" --arch conv --batch 128 --limit $((limit / 6))
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
